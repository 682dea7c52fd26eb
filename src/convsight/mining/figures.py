"""Pictures of an atlas: a unit's patches, a layer's grid of units, a unit beside its projections.

A hit's *patch* is the receptive-field box of its (y, x) cut from the image as the network saw it
(resized and centre-cropped); boxes that stick out of the image are padded with the mean colour.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Sequence

import numpy as np
import torch
from PIL import Image

from ..errors import ConvsightError, UnitError
from ..images import to_pil
from ..render import grid, label

if TYPE_CHECKING:
    from ..atlas import Atlas, Hit

EMPTY_TILE = 0.85  # grey of a slot without a hit (fewer readable images than k)


def _as_pil(crop) -> Image.Image:
    if isinstance(crop, Image.Image):
        return crop.convert("RGB")
    if isinstance(crop, torch.Tensor):
        return to_pil(crop)
    a = np.asarray(crop)
    if a.dtype != np.uint8:
        a = (np.clip(a, 0, 1) * 255).round().astype(np.uint8)
    return Image.fromarray(a)


def crop_hit(atlas: "Atlas", layer: str, hit: "Hit", net=None,
             cache: dict[int, torch.Tensor] | None = None, clip: bool = False) -> Image.Image:
    """The receptive-field crop of ``hit`` from its preprocessed image.

    ``clip=False``: the whole box, padded with the image's mean colour where it leaves the image.
    ``clip=True``: only the part of the box inside the image (deep layers see more than the image).
    """
    if cache is not None and hit.image in cache:
        x = cache[hit.image]
    else:
        x = atlas.image(hit.image)
        if cache is not None:
            cache[hit.image] = x
    rf = atlas.receptive_field(layer, net)
    if not clip:
        return _as_pil(rf.crop(x, hit.y, hit.x))
    h, w = x.shape[1:]
    top, left, bottom, right = (0, 0, h - 1, w - 1) if rf.is_global else rf.box(hit.y, hit.x)
    top, left, bottom, right = max(top, 0), max(left, 0), min(bottom, h - 1), min(right, w - 1)
    return _as_pil(x[:, top:bottom + 1, left:right + 1])


def _tile(im: Image.Image, side: int) -> np.ndarray:
    """Fit ``im`` into a ``side`` x ``side`` tile, keeping its aspect ratio (grey margins)."""
    scale = side / max(im.size)
    size = (max(1, round(im.width * scale)), max(1, round(im.height * scale)))
    im = im.resize(size, Image.BICUBIC if scale > 1 else Image.LANCZOS)
    out = np.full((side, side, 3), EMPTY_TILE, np.float32)
    top, left = (side - size[1]) // 2, (side - size[0]) // 2
    out[top:top + size[1], left:left + size[0]] = np.asarray(im, dtype=np.float32) / 255.0
    return out


def _channels(atlas: "Atlas", layer: str, channels: Sequence[int] | None, max_units: int) -> list[int]:
    n = atlas.channels(layer)
    if channels is None:
        return list(range(min(n, max_units)))
    chosen = [int(c) for c in channels]
    bad = [c for c in chosen if not 0 <= c < n]
    if bad:
        raise UnitError(f"channels {bad} are out of range for layer {layer}: valid channels are "
                        f"0..{n - 1}")
    return chosen[:max_units]


def unit_cell(atlas: "Atlas", layer: str, channel: int, side: int, net=None,
              cache: dict | None = None, clip: bool = True) -> np.ndarray:
    """The k patches of one unit, resized to ``side`` px, in a square-ish block."""
    tiles = [_tile(crop_hit(atlas, layer, hit, net, cache, clip), side)
             for hit in atlas.top(layer, channel)]
    tiles += [np.full((side, side, 3), EMPTY_TILE, np.float32)] * (atlas.k - len(tiles))
    return grid(tiles, ncols=math.ceil(math.sqrt(atlas.k)), pad=1, background=1.0)


def default_tile(atlas: "Atlas", layer: str, net=None) -> int:
    """Patch size in the grid: the receptive field's size, kept between 24 and 64 pixels."""
    rf = atlas.receptive_field(layer, net)
    if getattr(rf, "is_global", False):
        return 64
    top, left, bottom, right = rf.box(0, 0)
    size = min(max(bottom - top + 1, right - left + 1), max(atlas.input_size))
    return int(np.clip(size, 24, 64))


def layer_grid(atlas: "Atlas", layer: str, channels: Sequence[int] | None = None,
               max_units: int = 64, net=None, tile: int | None = None,
               labels: bool = True, clip: bool = True) -> np.ndarray:
    """One cell per unit (its k patches), cells in a grid: an RGB float array in [0, 1]."""
    chosen = _channels(atlas, layer, channels, max_units)
    if not chosen:
        raise ConvsightError(f"no units to draw for layer {layer}")
    side = tile or default_tile(atlas, layer, net)
    cache: dict[int, torch.Tensor] = {}
    cells = []
    for c in chosen:
        cell = unit_cell(atlas, layer, c, side, net, cache, clip)
        cells.append(label(cell, f"{c}", height=13, size=11) if labels else cell)
    return grid(cells, ncols=math.ceil(math.sqrt(len(cells))), pad=6, background=1.0)


def unit_figure(atlas: "Atlas", layer: str, channel: int, net=None, method: str = "guided",
                side: int = 128, clip: bool = True) -> np.ndarray:
    """Each hit's patch beside the guided-backprop or deconvnet projection of that activation.

    Without the attribution module, only the patches are shown.
    """
    if method not in ("guided", "deconv"):
        raise ConvsightError(f"unknown projection method {method!r}: use 'guided' or 'deconv'")
    try:
        from ..attribute import attribute, render_attribution
    except ImportError:  # the attribution module is optional: show the patches alone
        attribute = render_attribution = None
    model = atlas._network(net, allow_random=False) if attribute is not None else None
    rf = atlas.receptive_field(layer, net)
    tiles = []
    for hit in atlas.top(layer, channel):
        x = atlas.image(hit.image)
        patch = _tile(crop_hit(atlas, layer, hit, net, {hit.image: x}, clip), side)
        if attribute is None:
            tiles.append(patch)
            continue
        xn = model.normalize(x[None]).to(model.device)
        attr = attribute(model, xn, target=f"{layer}:{channel}@{hit.y},{hit.x}", method=method)
        # crop first, so that the colour scale is set by the receptive field, not the whole image
        h, w = x.shape[1:]
        top, left, bottom, right = (0, 0, h - 1, w - 1) if rf.is_global else rf.box(hit.y, hit.x)
        if clip:
            top, left, bottom, right = max(top, 0), max(left, 0), min(bottom, h - 1), min(right, w - 1)
            cut = attr[0].cpu()[:, top:bottom + 1, left:right + 1]
        else:
            cut = rf.crop(attr[0].cpu(), hit.y, hit.x, fill=0.0)
        picture = render_attribution(cut, kind="rgb")
        projection = _tile(_as_pil(picture), side)
        tiles.append(np.concatenate([patch, np.ones((side, 2, 3), np.float32), projection], axis=1))
    if not tiles:
        raise ConvsightError(f"{layer}:{channel} has no hits in this atlas")
    title = f"{layer}:{channel}" + (f"   patch | {method} projection" if attribute else "")
    return label(grid(tiles, ncols=3, pad=4), title)
