"""The classic figure: one row per target, "image | gradient | guided backprop | deconvnet".

>>> img = attribution_figure(net, "cat.jpg", ["class:281", "blocks.10:5"])
>>> convsight.pictures.save_png(img, "fig.png")
"""

from __future__ import annotations

from typing import Any, Sequence

import torch

from ..attribute import attribute
from ..attribute.registry import FIGURE, MethodNames, method_info
from ..errors import ConvsightError
from ..models import as_network
from ..pictures import Picture, grid, label, render_attribution, to_numpy_image, upscale
from ..targets import Target, fixed_targets, parse_target

MIN_SIDE = 96  # pictures of smaller inputs are enlarged by a whole factor (nearest neighbour)
DEFAULT_METHODS = MethodNames(FIGURE)  # gradient, guided, deconv (attribute/registry.py)


def _target_text(net, given: Target | None, resolved: Target) -> str:
    if given is None:
        return f"top class: {net.class_name(resolved.class_index)}"
    if given.class_index is not None:
        return f"{given} {net.class_name(given.class_index)}"
    return str(given)


def attribution_figure(net: Any, image: Any, targets: Any = None,
                       methods: Sequence[str] = DEFAULT_METHODS,
                       kind: str = "rgb", layer: str | None = None) -> Picture:
    """Rows of (image, one attribution per method) for each target -> float (H, W, 3) picture
    (a ``Picture``: a notebook displays it). Inputs under 96 px are drawn enlarged.

    ``image``: a path, PIL image or array (preprocessed for the network), or a normalised tensor
    (C, H, W). ``targets``: one target or a list (None: the top class). Gradient-like methods are
    drawn with ``kind`` (see ``render_attribution``); Grad-CAM (a method whose ``display`` is
    "heatmap") as a heatmap over the image.
    """
    net = as_network(net)
    if isinstance(image, torch.Tensor):
        x = image[None] if image.dim() == 3 else image
        if x.dim() != 4 or x.shape[0] != 1:
            raise ConvsightError(f"attribution_figure takes one image, got shape {tuple(image.shape)}")
    else:
        x = net.preprocess(image)
    x = x.to(net.device)
    targets = list(targets) if isinstance(targets, (list, tuple)) else [targets]
    if not targets:
        raise ConvsightError("attribution_figure needs at least one target (None: top class)")
    targets = [None if t is None else parse_target(t) for t in targets]
    methods = list(methods)
    if not methods:
        raise ConvsightError("attribution_figure needs at least one method")
    batch = x.expand(len(targets), *x.shape[1:])
    resolved = targets
    if any(t is None for t in targets):
        top = fixed_targets(net, x, None)[0]
        resolved = [top if t is None else t for t in targets]
    photo = to_numpy_image(net.denormalize(x)[0].clamp(0, 1))  # (H, W, 3), or (H, W) if gray
    # small inputs (an MNIST-sized network) are enlarged so that pictures and captions can be read
    factor = -(-MIN_SIDE // min(photo.shape[:2]))
    columns = {}
    for m in methods:
        kw = {"layer": layer} if method_info(m).needs_layer and layer else {}
        columns[m] = attribute(net, batch, targets, method=m, **kw)
    tiles = []
    for i, t in enumerate(targets):
        tiles.append(label(upscale(photo, factor), _target_text(net, t, resolved[i])))
        for m in methods:
            a = columns[m][i]
            record = method_info(m)
            pic = (render_attribution(a, "heatmap", image=photo) if record.over_image
                   else render_attribution(a, kind))
            tiles.append(label(upscale(pic, factor), record.title))
    return grid(tiles, ncols=1 + len(methods), pad=4)
