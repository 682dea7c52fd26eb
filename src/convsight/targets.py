"""One ``Target`` type for attribution, activation maximisation and mining.

A target maps a forward pass to one number per image. Kinds, written the same everywhere:

- ``class:281``: the unnormalised class score (logit)
- ``prob:281``: the softmax probability of the class
- ``LAYER:C``: channel C of a layer, averaged over positions
- ``LAYER:C@Y,X``: one neuron

Targets compose: ``parse_target("class:281") + 0.5 * parse_target("blocks.5:3")``, or the text
``"class:281 + 0.5*blocks.5:3"``. A target declares the layers it needs, so only those are hooked.

>>> t = parse_target("blocks.5:3@2,2")
>>> values, _ = evaluate(net, x, t)    # shape (N,), differentiable w.r.t. x

Text is read once, where it enters (a public call, the command line, a web route); inside
convsight targets travel as ``Target`` objects (``Target.unit("blocks.5", 3)``,
``Target.class_score(281)``), never as text rebuilt to be read again. ``check_target`` checks the
layer and the channel range before any forward pass (``capture.layer_channels``); a neuron's
position, which depends on the input size, is checked when the layer's output is there.
"""

from __future__ import annotations

import re
import threading
import weakref
from dataclasses import dataclass
from typing import Any, Sequence, Union

import torch
import torch.nn.functional as F

from .capture import capture, declared_channels, eval_mode, layer_channels
from .cpu import govern
from .errors import UnitError
from .models import Network, as_network
from .units import Unit, check_layer, check_unit, parse_unit


@dataclass(frozen=True)
class ClassScore:
    index: int

    def __str__(self) -> str:
        return f"class:{self.index}"


@dataclass(frozen=True)
class ClassProb:
    index: int

    def __str__(self) -> str:
        return f"prob:{self.index}"


Term = Union[ClassScore, ClassProb, Unit]


def _term_value(term: Term, acts: dict[str, torch.Tensor], logits: torch.Tensor | None) -> torch.Tensor:
    if isinstance(term, (ClassScore, ClassProb)):
        if logits is None or logits.dim() != 2:
            raise UnitError(f"target {term} needs the model to output class scores (N, classes)")
        if not 0 <= term.index < logits.shape[1]:
            raise UnitError(f"class {term.index} is out of range: valid classes are "
                            f"0..{logits.shape[1] - 1}")
        if isinstance(term, ClassScore):
            return logits[:, term.index]
        return F.softmax(logits, dim=1)[:, term.index]
    act = acts.get(term.layer)
    if act is None:
        raise UnitError(f"layer {term.layer} does not output a tensor (or never runs)")
    check_unit(term, tuple(act.shape[1:]))
    if term.is_neuron:
        return act[:, term.channel, term.y, term.x]
    a = act[:, term.channel]
    return a.flatten(1).mean(1) if a.dim() > 1 else a


class Target:
    """A weighted sum of terms (class score, class probability, channel, neuron)."""

    def __init__(self, terms: Sequence[tuple[float, Term]]) -> None:
        if not terms:
            raise UnitError("a target needs at least one term")
        self.terms = tuple((float(w), t) for w, t in terms)

    @classmethod
    def of(cls, term: Term) -> "Target":
        return cls([(1.0, term)])

    @classmethod
    def unit(cls, layer: str, channel: int, y: int | None = None,
             x: int | None = None) -> "Target":
        """Channel ``channel`` of ``layer`` (its mean), or its neuron at (``y``, ``x``)."""
        return cls.of(Unit(layer, int(channel), None if y is None else int(y),
                           None if x is None else int(x)))

    @classmethod
    def class_score(cls, index: int) -> "Target":
        return cls.of(ClassScore(int(index)))

    @classmethod
    def probability(cls, index: int) -> "Target":
        return cls.of(ClassProb(int(index)))

    @property
    def layers(self) -> tuple[str, ...]:
        """Layers whose outputs the target reads (the model output is always available)."""
        return tuple(dict.fromkeys(t.layer for _, t in self.terms if isinstance(t, Unit)))

    @property
    def units(self) -> tuple[Unit, ...]:
        return tuple(t for _, t in self.terms if isinstance(t, Unit))

    @property
    def reads_output(self) -> bool:
        """Whether the target reads the model output (a class score or probability)."""
        return any(isinstance(t, (ClassScore, ClassProb)) for _, t in self.terms)

    @property
    def class_index(self) -> int | None:
        """The class of a target that is one class score or probability (weight 1), else None."""
        if len(self.terms) == 1 and self.terms[0][0] == 1.0 and \
                isinstance(self.terms[0][1], (ClassScore, ClassProb)):
            return self.terms[0][1].index
        return None

    @property
    def is_probability(self) -> bool:
        """Whether the target is one class probability with a positive weight (a value in [0, 1])."""
        return len(self.terms) == 1 and isinstance(self.terms[0][1], ClassProb) and \
            self.terms[0][0] > 0

    def __call__(self, acts: dict[str, torch.Tensor], logits: torch.Tensor | None) -> torch.Tensor:
        """One value per image from captured layer outputs and the model output."""
        total = None
        for weight, term in self.terms:
            v = _term_value(term, acts, logits) * weight
            total = v if total is None else total + v
        return total

    def __add__(self, other: "Target") -> "Target":
        other = parse_target(other)
        return Target(self.terms + other.terms)

    __radd__ = __add__

    def __sub__(self, other: "Target") -> "Target":
        return self + (-1.0) * parse_target(other)

    def __mul__(self, k: float) -> "Target":
        if not isinstance(k, (int, float)):
            return NotImplemented
        return Target([(w * k, t) for w, t in self.terms])

    __rmul__ = __mul__

    def __neg__(self) -> "Target":
        return self * -1.0

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Target) and self.terms == other.terms

    def __hash__(self) -> int:
        return hash(self.terms)

    def __str__(self) -> str:
        text = ""
        for w, t in self.terms:
            sign = "-" if w < 0 else "+"
            body = str(t) if abs(w) == 1.0 else f"{abs(w):g}*{t}"
            text = (f"{text} {sign} {body}" if text else ("-" + body if w < 0 else body))
        return text

    def __repr__(self) -> str:
        return f"Target({str(self)!r})"


