"""The one table of attribution methods: a frozen ``Method`` record per method, facts as data.

Every fact about a method lives in its record: its function and options, its title, how it is
drawn, how maps are ranked and held against random maps (``convsight.trust``), whether it takes
Grad-CAM's ``layer=``, and which default sets it belongs to. ``attribute``, the CLI, the figures,
the trust checks and the explorer only read the registry (the model: timm's model registry and
its ``PretrainedCfg`` records). Adding a method is one new file (its function) plus one record,
here for a built-in one or ``register_method`` at run time (docs/attribution.md, "Adding a
method"):

>>> def x_times_gradient(net, x, targets, batch_size=None):
...     return x * plain_gradient(net, x, targets, batch_size)
>>> register_method(Method("x-gradient", x_times_gradient, title="input x gradient",
...                        display="signed", reference="pixels", random_map=random_pixels))
"""

from __future__ import annotations

import inspect
import re
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Callable, Iterator, Mapping, Sequence

import torch

from ..errors import ConvsightError
from ..pictures.attribution import KINDS
from ..units import did_you_mean
from .gradcam import gradcam, guided_gradcam, random_grid_map
from .gradients import deconvnet, guided_backprop, plain_gradient
from .occlusion import occlusion, random_window_map
from .smoothgrad import smoothgrad

# Default sets a method can belong to (``Method.groups``); each reads as "the methods that ...".
FIGURE = "figure"    # attribution_figure and `convsight attribute` draw by default
SANITY = "sanity"    # sanity_check randomises by default
CHECK = "check"      # convsight.trust.check and `convsight check` score by default
CARD = "card"        # convsight.evaluate's report card rates by default
UNITS = "units"      # project one unit (report, atlas unit figures, explorer unit pages)
CLASSES = "classes"  # the explorer's image page shows for a class (pictures, trust, card)
GROUPS = (FIGURE, SANITY, CHECK, CARD, UNITS, CLASSES)
# The built-in names, for code that picks one method on purpose (a demo's point, a default).
GRADIENT, GUIDED, GRADCAM, GUIDED_GRADCAM = "gradient", "guided", "gradcam", "guided-gradcam"
DEFAULT_PROJECTION = GUIDED  # the projection of a unit that reports and unit pages show first
DEFAULT_TRUST = GRADCAM  # what trust_score scores when no method is named
DEFAULT_REFERENCE = GRADIENT  # the kind of random maps random_reference draws when none is named
_NOT_OPTIONS = ("net", "x", "target", "targets", "seen")  # what compute takes besides options
_NAME = re.compile(r"[a-z][a-z0-9_-]*")  # a CLI and URL name: no commas, spaces or slashes


def random_pixels(net: Any, x: torch.Tensor, options: Mapping[str, Any],
                  generator: torch.Generator) -> torch.Tensor:
    """Random maps of pixel methods (gradient-like): a uniform number per pixel, (N, 1, H, W)."""
    n, _, h, w = x.shape
    return torch.rand((n, 1, h, w), generator=generator).to(x.device)


@dataclass(frozen=True, eq=False)
class Method:
    """Everything the library knows about one attribution method.

    ``compute(net, x, targets, **options)``: the attribution of a normalised batch ``x`` (N, C,
    H, W) for one resolved target per image (None: the top class); ``options`` default to the
    keyword parameters of ``compute``. ``display``: the ``render_attribution`` kind pages draw it
    with ("heatmap": over the photo). ``reference`` names the random maps ``random_map(net, x,
    options, generator)`` draws to hold its maps against (convsight.trust). ``signed``: its maps
    are ranked by value, not by magnitude. ``slow``: a forward pass per window, left out of the
    randomisation cascade unless asked. ``check_options``: its options in the trust checks.
    """

    name: str
    compute: Callable[..., torch.Tensor]
    title: str
    display: str
    reference: str
    random_map: Callable[..., torch.Tensor]
    short: str = ""
    options: frozenset = None  # type: ignore[assignment]
    signed: bool = False
    needs_layer: bool = False
    slow: bool = False
    check_options: Mapping[str, Any] = field(default_factory=dict)
    groups: frozenset = frozenset()

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not _NAME.fullmatch(self.name):
            raise ConvsightError(f"method name {self.name!r} is not a CLI name: lowercase letters, "
                                 "digits, '-' and '_', starting with a letter")
        for what in ("compute", "random_map"):
            if not callable(getattr(self, what)):
                raise ConvsightError(f"method {self.name}: {what} must be a function")
        if not self.title or not self.reference:
            raise ConvsightError(f"method {self.name} needs a title and a reference (the kind of "
                                 "random map its maps are held against)")
        if self.display not in KINDS:
            raise ConvsightError(f"method {self.name}: display {self.display!r} is not one of "
                                 f"{', '.join(KINDS)}")
        if not set(self.groups) <= set(GROUPS):
            raise ConvsightError(f"method {self.name}: unknown groups "
                                 f"{', '.join(sorted(set(self.groups) - set(GROUPS)))}; valid "
                                 f"groups are {', '.join(GROUPS)}")
        options = self.options
        if options is None:
            options = [p.name for p in inspect.signature(self.compute).parameters.values()
                       if p.kind is p.KEYWORD_ONLY or p.default is not p.empty]
        set_ = object.__setattr__
        set_(self, "options", frozenset(o for o in options if o not in _NOT_OPTIONS))
        set_(self, "groups", frozenset(self.groups))
        set_(self, "check_options", MappingProxyType(dict(self.check_options)))
        set_(self, "short", self.short or self.title)
        set_(self, "needs_layer", self.needs_layer or "layer" in self.options)

    @property
    def over_image(self) -> bool:
        """Whether pictures lay the map over the photo (a heatmap) rather than beside it."""
        return self.display == "heatmap"

    @property
    def caption(self) -> str:
        """The caption under its picture on a page (a saliency display says what it shows)."""
        return f"saliency (|{self.title}|)" if self.display == "saliency" else self.title


