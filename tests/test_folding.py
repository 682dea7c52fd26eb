"""BatchNorm folded into its convolution (``convsight.folding``, ``Network.fast``): the same values
as the model itself, the model untouched, and no folding where it would change what is read."""

from __future__ import annotations

import copy
import pickle

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import convsight
from convsight.capture import capture
from convsight.efficientnet_lite import SameConv2d
from convsight.folding import folded_copy, foldable_names
from convsight.targets import Target, evaluate

from .untouched import assert_same, snapshot


def _conv_bn(**bn) -> nn.Sequential:
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(3, 6, 3, padding=1), nn.BatchNorm2d(6, **bn), nn.ReLU(),
                        nn.Conv2d(6, 4, 1, bias=False), nn.BatchNorm2d(4, **bn),
                        nn.AdaptiveAvgPool2d(1), nn.Flatten())
    for m in net.modules():  # statistics and affine parameters far from 0 and 1
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.uniform_(-1, 1)
            m.running_var.uniform_(0.2, 3)
            if m.affine:
                nn.init.uniform_(m.weight, 0.5, 2)
                nn.init.uniform_(m.bias, -1, 1)
    return net.eval()


@pytest.mark.parametrize("affine", [True, False])
def test_folded_copy_computes_what_the_model_computes(affine):
    net = _conv_bn(affine=affine)
    before = snapshot(net)
    folded, names = folded_copy(net)
    assert names == ["0", "3"] and foldable_names(net) == {"0", "1", "3", "4"}
    assert type(folded[1]) is nn.Identity and type(folded[4]) is nn.Identity
    assert folded[2].inplace and not net[2].inplace  # the ReLU overwrites the folded output
    x = torch.randn(5, 3, 12, 12)
    torch.testing.assert_close(folded(x), net(x), rtol=1e-5, atol=1e-5)
    assert all(not p.requires_grad for p in folded.parameters())
    assert_same(before, snapshot(net))


def test_a_kept_convolution_is_not_folded():
    net = _conv_bn()
    folded, names = folded_copy(net, keep=["0"])
    assert names == ["3"] and isinstance(folded[1], nn.BatchNorm2d)
    x = torch.randn(2, 3, 8, 8)
    with capture(net, ["0"]) as mine, capture(folded, ["0"]) as theirs:
        net(x), folded(x)
    torch.testing.assert_close(theirs["0"], mine["0"])


def test_a_kept_normalisation_keeps_its_output_intact():
    net = _conv_bn()
    folded, names = folded_copy(net, keep=["1"])
    assert names == ["0", "3"] and not folded[2].inplace  # folded, but the ReLU writes anew
    x = torch.randn(2, 3, 8, 8)
    with capture(net, ["1"]) as mine, capture(folded, ["1"]) as theirs:
        net(x), folded(x)
    torch.testing.assert_close(theirs["1"], mine["1"], rtol=1e-5, atol=1e-5)


class _ReadsBeforeActivation(nn.Module):
    """The normalisation's output is read again after the activation (``twice``: its value is
    used; else a sine keeps it for its gradient): an in-place activation would break it."""

    def __init__(self, twice: bool) -> None:
        super().__init__()
        self.twice = twice
        self.conv, self.bn, self.act = nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.ReLU()
        self.bn.running_mean.fill_(0.5)

    def forward(self, x):
        y = self.bn(self.conv(x))
        if self.twice:
            return (self.act(y) + y).mean((2, 3))
        s = y.sin()
        return (s + self.act(y)).mean((2, 3))


@pytest.mark.parametrize("twice", [True, False])
def test_fast_folds_without_in_place_where_the_probe_objects(twice):
    net = convsight.Network(_ReadsBeforeActivation(twice).eval(), input_size=(10, 10),
                            fold_batchnorm=True)
    assert folded_copy(net.module)[0].act.inplace  # what the probe forward and backward refuse
    with torch.no_grad():  # as convsight's forward-only passes ask for it
        fast = net.fast()
    assert fast is not net and isinstance(fast.module.bn, nn.Identity)
    assert not fast.module.act.inplace
    x = torch.randn(2, 3, 10, 10, requires_grad=True)
    (g_fast,) = torch.autograd.grad(fast(x).sum(), x)
    (g_mine,) = torch.autograd.grad(net(x).sum(), x)
    torch.testing.assert_close(g_fast, g_mine, rtol=1e-5, atol=1e-6)


