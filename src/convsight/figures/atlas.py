"""Pictures of an atlas: a unit's patches, a layer's grid of units, a unit beside its projections.

A hit's *patch* is a box around its (y, x) cut from the image as the network saw it (resized and
centre-cropped), by a crop rule: the exact or local receptive field, or the hit's effective box
(``Atlas.hit_box``; by default the rule the layer was mined with). Clipped patches keep only the part of the box inside the image (deep
layers' boxes outgrow it); unclipped ones are padded with the image's mean colour.

The functions take an atlas (``AtlasData``: ``convsight.Atlas`` is one) for its hits and
stored syntheses, or its ``AtlasAccess`` (``atlas.access``), which also keeps the rebuilt model,
the images and the receptive fields between pictures; given an atlas, they make an access of
their own. ``convsight.Atlas.layer_grid`` and friends are one-line calls of these.
"""

from __future__ import annotations

import math
import threading
from collections import OrderedDict
from typing import Any, Sequence

import numpy as np
from PIL import Image

from ..atlas_access import AtlasAccess
from ..atlas_data import AtlasData, Hit
from ..attribute import attribute
from ..attribute.registry import DEFAULT_PROJECTION, UNITS, MethodNames
from ..errors import ConvsightError, UnitError
from ..pictures import as_float, as_pil, crop, fit_square, grid, label, patch_montage, render_attribution
from ..receptive.field import crop_box
from ..targets import Target
from ..units import format_ranges

PROJECTIONS = MethodNames(UNITS)  # what the report and the explorer offer (attribute/registry.py)
EMPTY_TILE = 0.85  # grey of a slot without a hit (fewer readable images than k)
_GRID_BACKGROUND = (217, 217, 217)  # the same grey, as 8-bit RGB


class PatchCutter:
    """Cut hits' receptive-field boxes out of the atlas's images, keeping recent images (8-bit,
    LRU): a layer's picture crops about k patches per unit, often from the same few images.
    Thread-safe, so the explorer's request threads can share one.
    """

    def __init__(self, atlas: AtlasData | AtlasAccess, net: Any = None, keep: int = 512,
                 crop: str | None = None) -> None:
        self.access = AtlasAccess.of(atlas)
        self.atlas, self.net, self.keep, self.crop = self.access.atlas, net, keep, crop
        self._images: OrderedDict[int, Image.Image] = OrderedDict()
        self._lock = threading.Lock()

    def image(self, image_id: int) -> Image.Image:
        """Image ``image_id`` as the network saw it (resized and centre-cropped)."""
        with self._lock:
            image = self._images.get(image_id)
            if image is not None:
                self._images.move_to_end(image_id)
                return image
        image = as_pil(self.access.image(image_id))  # (3, H, W) in [0, 1]
        with self._lock:
            self._images[image_id] = image
            while len(self._images) > self.keep:
                self._images.popitem(last=False)
        return image

    def rule(self, layer: str) -> str:
        """The crop rule the patches of ``layer`` are cut by."""
        return self.crop or self.access.crop_rule(layer, self.net)

    def full_box(self, layer: str, hit: Hit) -> tuple[int, int, int, int]:
        """The hit's box under the crop rule, not clipped to the image."""
        return self.access.hit_box(layer, hit, self.crop, self.net)

    def box(self, layer: str, hit: Hit) -> tuple[int, int, int, int]:
        """The hit's box under the crop rule, clipped to the image."""
        top, left, bottom, right = self.full_box(layer, hit)
        h, w = self.atlas.input_size
        return max(top, 0), max(left, 0), min(bottom, h - 1), min(right, w - 1)

    def cut(self, layer: str, hit: Hit, clip: bool = True) -> Image.Image:
        """The hit's patch: clipped to the image, or (``clip=False``) the whole box, padded."""
        image = self.image(hit.image)
        if clip:
            return crop(image, self.box(layer, hit))
        return crop_box(image, self.full_box(layer, hit))


def _tile(im: Image.Image, side: int) -> np.ndarray:
    """Fit ``im`` into a ``side`` x ``side`` float tile with grey margins, resampled smoothly."""
    return as_float(fit_square(im, side, _GRID_BACKGROUND, resample="smooth"))


