"""Effective boxes of many hits at once, as cheaply as their definition allows.

A hit is (image id, channel, y, x): a unit of a layer on one image. Its effective box
(``receptive.effective``) needs the gradient of that one unit with respect to the image's pixels,
so at least one backward pass per hit. Two ways, both exact, make the passes cheaper:

* **Crops** (where the unit's receptive field is finite: no gate held, nothing global). The unit and
  its gradient depend only on the pixels of its field, so the forward and backward passes run on a
  crop of the image that holds the field. The crop starts at a multiple of the layer's stride and
  its size equals the image's modulo the stride, so every layer's grid and padding fall on the crop
  as they fall on the whole image; where the field passes an image border the crop keeps that
  border. The field traced at the crop's size must match the whole image's field unit for unit, or
  the hit goes the other way. A 19 px field on a 224 px image costs a 24 px crop: ~80x less work.
* **Shared forward passes** otherwise: hits are grouped by image, each image runs forward once (up
  to the layer, not further) and each backward pass, with the graph kept, takes one hit of every
  image of the batch (images are independent in eval mode, so the sum of their units has each
  image's own gradient). The forward pass is then paid per image, not per hit.

Values equal the one-image-one-unit gradient up to floating-point rounding (other batch sizes and
memory layouts sum in another order), so a box could only differ where a candidate box holds
``q`` of the mass to within that rounding.
"""

from __future__ import annotations

import weakref
from collections import defaultdict
from typing import Callable, Iterator, Sequence

import torch
from torch import nn

from ..errors import ReceptiveFieldError
from ..models import Network, as_network
from .effective import DEFAULT_Q, Box, check_q, gradient_masses, smallest_box
from .field import ReceptiveField

Hit = tuple[int, int, int, int]  # image id, channel, y, x
CROP_SHARE = 0.5  # a crop is used when its area is at most this share of the image's
_TRACED: "weakref.WeakKeyDictionary[nn.Module, dict]" = weakref.WeakKeyDictionary()


def hit_boxes(net: Network, layer: str, image: Callable[[int], torch.Tensor], hits: Sequence[Hit],
              q: float, field: ReceptiveField, batch_size: int = 32,
              report: Callable[[int], None] = lambda n: None) -> list[Box]:
    """The effective box (inside ``field``, clipped to the image) of every hit; ``image(id)`` is the
    normalised (C, H, W) image. ``batch_size`` images' worth of pixels go through one pass."""
    boxes: list[Box | None] = [None] * len(hits)
    if not hits:
        return []
    crops = _Crops(net, layer, field, tuple(field.input_size))
    by_image: dict[int, list[int]] = defaultdict(list)
    cropped: dict[int, list[int]] = defaultdict(list)
    for i, hit in enumerate(hits):
        (cropped if crops.window(hit) is not None else by_image)[hit[0]].append(i)
    for part in (_cropped_masses(net, layer, image, hits, cropped, crops, batch_size),
                 _shared_masses(net, layer, image, hits, by_image, batch_size)):
        for done in part:
            for i, mass, (r0, c0) in done:
                _, _, y, x = hits[i]
                top, left, bottom, right = field.clipped_box(y, x)
                field_mass = mass[top - r0:bottom + 1 - r0, left - c0:right + 1 - c0]
                t, l, b, r = smallest_box(field_mass, q)
                boxes[i] = (top + t, left + l, top + b, left + r)
            report(len(done))
    return boxes  # type: ignore[return-value]


def effective_boxes(model: Network | nn.Module, layer: str, x: torch.Tensor,
                    units: Sequence[tuple[int, int, int]], q: float = DEFAULT_Q,
                    context: str = "local", field=None) -> list[Box]:
    """The effective box of unit ``units[i]`` = (channel, y, x) on image ``x[i]`` (a normalised
    batch at the network's input size), for every i, from one batched backward pass (or, where
    the field is finite and small, one pass over crops of the images: see this module).

    Each box lies inside the unit's ``context`` receptive field ("local": gates held fixed, the
    default; "exact") clipped to the image, and holds a fraction ``q`` of the gradient magnitude
    found there. ``field`` passes that receptive field when the caller already has it.
    """
    from . import receptive_field

    q = check_q(q)
    net = as_network(model)
    if x.dim() != 4 or len(units) != x.shape[0]:
        raise ReceptiveFieldError(f"need a batch (N, C, H, W) and one unit per image, got shape "
                                  f"{tuple(x.shape)} and {len(units)} units")
    rf = field if field is not None else receptive_field(net, layer, tuple(x.shape[-2:]),
                                                         context=context)
    hits = [(i, int(c), int(y), int(xx)) for i, (c, y, xx) in enumerate(units)]
    return hit_boxes(net, layer, lambda i: x[i], hits, q, rf, batch_size=max(1, len(units)))