def _parse_term(text: str) -> Term:
    kind, _, rest = text.partition(":")
    if kind in ("class", "prob"):
        if not re.fullmatch(r"\s*\d+\s*", rest):
            raise UnitError(f"cannot read target {text!r}: write {kind}:INDEX, e.g. {kind}:281")
        return ClassScore(int(rest)) if kind == "class" else ClassProb(int(rest))
    try:
        return parse_unit(text)
    except UnitError:
        raise UnitError(f"cannot read target {text!r}: write class:N, prob:N, LAYER:C or "
                        "LAYER:C@Y,X (sums like 'class:1 + 0.5*blocks.5:3' also work)") from None


def parse_target(spec: "str | int | Target | Unit | ClassScore | ClassProb") -> Target:
    """Text, a class index, a ``Unit`` or a ``Target`` -> ``Target``."""
    if isinstance(spec, Target):
        return spec
    if isinstance(spec, bool):
        raise UnitError(f"cannot use {spec!r} as a target")
    if isinstance(spec, int):
        return Target.of(ClassScore(spec))
    if isinstance(spec, (Unit, ClassScore, ClassProb)):
        return Target.of(spec)
    if not isinstance(spec, str):
        raise UnitError(f"cannot use a {type(spec).__name__} as a target: write class:N, prob:N, "
                        "LAYER:C or LAYER:C@Y,X")
    terms = []
    tokens = re.split(r"([+-])", spec.replace(" ", ""))
    sign = 1.0
    if tokens and tokens[-1] == "" and len(tokens) > 1:
        raise UnitError(f"cannot read target {spec!r}: it ends with an operator")
    for tok in tokens:
        if tok in ("+", "-"):
            sign = -sign if tok == "-" else sign
            continue
        if not tok:
            continue
        m = re.fullmatch(r"(\d+(?:\.\d*)?(?:[eE]\d+)?|\.\d+)\*(.+)", tok)
        weight, body = (float(m.group(1)), m.group(2)) if m else (1.0, tok)
        terms.append((sign * weight, _parse_term(body)))
        sign = 1.0
    if not terms:
        raise UnitError(f"cannot read target {spec!r}: write class:N, prob:N, LAYER:C or LAYER:C@Y,X")
    return Target(terms)


_CHECKED: "weakref.WeakKeyDictionary[Any, set]" = weakref.WeakKeyDictionary()
_CHECKED_GUARD = threading.Lock()


def check_target(model, spec: Any, probe: bool = True) -> Target:
    """``spec`` as a ``Target`` (``parse_target``) whose layers exist and whose channels are in
    range, checked before any forward pass of the caller: a channel against the count its layer
    declares (convolutions, normalisations) or, with ``probe``, against ``layer_table``'s shape
    (one cached pass of one zero image; without ``probe`` such a channel is checked when the
    layer's output is there). Each unit is checked once per model."""
    target = parse_target(spec)
    module = model.module if isinstance(model, Network) else as_network(model).module
    with _CHECKED_GUARD:
        done = _CHECKED.setdefault(module, set())
        todo = [u for u in target.units if u not in done]
    for unit in todo:
        check_layer(module, unit.layer)
        declared = declared_channels(module.get_submodule(unit.layer))
        if declared is None and not probe:
            continue
        n = declared if declared is not None else layer_channels(model, unit.layer)
        if not 0 <= unit.channel < n:
            raise UnitError(f"channel {unit.channel} is out of range for layer {unit.layer}: "
                            f"valid channels are 0..{n - 1}")
        with _CHECKED_GUARD:
            done.add(unit)
    return target