def _channels(atlas: AtlasData, layer: str, channels: Sequence[int] | None, max_units: int,
              n: int | None = None) -> list[int]:
    n = atlas.channels(layer) if n is None else n
    if channels is None:
        return list(range(min(n, max_units)))
    chosen = [int(c) for c in channels]
    bad = [c for c in chosen if not 0 <= c < n]
    if bad:
        raise UnitError(f"channels {format_ranges(bad)} are out of range for layer {layer}: "
                        f"valid channels are 0..{n - 1}")
    return chosen[:max_units]


def default_tile(atlas: AtlasData | AtlasAccess, layer: str, net: Any = None) -> int:
    """Patch size in the grid: the receptive field's size, kept between 24 and 64 pixels."""
    access = AtlasAccess.of(atlas)
    rf = access.receptive_field(layer, net)
    if rf.is_global:
        return 64
    size = min(max(rf.size), max(access.atlas.input_size))
    return int(np.clip(size, 24, 64))


def with_synthesis(cell: np.ndarray, synthesis: Image.Image | None) -> np.ndarray:
    """A unit's synthesis (a square as tall as ``cell``; grey when missing) left of its patches,
    as OpenAI Microscope lays a unit out."""
    side = cell.shape[0]
    tile = _tile(synthesis, side) if synthesis is not None else \
        np.full((side, side, 3), EMPTY_TILE, np.float32)
    if cell.ndim == 2 or tile.ndim == 2:  # gray patches (or a gray synthesis): draw in RGB
        cell, tile = (np.repeat(a[..., None], 3, axis=2) if a.ndim == 2 else a for a in (cell, tile))
    gap = np.ones((side, 3, 3), np.float32)
    return np.concatenate([tile, gap, cell], axis=1)


def layer_grid(atlas: AtlasData | AtlasAccess, layer: str,
               channels: Sequence[int] | None = None, max_units: int = 64, net: Any = None,
               tile: int | None = None, labels: bool = True, clip: bool = True,
               syntheses: bool = True, crop: str | None = None) -> np.ndarray:
    """One cell per unit (its k patches), cells in a grid: an RGB float array in [0, 1].

    With ``syntheses`` and images stored for the layer (``convsight.visualize_layer(...,
    atlas=...)``), each cell starts with the unit's synthesis, then its patches.
    """
    access = AtlasAccess.of(atlas)
    atlas = access.atlas
    info = atlas.synthesis_info(layer) if syntheses and layer not in atlas.layers else None
    if info is not None:  # a layer with syntheses but no patches: the syntheses alone
        n = int(info["channels"])
        stored = [c for c in range(n) if atlas.synthesis(layer, c) is not None] \
            if channels is None else []
        chosen = stored[:max_units] or _channels(atlas, layer, channels, max_units, n)
        return _synthesis_grid(atlas, layer, chosen, tile, labels)
    chosen = _channels(atlas, layer, channels, max_units)
    if not chosen:
        raise ConvsightError(f"no units to draw for layer {layer}")
    side = tile or default_tile(access, layer, net)
    cutter = PatchCutter(access, net, crop=crop)
    show = syntheses and atlas.synthesis_info(layer) is not None
    cells = []
    for c in chosen:
        patches = [cutter.cut(layer, hit, clip) for hit in atlas.top(layer, c)]
        cell = patch_montage(patches, side, ncols=math.ceil(math.sqrt(atlas.k)), slots=atlas.k,
                             background=_GRID_BACKGROUND, empty=EMPTY_TILE, resample="smooth")
        if show:
            cell = with_synthesis(cell, atlas.synthesis(layer, c))
        cells.append(label(cell, f"{c}", height=13, size=11) if labels else cell)
    return grid(cells, ncols=math.ceil(math.sqrt(len(cells))), pad=6, background=1.0)


def _synthesis_grid(atlas: AtlasData, layer: str, chosen: list[int], tile: int | None,
                    labels: bool) -> np.ndarray:
    """The grid of a layer that was synthesised but not mined: each unit's synthesis (grey when
    it has none yet)."""
    side = tile or 96
    cells = []
    for c in chosen:
        im = atlas.synthesis(layer, c)
        cell = _tile(im, side) if im is not None else np.full((side, side, 3), EMPTY_TILE, np.float32)
        cells.append(label(cell, f"{c}", height=13, size=11) if labels else cell)
    if not cells:
        raise ConvsightError(f"no units to draw for layer {layer}")
    return grid(cells, ncols=math.ceil(math.sqrt(len(cells))), pad=6, background=1.0)