class _Crops:
    """The crop window of each hit, or None where a crop is not exact or saves too little."""

    def __init__(self, net: Network, layer: str, field: ReceptiveField, size: tuple[int, int]):
        self.net, self.layer, self.field, self.size = net, layer, field, size
        self.usable = not field.is_global and not field.gates

    def window(self, hit: Hit) -> tuple[int, int, int, int] | None:
        """(top, left, bottom, right) rows/columns of the crop, bottom and right exclusive."""
        if not self.usable:
            return None
        _, _, y, x = hit
        box = self.field.clipped_box(y, x)
        (r0, r1), (c0, c1) = (_span(box[a], box[a + 2], self.field.stride[a], self.size[a])
                              for a in (0, 1))
        if (r1 - r0) * (c1 - c0) > CROP_SHARE * self.size[0] * self.size[1]:
            return None
        crop = self._field((r1 - r0, c1 - c0))
        sy, sx = self.field.stride
        y2, x2 = y - r0 // sy, x - c0 // sx
        if crop is None or crop.grid is None or not (0 <= y2 < crop.grid[0]
                                                     and 0 <= x2 < crop.grid[1]):
            return None
        t, l, b, r = crop.box(y2, x2)
        if (t + r0, l + c0, b + r0, r + c0) != self.field.box(y, x):
            return None
        return (r0, c0, r1, c1)

    def _field(self, shape: tuple[int, int]) -> ReceptiveField | None:
        """The field traced at the crop's size: it must be the whole image's, shifted. Kept per
        module between calls (a trace costs about a forward pass; geometry has no weights)."""
        f = self.field
        key = (self.layer, shape, f.context, f.size, f.stride, f.padding, tuple(f.input_size))
        known = _TRACED.setdefault(self.net.module, {})
        if key not in known:
            from . import receptive_field

            try:
                rf = receptive_field(self.net, self.layer, shape, context=f.context)
            except Exception:  # a crop the network cannot take (too small for a pooling...)
                rf = None
            same = rf is not None and (rf.size, rf.stride, rf.padding, rf.is_global, rf.gates) == (
                f.size, f.stride, f.padding, False, f.gates)
            known[key] = rf if same else None
        return known[key]


def _span(first: int, last: int, stride: int, size: int) -> tuple[int, int]:
    """Start (a multiple of ``stride``) and end (exclusive) of the crop holding pixels ``first`` to
    ``last`` along an axis of ``size`` pixels; the crop's size equals ``size`` modulo ``stride``."""
    start = first // stride * stride
    extra = size % stride
    steps = max(0, -(-(last + 1 - start - extra) // stride))
    return start, min(size, start + steps * stride + extra)


def _cropped_masses(net: Network, layer: str, image: Callable[[int], torch.Tensor],
                    hits: Sequence[Hit], cropped: dict[int, list[int]], crops: _Crops,
                    batch_size: int) -> Iterator[list]:
    """Batches of (hit index, gradient magnitude on its crop, crop origin), crops of one shape
    per batch; each image is read once."""
    pixels = batch_size * crops.size[0] * crops.size[1]
    waiting: dict[tuple[int, int], list] = defaultdict(list)
    for image_id, indices in cropped.items():
        picture = image(image_id)
        for i in indices:
            r0, c0, r1, c1 = crops.window(hits[i])  # type: ignore[misc]
            shape = (r1 - r0, c1 - c0)
            crop = picture[:, r0:r1, c0:c1].clone()  # a copy: the image itself need not wait
            waiting[shape].append((i, crop, (r0, c0)))
            if len(waiting[shape]) * shape[0] * shape[1] >= pixels:
                yield _crop_pass(net, layer, hits, waiting.pop(shape), crops.field.stride)
    for group in waiting.values():
        yield _crop_pass(net, layer, hits, group, crops.field.stride)


def _crop_pass(net: Network, layer: str, hits: Sequence[Hit], group: list,
               stride: tuple[int, int]) -> list:
    x = torch.stack([crop for _, crop, _ in group])
    units = [(hits[i][1], hits[i][2] - r0 // stride[0], hits[i][3] - c0 // stride[1])
             for i, _, (r0, c0) in group]
    rows = list(range(len(group)))
    (mass,) = gradient_masses(net, layer, net.layout(x), [list(zip(rows, units))])
    return [(i, mass[n], origin) for n, (i, _, origin) in enumerate(group)]


def _shared_masses(net: Network, layer: str, image: Callable[[int], torch.Tensor],
                   hits: Sequence[Hit], by_image: dict[int, list[int]], batch_size: int
                   ) -> Iterator[list]:
    """Batches of images, busiest first so that batch mates have as many hits: one forward pass,
    then one backward pass per round, each round taking the next hit of every image. Once fewer
    than half of the batch's images have hits left, those go back to wait for a later batch."""
    pending = {k: list(v) for k, v in by_image.items()}
    while pending:
        ids = sorted(pending, key=lambda k: -len(pending[k]))[:batch_size]
        x = torch.stack([image(k) for k in ids])
        todo = [pending.pop(k) for k in ids]
        rounds = []
        for r in range(len(todo[0])):
            if 2 * sum(r < len(t) for t in todo) < len(ids) and r > 0:
                for k, t in zip(ids, todo):
                    if r < len(t):
                        pending[k] = t[r:]
                break
            rounds.append([(n, t[r]) for n, t in enumerate(todo) if r < len(t)])
        for r, mass in enumerate(gradient_masses(
                net, layer, net.layout(x), [[(n, hits[i][1:]) for n, i in rnd] for rnd in rounds])):
            yield [(i, mass[n], (0, 0)) for n, i in rounds[r]]
