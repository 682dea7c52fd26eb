"""Model-randomisation sanity check (Adebayo et al. 2018, "Sanity Checks for Saliency Maps").

Re-initialise the network's layers and see whether the explanation changes. **Cascading**: from the
output down, each step randomises one more layer (or block) on top of the ones before, ending with
a fully random network. **Independent**: each step randomises one layer alone, the others keep
their trained weights. An explanation that survives randomising the whole network shows the image,
not the model: Adebayo et al. found guided backprop and guided Grad-CAM nearly unchanged, the
gradient and Grad-CAM sensitive.

Everything runs on a copy: the user's model is never touched. Targets are fixed on the trained
model (no target: each image's top class) and kept through the steps.

>>> rep = sanity_check(net, x, methods=('gradient', 'guided', 'gradcam'), group="block")
>>> rep.layers                      # ['fc', 'bn1', 'conv_head', 'blocks.15', ...]
>>> rep.spearman_abs['guided'][-1]  # rank correlation after the last step, per image
>>> picture = rep.figure()          # one row per method, one column per step
"""

from __future__ import annotations

import copy
import dataclasses
from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

import torch

from ..attribute import METHODS, attribute, image_batch
from ..attribute.registry import SANITY, MethodNames, method_info
from ..errors import ConvsightError
from ..models import as_network
from ..pictures import Picture, as_float, fit_square, grid, label, png_bytes
from ..progress import ProgressArg, progress_bar
from ..targets import Target, fixed_targets
from .randomize import Group, randomization_steps, randomize_layers
from .similarity import MEASURES, Reference

MODES = ("cascading", "independent")
DEFAULT_METHODS = MethodNames(SANITY)  # read from the method registry (attribute/registry.py)


@dataclass
class SanityReport:
    """Similarity of each method's explanation to the trained model's, step by step.

    Every measure is ``{method: tensor (len(layers) + 1, N)}``; row 0 compares the trained model
    with itself (exactly 1), row s the model after step s (``layers[s - 1]`` randomised, and in
    cascading mode all steps before it too).
    """

    mode: str
    layers: list[str]                      # step names, from the output down
    members: list[list[str]]               # the modules each step re-initialises
    methods: tuple[str, ...]
    targets: list[Target]
    spearman: dict[str, torch.Tensor]
    spearman_abs: dict[str, torch.Tensor]
    ssim: dict[str, torch.Tensor]
    hog: dict[str, torch.Tensor]
    pictures: dict[str, torch.Tensor] = field(repr=False)   # (steps + 1, N, H, W) in [0, 1]
    photos: torch.Tensor = field(repr=False)                # (N, 3, H, W) in [0, 1]

    def measure(self, name: str) -> dict[str, torch.Tensor]:
        if name not in MEASURES:
            raise ConvsightError(f"unknown measure {name!r}: valid are {', '.join(MEASURES)}")
        return getattr(self, name)

    def figure(self, image: int = 0, tile: int = 96, steps: Sequence[int] | None = None
               ) -> Picture:
        """Adebayo et al.'s Figure 2 for one image: a row per method (the photo, then the
        explanation of the trained model and after each randomisation step), grey-scale pictures
        of the absolute maps. ``steps`` picks columns (0 = trained); default all."""
        n = self.photos.shape[0]
        if not 0 <= image < n:
            raise ConvsightError(f"image {image} is out of range: the report has {n} image(s)")
        cols = list(range(len(self.layers) + 1)) if steps is None else list(steps)
        if any(not 0 <= s <= len(self.layers) for s in cols):
            raise ConvsightError(f"steps must lie in 0..{len(self.layers)}, got {list(steps or [])}")
        names = ["trained"] + [("+ " if self.mode == "cascading" else "only ") + name
                               for name in self.layers]
        photo = as_float(fit_square(self.photos[image], tile))
        tiles = []
        for r, method in enumerate(self.methods):
            tiles.append(label(photo, method_info(method).short, size=10))
            for s in cols:
                pic = self.pictures[method][s, image].numpy()
                tiles.append(label(as_float(fit_square(pic, tile)), names[s] if r == 0 else "",
                                   size=10))
        title = (f"{self.mode} randomisation" + (", from the output down" if self.mode ==
                                                  "cascading" else ", one step at a time"))
        return label(grid(tiles, ncols=len(cols) + 1, pad=3), title, height=18)

    def _repr_png_(self) -> bytes:  # a notebook shows the figure of the first image
        return png_bytes(self.figure())


