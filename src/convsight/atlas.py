"""The saved result of a mining run: the top-k images of every channel of some layers.

>>> atlas = convsight.mine(net, "photos/", ["blocks.3", "blocks.10"], out="atlas")
>>> atlas = convsight.Atlas.open("atlas")
>>> best = atlas.top("blocks.3", 7)[0]            # Hit(image, path, y, x, value)
>>> atlas.patch("blocks.3", 7, 0).save("p.png")   # the receptive-field crop of that hit

An atlas is three things kept apart (docs/architecture.md): its data, queries, save and open
(``convsight.atlas_data.AtlasData``, the file format in ``convsight.atlas_store``); its model and
images (``convsight.atlas_access.AtlasAccess``: rebuilding the model, loading images, receptive
fields, boxes computed on demand); and its pictures (``convsight.figures``: ``layer_grid``,
``unit_figure``, ``atlas_html``, ``PatchCutter``). ``Atlas`` is the data with one access of its
own (``atlas.access``) and the documented conveniences of docs/mining.md, each one call of the
access or of a figure.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np
import torch
from PIL import Image

from .atlas_access import AtlasAccess
from .attribute.registry import DEFAULT_PROJECTION
from .atlas_data import CROPS, AtlasData, Hit, check_crop
from .atlas_store import FORMAT, VERSION
from .figures.atlas import PatchCutter, atlas_html, layer_grid, unit_figure
from .files import inside, npz_bytes, write_atomic
from .models import Network

__all__ = ["Atlas", "AtlasAccess", "AtlasData", "Hit", "CROPS", "check_crop", "FORMAT", "VERSION",
           "npz_bytes", "write_atomic", "inside"]


class Atlas(AtlasData):
    """Top-k hits per channel and layer, with the model and preprocessing that produced them
    (``AtlasData``), and the conveniences that reach its model, images and pictures."""

    _access: AtlasAccess | None = None

    @property
    def access(self) -> AtlasAccess:
        """This atlas's model and images (made once; keeps the rebuilt model and the receptive
        fields between calls)."""
        if self._access is None or self._access.atlas is not self:  # a copy gets its own
            self._access = AtlasAccess(self)
        return self._access

    def _repr_html_(self) -> str:
        """A notebook shows an atlas as its layers with the top patches of a few units each."""
        return atlas_html(self.access)

    def network(self, allow_random: bool = False, net: Any = None) -> Network:
        """The atlas's model: ``net`` when given, else rebuilt by name (``AtlasAccess.network``)."""
        return self.access.network(allow_random, net)

    def image(self, image_id: int) -> torch.Tensor:
        """Image ``image_id`` as mined, a (C, H, W) tensor in [0, 1] (``AtlasAccess.image``)."""
        return self.access.image(image_id)

    def crop_rule(self, layer: str, net: Any = None) -> str:
        """The rule of the layer's stored boxes, or its default (``AtlasAccess.crop_rule``)."""
        return self.access.crop_rule(layer, net)

    def hit_box(self, layer: str, hit: Hit, crop: str | None = None, net: Any = None
                ) -> tuple[int, int, int, int]:
        """The box a hit's patch is cut from under rule ``crop`` (``AtlasAccess.hit_box``)."""
        return self.access.hit_box(layer, hit, crop, net)

    def box(self, layer: str, channel: int, rank: int, net: Any = None, crop: str | None = None
            ) -> tuple[int, int, int, int]:
        """The (top, left, bottom, right) input box, inclusive, of a hit (``AtlasAccess.box``)."""
        return self.access.box(layer, channel, rank, net, crop)

    def patch(self, layer: str, channel: int, rank: int, net: Any = None, clip: bool = False,
              crop: str | None = None) -> Image.Image:
        """A hit's patch from its preprocessed image, as a PIL image, cut by rule ``crop``
        (default: the layer's ``crop_rule``); padded with the image's mean colour where the box
        leaves the image, or (``clip=True``) only the part inside it (``figures.PatchCutter``)."""
        return PatchCutter(self.access, net, keep=1, crop=crop).cut(
            layer, self.hit(layer, channel, rank), clip)

    def layer_grid(self, layer: str, channels: Sequence[int] | None = None, max_units: int = 64,
                   net: Any = None, tile: int | None = None, clip: bool = True,
                   syntheses: bool = True, crop: str | None = None) -> np.ndarray:
        """One cell per unit holding its k patches (the Zeiler & Fergus figure), as an RGB array
        (``convsight.figures.layer_grid``)."""
        return layer_grid(self.access, layer, channels, max_units, net, tile, clip=clip,
                          syntheses=syntheses, crop=crop)

    def unit_figure(self, layer: str, channel: int, net: Any = None, method: str = DEFAULT_PROJECTION
                    ) -> np.ndarray:
        """Each hit's patch beside the projection of its activation
        (``convsight.figures.unit_figure``)."""
        return unit_figure(self.access, layer, channel, net, method)
