"""Effective receptive field of one hit (Luo, Li, Urtasun & Zemel, "Understanding the Effective
Receptive Field in Deep Convolutional Neural Networks", NeurIPS 2016).

For a unit at its position on one image, the input gradient's magnitude (summed over colour
channels) says how much each pixel counts; Luo et al. show it falls off roughly like a Gaussian
inside the receptive field. The *effective box* is the smallest axis-aligned box inside the unit's
receptive field (local by default, see ``receptive_field(..., context=)``) that holds a fraction
``q`` of that magnitude within the field.

>>> boxes = effective_boxes(net, "blocks.5", x, [(12, 3, 4)], q=0.5)   # x: (1, C, H, W)
>>> top, left, bottom, right = boxes[0]        # inside receptive_field(net, "blocks.5").box(3, 4)

This module holds the definition (``smallest_box``, ``gradient_mass`` / ``gradient_masses``); ``effective_boxes`` and the
cheap way to compute many hits' boxes are in ``effective_many``.
"""

from __future__ import annotations

from typing import Iterator, Sequence

import torch
from torch import nn

from ..capture import eval_mode
from ..errors import ReceptiveFieldError
from ..hooks import LayerOutputs, forward_hooks, run_until_stopped
from ..models import Network, as_network

Box = tuple[int, int, int, int]  # top, left, bottom, right (inclusive)

DEFAULT_Q = 0.5  # why 0.5: docs/receptive_fields.md, "Effective receptive field"
RELATIVE_TOLERANCE = 1e-9  # a box "holds q" when its mass >= q * total * (1 - this): rounding


def check_q(q: float) -> float:
    try:
        value = float(q)
    except (TypeError, ValueError):
        raise ReceptiveFieldError(f"q must be a number in (0, 1], got {q!r}") from None
    if not 0 < value <= 1:
        raise ReceptiveFieldError(f"q must be in (0, 1] (the fraction of the gradient's "
                                  f"magnitude the box holds), got {q!r}")
    return value


def smallest_box(mass: torch.Tensor, q: float) -> Box:
    """The smallest box of the (H, W) map ``mass`` (>= 0) holding a fraction ``q`` of its sum.

    Smallest by area; among boxes of equal area the one holding the most mass, then the topmost,
    then the leftmost. An all-zero map gives the whole map. The narrowest width that works never
    grows with the height, so a staircase walk over (height, width) checks at most O(H + W)
    sizes (fewer: it starts at the lowest height that fits and stops once no taller box can be
    smaller), each at every position at once through 2-D running sums.
    """
    q = check_q(q)
    m = mass.detach().to("cpu", torch.float64).clamp_min(0)
    h, w = m.shape
    total = float(m.sum())
    if total <= 0:
        return (0, 0, h - 1, w - 1)
    need = q * total * (1 - RELATIVE_TOLERANCE)
    run = torch.zeros(h + 1, w + 1, dtype=torch.float64)
    run[1:, 1:] = m.cumsum(0).cumsum(1)

    def sums(bh: int, bw: int) -> torch.Tensor:  # mass of every bh x bw box, by its top-left
        return run[bh:, bw:] - run[:h + 1 - bh, bw:] - run[bh:, :w + 1 - bw] + run[:h + 1 - bh, :w + 1 - bw]

    def fits(bh: int, bw: int) -> bool:
        return bool(sums(bh, bw).max() >= need)

    def narrowest(bh: int) -> int:  # binary search: the narrowest width that fits at this height
        lo, hi = 1, w
        while lo < hi:
            mid = (lo + hi) // 2
            lo, hi = (lo, mid) if fits(bh, mid) else (mid + 1, hi)
        return lo

    lo, hi = 1, h  # the lowest height that fits at full width
    while lo < hi:
        mid = (lo + hi) // 2
        lo, hi = (lo, mid) if fits(mid, w) else (mid + 1, hi)
    floor = narrowest(h)  # no box of any height is narrower than this
    width = narrowest(lo)
    area = lo * width
    for height in range(lo + 1, h + 1):  # the narrowest width never grows with the height
        if height * floor >= area:
            break  # taller boxes are at least floor wide: none can be smaller
        while width > floor and fits(height, width - 1):
            width -= 1
        area = min(area, height * width)
    best: tuple | None = None
    for height in range(1, h + 1):  # every shape of that area: most mass, then top, then left
        if area % height or area // height > w:
            continue
        s = sums(height, area // height)
        if s.max() < need:
            continue
        top, left = divmod(int(torch.argmax(s)), s.shape[1])  # first maximum, row-major
        entry = (-float(s.max()), top, left, height)
        if best is None or entry < best:
            best = entry
    assert best is not None
    _, top, left, height = best
    return (top, left, top + height - 1, left + area // height - 1)


def gradient_mass(model: Network | nn.Module, layer: str, x: torch.Tensor,
                  units: Sequence[tuple[int, int, int]]) -> torch.Tensor:
    """|d unit / d input| summed over colour channels, (N, H, W): unit ``units[i]`` = (channel,
    y, x) of image ``x[i]``, all from one batched backward pass (images are independent in eval
    mode, so the sum of the units' values has each image's own gradient)."""
    net = as_network(model)
    if x.dim() != 4 or len(units) != x.shape[0]:
        raise ReceptiveFieldError(f"need a batch (N, C, H, W) and one unit per image, got shape "
                                  f"{tuple(x.shape)} and {len(units)} units")
    (mass,) = gradient_masses(net, layer, x, [list(enumerate(units))])
    return mass


def gradient_masses(net: Network, layer: str, x: torch.Tensor, rounds: list[list]
                    ) -> Iterator[torch.Tensor]:
    """``gradient_mass`` once per round from one forward pass (to the layer, in ``x``'s memory
    layout): a round is a list of (row of ``x``, (channel, y, x)), at most one unit per row; the
    graph is kept between rounds."""
    outputs = LayerOutputs([layer], lambda out: out, stop=True)
    xin = x.detach().to(net.device).requires_grad_(True)
    module = net.fast([layer]).module  # BatchNorm folded where the model allows: same gradient
    with eval_mode(module), torch.enable_grad(), forward_hooks(module, outputs.hooks()):
        run_until_stopped(module, xin)
        out = outputs.found[layer]
    for r, units in enumerate(rounds):
        rows, c, y, xx = (torch.tensor(v, device=out.device) for v in
                          zip(*[(n, *u) for n, u in units]))
        picked = out[rows, c, y, xx] if out.dim() == 4 else out[rows, c]
        (grad,) = torch.autograd.grad(picked.sum(), xin, retain_graph=r < len(rounds) - 1)
        yield grad.detach().abs().sum(1).cpu()
