"""trust_score's batched curves (all maps' points in shared passes, endpoints run once) against a
plain loop written here: one image per forward pass, each curve of each map on its own."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import convsight
from convsight.images import gaussian_blur
from convsight.trust import faithfulness, trust_score

from ..tinynets import tiny_net

pytestmark = pytest.mark.usefixtures("one_thread")


def _curve(model, x, order, kind, steps, klass, fill):
    """One image's deletion or insertion curve, point by point, batch 1."""
    c, h, w = x.shape
    points = []
    for k in range(steps + 1):
        chosen = order[:k * h * w // steps]
        img = (x if kind == "deletion" else fill).clone().view(c, -1)
        img[:, chosen] = (fill if kind == "deletion" else x).reshape(c, -1)[:, chosen]
        with torch.no_grad():
            points.append(float(F.softmax(model(img.view(1, c, h, w)), 1)[0, klass]))
    fractions = np.array([k * h * w // steps for k in range(steps + 1)]) / (h * w)
    return float(np.trapezoid(points, fractions))


def _plain(model, x, maps, kind, steps, classes):
    """Mean AUC over ``maps`` (each (N, 1, H, W)) per image."""
    fill = torch.zeros_like(x) if kind == "deletion" else gaussian_blur(x)
    out = np.zeros((len(maps), len(x)))
    for m, a in enumerate(maps):
        for i in range(len(x)):
            s = a[i].sum(0).flatten()
            order = sorted(range(len(s)), key=lambda p: (-float(s[p]), p))  # stable, descending
            out[m, i] = _curve(model, x[i], order, kind, steps, classes[i], fill[i])
    return out.mean(0)


@pytest.mark.parametrize("batch_size", [None, 1, 7])
def test_trust_score_equals_a_plain_loop(batch_size):
    model = tiny_net().eval()
    model.bn1.eval()
    with torch.no_grad():
        model.fc.weight.mul_(30)  # probabilities that move along the curves
    net = convsight.Network(model, input_size=(16, 16))
    x = torch.rand(2, 3, 16, 16)
    classes = [3, 7]
    steps = 6
    s = trust_score(net, x, [f"class:{c}" for c in classes], "gradient", steps=steps, seed=5,
                    batch_size=batch_size)
    grad = convsight.attribute(net, x, [f"class:{c}" for c in classes], method="gradient")
    gen = torch.Generator().manual_seed(5)  # the random maps: uniform per pixel, 3 draws
    randoms = [torch.rand((2, 1, 16, 16), generator=gen) for _ in range(3)]
    for kind, ours, theirs in (("deletion", s.deletion, s.random_deletion),
                               ("insertion", s.insertion, s.random_insertion)):
        np.testing.assert_allclose(ours.numpy(), _plain(model, x, [grad.abs()], kind, steps,
                                                        classes), atol=1e-5)
        np.testing.assert_allclose(theirs.numpy(), _plain(model, x, randoms, kind, steps,
                                                          classes), atol=1e-5)
    # the map and the random maps differ, so sharing passes had something to get wrong
    for kind in ("deletion", "insertion"):
        assert (s.curves[kind].curves - s.random_curves[kind]).abs().max() > 1e-3  # 100x atol


def test_faithfulness_default_batch_equals_batch_one():
    net = convsight.Network(tiny_net().eval(), input_size=(16, 16))
    x, a = torch.rand(3, 3, 16, 16), torch.rand(3, 1, 16, 16)
    for kind in ("deletion", "insertion"):
        one = faithfulness(net, x, a, "class:2", kind=kind, steps=9, batch_size=1,
                           return_curves=True)
        many = faithfulness(net, x, a, "class:2", kind=kind, steps=9, return_curves=True)
        assert torch.allclose(one.curves, many.curves, atol=1e-6)
