"""The box each hit's patch is cut from, stored in the atlas by the layer's crop rule.

``"exact"`` and ``"local"`` boxes come from the layer's receptive field (geometry only);
``"effective"`` boxes (Luo et al. 2016, ``receptive.effective_boxes``) need the hit's image and one
backward pass each: all hits of a layer are planned together (``receptive.effective_many``: crops
of the field where it is small, else one forward pass per image and batched backward passes). ``"auto"`` is the exact box where
the exact receptive field is finite, else the local one.
"""

from __future__ import annotations

from typing import Any, Callable

import numpy as np
import torch

from ..atlas import CROPS, Atlas
from ..errors import ConvsightError
from ..models import Network
from ..receptive import receptive_fields
from ..receptive.effective import check_q
from ..receptive.effective_many import hit_boxes

MINING_CROPS = ("auto",) + CROPS


def check_mining_crop(crop: str) -> str:
    if crop not in MINING_CROPS:
        raise ConvsightError(f"unknown crop rule {crop!r}: use one of {', '.join(MINING_CROPS)}")
    return crop


def attach_boxes(atlas: Atlas, net: Network, image: Callable[[int], torch.Tensor], crop: str,
                 q: float, batch_size: int, report: Callable[[int], None] = lambda n: None) -> None:
    """Store each mined layer's boxes by rule ``crop`` in ``atlas`` (in place); layers that already
    hold boxes made by that rule (and ``q``) are left as they are. ``image(id)`` is the normalised
    (C, H, W) image; ``report(n)`` is called with the hits done."""
    check_mining_crop(crop)
    q = check_q(q)
    size = net.input_size
    exact = receptive_fields(net, atlas.layers, size, stop_early=True) \
        if crop in ("auto", "exact") else {}
    rules = {name: ("local" if exact[name].is_global else "exact") if crop == "auto" else crop
             for name in atlas.layers}
    todo = [name for name in atlas.layers if atlas.crops.get(name) != _wanted(rules[name], q)
            or "box" not in atlas.arrays(name)]
    need_local = [name for name in todo if rules[name] != "exact"]
    local = receptive_fields(net, need_local, size, context="local", stop_early=True) \
        if need_local else {}
    for layer in todo:
        arrays, rule = atlas.arrays(layer), rules[layer]
        if rule == "effective":
            boxes = _effective(net, layer, local[layer], arrays, image, q, batch_size, report)
        else:
            rf = exact[layer] if rule == "exact" else local[layer]
            boxes = np.array([[rf.box(y, x) for y, x in zip(ys, xs)]
                              for ys, xs in zip(arrays["y"], arrays["x"])], np.int32)
        arrays["box"] = boxes.reshape(arrays["value"].shape + (4,)).astype(np.int32)
        atlas.crops[layer] = _wanted(rule, q)


def _wanted(rule: str, q: float) -> dict:
    return {"crop": rule, **({"q": q} if rule == "effective" else {})}


def _effective(net: Network, layer: str, field: Any, arrays: dict[str, np.ndarray],
               image: Callable[[int], torch.Tensor], q: float, batch_size: int,
               report: Callable[[int], None]) -> np.ndarray:
    """Effective boxes of every hit of every channel, all planned at once (``hit_boxes``: crops
    where the field is small, else one forward pass per image and batched backward passes)."""
    channels, k = arrays["value"].shape
    boxes = np.zeros((channels, k, 4), np.int32)
    slots = [(c, j) for c in range(channels) for j in range(k) if arrays["image"][c, j] >= 0]
    hits = [(int(arrays["image"][c, j]), c, int(arrays["y"][c, j]), int(arrays["x"][c, j]))
            for c, j in slots]
    for (c, j), box in zip(slots, hit_boxes(net, layer, image, hits, q, field, batch_size, report)):
        boxes[c, j] = box
    return boxes