class _NormAct(nn.BatchNorm2d):
    """Like timm's BatchNormAct2d: normalise, then ``drop``, then ``act``."""

    def __init__(self, channels: int) -> None:
        super().__init__(channels)
        self.drop, self.act = nn.Identity(), nn.ReLU6()

    def forward(self, x):
        return self.act(self.drop(super().forward(x)))


def test_a_normalisation_with_an_activation_keeps_the_activation():
    torch.manual_seed(1)
    net = nn.Sequential(nn.Conv2d(3, 5, 3), _NormAct(5)).eval()
    net[1].running_mean.uniform_(-1, 1)
    net[1].running_var.uniform_(0.5, 2)
    folded, names = folded_copy(net)
    assert names == ["0"] and type(folded[1]).__name__ == "_AfterNorm"
    x = torch.randn(3, 3, 9, 9) * 4
    torch.testing.assert_close(folded(x), net(x), rtol=1e-5, atol=1e-5)


class _ReadsBeforeNorm(nn.Module):
    """The convolution's output is read twice: folding the normalisation into it is wrong."""

    def __init__(self) -> None:
        super().__init__()
        self.conv, self.bn = nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4)
        self.bn.running_mean.fill_(2.0)

    def forward(self, x):
        z = self.conv(x)
        return (self.bn(z) + z).mean((2, 3))


def test_fast_refuses_a_fold_that_changes_the_output():
    module = _ReadsBeforeNorm().eval()
    net = convsight.Network(module, input_size=(16, 16), fold_batchnorm=True)
    assert foldable_names(module) == {"conv", "bn"}  # looks foldable from its children ...
    assert net.fast() is net  # ... but the probe sees the difference


def test_a_model_of_one_input_size_is_probed_at_that_size():
    torch.manual_seed(3)
    module = nn.Sequential(nn.Conv2d(3, 2, 3, stride=8), nn.BatchNorm2d(2), nn.ReLU(),
                           nn.Flatten(), nn.Linear(2 * 10 * 10, 4)).eval()  # 80 px only
    net = convsight.Network(module, input_size=(80, 80), fold_batchnorm=True)
    fast = net.fast()  # the small probe cannot run; the full-size one can
    assert fast is not net and isinstance(fast.module[1], nn.Identity)
    x = torch.randn(2, 3, 80, 80)
    torch.testing.assert_close(fast(x), net(x), rtol=1e-5, atol=1e-5)


def test_fast_needs_the_declaration_and_eval_mode():
    net = convsight.Network(_conv_bn(), input_size=(12, 12))
    assert net.fast() is net  # not declared
    declared = convsight.Network(_conv_bn(), input_size=(12, 12), fold_batchnorm=True)
    assert declared.fast() is not declared
    declared.module.train()
    try:
        assert declared.fast() is declared  # batch statistics: nothing to fold
    finally:
        declared.module.eval()


def test_fast_follows_the_weights():
    net = convsight.Network(_conv_bn(), input_size=(12, 12), fold_batchnorm=True)
    x = torch.randn(2, 3, 12, 12)
    first = net.fast()
    assert net.fast().module is first.module  # made once
    with torch.no_grad():
        net.module[0].weight.mul_(-1)  # trained, loaded or edited in place
    again = net.fast()
    assert again.module is not first.module
    torch.testing.assert_close(again(x), net(x), rtol=1e-5, atol=1e-5)


def test_copies_are_kept_for_the_layers_used_last():
    from convsight.folding import MAX_COPIES

    net = convsight.Network(_conv_bn(), input_size=(12, 12), fold_batchnorm=True)
    spare = [[], ["0"], ["1"], ["3"], ["4"], ["0", "3"]][:MAX_COPIES + 2]
    first = net.fast(spare[0])
    for keep in spare[1:]:
        net.fast(keep)
    assert len(net._folded._copies) == MAX_COPIES
    assert net.fast(spare[-1]).module is net.fast(spare[-1]).module  # kept
    assert net.fast(spare[0]).module is not first.module  # the oldest was dropped, made again


