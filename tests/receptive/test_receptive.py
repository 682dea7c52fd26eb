"""Receptive fields on tiny hand-built graphs: exact values worked out by hand (Araujo et al. 2019),
and the same boxes from the independent gradient probe in ``receptive_oracle``."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn

import convsight
from convsight.efficientnet_lite import SameConv2d
from convsight.receptive import ReceptiveFieldError

from .test_receptive_oracle import clip, linear_positive_copy, probe_boxes
from ..untouched import untouched


def assert_probe_agrees(module: nn.Module, layers: list[str], side: int, **options) -> None:
    fields = convsight.receptive_fields(module, layers, input_size=(side, side), **options)
    for layer, boxes in probe_boxes(linear_positive_copy(module), layers, (side, side)).items():
        for unit, support in boxes:
            assert clip(fields[layer].box(*unit), (side, side)) == support, (layer, unit)


class Branches(nn.Module):
    """conv3x3 (pad 1) and F.pad + conv5x5 side by side, concatenated, then a residual add."""

    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Conv2d(3, 4, 3, padding=1)
        self.b = nn.Conv2d(3, 4, 5)
        self.merge = nn.Identity()
        self.c = nn.Conv2d(8, 8, 3, padding=1)
        self.out = nn.Identity()

    def forward(self, x):
        y = self.merge(torch.cat([F.relu(self.a(x)), self.b(F.pad(x, (2, 2, 2, 2)))], dim=1))
        return self.out(self.c(y) + y)


def test_two_aligned_branches():
    net = Branches().eval()
    fields = convsight.receptive_fields(net, ["a", "b", "merge", "c", "out"], input_size=(16, 16))
    assert (fields["a"].size, fields["a"].padding) == ((3, 3), (1, 1))
    assert (fields["b"].size, fields["b"].padding) == ((5, 5), (2, 2))
    assert (fields["merge"].size, fields["merge"].stride, fields["merge"].padding) == ((5, 5), (1, 1), (2, 2))
    assert (fields["c"].size, fields["c"].padding) == ((7, 7), (3, 3))
    assert fields["out"].size == (7, 7) and fields["out"].box(0, 0) == (-3, -3, 3, 3)
    assert all(f.method == "trace" and not f.is_global for f in fields.values())
    assert_probe_agrees(net, ["merge", "out"], 16)


class Misaligned(nn.Module):
    """conv3x3 with padding 1, added to conv3x3 padded on the bottom/right only (centres differ)."""

    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Conv2d(3, 2, 3, padding=1)
        self.b = nn.Conv2d(3, 2, 3)
        self.sum = nn.Identity()

    def forward(self, x):
        return self.sum(self.a(x) + self.b(F.pad(x, (0, 2, 0, 2))))


def test_misaligned_paths_raise_unless_allowed():
    net = Misaligned().eval()
    with pytest.raises(ReceptiveFieldError, match="misaligned|different centres"):
        convsight.receptive_field(net, "sum", input_size=(12, 12))
    rf = convsight.receptive_field(net, "sum", input_size=(12, 12), allow_misaligned=True)
    assert (rf.size, rf.stride, rf.padding) == ((4, 4), (1, 1), (1, 1))  # rows u-1 .. u+2
    assert_probe_agrees(net, ["sum"], 12, allow_misaligned=True)  # the hull is exactly the probe's support
    assert convsight.receptive_field(net, "b", input_size=(12, 12)).padding == (0, 0)


def test_different_strides_cannot_merge():
    class TwoGrids(nn.Module):
        def __init__(self):
            super().__init__()
            self.a = nn.Conv2d(3, 2, 3, stride=2, padding=1)  # 8 -> 4 at stride 2
            self.b = nn.Conv2d(3, 2, 5, stride=1)  # 8 -> 4 at stride 1
            self.sum = nn.Identity()

        def forward(self, x):
            return self.sum(self.a(x) + self.b(x))
    with pytest.raises(ReceptiveFieldError, match="strides 2 and 1"):
        convsight.receptive_field(TwoGrids(), "sum", input_size=(8, 8))


@pytest.mark.parametrize("side,padding", [(224, 0), (225, 1), (14, 0), (15, 1)])
def test_tf_same_padding_is_asymmetric_at_stride_2(side, padding):
    """TF "same", k=3, s=2: total max(k - s, 0) = 1 at even sizes (left 0), else 2 (left 1)."""
    net = nn.Sequential(SameConv2d(3, 4, 3, stride=2), SameConv2d(4, 4, 3, stride=1)).eval()
    fields = convsight.receptive_fields(net, ["0", "1"], input_size=(side, side))
    assert (fields["0"].size, fields["0"].stride, fields["0"].padding) == ((3, 3), (2, 2), (padding,) * 2)
    assert (fields["1"].size, fields["1"].padding) == ((7, 7), (padding + 2,) * 2)
    if side < 20:
        assert_probe_agrees(net, ["0", "1"], side)


class Dilated(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.dil = nn.Conv2d(3, 4, 3, dilation=2, padding=2)
        self.pool = nn.MaxPool2d(2, ceil_mode=True)
        self.wide = nn.Conv2d(4, 4, (1, 3), stride=(1, 2), padding=(0, 1))

    def forward(self, x):
        return self.wide(self.pool(self.dil(x)))


def test_dilation_ceil_mode_and_non_square_kernels():
    net = Dilated().eval()
    fields = convsight.receptive_fields(net, ["dil", "pool", "wide"], input_size=(21, 21))
    assert (fields["dil"].size, fields["dil"].padding) == ((5, 5), (2, 2))
    assert (fields["pool"].size, fields["pool"].stride, fields["pool"].padding) == ((6, 6), (2, 2), (2, 2))
    assert fields["pool"].grid == (11, 11)  # ceil_mode: the last window hangs over the edge
    assert (fields["wide"].size, fields["wide"].stride, fields["wide"].padding) == ((6, 10), (2, 4), (2, 4))
    assert_probe_agrees(net, ["dil", "pool", "wide"], 21)


def test_depthwise_and_strided_functional_pool():
    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.dw = nn.Conv2d(3, 3, 5, groups=3, padding=2)
            self.out = nn.Identity()

        def forward(self, x):
            return self.out(F.max_pool2d(self.dw(x), 3, stride=2, padding=1))
    rf = convsight.receptive_field(Net(), "out", input_size=(16, 16))
    assert (rf.size, rf.stride, rf.padding) == ((7, 7), (2, 2), (3, 3))


def test_global_ops_make_the_field_the_whole_input():
    class SE(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(3, 4, 3, padding=1)
            self.gate = nn.Identity()
            self.fc = nn.Linear(4 * 8 * 8, 2)

        def forward(self, x):
            y = self.conv(x)
            y = self.gate(y * torch.sigmoid(y.mean((2, 3), keepdim=True)))
            return self.fc(torch.flatten(y, 1))
    fields = convsight.receptive_fields(SE(), ["conv", "gate", "fc"], input_size=(8, 8))
    assert not fields["conv"].is_global
    assert fields["gate"].is_global and fields["fc"].is_global
    assert fields["gate"].box(3, 5) == (0, 0, 7, 7) and fields["gate"].grid == (8, 8)


def test_upsampling_is_refused_clearly():
    class Up(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(3, 3, 3)
            self.up = nn.Upsample(scale_factor=2)
            self.tconv = nn.ConvTranspose2d(3, 3, 2, stride=2)

        def forward(self, x):
            return self.tconv(self.up(self.conv(x)))
    net = Up()
    assert convsight.receptive_field(net, "conv", input_size=(8, 8)).size == (3, 3)
    for layer in ("up", "tconv"):
        with pytest.raises(ReceptiveFieldError, match="upsampling"):
            convsight.receptive_field(net, layer, input_size=(8, 8))
    assert set(convsight.receptive_fields(net, input_size=(8, 8))) == {"conv"}


def test_unknown_op_falls_back_to_the_probe():
    class Odd(nn.Module):
        def __init__(self):
            super().__init__()
            self.a = nn.Conv2d(3, 4, 3, padding=1)
            self.b = nn.Conv2d(4, 4, 3, stride=2, padding=1)

        def forward(self, x):
            return self.b(torch.cumsum(self.a(x), dim=1))  # cumsum: not in the trace's rules
    model = Odd()
    rng = torch.get_rng_state()
    fields = convsight.receptive_fields(model, ["a", "b"], input_size=(20, 20))
    assert torch.equal(torch.get_rng_state(), rng), "the probe consumed the user's random state"
    assert fields["a"].method == "trace"
    assert fields["b"].method == "probe"
    assert (fields["b"].size, fields["b"].stride, fields["b"].padding) == ((5, 5), (2, 2), (2, 2))


def test_python_control_flow_on_values_does_not_stop_the_trace():
    """torch.fx cannot trace ``if float(tensor) ...``; tracing the run that really happens can."""
    class Branchy(nn.Module):
        def __init__(self):
            super().__init__()
            self.a = nn.Conv2d(3, 3, 3, padding=1)
            self.out = nn.Identity()

        def forward(self, x):
            y = self.a(x)
            if float(y.abs().sum()) >= 0:  # always true, but torch.fx could not trace it
                y = F.max_pool2d(y, 2)
            return self.out(y)
    rf = convsight.receptive_field(Branchy(), "out", input_size=(8, 8))
    assert (rf.size, rf.stride, rf.method) == ((4, 4), (2, 2), "trace")


def test_box_and_crop():
    rf = convsight.ReceptiveField("l", (5, 3), (2, 4), (2, 1), False, (6, 8))
    assert rf.box(0, 0) == (-2, -1, 2, 1)
    assert rf.box(2, 1) == (2, 3, 6, 5)
    image = torch.arange(2 * 6 * 8, dtype=torch.float32).reshape(2, 6, 8) / 100
    crop = rf.crop(image, 0, 0)
    assert crop.shape == (2, 5, 3)
    assert torch.equal(crop[:, 2:, 1:], image[:, 0:3, 0:2])
    mean = image.mean(dim=(1, 2))
    assert torch.allclose(crop[:, 0, 0], mean) and torch.allclose(crop[:, 4, 0], mean)
    assert torch.equal(rf.crop(image, 0, 0, fill=0.25)[:, 0], torch.full((2, 3), 0.25))
    pil = Image.fromarray((np.arange(6 * 8 * 3) % 256).reshape(6, 8, 3).astype(np.uint8))
    cropped = rf.crop(pil, 2, 1, fill=(1, 2, 3))
    assert cropped.size == (3, 5) and cropped.mode == "RGB"
    array = np.asarray(cropped)
    assert np.array_equal(array[:4], np.asarray(pil)[2:6, 3:6]) and array[4, 0].tolist() == [1, 2, 3]
    whole = convsight.ReceptiveField("g", (6, 8), (1, 1), (0, 0), True, (6, 8))
    assert whole.box(9, 9) == (0, 0, 5, 7)


def test_default_model_fields(lite0):
    with untouched(lite0.module):
        fields = convsight.receptive_fields(lite0, ["conv_stem", "blocks.1", "conv_head", "fc"])
    assert (fields["conv_stem"].size, fields["conv_stem"].padding) == ((3, 3), (0, 0))  # pad (0, 1)
    assert fields["conv_head"].stride == (32, 32) and not fields["conv_head"].is_global
    assert fields["fc"].is_global and fields["fc"].method == "trace"


def test_bad_input():
    net = Dilated()
    with pytest.raises(convsight.UnknownLayerError, match="wid"):
        convsight.receptive_field(net, "wid")
    with pytest.raises(ReceptiveFieldError, match="input_size"):
        convsight.receptive_field(net, "dil", input_size=(0, 5))
    with pytest.raises(convsight.ConvsightError, match="does not run"):
        # a linear layer sized for another input: the forward fails on the default 224x224 input
        broken = nn.Sequential(nn.Conv2d(3, 2, 3), nn.Flatten(), nn.Linear(7, 2),
                               nn.Unflatten(1, (2, 1, 1)), nn.Conv2d(2, 2, 1))
        convsight.receptive_field(broken, "4")


def test_cli_rf_and_layers(capsys):
    from convsight.cli import main

    assert main(["rf", "blocks.5", "--unit", "12@3,4"]) == 0
    out = capsys.readouterr().out
    assert "size     83 x 83" in out and "stride   16 x 16" in out and "padding  26 x 26" in out
    assert "rows 22..104, columns 38..120" in out  # 3 * 16 - 26 = 22, 4 * 16 - 26 = 38
    assert main(["rf", "blocks.5", "--unit", "12@14,0"]) == 2
    assert "out of range" in capsys.readouterr().err
    assert main(["rf", "blocks.55"]) == 2
    assert "unknown layer" in capsys.readouterr().err
    assert main(["layers"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert "rf size" in lines[1] and "rf stride" in lines[1]
    stem = next(line.split() for line in lines if line.startswith("conv_stem "))
    assert stem[-2:] == ["3x3", "2x2"]
    assert next(line.split() for line in lines if line.startswith("fc "))[-2:] == ["global", "-"]
