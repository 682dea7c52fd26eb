"""Every channel of a layer synthesised in batches: the algorithm behind ``convsight.visualize_layer``.

The channels asked for are cut, in the order given, into batches of ``batch_size``; each batch is
one ``ascend`` run. Each image's random start comes from a generator seeded by the seed, the layer,
its channel and its copy number only, and every batch draws the same sequence of random transforms
(a generator seeded by the seed and the layer), so, up to floating-point rounding, a channel's
images do not depend on the batch size, on the other channels of its batch or on which batches ran
before (only the copies of one channel interact, through the diversity term). A batch of another
size can round differently (on the CPU too) and the ascent can amplify that, so a resumed run keeps
the batch size to give the images of an uninterrupted run bit for bit (``visualize_layer``
compares it).

>>> net = convsight.load_model()
>>> parts = synthesize_batch(net, "blocks.5", [0, 1], settings_for("lucid", steps=20), seed=0)
>>> parts.images.shape
torch.Size([2, 3, 128, 128])
"""

from __future__ import annotations

import hashlib
import operator
from typing import Any, Callable, Sequence

import torch
import torch.nn.functional as F

from ..capture import layer_channels
from ..errors import ConvsightError, UnitError
from ..models import Network
from ..targets import Target, evaluate
from ..units import format_ranges
from .ascent import Objective, Synthesis, ascend, check_diversity
from .presets import Settings


def layer_width(net: Network, layer: str) -> int:
    """The number of channels of ``layer`` (``capture.layer_channels``: as the layer declares it,
    else from one cached forward pass at the network's input size). A module that declared no
    input size is always measured, so one that cannot run at the assumed size is told how to
    declare one before any work."""
    return layer_channels(net, layer, measure=net.input_size_assumed)


def check_channels(net: Network, layer: str, channels: Any, width: int | None = None) -> list[int]:
    """The channels to synthesise (all of the layer's for None), checked against its width
    (``layer_width``, measured here unless given)."""
    n = layer_width(net, layer) if width is None else width
    valid = f"valid channels of {layer} are 0..{n - 1}"
    if channels is None:
        return list(range(n))
    if isinstance(channels, (int, str)) or not hasattr(channels, "__iter__"):
        channels = [channels]
    chosen = []
    for c in channels:
        try:
            if isinstance(c, bool):
                raise TypeError
            chosen.append(operator.index(c))
        except TypeError:
            raise UnitError(f"channel {c!r} is not a whole number: {valid}") from None
    if not chosen:
        raise UnitError(f"no channels given: {valid}")
    bad = [c for c in chosen if not 0 <= c < n]
    if bad:
        raise UnitError(f"channel{'s' if len(bad) > 1 else ''} {format_ranges(bad)} "
                        f"out of range: {valid}")
    twice = sorted({c for c in chosen if chosen.count(c) > 1})
    if twice:
        raise UnitError(f"channel {twice[0]} is listed more than once; list each channel once")
    return chosen


def layer_batches(channels: Sequence[int], batch_size: int) -> list[list[int]]:
    """``channels`` cut in order into lists of ``batch_size`` (the last may be shorter)."""
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ConvsightError(f"batch_size={batch_size!r} is not valid: use a whole number >= 1")
    return [list(channels[i:i + batch_size]) for i in range(0, len(channels), batch_size)]


def derived_seed(*parts: object) -> int:
    """A 63-bit seed from ``parts`` (the run's seed, the layer, ...), the same on every machine."""
    text = "|".join(map(str, parts))
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "little") >> 1


def synthesize_batch(net: Network, layer: str, channels: Sequence[int], s: Settings, seed: int = 0,
                     copies: int = 1, diversity: float = 0.0, diversity_layer: str | None = None,
                     report: Callable[..., None] = lambda n=1, **kw: None) -> Synthesis:
    """One ``ascend`` run for ``LAYER:C`` of each channel (``copies`` images each, target-major)."""
    targets = [Target.unit(layer, c) for c in channels]
    div_layer = check_diversity(targets, copies, diversity, diversity_layer)
    objective = Objective(net, [t for t in targets for _ in range(copies)], copies, diversity,
                          div_layer)
    transforms = torch.Generator().manual_seed(derived_seed(int(seed), layer, "transforms"))
    starts = [torch.Generator().manual_seed(derived_seed(int(seed), layer, int(c), k))
              for c in channels for k in range(copies)]
    return ascend(objective, s, transforms, report, starts=starts)


@torch.no_grad()
def final_values(net: Network, layer: str, channels: Sequence[int], images: torch.Tensor,
                 copies: int = 1) -> torch.Tensor:
    """Each image's target value as the network sees the image itself: no random transform,
    resized to the network's input size when smaller (as the ascent upsampled it)."""
    x = images.to(net.device)
    if not net.input_size_assumed and (x.shape[-2] < net.input_size[0]
                                       or x.shape[-1] < net.input_size[1]):
        x = F.interpolate(x, size=net.input_size, mode="bilinear", align_corners=False)
    targets = [Target.unit(layer, c) for c in channels for _ in range(copies)]
    return evaluate(net, net.normalize(x), targets, detach=True, fast=True)[0].float().cpu()
