"""What the web pages show, computed through convsight and cached on disk.

``Explorer`` holds one network (and optionally the atlas mined from it), the disk cache and the
four parts the pages ask, each in its own module and each under one name: ``layers``
(``Layers``: the layer table, receptive fields, a unit's tile, top patches, projections and
weights), ``input_images`` (``InputImages``: sample, atlas and uploaded images, thumbnails, input
tensors, predictions), ``attributions`` (``Attributions``: an image's activation maps, each
unit's strongest place, unit and class attributions and the class attributions' trust scores)
and ``stored_syntheses`` (``StoredSyntheses``: the images the atlas holds for each unit, made by
``visualize_layer``). The routes (``routes/``) call the part they need directly. Pictures come
back as bytes, cached by a key that names what they show, so a second visit costs a file read.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import convsight

from .attributions import Attributions
from .cache import DiskCache
from .inputs import IMAGE_ID, STORED_SIDE, InputImages
from .layers import LayerRow, Layers
from .syntheses import Facet, Recipe, StoredSyntheses
from .workbench import (CLASS_METHODS, MAX_UPLOAD_BYTES, MAX_UPLOAD_PIXELS, UNIT_METHODS,
                        BadUpload, NotFound, Workbench, default_cache_dir)

__all__ = ["Explorer", "LayerRow", "Facet", "Recipe", "NotFound", "BadUpload", "UNIT_METHODS", "CLASS_METHODS",
           "MAX_UPLOAD_BYTES", "MAX_UPLOAD_PIXELS", "IMAGE_ID", "STORED_SIDE"]


class Explorer:
    """The network, the atlas (optional), the cache and the four parts behind the web pages."""

    def __init__(self, net: convsight.Network, atlas: Any | None = None,
                 cache_dir: str | Path | None = None, atlas_dir: str | Path | None = None,
                 max_upload_bytes: int = MAX_UPLOAD_BYTES,
                 max_upload_pixels: int = MAX_UPLOAD_PIXELS, allow_outside: bool = False) -> None:
        folder = Path(atlas_dir).resolve() if atlas_dir else None
        cache = DiskCache(cache_dir or default_cache_dir(net, folder))
        self.bench = Workbench(net, atlas, folder, cache, allow_outside=allow_outside)
        self.net, self.atlas, self.atlas_dir, self.cache = net, atlas, folder, cache
        self.layers = Layers(self.bench)
        self.input_images = InputImages(self.bench, max_upload_bytes, max_upload_pixels)
        self.attributions = Attributions(self.bench, self.layers, self.input_images)
        self.stored_syntheses = StoredSyntheses(self.bench, self.layers)
