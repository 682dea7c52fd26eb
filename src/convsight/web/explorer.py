"""What the web pages show, computed through convsight and cached on disk.

``Explorer`` holds one network (and optionally the atlas mined from it) and answers the questions
the pages ask. It is a thin front over three parts, each in its own module: ``Layers`` (the layer
table, receptive fields, a unit's tile, top patches, projections and weights), ``InputImages``
(sample, atlas and uploaded images, thumbnails, input tensors, predictions), ``Attributions``
(an image's activation maps, each unit's strongest place, unit and class attributions and the
class attributions' trust scores) and ``StoredSyntheses`` (the images the atlas holds for each
unit, made by ``visualize_layer``). Pictures
come back as bytes, cached by a key that names what they show, so a second visit costs a file
read.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any, Callable

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


def _ask(part: str, method: Callable[..., Any]) -> Callable[..., Any]:
    """A method of ``Explorer`` that passes the question on to one of its parts."""
    @functools.wraps(method)
    def ask(self: "Explorer", *args: Any, **kwargs: Any) -> Any:
        return method(getattr(self, part), *args, **kwargs)
    return ask


class Explorer:
    """The network, the atlas (optional) and the cache behind the web pages."""

    def __init__(self, net: convsight.Network, atlas: Any | None = None,
                 cache_dir: str | Path | None = None, atlas_dir: str | Path | None = None,
                 max_upload_bytes: int = MAX_UPLOAD_BYTES,
                 max_upload_pixels: int = MAX_UPLOAD_PIXELS, allow_outside: bool = False) -> None:
        folder = Path(atlas_dir).resolve() if atlas_dir else None
        cache = DiskCache(cache_dir or default_cache_dir(net, folder))
        self.bench = Workbench(net, atlas, folder, cache, allow_outside=allow_outside)
        self.net, self.atlas, self.atlas_dir, self.cache = net, atlas, folder, cache
        self.model_lock = self.bench.model_lock
        self.unit_part = Layers(self.bench)
        self.image_part = InputImages(self.bench, max_upload_bytes, max_upload_pixels)
        self.attribution_part = Attributions(self.bench, self.unit_part, self.image_part)
        self.synthesis_part = StoredSyntheses(self.bench, self.unit_part)
        self.max_upload_bytes = self.image_part.max_upload_bytes
        self.max_upload_pixels = self.image_part.max_upload_pixels
        self.uploads = self.image_part.uploads

    @property
    def mined_layers(self) -> list[str]:
        return self.bench.mined_layers

    # layers and units
    layers = _ask("unit_part", Layers.layers)
    layer = _ask("unit_part", Layers.layer)
    channel = _ask("unit_part", Layers.channel)
    receptive_field = _ask("unit_part", Layers.receptive_field)
    default_image_layer = _ask("unit_part", Layers.default_image_layer)
    atlas_summary = _ask("unit_part", Layers.atlas_summary)
    hits = _ask("unit_part", Layers.hits)
    named_hits = _ask("unit_part", Layers.named_hits)
    unit_tile = _ask("unit_part", Layers.unit_tile)
    prewarm = _ask("unit_part", Layers.prewarm)
    mined_patch = _ask("unit_part", Layers.mined_patch)
    patch = _ask("unit_part", Layers.patch)
    projection = _ask("unit_part", Layers.projection)
    context = _ask("unit_part", Layers.context)
    crop_rule = _ask("unit_part", Layers.crop_rule)
    weights = _ask("unit_part", Layers.weights)

    # syntheses stored in the atlas (visualize_layer)
    synthesis_recipe = _ask("synthesis_part", StoredSyntheses.recipe)
    synthesis_hidden = _ask("synthesis_part", StoredSyntheses.hidden)
    synthesized_layers = _ask("synthesis_part", StoredSyntheses.layers_with_syntheses)
    synthesized_units = _ask("synthesis_part", StoredSyntheses.units)
    synthesis_facets = _ask("synthesis_part", StoredSyntheses.facets)
    synthesis_png = _ask("synthesis_part", StoredSyntheses.png)
    synthesis_tile = _ask("synthesis_part", StoredSyntheses.tile)

    # images and uploads
    samples = _ask("image_part", InputImages.samples)
    image_choices = _ask("image_part", InputImages.image_choices)
    image = _ask("image_part", InputImages.image)
    source_image = _ask("image_part", InputImages.source_image)
    add_upload = _ask("image_part", InputImages.add_upload)
    input_tensor = _ask("image_part", InputImages.input_tensor)
    input_png = _ask("image_part", InputImages.input_png)
    thumbnail = _ask("image_part", InputImages.thumbnail)
    predictions = _ask("image_part", InputImages.predictions)
    class_count = _ask("image_part", InputImages.class_count)

    # activations and attributions of one image
    activations = _ask("attribution_part", Attributions.activations)
    activation_maps = _ask("attribution_part", Attributions.activation_maps)
    map_layout = _ask("attribution_part", Attributions.map_layout)
    strongest = _ask("attribution_part", Attributions.strongest)
    unit_box = _ask("attribution_part", Attributions.unit_box)
    unit_patch = _ask("attribution_part", Attributions.unit_patch)
    unit_attribution = _ask("attribution_part", Attributions.unit_attribution)
    class_attribution = _ask("attribution_part", Attributions.class_attribution)
    class_trust = _ask("attribution_part", Attributions.class_trust)
    class_card = _ask("attribution_part", Attributions.class_card)
    cancel_card = _ask("attribution_part", Attributions.cancel_card)
