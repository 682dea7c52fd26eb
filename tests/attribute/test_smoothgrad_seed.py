"""SmoothGrad with a fixed seed: the same result for every batch size (noise drawn per image)."""

from __future__ import annotations

import torch
from torch import nn

import convsight


def _gray_net() -> convsight.Network:
    torch.manual_seed(3)
    module = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.Conv2d(4, 4, 3),
                           nn.ReLU(), nn.Flatten(), nn.Linear(4 * 8 * 8, 3)).eval()
    return convsight.Network(module, mean=(0.5,), std=(0.5,), input_size=(10, 10))


def test_smoothgrad_same_for_every_batch_size():
    net = _gray_net()
    x = torch.randn(1, 1, 10, 10)
    runs = {b: convsight.attribute(net, x, 1, method="smoothgrad", samples=25, seed=0,
                                   batch_size=b) for b in (1, 2, 3, 16)}
    scale = float(runs[16].abs().max())
    assert scale > 0
    for b, a in runs.items():
        # one noisy copy per row in every case; only the float rounding of batched convolutions
        # may differ (the old per-batch draws differed by up to 90 % of the largest value)
        assert float((a - runs[16]).abs().max()) <= 1e-5 * scale, b
    other_seed = convsight.attribute(net, x, 1, method="smoothgrad", samples=25, seed=1)
    assert float((other_seed - runs[16]).abs().max()) > 1e-2 * scale


def test_smoothgrad_noise_of_an_image_does_not_depend_on_its_batch():
    """Image i gets the same noise alone as inside a batch (its generator is seeded by (seed, i))."""
    net = _gray_net()
    x = torch.randn(3, 1, 10, 10)
    together = convsight.attribute(net, x, [0, 1, 2], method="smoothgrad", samples=7, seed=5,
                                   batch_size=4)
    first = convsight.attribute(net, x[:1], [0], method="smoothgrad", samples=7, seed=5,
                                batch_size=1)
    assert torch.allclose(together[:1], first, rtol=1e-5, atol=1e-7)