def test_networks_with_copies_pickle_and_copy():
    net = convsight.Network(_conv_bn(), input_size=(12, 12), fold_batchnorm=True)
    net.fast()
    for other in (pickle.loads(pickle.dumps(net)), copy.deepcopy(net)):
        x = torch.randn(1, 3, 12, 12)
        torch.testing.assert_close(other.fast()(x), net(x), rtol=1e-5, atol=1e-5)


def test_default_model_fast_passes_equal_its_own(lite0, photos):
    x = torch.cat([lite0.preprocess(photos[k]) for k in sorted(photos)[:2]])
    before = snapshot(lite0.module)
    with torch.inference_mode():
        assert lite0.fold_batchnorm and lite0.fast() is not lite0
    # the zero kernel tap only in the copy: a trace of the model itself sees the real kernels
    assert any(getattr(m, "zero_tap", False) for m in lite0.fast().module.modules())
    assert not any(getattr(m, "zero_tap", False) for m in lite0.module.modules())
    targets = [Target.class_score(3), Target.unit("blocks.5", 7)]
    for target in targets:
        xs = x.clone().requires_grad_(True)
        mine, _ = evaluate(lite0, xs, target)
        (g_mine,) = torch.autograd.grad(mine.sum(), xs)
        xs = x.clone().requires_grad_(True)
        fast, _ = evaluate(lite0, xs, target, fast=True)
        (g_fast,) = torch.autograd.grad(fast.sum(), xs)
        torch.testing.assert_close(fast, mine, rtol=1e-4, atol=1e-4)
        # ReLU6 kinks that rounding moves across change a few pixels; the map as a whole agrees
        assert float((g_fast - g_mine).norm() / g_mine.norm()) < 1e-2, target  # measured 5e-4, 3e-3
    # a target on a convolution that a BatchNorm reads keeps that convolution's own output
    conv = Target.unit("blocks.3.expand_conv", 2)
    torch.testing.assert_close(evaluate(lite0, x, conv, fast=True)[0], evaluate(lite0, x, conv)[0],
                               rtol=1e-4, atol=1e-4)
    assert_same(before, snapshot(lite0.module))


@pytest.mark.parametrize("groups", [1, 4])
@pytest.mark.parametrize("layout", [torch.contiguous_format, torch.channels_last])
@pytest.mark.parametrize("size,kernel,stride", [(12, 3, 1), (12, 3, 2), (13, 5, 2), (9, 4, 1),
                                                (10, 4, 2)])
def test_same_padding_paths_equal_explicit_padding(layout, size, kernel, stride, groups):
    """Even padding inside the convolution, channels-last padding and the zero tap of uneven
    depthwise padding compute what F.pad does."""
    torch.manual_seed(2)
    conv = SameConv2d(4, 4 * (groups > 1) or 6, kernel, stride=stride, groups=groups)
    conv.convsight_fast()  # as in a folded copy: the zero tap where depthwise padding is uneven
    x = torch.randn(2, 4, size, size + 1).contiguous(memory_format=layout).requires_grad_(True)
    out = conv(x)
    (grad,) = torch.autograd.grad(out.square().sum(), x)
    pads = [max((-(-n // stride) - 1) * stride + kernel - n, 0) for n in x.shape[-2:]]
    ref_x = x.detach().clone().requires_grad_(True)
    ref = F.conv2d(F.pad(ref_x, (pads[1] // 2, pads[1] - pads[1] // 2,
                                 pads[0] // 2, pads[0] - pads[0] // 2)), conv.weight, None, stride,
                   groups=groups)
    (ref_grad,) = torch.autograd.grad(ref.square().sum(), ref_x)
    # to float32 rounding: the convolution's own backward may sum in another order
    torch.testing.assert_close(out, ref)
    torch.testing.assert_close(grad, ref_grad)
