"""Unit parsing, layer lookup and their errors; the layer table; activation capture."""

from __future__ import annotations

import pytest
import torch

import convsight
from convsight.capture import capture
from convsight.capture import layer_table
from convsight.units import Unit, check_layer, check_unit, layer_names, parse_unit

from .tinynets import tiny_net


def test_parse_unit():
    assert parse_unit("blocks.5:12") == Unit("blocks.5", 12)
    assert parse_unit(" layer4.1.conv2 : 3 @ 6 , 7 ") == Unit("layer4.1.conv2", 3, 6, 7)
    assert str(parse_unit("features.3:12@4,5")) == "features.3:12@4,5"
    for bad in ["", "blocks.5", "blocks.5:x", "blocks.5:1@2", ":3", "a:1@2,3,4"]:
        with pytest.raises(convsight.UnitError, match="LAYER:CHANNEL"):
            parse_unit(bad)


def test_unknown_layer_suggests(lite0):
    with pytest.raises(convsight.UnknownLayerError) as err:
        check_layer(lite0, "block.5")
    assert "blocks.5" in str(err.value) and "convsight layers" in str(err.value)
    with pytest.raises(convsight.UnknownLayerError, match="conv_head"):
        check_layer(lite0, "convhead")
    assert check_layer(lite0, "blocks.15.project_conv") == "blocks.15.project_conv"


def test_check_unit_ranges():
    check_unit(Unit("l", 3, 1, 2), (4, 5, 6))
    with pytest.raises(convsight.UnitError, match=r"valid channels are 0\.\.3"):
        check_unit(Unit("l", 4), (4, 5, 6))
    with pytest.raises(convsight.UnitError, match=r"y must be in 0\.\.4 and x in 0\.\.5"):
        check_unit(Unit("l", 0, 5, 0), (4, 5, 6))
    with pytest.raises(convsight.UnitError, match="no spatial positions"):
        check_unit(Unit("fc", 0, 0, 0), (10,))
    with pytest.raises(convsight.UnitError, match="valid channels"):
        check_unit(Unit("l", -1), (4, 5, 6))


def test_layer_table_default_model(lite0):
    rows = {r.name: r for r in layer_table(lite0)}
    assert rows["conv_stem"].shape == (32, 112, 112) and rows["conv_stem"].type == "SameConv2d"
    assert rows["blocks.15"].shape == (320, 7, 7)
    assert rows["fc"].shape == (1000,) and rows["fc"].channels == 1000
    assert len(rows) == len(layer_names(lite0))


def test_capture_matches_manual_forward():
    net = tiny_net()
    x = torch.rand(2, 3, 16, 16)
    with capture(net, ["conv1", "pool", "fc"]) as acts:
        out = net(x)
    with torch.no_grad():
        # conv1 is followed by an in-place ReLU: the capture must hold the value before it
        assert torch.allclose(acts["conv1"], net.conv1(x))
    assert acts["fc"].shape == (2, 10) and torch.equal(acts["fc"], out.detach())
    assert acts["pool"].shape == (2, 16, 8, 8)
    assert not acts["conv1"].requires_grad


def test_capture_keeps_graph_when_asked():
    net = tiny_net()
    x = torch.rand(1, 3, 16, 16, requires_grad=True)
    with capture(net, ["conv2"], detach=False) as acts:
        net(x)
    acts["conv2"][0, 1, 4, 4].backward()
    assert x.grad is not None and x.grad.abs().sum() > 0
    assert (x.grad[0, :, 8:, :] == 0).all()  # two 3x3 convs: rows >= 7 cannot matter


def test_capture_removes_hooks_after_failure():
    net = tiny_net()
    with pytest.raises(RuntimeError):
        with capture(net, ["conv1", "conv2", "fc"]):
            net(torch.zeros(1, 4, 16, 16))
    assert all(not m._forward_hooks for m in net.modules())
    with pytest.raises(convsight.UnknownLayerError):
        with capture(net, ["conv1", "nope"]):
            pass
    assert all(not m._forward_hooks for m in net.modules())


def test_capture_stop_skips_rest():
    net = tiny_net()
    calls = []
    handle = net.fc.register_forward_hook(lambda *a: calls.append(1))
    try:
        with capture(net, ["conv1"], stop=True) as acts:
            net(torch.rand(1, 3, 16, 16))
    finally:
        handle.remove()
    assert "conv1" in acts and not calls
