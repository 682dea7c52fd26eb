"""Effective boxes (Luo et al. 2016): the smallest box holding a fraction q of a unit's input
gradient magnitude, against a brute-force NumPy search over every box, and inside its field."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch

import convsight
from convsight.errors import ReceptiveFieldError
from convsight.receptive.effective import gradient_mass, smallest_box
from convsight.receptive.effective_many import effective_boxes

from .test_receptive_local import GatedNet
from ..tinynets import tiny_net


def brute_force(m: np.ndarray, q: float) -> tuple[int, int, int, int]:
    """Every box (top, left, bottom, right) of ``m``; the documented order: smallest area, then
    most mass, then topmost, then leftmost."""
    h, w = m.shape
    need = q * m.sum() * (1 - 1e-9)
    best = None
    for t in range(h):
        for b in range(t, h):
            for left in range(w):
                for r in range(left, w):
                    s = m[t:b + 1, left:r + 1].sum()
                    if s >= need:
                        key = ((b - t + 1) * (r - left + 1), -s, t, left, b, r)
                        best = key if best is None or key < best else best
    return best[2:]


def test_smallest_box_equals_brute_force_on_small_maps():
    rng = np.random.default_rng(0)
    checked = 0
    for i in range(300):
        h, w = (int(v) for v in rng.integers(1, 9, 2))
        # small integers: sums are exact, so ties are real ties for both searches
        m = rng.integers(0, 5, (h, w)).astype(float) * (rng.random((h, w)) < 0.6)
        if m.sum() == 0:
            continue
        q = [0.1, 0.5, 0.9, 1.0, float(rng.random()) or 0.5][i % 5]
        assert smallest_box(torch.tensor(m), q) == brute_force(m, q), (m, q)
        checked += 1
    assert checked > 250


def test_ties_go_to_more_mass_then_top_then_left():
    m = np.ones((4, 4))
    assert smallest_box(torch.tensor(m), 0.25) == (0, 0, 0, 3)  # 1x4 and 4x1 tie: 1x4 is topmost
    m = np.zeros((3, 3))
    m[1, 1], m[2, 2] = 2, 2
    assert smallest_box(torch.tensor(m), 0.5) == (1, 1, 1, 1)  # two single pixels: the top one
    assert smallest_box(torch.zeros(3, 5), 0.5) == (0, 0, 2, 4)  # no mass: the whole map


@pytest.mark.parametrize("q", [0, -0.1, 1.5, float("nan"), "half"])
def test_bad_q_is_one_line(q):
    with pytest.raises(ReceptiveFieldError, match=r"q must be .*\(0, 1\]"):
        smallest_box(torch.ones(3, 3), q)


def test_batched_gradients_equal_one_pass_per_hit_and_boxes_lie_inside_the_field():
    net = tiny_net()
    torch.manual_seed(1)
    x = torch.randn(4, 3, 32, 32)
    units = [(0, 0, 0), (3, 4, 5), (7, 7, 7), (15, 2, 6)]
    layer = "conv3"
    batched = gradient_mass(net, layer, x, units)
    by_hand = copy.deepcopy(net).eval()  # convsight runs forward passes in eval mode
    for i, (c, y, xx) in enumerate(units):  # one image and one unit at a time
        xi = x[i:i + 1].clone().requires_grad_(True)
        acts = {}
        by_hand.conv3.register_forward_hook(lambda _m, _i, o: acts.setdefault("o", o))
        by_hand(xi)
        by_hand.conv3._forward_hooks.clear()
        (g,) = torch.autograd.grad(acts["o"][0, c, y, xx], xi)
        torch.testing.assert_close(batched[i], g[0].abs().sum(0))
    rf = convsight.receptive_field(net, layer, (32, 32))
    boxes = effective_boxes(net, layer, x, units, q=0.5)
    for (c, y, xx), box in zip(units, boxes):
        top, left, bottom, right = rf.clipped_box(y, xx)
        assert top <= box[0] <= box[2] <= bottom and left <= box[1] <= box[3] <= right
    full = effective_boxes(net, layer, x, units, q=1.0)
    for (c, y, xx), box, small in zip(units, full, boxes):  # q = 1: the support's bounding box
        support = torch.nonzero(batched[units.index((c, y, xx))] > 0)
        assert box == (int(support[:, 0].min()), int(support[:, 1].min()),
                       int(support[:, 0].max()), int(support[:, 1].max()))
        assert (small[2] - small[0] + 1) * (small[3] - small[1] + 1) <= \
            (box[2] - box[0] + 1) * (box[3] - box[1] + 1)


def test_effective_box_on_a_gated_net_lies_inside_the_local_field():
    torch.manual_seed(0)
    net = GatedNet().eval()
    x = torch.randn(4, 3, 48, 48)
    units = [(1, 2, 3), (5, 6, 6), (3, 5, 5), (7, 4, 8)]
    local = convsight.receptive_field(net, "split", (48, 48), context="local")
    assert not local.is_global
    alive = gradient_mass(net, "split", x, units).sum((1, 2)) > 0  # rectified units may be dead
    assert alive.sum() >= 2
    boxes = effective_boxes(net, "split", x, units)
    for (c, y, xx), box in [(u, b) for u, b, a in zip(units, boxes, alive) if a]:
        top, left, bottom, right = local.clipped_box(y, xx)
        assert top <= box[0] <= box[2] <= bottom and left <= box[1] <= box[3] <= right
        assert (box[2] - box[0] + 1) * (box[3] - box[1] + 1) < \
            (bottom - top + 1) * (right - left + 1)  # half the mass needs less than the field