def resolve_targets(target: Any, n: int, model: Any = None) -> list[Target | None]:
    """One ``Target`` per image from one spec for all or a list with one per image (None: the
    image's top class, see ``with_top_class``); with ``model``, each checked (``check_target``)."""
    read = parse_target if model is None else (lambda t: check_target(model, t))
    if isinstance(target, (list, tuple)):
        if len(target) != n:
            raise UnitError(f"got {len(target)} targets for a batch of {n} images: give one "
                            "target for all images or a list with one per image")
        return [None if t is None else read(t) for t in target]
    one = None if target is None else read(target)
    return [one] * n


def with_top_class(targets: Sequence[Target | None], logits: Any) -> list[Target]:
    """The rule for "no target": each image's top class score, read from ``logits`` (N, classes)."""
    if all(t is not None for t in targets):
        return list(targets)  # type: ignore[arg-type]
    if not isinstance(logits, torch.Tensor) or logits.dim() != 2:
        raise UnitError("the default target (each image's top class) needs a model that outputs "
                        "class scores (N, classes); give a target such as LAYER:C")
    top = logits.detach().argmax(dim=1).tolist()
    return [Target.of(ClassScore(int(c))) if t is None else t for t, c in zip(targets, top)]


def _per_image(v: torch.Tensor | None, n: int) -> list[torch.Tensor | None]:
    """Image by image, as batches of one: views from one ``unbind``, whose backward pass writes
    one gradient of the batch's size (slices would write one per image: a layer synthesis of 24
    images, 24 such gradients per step). The same numbers as slicing ``v[i:i + 1]``."""
    if v is None:
        return [None] * n
    if v.dim() and v.shape[0] == n:
        return [row[None] for row in v.unbind(0)]
    return [v[i:i + 1] for i in range(n)]


def fixed_targets(net: Any, x: torch.Tensor, target: Any) -> list[Target]:
    """One target per image of ``x``, fixed before any change to the image or the model: where
    none is given, the image's top class on the clean image (one forward pass without
    gradients, in eval mode). Noise, occlusion or randomised weights then keep the target."""
    targets = resolve_targets(target, x.shape[0], net)
    if any(t is None for t in targets):
        net = as_network(net)
        with torch.no_grad(), eval_mode(net.module):
            targets = with_top_class(targets, net.module(x))
    return targets  # type: ignore[return-value]


def evaluate(model, x: torch.Tensor, target: Any, detach: bool = False, stop: bool = True,
             fast: bool = False) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Run the model on ``x`` once; return (target value per image, model output).

    ``target`` is one target for every image or a list with one per image (None: the image's top
    class). Only the layers the targets read are hooked, and the hooks are removed afterwards.
    With ``stop`` (default) and no target reading the model output, the forward pass ends after
    the last layer needed and the output is None. Values are differentiable w.r.t. ``x`` unless
    ``detach``. ``fast``: on ``Network.fast`` (BatchNorms folded; values equal up to rounding), for
    convsight's own passes; attributions keep the model as it is, to equal Captum's.
    """
    from .models import as_network

    net = as_network(model)
    targets = resolve_targets(target, x.shape[0])
    known = [t for t in targets if t is not None]
    for t in dict.fromkeys(known):  # layers and declared channel counts, before the pass
        check_target(net, t, probe=False)
    layers = list(dict.fromkeys(l for t in known for l in t.layers))
    early = stop and bool(layers) and len(known) == len(targets) and \
        not any(t.reads_output for t in known)
    net = net.fast(layers) if fast else net
    govern()  # threads for the cores other programs leave free (convsight.cpu)
    with capture(net.module, layers, detach=detach, stop=early) as acts:
        output = net.module(x)
    if early:
        output = None
    elif any(t.reads_output for t in known) and (not isinstance(output, torch.Tensor)
                                                  or output.dim() != 2):
        raise UnitError("class targets need a model whose output is class scores (N, classes); "
                        f"this one returns {type(output).__name__}"
                        + (f" of shape {tuple(output.shape)}" if isinstance(output, torch.Tensor)
                           else ""))
    targets = with_top_class(targets, output)
    first = targets[0]
    if all(t is first or t == first for t in targets):  # one target for the whole batch
        return first(acts, output), output
    n = len(targets)
    rows = {k: _per_image(v, n) for k, v in acts.items()}
    outputs = _per_image(output, n)
    values = [t({k: r[i] for k, r in rows.items()}, outputs[i]) for i, t in enumerate(targets)]
    return torch.cat(values), output
