"""Tiny hand-built networks for exact tests."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class TinyNet(nn.Module):
    """conv-bn-relu(in place) -> conv -> F.relu -> maxpool -> conv -> ReLU6 -> GAP -> linear.

    Deliberately awkward: some parameters frozen, one submodule left in train mode.
    """

    def __init__(self, classes: int = 10) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 8, 3, padding=1)
        self.bn1 = nn.BatchNorm2d(8)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(8, 16, 3, padding=1)
        self.pool = nn.MaxPool2d(2)
        self.conv3 = nn.Conv2d(16, 16, 3, stride=2, padding=1)
        self.act3 = nn.ReLU6()
        self.gap = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(16, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.relu(self.bn1(self.conv1(x)))
        x = self.pool(F.relu(self.conv2(x)))
        x = self.act3(self.conv3(x))
        return self.fc(torch.flatten(self.gap(x), 1))


def tiny_net(seed: int = 0) -> TinyNet:
    torch.manual_seed(seed)
    net = TinyNet().eval()
    net.bn1.train()  # a user may leave parts in train mode; convsight must keep that
    net.conv1.bias.requires_grad_(False)
    with torch.no_grad():
        net.bn1.running_mean.uniform_(-0.1, 0.1)
        net.bn1.running_var.uniform_(0.5, 1.5)
    return net
