"""A one-hidden-layer network on faces, whose hidden units can be looked at as images.

scikit-image ships ``lfw_subset``: 100 face and 100 non-face crops, 25x25 grayscale. A fully
connected network 625 -> hidden -> 2 trained on them in a few seconds learns hidden units whose
weights, reshaped to 25x25, look like face templates (the classic picture of what a first fully
connected layer learns).

>>> result = train_face_network(hidden=16)
>>> result.test_accuracy > 0.85
True
>>> img = filter_grid(result.network, "hidden")     # 16 face-like templates
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from .models import Network


class FaceNet(nn.Module):
    def __init__(self, hidden: int = 16) -> None:
        super().__init__()
        self.flatten = nn.Flatten()
        self.hidden = nn.Linear(25 * 25, hidden)
        self.act = nn.ReLU()
        self.out = nn.Linear(hidden, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out(self.act(self.hidden(self.flatten(x))))


@dataclass
class FaceResult:
    network: Network
    train_accuracy: float
    test_accuracy: float
    seconds: float


def face_data(seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """lfw_subset as (200, 1, 25, 25) floats in [0, 1] and labels (1 = face), shuffled."""
    from skimage.data import lfw_subset

    x = torch.from_numpy(lfw_subset().astype(np.float32)).unsqueeze(1)
    y = torch.cat([torch.ones(100), torch.zeros(100)]).long()
    order = torch.randperm(200, generator=torch.Generator().manual_seed(seed))
    return x[order], y[order]


def train_face_network(hidden: int = 16, epochs: int = 300, weight_decay: float = 3e-3,
                       seed: int = 0, test_fraction: float = 0.25) -> FaceResult:
    """Train FaceNet on 75% of lfw_subset (full-batch Adam) and test on the rest."""
    import time

    start = time.time()
    x, y = face_data(seed)
    n_test = int(len(x) * test_fraction)
    xtr, ytr, xte, yte = x[n_test:], y[n_test:], x[:n_test], y[:n_test]
    mean, std = float(xtr.mean()), float(xtr.std())
    g = torch.Generator().manual_seed(seed)
    model = FaceNet(hidden)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 0.01)
    opt = torch.optim.Adam(model.parameters(), lr=3e-3, weight_decay=weight_decay)
    loss_fn = nn.CrossEntropyLoss()
    xtr_n, xte_n = (xtr - mean) / std, (xte - mean) / std
    model.train()
    for _ in range(epochs):
        opt.zero_grad()
        loss = loss_fn(model(xtr_n), ytr)
        loss.backward()
        opt.step()
    model.eval()
    for p in model.parameters():
        p.grad = None
    with torch.no_grad():
        train_acc = float((model(xtr_n).argmax(1) == ytr).float().mean())
        test_acc = float((model(xte_n).argmax(1) == yte).float().mean())
    net = Network(model, mean=(mean,), std=(std,), input_size=(25, 25),
                  class_names=["non-face", "face"], name="lfw-face-mlp")
    return FaceResult(net, train_acc, test_acc, time.time() - start)
