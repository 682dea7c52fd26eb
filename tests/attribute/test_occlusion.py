"""Occlusion: equal to Captum's ``Occlusion`` on equal settings, exact on a hand-made model, errors."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
import torchvision.transforms.functional as TF
from captum.attr import Occlusion
from torch import nn

import convsight
from convsight.images import gaussian_blur

from ..tinynets import tiny_net

pytestmark = pytest.mark.usefixtures("one_thread")  # small passes: one thread is fastest


def _net():
    module = tiny_net().eval()  # convsight runs models in eval mode; Captum runs them as they are
    return module, convsight.Network(module, input_size=(32, 32))


def _captum(forward, x, window, stride, baseline, target=None, per_eval=3):
    wh, ww = window if isinstance(window, tuple) else (window, window)
    sh, sw = stride if isinstance(stride, tuple) else (stride, stride)
    with torch.no_grad():
        return Occlusion(forward).attribute(x, sliding_window_shapes=(x.shape[1], wh, ww),
                                            strides=(x.shape[1], sh, sw), baselines=baseline,
                                            target=target, perturbations_per_eval=per_eval)


# windows that fit, windows cut at the border (stride not dividing), non-square, whole image
SETTINGS = [(8, 4), (5, 3), (7, 7), ((4, 6), (2, 5)), ((18, 13), 1), ((18, 5), (1, 5)), (2, 1)]


@pytest.mark.parametrize("window,stride", SETTINGS)
def test_equals_captum_for_class_scores(window, stride):
    module, net = _net()
    x = torch.randn(2, 3, 18, 13)
    for baseline in (0.0, 0.7):
        ours = convsight.attribute(net, x, [3, 5], method="occlusion", window=window,
                                   stride=stride, baseline=baseline, batch_size=7)
        theirs = _captum(module, x, window, stride, baseline, target=[3, 5], per_eval=16)
        assert torch.equal(ours, theirs), float((ours - theirs).abs().max())


def test_equals_captum_for_probability_unit_and_blur():
    module, net = _net()
    x = torch.randn(2, 3, 20, 20)

    def conv3(inp):  # the output of conv3, written out from TinyNet.forward (no convsight)
        h = module.relu(module.bn1(module.conv1(inp)))
        return module.conv3(module.pool(F.relu(module.conv2(h))))

    cases = [("prob:4", lambda inp: F.softmax(module(inp), dim=1)[:, 4]),
             ("conv3:1", lambda inp: conv3(inp)[:, 1].mean((1, 2))),
             ("conv3:2@3,1", lambda inp: conv3(inp)[:, 2, 3, 1])]
    for target, forward in cases:
        for baseline, theirs_baseline in ((0.0, 0.0), ("blur", gaussian_blur(x))):
            ours = convsight.attribute(net, x, target, method="occlusion", window=6, stride=4,
                                       baseline=baseline, batch_size=5)
            theirs = _captum(forward, x, 6, 4, theirs_baseline, per_eval=8)
            assert torch.allclose(ours, theirs, rtol=1e-5, atol=1e-7 * float(theirs.abs().max())), \
                (target, baseline)
            assert float(theirs.abs().max()) > 0


def test_equals_captum_on_the_default_model(lite0, photos):
    x = convsight.Network(lite0.module, mean=lite0.mean, std=lite0.std,
                          input_size=(96, 96)).preprocess(photos["chelsea"])
    ours = convsight.attribute(lite0, x, 281, method="occlusion", window=48, stride=32)
    theirs = _captum(lite0.module, x, 48, 32, 0.0, target=281, per_eval=4)
    assert torch.allclose(ours, theirs, rtol=1e-5, atol=1e-6 * float(theirs.abs().max()))


class Quadrant(nn.Module):
    """Class 0 reads the sum of the top-left quadrant (all channels), class 1 the whole image."""

    def forward(self, x):
        h, w = x.shape[-2] // 2, x.shape[-1] // 2
        return torch.stack([x[:, :, :h, :w].sum((1, 2, 3)), x.sum((1, 2, 3))], dim=1)


def test_hand_made_quadrant_model():
    net = convsight.Network(Quadrant(), input_size=(8, 8))
    x = torch.ones(1, 3, 8, 8)
    # window = stride = the quadrant: the window on it removes all 48 ones, the others nothing
    a = convsight.attribute(net, x, 0, method="occlusion", window=4, stride=4)
    expected = torch.zeros(8, 8)
    expected[:4, :4] = 48
    assert torch.equal(a[0, 0], expected) and torch.equal(a[0, 1], a[0, 0])
    # 2x2 windows: each window inside the quadrant removes 12, so every quadrant pixel is 12
    a = convsight.attribute(net, x, 0, method="occlusion", window=2, stride=2)
    assert torch.equal(a[0, 0], expected / 4)
    # class 1 reads everything: every pixel is 12 wherever the window is
    a = convsight.attribute(net, x, 1, method="occlusion", window=2, stride=2)
    assert torch.equal(a[0, 0], torch.full((8, 8), 12.0))
    # overlapping windows (3x3, stride 1), brute force: mean over covering windows of 3 * |W & Q|
    a = convsight.attribute(net, x, 0, method="occlusion", window=3, stride=1, batch_size=4)
    brute = torch.zeros(8, 8)
    for py in range(8):
        for px in range(8):
            drops = [3 * sum(1 for yy in range(y, y + 3) for xx in range(x0, x0 + 3)
                             if yy < 4 and xx < 4)
                     for y in range(6) for x0 in range(6)
                     if y <= py < y + 3 and x0 <= px < x0 + 3]
            brute[py, px] = sum(drops) / len(drops)
    assert torch.allclose(a[0, 0], brute, atol=1e-6)
    assert a[0, 0, 6:, :].abs().max() == 0 and a[0, 0, :, 6:].abs().max() == 0


def test_batch_size_and_progress_do_not_change_the_result():
    _, net = _net()
    x = torch.randn(2, 3, 20, 20)
    calls = []
    one = convsight.attribute(net, x, None, method="occlusion", window=5, stride=3, batch_size=1,
                              progress=lambda done, total: calls.append((done, total)))
    many = convsight.attribute(net, x, None, method="occlusion", window=5, stride=3,
                               batch_size=100)
    assert torch.allclose(one, many, rtol=1e-5, atol=1e-7)
    assert calls[-1] == (2 * 36, 2 * 36) and len(calls) == 72


def test_gaussian_blur_equals_torchvision():
    x = torch.randn(2, 3, 30, 40)
    ours = gaussian_blur(x, 11, 5.0)
    theirs = TF.gaussian_blur(x, kernel_size=[11, 11], sigma=[5.0, 5.0])
    assert torch.allclose(ours, theirs, atol=1e-5)


@pytest.mark.parametrize("options,message", [
    ({"window": 40}, "larger than the image"),
    ({"window": (8, 33)}, "larger than the image"),
    ({"stride": 0}, "at least 1"),
    ({"window": 4, "stride": 5}, "stride 5 is larger than the window 4"),
    ({"window": 2.5}, "whole number"),
    ({"baseline": "grey"}, "unknown baseline 'grey'"),
    ({"baseline": torch.zeros(2, 3, 1, 1)}, "does not broadcast"),
    ({"batch_size": 0}, "batch_size"),
    ({"samples": 3}, "takes no option samples"),
])
def test_clear_errors(options, message):
    _, net = _net()
    with pytest.raises(convsight.ConvsightError, match=message):
        convsight.attribute(net, torch.randn(1, 3, 32, 32), method="occlusion", **options)
