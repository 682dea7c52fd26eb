"""Layers and their units: the layer table, receptive fields, and each unit's pictures.

``Layers`` answers the layer and unit pages: which layers there are (shape, receptive field,
mined or not), whether a unit exists, and a unit's top patches from the atlas (as one tile, one
by one, each box drawn on its whole image, and projected back to pixels by guided backprop,
deconvnet or the gradient) and its weights. Patches are cut by a crop rule (exact or local
receptive field, or the hit's effective box; by default the one the layer was mined with). Pictures
come back as bytes, cached by a key that names what they show.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

import convsight
from convsight.capture import layer_table
from convsight.figures import PatchCutter
from convsight.filters import weight_images, weight_kind
from convsight.atlas import CROPS
from convsight.targets import Target
from convsight.pictures import (crop as cut_box, draw_box, fit_square, grid, jpeg_bytes, patch_montage,
                                png_bytes, render_attribution)
from convsight.units import did_you_mean

from .workbench import UNIT_METHODS, NotFound, Workbench, check_method


@dataclass
class LayerRow:
    name: str
    type: str
    shape: tuple[int, ...] | None
    channels: int | None
    rf: str  # receptive field as shown: "19x19 /4", "global" or "-"
    mined: bool

    @property
    def shape_text(self) -> str:
        return "x".join(map(str, self.shape)) if self.shape else "-"

    @property
    def spatial(self) -> bool:
        return self.shape is not None and len(self.shape) == 3


class Layers:
    """The layer table (computed once) and the pictures of single units."""

    def __init__(self, bench: Workbench) -> None:
        self.bench = bench
        self.net, self.atlas, self.cache = bench.net, bench.atlas, bench.cache
        self.access = bench.access
        self._cutters = {rule: PatchCutter(self.access, self.net, crop=rule)
                         for rule in CROPS} if self.atlas is not None else {}
        self._rows: list[LayerRow] | None = None
        self._rfs: dict[str, Any] = {}
        self._guard = threading.Lock()

    # ----- the table --------------------------------------------------------------------------
    @property
    def mined_layers(self) -> list[str]:
        return self.bench.mined_layers

    def layers(self) -> list[LayerRow]:
        with self._guard:
            if self._rows is None:
                with self.bench.model_lock:  # both run the model with hooks
                    table = layer_table(self.net)
                    names = [r.name for r in table if r.shape is not None and len(r.shape) == 3]
                    self._rfs = _receptive_fields(self.net, names)
                    for name in self.mined_layers:  # the atlas access keeps these for its patches
                        try:
                            self.access.receptive_field(name, net=self.net)
                        except Exception:
                            pass
                mined = set(self.mined_layers)
                self._rows = [LayerRow(r.name, r.type, r.shape, r.channels,
                                       _caption(self._rfs.get(r.name)), r.name in mined)
                              for r in table]
            return self._rows

    def layer(self, name: str) -> LayerRow:
        for row in self.layers():
            if row.name == name:
                return row
        hint = did_you_mean(name, [r.name for r in self.layers()])
        raise NotFound(f"unknown layer {name!r}.{hint} The layer list shows every layer.")

    def channel(self, layer: str, channel: int) -> LayerRow:
        row = self.layer(layer)
        if not row.channels:
            raise NotFound(f"layer {layer} has no channels (output shape {row.shape_text})")
        if not 0 <= channel < row.channels:
            raise NotFound(f"unit {channel} is out of range for layer {layer}: valid units are "
                           f"0..{row.channels - 1}")
        return row

    def receptive_field(self, layer: str) -> Any | None:
        self.layers()
        return self._rfs.get(layer)

    def default_image_layer(self) -> str:
        """The layer an image view opens on: the first mined spatial layer, else a middle one."""
        spatial = [r.name for r in self.layers() if r.spatial]
        mined = [n for n in self.mined_layers if self.layer(n).spatial]
        if not spatial:
            raise NotFound("this network has no layer with spatial activation maps")
        return mined[0] if mined else spatial[len(spatial) // 2]

    def atlas_summary(self) -> dict[str, Any] | None:
        if self.atlas is None:
            return None
        return {"images": len(list(self.atlas.image_paths)), "k": self.atlas.k,
                "layers": self.mined_layers}

    # ----- the atlas: top patches -------------------------------------------------------------
    def hits(self, layer: str, channel: int) -> list[Any]:
        self.channel(layer, channel)
        if self.atlas is None or layer not in self.mined_layers:
            return []
        return list(self.atlas.top(layer, channel))

    def named_hits(self, layer: str, channel: int) -> list[tuple[int, Any, str]]:
        """(rank, hit, file name of its image) for the unit's top patches."""
        names = list(self.atlas.image_paths) if self.atlas is not None else []
        return [(rank, h, Path(str(names[h.image])).name if h.image < len(names) else "?")
                for rank, h in enumerate(self.hits(layer, channel))]

    def hit(self, layer: str, channel: int, rank: int) -> Any:
        hits = self.hits(layer, channel)
        if not 0 <= rank < len(hits):
            raise NotFound(f"unit {layer}:{channel} has {len(hits)} top patches; rank {rank} "
                           "does not exist")
        return hits[rank]

    def unit_tile(self, layer: str, channel: int, side: int = 40) -> bytes:
        """The unit's top-k patches as one small JPEG (one cell of the layer view)."""
        self.channel(layer, channel)
        if layer not in self.mined_layers:
            raise NotFound(f"layer {layer} is not in the atlas; mined layers: "
                           f"{', '.join(self.mined_layers) or 'none'}")

        def make() -> bytes:
            patches = [self.mined_patch(layer, hit) for hit in self.atlas.top(layer, channel)]
            return jpeg_bytes(patch_montage(patches, side, slots=self.atlas.k), quality=85)
        return self.cache.get_or_make(f"tile/{layer}/{channel}/{side}.jpg", make)

    def prewarm(self, stop: threading.Event | None = None) -> int:
        """Compute every unit tile of every mined layer into the cache; return how many.

        Run in a background thread by ``serve`` so that layer views are instant later.
        """
        count = 0
        for layer in self.mined_layers:
            for channel in range(self.atlas.channels(layer)):
                if stop is not None and stop.is_set():
                    return count
                try:
                    self.unit_tile(layer, channel)
                except Exception:  # a page will show the error; warming goes on
                    pass
                count += 1
                time.sleep(0)  # let request threads have the interpreter
        return count

    def crop_rule(self, layer: str, crop: str | None = None) -> str:
        """The crop rule asked for (checked), else the one the layer's patches were mined with."""
        if crop is not None:
            if crop not in CROPS:
                raise NotFound(f"unknown crop rule {crop!r}: use one of {', '.join(CROPS)}")
            return crop
        if self.atlas is None:
            return "exact"
        with self.bench.model_lock:  # an atlas mined before crop rules traces the model once
            return self.access.crop_rule(layer, self.net)

    def _cutter(self, layer: str, crop: str | None) -> PatchCutter:
        return self._cutters[self.crop_rule(layer, crop)]

    def mined_patch(self, layer: str, hit: Any, crop: str | None = None) -> Image.Image:
        """The hit's box under the crop rule, clipped to its image (see ``PatchCutter``)."""
        cutter = self._cutter(layer, crop)
        with self.bench.model_lock:  # an effective box not stored runs a backward pass
            box = cutter.box(layer, hit)
        return cut_box(cutter.image(hit.image), box)

    def patch(self, layer: str, channel: int, rank: int, side: int = 160,
              crop: str | None = None) -> bytes:
        hit, rule = self.hit(layer, channel, rank), self.crop_rule(layer, crop)
        return self.cache.get_or_make(f"patch/{layer}/{channel}/{rank}/{side}/{rule}.jpg",
                                      lambda: jpeg_bytes(fit_square(self.mined_patch(layer, hit, rule),
                                                                    side)))

    def context(self, layer: str, channel: int, rank: int, side: int = 160,
                crop: str | None = None) -> bytes:
        """The hit's whole image with its patch's box drawn (clipped to the image)."""
        hit, rule = self.hit(layer, channel, rank), self.crop_rule(layer, crop)

        def make() -> bytes:
            with self.bench.model_lock:
                cutter = self._cutter(layer, rule)
                box = cutter.box(layer, hit)
            image = cutter.image(hit.image)
            width = max(2, round(2 * max(image.size) / side))  # about 2 px once fitted to the tile
            return jpeg_bytes(fit_square(draw_box(image, box, width=width), side))
        return self.cache.get_or_make(f"context/{layer}/{channel}/{rank}/{side}/{rule}.jpg", make)

    def projection(self, layer: str, channel: int, rank: int, method: str, side: int = 160,
                   crop: str | None = None) -> bytes:
        """Guided backprop / deconvnet / gradient of the hit's single activation, cut to its box."""
        check_method(method, UNIT_METHODS)
        hit, rule = self.hit(layer, channel, rank), self.crop_rule(layer, crop)

        def make() -> bytes:
            x = self.net.normalize(self.access.image(hit.image)[None]).to(self.net.device)
            target = Target.unit(layer, channel, hit.y, hit.x)
            with self.bench.model_lock:
                attr = convsight.attribute(self.net, x, target=target, method=method)
                box = self._cutter(layer, rule).box(layer, hit)
            picture = cut_box(render_attribution(attr[0], "rgb"), box)
            return png_bytes(fit_square(picture, side))  # the same clipped box as the patch
        return self.cache.get_or_make(f"proj/{layer}/{channel}/{rank}/{method}/{side}/{rule}.png",
                                      make)

    # ----- weights ----------------------------------------------------------------------------
    def weights(self, layer: str, channel: int) -> bytes | None:
        """The unit's filter as a picture where that means something (RGB, 1-input or Linear)."""
        self.channel(layer, channel)
        try:
            kind = weight_kind(self.net, layer)
        except (AttributeError, convsight.ConvsightError):
            return None  # not a Conv2d / Linear layer: no filter of its own

        def make() -> bytes:
            image = weight_images(self.net, layer, units=[channel])[0]
            if kind == "stack":
                image = image[:64]
                if image.shape[1] * image.shape[2] <= 1:
                    raise _NoPicture
                image = grid([np.kron(t, np.ones((8, 8))) for t in image], pad=1)
                return png_bytes(image)
            factor = max(1, 96 // max(image.shape[:2]))
            return png_bytes(np.kron(image, np.ones((factor, factor) + (1,) * (image.ndim - 2))))
        try:
            return self.cache.get_or_make(f"weights/{layer}/{channel}.png", make)
        except (_NoPicture, convsight.ConvsightError):  # e.g. a Linear layer not fed by an image
            return None


class _NoPicture(Exception):
    pass


def _caption(rf: Any | None) -> str:
    return rf.caption() if rf is not None else "-"


def _receptive_fields(net: convsight.Network, names: list[str]) -> dict[str, Any]:
    """Receptive fields of the spatial layers (those that have one)."""
    try:
        return dict(convsight.receptive_fields(net, names))
    except Exception:  # one awkward layer should not cost the whole table
        out = {}
        for name in names:
            try:
                out[name] = convsight.receptive_field(net, name)
            except Exception:
                pass
        return out
