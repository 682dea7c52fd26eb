"""A small MNIST-like grayscale network, trained in a second on synthetic strokes.

28x28 gray images of one bright stroke on a dark, noisy background: vertical, horizontal,
falling ("\\") or rising ("/"), at a random place, length and thickness. The labels come from
how the image was drawn, so they are an oracle independent of the network.
"""

from __future__ import annotations

import functools

import numpy as np
import torch
from torch import nn

import convsight

SIZE = 28
CLASSES = ["vertical", "horizontal", "falling", "rising"]


def stroke(kind: int, rng: np.random.Generator, size: int = SIZE) -> tuple[np.ndarray, np.ndarray]:
    """One image (size, size) in [0, 1] with a stroke of class ``kind``, and the stroke's mask."""
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float64)
    cy, cx = rng.uniform(9, size - 10, 2)
    half = rng.uniform(6, 10)
    width = rng.uniform(1.0, 1.8)
    direction = {0: (1.0, 0.0), 1: (0.0, 1.0), 2: (1.0, 1.0), 3: (-1.0, 1.0)}[kind]
    dy, dx = np.array(direction) / np.hypot(*direction)
    along = (yy - cy) * dy + (xx - cx) * dx
    across = np.abs(-(yy - cy) * dx + (xx - cx) * dy)
    mask = (np.abs(along) <= half) & (across <= width)
    img = rng.uniform(0.0, 0.15, (size, size))
    img[mask] = rng.uniform(0.75, 1.0)
    return img.astype(np.float32), mask


def strokes(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``n`` images (n, 1, 28, 28) in [0, 1] and their labels, classes in turn."""
    rng = np.random.default_rng(seed)
    labels = np.arange(n) % len(CLASSES)
    images = np.stack([stroke(int(k), rng)[0] for k in labels])
    return torch.from_numpy(images)[:, None], torch.from_numpy(labels).long()


class StrokeNet(nn.Module):
    """conv 5x5 -> ReLU -> pool -> conv 3x3 -> ReLU -> pool -> conv 3x3 -> ReLU -> GAP -> linear."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(1, 8, 5, padding=2)
        self.relu1 = nn.ReLU()
        self.pool1 = nn.MaxPool2d(2)
        self.conv2 = nn.Conv2d(8, 16, 3, padding=1)
        self.relu2 = nn.ReLU()
        self.pool2 = nn.MaxPool2d(2)
        self.conv3 = nn.Conv2d(16, 16, 3, padding=1)
        self.relu3 = nn.ReLU()
        self.gap = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(16, len(CLASSES))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.pool1(self.relu1(self.conv1(x)))
        x = self.pool2(self.relu2(self.conv2(x)))
        x = self.relu3(self.conv3(x))
        return self.fc(torch.flatten(self.gap(x), 1))


@functools.lru_cache(maxsize=1)
def _trained() -> tuple[dict[str, torch.Tensor], float, float]:
    with torch.random.fork_rng():
        torch.manual_seed(0)
        x, y = strokes(512, seed=1)
        mean, std = float(x.mean()), float(x.std())
        model = StrokeNet()
        opt = torch.optim.Adam(model.parameters(), lr=0.01)
        g = torch.Generator().manual_seed(0)
        for _ in range(100):
            idx = torch.randint(0, len(x), (64,), generator=g)
            loss = nn.functional.cross_entropy(model((x[idx] - mean) / std), y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
    return {k: v.clone() for k, v in model.state_dict().items()}, mean, std


def stroke_net() -> convsight.Network:
    """A fresh copy of the trained network, as a ``Network`` (1 channel, 28 px, 4 classes)."""
    state, mean, std = _trained()
    module = StrokeNet()
    module.load_state_dict(state)
    return convsight.Network(module.eval(), mean=(mean,), std=(std,), input_size=SIZE,
                             class_names=list(CLASSES), name="strokes", resize_ratio=1.0)
