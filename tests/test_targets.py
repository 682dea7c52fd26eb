"""The Target type: parsing, arithmetic, values against direct computation."""

from __future__ import annotations

import pytest
import torch

import convsight
from convsight.capture import eval_mode
from convsight.targets import ClassProb, ClassScore, Target, evaluate, parse_target
from convsight.units import Unit

from .tinynets import tiny_net


def test_parse_and_print():
    t = parse_target("class:3 + 0.5*conv3:1@2,2 - prob:4")
    assert t.terms == ((1.0, ClassScore(3)), (0.5, Unit("conv3", 1, 2, 2)), (-1.0, ClassProb(4)))
    assert parse_target(str(t)) == t
    assert parse_target(7) == Target.of(ClassScore(7))
    assert (2 * parse_target("conv2:1")).terms == ((2.0, Unit("conv2", 1)),)
    assert t.layers == ("conv3",)
    for bad in ["class:x", "foo", "class:3 +", "prob:"]:
        with pytest.raises(convsight.UnitError):
            parse_target(bad)


def test_values_match_direct_computation():
    net = tiny_net()
    x = torch.rand(3, 3, 16, 16)
    with torch.no_grad(), eval_mode(net):  # convsight evaluates in eval mode
        a3 = net.act3(net.conv3(net.pool(torch.relu(net.conv2(net.relu(net.bn1(net.conv1(x))))))))
        logits = net(x)
    target = parse_target("class:2") + 0.5 * parse_target("act3:1") - parse_target("act3:0@1,2") \
        + 3 * parse_target("prob:4")
    values, out = evaluate(net, x, target)
    expected = (logits[:, 2] + 0.5 * a3[:, 1].mean((1, 2)) - a3[:, 0, 1, 2]
                + 3 * logits.softmax(1)[:, 4])
    assert torch.allclose(values, expected, atol=1e-5)
    per_image, _ = evaluate(net, x, ["class:0", "act3:1", "prob:9"])
    assert torch.allclose(per_image, torch.stack([logits[0, 0], a3[1, 1].mean(),
                                                   logits.softmax(1)[2, 9]]), atol=1e-5)


def test_one_target_per_image_equals_image_by_image():
    """A batch with a target per image (a layer synthesis: one unit each) is read image by image
    from one unbind per layer: values and input gradients equal, bit for bit, those of slicing
    image by image, for units, neurons, weighted sums and class targets alike."""
    from convsight.capture import capture

    net = tiny_net()
    cases = (["act3:1", "act3:0@1,2", "conv2:3", "act3:2"], ["act3:1", "2*act3:0"],
             ["act3:1", "class:3"], ["act3:1 + act3:2", "act3:0"])
    for memory_format in (torch.contiguous_format, torch.channels_last):
        for specs in cases:
            n = len(specs)
            x = torch.rand(n, 3, 16, 16).contiguous(memory_format=memory_format)
            x.requires_grad_(True)
            targets = [parse_target(s) for s in specs]
            with capture(net, ["act3", "conv2"], detach=False) as acts:
                logits = net(x)
            slow = torch.cat([t({k: v[i:i + 1] for k, v in acts.items()}, logits[i:i + 1])
                              for i, t in enumerate(targets)])
            (g_slow,) = torch.autograd.grad(slow.sum(), [x])
            values, _ = evaluate(net, x, specs)
            assert torch.equal(values, slow), specs
            (g_fast,) = torch.autograd.grad(values.sum(), [x])
            assert torch.equal(g_fast, g_slow), specs
    # maps of 56 x 56 in channels-last order: a mean over a batch of gathered maps rounds
    # differently from each map's own mean (the per-image path must not take that shortcut)
    torch.manual_seed(0)
    conv = torch.nn.Sequential(torch.nn.Conv2d(3, 24, 3, padding=1), torch.nn.ReLU()).eval()
    x = torch.rand(6, 3, 56, 56).contiguous(memory_format=torch.channels_last)
    specs = [f"1:{c}" for c in (1, 5, 0, 3, 23, 7)]
    with capture(conv, ["1"], detach=False) as acts:
        conv(x)
    slow = torch.cat([parse_target(s)({"1": acts["1"][i:i + 1]}, None)
                      for i, s in enumerate(specs)])
    assert torch.equal(evaluate(conv, x, specs)[0], slow)


def test_range_errors():
    net = tiny_net()
    x = torch.rand(1, 3, 16, 16)
    with pytest.raises(convsight.UnitError, match=r"valid classes are 0\.\.9"):
        evaluate(net, x, "class:10")
    with pytest.raises(convsight.UnitError, match=r"x in 0\.\.3"):
        evaluate(net, x, "act3:0@0,4")
    with pytest.raises(convsight.UnknownLayerError, match="act3"):
        evaluate(net, x, "act:0")
    with pytest.raises(convsight.UnitError, match="2 targets for a batch of 1"):
        evaluate(net, x, ["class:0", "class:1"])
