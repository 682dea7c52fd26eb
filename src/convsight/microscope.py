"""A synthesis for every unit of a layer, batched, optionally kept in an atlas beside the top patches.

OpenAI Microscope and Yosinski et al.'s Deep Visualization Toolbox show each unit's dataset
examples beside the image synthesised for it; ``visualize_layer`` makes those images for any
model, one per channel (or ``copies`` facets per channel), many channels per batch.

>>> net = convsight.load_model()
>>> out = convsight.visualize_layer(net, "blocks.5", channels=range(8), steps=64)
>>> out.images.shape, out.values.shape
(torch.Size([8, 3, 128, 128]), torch.Size([8]))
>>> convsight.visualize_layer(net, "blocks.5", atlas="atlas")    # every unit, stored, resumable
>>> convsight.Atlas.open("atlas").synthesis("blocks.5", 7)       # a PIL image (None if missing)
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from .atlas import Atlas
from .errors import ConvsightError
from .models import Network, as_network, on_device, weights_fingerprint
from .optimize import DEFAULT_PRESET, Settings, settings_for
from .optimize.ascent import check_diversity, check_seed
from .optimize.layer import (check_channels, final_values, layer_batches, layer_width,
                             synthesize_batch)
from .progress import ProgressArg, progress_bar
from .syntheses import MAX_COPIES, SEEDING, SynthesisStore, stored_value
from .targets import Target


@dataclass
class LayerSynthesis:
    """What ``visualize_layer`` returns.

    ``images`` (len(channels) * copies, C, H, W) in [0, 1], channel-major (the copies of the first
    channel, then the next); ``values`` each image's unit value (the channel's mean activation on
    the image itself: no random transform, resized to the network's input size); ``computed``: the
    channels synthesised by this call (others were read back from the atlas).
    """

    layer: str
    channels: list[int]
    copies: int
    images: torch.Tensor
    values: torch.Tensor
    settings: Settings
    computed: list[int]

    def image(self, channel: int, copy: int = 0) -> torch.Tensor:
        """The (C, H, W) image of one channel (and copy)."""
        return self.images[self.channels.index(int(channel)) * self.copies + int(copy)]


def _store(atlas: Any, net: Network) -> SynthesisStore | None:
    if atlas is None:
        return None
    if not isinstance(atlas, Atlas):
        atlas = Atlas.open(atlas)
    if atlas.path is None:
        raise ConvsightError("this atlas has no folder yet: save it (atlas.save(PATH)) or pass "
                             "its folder, so the syntheses have somewhere to go")
    if atlas.model_name != net.name:
        raise ConvsightError(f"the atlas at {atlas.path} was mined from {atlas.model_name}, not "
                             f"{net.name}: store syntheses with the atlas of the same model")
    return SynthesisStore(atlas.path)


def _recipe(net: Network, s: Settings, preset: str, seed: int, copies: int, diversity: float,
            diversity_layer: str | None, channels: int, batch_size: int) -> dict[str, Any]:
    from . import __version__

    return {"model": {"name": net.name, "fingerprint": weights_fingerprint(net)},
            "preset": preset, "settings": dataclasses.asdict(s), "seed": int(seed),
            "copies": copies, "diversity": float(diversity), "diversity_layer": diversity_layer,
            "channels": channels, "batch_size": batch_size, "seeding": SEEDING,
            "convsight_version": __version__}


def visualize_layer(model, layer: str, channels: Any = None, *, preset: str = DEFAULT_PRESET,
                    batch_size: int = 16, atlas: Any = None, seed: int = 0,
                    progress: ProgressArg = True, copies: int = 1, diversity: float = 0.0,
                    diversity_layer: str | None = None, overwrite: bool = False,
                    device: str | torch.device | None = None, steps: int | None = None,
                    size: int | None = None, **knobs: object) -> LayerSynthesis:
    """Synthesise an image for each channel of ``layer`` (all channels by default), in batches.

    ``channels``: None (all), or a list/range of channel numbers (each once). Each channel gets
    ``copies`` images maximising its mean activation (``LAYER:C``) with ``preset`` and any knob
    of ``convsight.optimize.Settings`` (``steps``, ``size``, ``lr``, ...); ``diversity`` > 0
    pushes the copies apart (see ``maximize``). ``batch_size`` channels are optimised together.

    With ``atlas`` (an ``Atlas`` saved to a folder, or that folder) each image is stored in the
    atlas as soon as its batch finishes (``Atlas.synthesis(layer, channel)`` reads it back);
    channels already stored with the same recipe are not computed again, so running the same
    call after an interruption finishes the work, giving the images an uninterrupted run gives.
    A different recipe (including another ``batch_size``: batching can change an image by
    floating-point rounding) for a layer with stored syntheses is refused unless ``overwrite``.
    Each image's random start depends only on ``seed``, the layer, its channel and its copy, and
    every batch draws the same random transforms, so a channel's image does not depend on the
    other channels of its batch (up to that rounding). ``copies`` is at most 64.
    ``progress``: True (a bar for the layer), False, or ``fn(done, total)`` over all steps.

    >>> out = visualize_layer(net, "blocks.5", range(4), steps=64)
    >>> out.image(2).shape
    torch.Size([3, 128, 128])
    """
    net = on_device(as_network(model), device)
    s = settings_for(preset, steps=steps, size=size, **knobs)
    seed = check_seed(seed)
    width = layer_width(net, layer)
    chosen = check_channels(net, layer, channels, width)
    batches = layer_batches(chosen, batch_size)
    div_layer = check_diversity([Target.unit(layer, chosen[0])], copies, diversity,
                                diversity_layer)
    if copies > MAX_COPIES:
        raise ConvsightError(f"copies={copies} is too many: use at most {MAX_COPIES} facets per "
                             "unit")
    store = _store(atlas, net)
    if store is not None:
        store.begin(layer, _recipe(net, s, preset, seed, copies, diversity, div_layer, width,
                                   batch_size), overwrite)
    todo = [b for b in batches
            if store is None or not all(store.done(layer, c, copies) for c in b)]
    made: dict[int, tuple[list[torch.Tensor], list[float]]] = {}
    with progress_bar(len(todo) * s.steps, f"visualize {layer}", "step", progress) as report:
        for batch in todo:
            out = synthesize_batch(net, layer, batch, s, seed, copies, diversity, div_layer, report)
            images = out.images
            if store is not None:  # what is stored (8 bits) is what is measured and returned
                images = (images * 255).round() / 255
            values = final_values(net, layer, batch, images, copies)
            for i, c in enumerate(batch):
                if store is not None and store.done(layer, c, copies):
                    continue  # stored before (by a call cut short): that stored image is returned
                part = slice(i * copies, (i + 1) * copies)
                made[c] = (list(images[part]), values[part].tolist())
                if store is not None:
                    for k in range(copies):
                        store.write(layer, c, k, images[i * copies + k], values[i * copies + k])
    return _collect(layer, chosen, copies, s, made, store)


def _collect(layer: str, chosen: list[int], copies: int, s: Settings,
             made: dict[int, tuple[list[torch.Tensor], list[float]]],
             store: SynthesisStore | None) -> LayerSynthesis:
    """Images and values of every chosen channel: made now, or read back from the store."""
    images: list[torch.Tensor] = []
    values: list[float] = []
    for c in chosen:
        if c in made:
            images += made[c][0]
            values += made[c][1]
            continue
        for k in range(copies):
            pil = store.read(layer, c, k) if store is not None else None
            if pil is None:
                raise ConvsightError(f"the synthesis of {layer}:{c} (copy {k}) vanished from "
                                     f"{store.root if store else '?'} while this call ran")
            pixels = np.asarray(pil, dtype=np.float32) / 255.0
            pixels = pixels[..., None] if pixels.ndim == 2 else pixels
            images.append(torch.from_numpy(pixels).permute(2, 0, 1).contiguous())
            value = stored_value(pil)
            values.append(float("nan") if value is None else value)
    return LayerSynthesis(layer=layer, channels=list(chosen), copies=copies,
                          images=torch.stack(images), values=torch.tensor(values), settings=s,
                          computed=sorted(made))