def check_methods(methods: Sequence[str]) -> tuple[str, ...]:
    methods = tuple(methods)
    if not methods:
        raise ConvsightError(f"give at least one method: {', '.join(METHODS)}")
    for m in methods:
        method_info(m)  # a clear error for an unknown one
    return methods


def method_options(method: str, options: Mapping[str, Any] | None, seed: int) -> dict[str, Any]:
    """``attribute`` options of a method, with the noise of a method that takes a seed
    (SmoothGrad) seeded: the same noise for the trained and every randomised model, so only the
    weights differ between the maps."""
    opts = dict(options or {})
    if "seed" in method_info(method).options:
        opts.setdefault("seed", seed)
    return opts


def sanity_check(model: Any, images: torch.Tensor, target: Any = None,
                 methods: Sequence[str] = DEFAULT_METHODS, mode: str = "cascading", seed: int = 0,
                 group: Group = "layer", options: Mapping[str, Mapping[str, Any]] | None = None,
                 progress: ProgressArg = True) -> SanityReport:
    """Randomise the layers of a copy step by step and compare each explanation to the trained
    model's (see the module docstring). ``group``: ``"layer"``, ``"block"``, ``"all"`` or a function
    (``randomize.py``); ``options``: per-method options for ``attribute``, e.g.
    ``{'occlusion': {"window": 32, "stride": 16}}``."""
    if mode not in MODES:
        raise ConvsightError(f"unknown randomisation mode {mode!r}: valid modes are "
                             f"{', '.join(MODES)}")
    methods = check_methods(methods)
    options = dict(options or {})
    extra = sorted(set(options) - set(methods))
    if extra:
        raise ConvsightError(f"options given for methods not checked: {', '.join(extra)}")
    net = as_network(model)
    x, _ = image_batch(images, net, "sanity_check")
    x = x.detach().to(net.device)
    targets = fixed_targets(net, x, target)
    steps = randomization_steps(net, x, group)
    work = dataclasses.replace(net, module=copy.deepcopy(net.module), info=dict(net.info))
    trained = {k: v.clone() for k, v in work.module.state_dict().items()}

    def explain(method: str) -> torch.Tensor:
        return attribute(work, x, targets, method=method,
                         **method_options(method, options.get(method), seed))

    refs = {m: Reference(explain(m)) for m in methods}
    n = x.shape[0]
    scores = {k: {m: torch.ones(len(steps) + 1, n) for m in methods} for k in MEASURES}
    pictures = {m: torch.empty(len(steps) + 1, *refs[m].picture.shape) for m in methods}
    for m in methods:
        pictures[m][0] = refs[m].picture.cpu()
    with progress_bar(len(steps) * len(methods), f"sanity check ({mode})", "map",
                      progress) as report:
        for s, (_, members) in enumerate(steps, start=1):
            if mode == "independent" and s > 1:
                work.module.load_state_dict(trained)
            randomize_layers(work.module, members, seed)
            for m in methods:
                measured, picture = refs[m].compare(explain(m))
                for k in MEASURES:
                    scores[k][m][s] = measured[k]
                pictures[m][s] = picture.cpu()
                report(1)
    photos = net.denormalize(x).clamp(0, 1).cpu()
    return SanityReport(mode, [name for name, _ in steps], [list(ms) for _, ms in steps], methods,
                        targets, scores["spearman"], scores["spearman_abs"], scores["ssim"],
                        scores["hog"], pictures, photos)