def unit_figure(atlas: AtlasData | AtlasAccess, layer: str, channel: int, net: Any = None,
                method: str = DEFAULT_PROJECTION, side: int = 128, clip: bool = True) -> np.ndarray:
    """Each hit's patch beside the guided-backprop, deconvnet or gradient projection of that
    activation."""
    if method not in PROJECTIONS:
        raise ConvsightError(f"unknown projection method {method!r}: use one of "
                             f"{', '.join(PROJECTIONS)}")
    access = AtlasAccess.of(atlas)
    model = access.network(net=net)
    cutter = PatchCutter(access, net, keep=1)
    tiles = []
    for hit in access.atlas.top(layer, channel):
        x = access.image(hit.image)
        patch = _tile(cutter.cut(layer, hit, clip), side)
        xn = model.normalize(x[None]).to(model.device)
        attr = attribute(model, xn, target=Target.unit(layer, channel, hit.y, hit.x), method=method)
        # crop first, so that the colour scale is set by the receptive field, not the whole image
        cut = crop(attr[0].cpu(), cutter.box(layer, hit)) if clip else \
            crop_box(attr[0].cpu(), cutter.full_box(layer, hit), fill=0.0)
        projection = _tile(as_pil(render_attribution(cut, kind="rgb")), side)
        tiles.append(np.concatenate([patch, np.ones((side, 2, 3), np.float32), projection], axis=1))
    if not tiles:
        raise ConvsightError(f"{layer}:{channel} has no hits in this atlas")
    return label(grid(tiles, ncols=3, pad=4), f"{layer}:{channel}   patch ({cutter.rule(layer)} "
                 f"crop) | {method} projection")


def atlas_html(atlas: AtlasData | AtlasAccess, units: int = 4, net: Any = None,
               max_layers: int = 12) -> str:
    """An atlas in a few lines of HTML (a notebook shows it): what was mined, then per layer its
    shape, receptive field and the top patches of its first ``units`` units.

    Pictures that cannot be drawn (a custom model that cannot be rebuilt by name, images gone)
    are replaced by the reason, so the summary always shows.
    """
    import base64
    import html

    from ..pictures import png_bytes

    access = AtlasAccess.of(atlas)
    atlas = access.atlas
    head = (f"<b>Atlas</b> of {html.escape(atlas.model_name)}: top {atlas.k} of "
            f"{atlas.image_count} images, input {atlas.input_size[0]}x{atlas.input_size[1]}"
            f"{f', {len(atlas.skipped)} skipped' if atlas.skipped else ''}")
    rows = []
    for layer in atlas.layers[:max_layers]:
        shape = "x".join(map(str, atlas.shapes.get(layer, ())))
        try:
            rf = access.receptive_field(layer, net)
            picture = layer_grid(access, layer, max_units=units, net=net, tile=40)
            data = base64.b64encode(png_bytes(picture)).decode("ascii")
            body = (f"receptive field {rf.caption()}; {access.crop_rule(layer, net)} crop; units 0-{min(units, atlas.channels(layer)) - 1}"
                    f"<br><img src='data:image/png;base64,{data}' alt='top patches of {html.escape(layer)}'>")
        except ConvsightError as exc:
            body = f"<i>no pictures: {html.escape(str(exc))}</i>"
        rows.append(f"<div style='margin:.5em 0'><code>{html.escape(layer)}</code> {shape}, "
                    f"{atlas.channels(layer)} units; {body}</div>")
    more = len(atlas.layers) - max_layers
    tail = f"<div>... and {more} more layers</div>" if more > 0 else ""
    return f"<div>{head}{''.join(rows)}{tail}</div>"


def synthesis_facets(atlas: AtlasData, layer: str, channel: int, side: int = 160) -> np.ndarray:
    """A unit's stored syntheses (its ``copies`` facets) side by side, each captioned with the
    unit's value on it; raises when the layer has none stored."""
    info = atlas.synthesis_info(layer)
    if info is None:
        raise ConvsightError(f"no syntheses are stored for layer {layer}: make them with "
                             f"convsight.visualize_layer(model, {layer!r}, atlas=...)")
    tiles = []
    for k in range(int(info.get("copies", 1))):
        im = atlas.synthesis(layer, channel, k)
        if im is None:
            tiles.append(label(np.full((side, side, 3), EMPTY_TILE, np.float32), "missing"))
            continue
        value = atlas.synthesis_value(layer, channel, k)
        text = f"{layer}:{channel}" + (f" = {value:.3g}" if value is not None else "")
        tiles.append(label(_tile(im, side), text, height=14, size=11))
    return grid(tiles, ncols=len(tiles), pad=4)