_REGISTRY: dict[str, Method] = {}


def register_method(method: Method, replace: bool = False) -> Method:
    """Add ``method`` to the registry (after the others); ``replace`` allows a known name."""
    if not isinstance(method, Method):
        raise ConvsightError(f"register_method takes a Method record, got {type(method).__name__}")
    if method.name in _REGISTRY and not replace:
        raise ConvsightError(f"method {method.name!r} is already registered; pass replace=True")
    _REGISTRY[method.name] = method
    return method


def unregister_method(name: str) -> Method:
    """Remove a method (e.g. one a test registered); returns its record."""
    return _REGISTRY.pop(method_info(name).name)


def method_info(name: str) -> Method:
    """The record of method ``name`` (a clear error naming the valid ones otherwise)."""
    if isinstance(name, Method):
        return name
    found = _REGISTRY.get(name) if isinstance(name, str) else None
    if found is None:
        raise ConvsightError(f"unknown method {name!r}: valid methods are "
                             f"{', '.join(_REGISTRY)}.{did_you_mean(str(name), list(_REGISTRY))}")
    return found


def methods(group: str | None = None) -> tuple[Method, ...]:
    """The records, in registration order; with ``group``, those in that default set."""
    if group is not None and group not in GROUPS:
        raise ConvsightError(f"unknown method group {group!r}: valid are {', '.join(GROUPS)}")
    return tuple(m for m in _REGISTRY.values() if group is None or group in m.groups)


class MethodNames(Sequence):
    """The names of the registered methods (of one group), read from the registry at each use,
    so that a method registered later is in every list: ``"gradcam" in METHODS``."""

    def __init__(self, group: str | None = None) -> None:
        self.group = group

    def _names(self) -> tuple[str, ...]:
        return tuple(m.name for m in methods(self.group))

    def __getitem__(self, i: Any) -> Any:
        return self._names()[i]

    def __len__(self) -> int:
        return len(self._names())

    def __iter__(self) -> Iterator[str]:
        return iter(self._names())

    def __contains__(self, name: object) -> bool:
        return name in self._names()

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Sequence) and tuple(self) == tuple(other)

    def __repr__(self) -> str:
        return repr(self._names())


def check_option_default(option: str) -> Any:
    """The trust checks' value of ``option`` (e.g. occlusion's ``window``), from the first method
    whose ``check_options`` set it."""
    for m in methods():
        if option in m.check_options:
            return m.check_options[option]
    raise ConvsightError(f"no method sets {option!r} in its check options")


_PIXELS = "pixels"  # gradient-like maps are held against a uniform number per pixel
_PIXEL_LIKE = dict(reference=_PIXELS, random_map=random_pixels)
for _record in (  # the built-in methods, one record each, in the order pages list them
    Method("gradient", plain_gradient, title="gradient", display="saliency", **_PIXEL_LIKE,
           groups={FIGURE, SANITY, CHECK, CARD, UNITS, CLASSES}),
    Method("guided", guided_backprop, title="guided backprop", short="guided BP", display="rgb",
           **_PIXEL_LIKE, groups={FIGURE, SANITY, CHECK, CARD, UNITS, CLASSES}),
    Method("deconv", deconvnet, title="deconvnet", display="rgb", **_PIXEL_LIKE,
           groups={FIGURE, CHECK, UNITS}),
    Method("smoothgrad", smoothgrad, title="SmoothGrad", display="saliency", **_PIXEL_LIKE),
    Method("gradcam", gradcam, title="Grad-CAM", display="heatmap", reference="Grad-CAM grid",
           random_map=random_grid_map, signed=True, groups={SANITY, CHECK, CARD, CLASSES}),
    Method("guided-gradcam", guided_gradcam, title="guided Grad-CAM", short="guided G-CAM",
           display="rgb", **_PIXEL_LIKE, groups={CLASSES}),
    Method("occlusion", occlusion, title="occlusion", display="signed",
           reference="occlusion windows", random_map=random_window_map, signed=True, slow=True,
           # coarser than attribute's (16, 8): the cascade computes the map once per step
           check_options={"window": 32, "stride": 16}, groups={CHECK, CARD}),
):
    register_method(_record)
