"""Targets are read once and checked before any forward pass; inside src they travel as objects."""

from __future__ import annotations

import ast
import re
from collections import OrderedDict
from pathlib import Path

import pytest
import torch
from torch import nn

import convsight
from convsight.capture import layer_channels
from convsight.targets import Target, check_target, evaluate
from convsight.trust import trust_score
from convsight.units import Unit

SRC = Path(__file__).resolve().parents[1] / "src" / "convsight"


class Counting(nn.Module):
    """conv(3->4) -> ReLU -> conv(4->6) -> GAP -> linear(6->5), counting its forward passes."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.conv1 = nn.Conv2d(3, 4, 3, padding=1)
        self.act = nn.ReLU()
        self.conv2 = nn.Conv2d(4, 6, 3, padding=1)
        self.head = nn.Linear(6, 5)
        self.passes = 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.passes += 1
        x = self.conv2(self.act(self.conv1(x)))
        return self.head(x.mean((2, 3)))


def network() -> convsight.Network:
    return convsight.Network(Counting().eval(), input_size=(16, 16))


CALLS = {
    "maximize": lambda net, t: convsight.maximize(net, t, steps=2, size=16, progress=False),
    "attribute": lambda net, t: convsight.attribute(net, torch.rand(1, 3, 16, 16), t,
                                                    method="gradient"),
    "evaluate": lambda net, t: evaluate(net, torch.rand(2, 3, 16, 16), t),
    "trust_score": lambda net, t: trust_score(net, torch.rand(1, 3, 16, 16), t,
                                                        "gradient", steps=4),
}


@pytest.mark.parametrize("call", sorted(CALLS))
@pytest.mark.parametrize("target", ["conv2:6", "conv1:4@1,1", Target.unit("conv2", -1)], ids=str)
def test_a_bad_channel_is_refused_before_any_forward_pass(call, target):
    net = network()
    with pytest.raises(convsight.UnitError, match=r"channel -?\d+ is out of range for layer "
                                                  r"conv\d: valid channels are 0\.\.\d"):
        CALLS[call](net, target)
    assert net.module.passes == 0


def test_visualize_layer_refuses_a_bad_channel_before_any_forward_pass():
    net = network()
    with pytest.raises(convsight.UnitError, match="out of range: valid channels of conv2 are 0..5"):
        convsight.visualize_layer(net, "conv2", [2, 6], steps=2, size=16, progress=False)
    assert net.module.passes == 0


def test_an_unknown_layer_is_refused_before_any_forward_pass():
    net = network()
    with pytest.raises(convsight.UnknownLayerError, match="Did you mean: conv2"):
        convsight.maximize(net, "conv3:0", steps=2, size=16, progress=False)
    assert net.module.passes == 0


def test_a_layer_that_declares_no_channels_is_probed_once(monkeypatch):
    """A ReLU has no channel count of its own: one pass of one image at the input size tells it,
    cached per architecture, and the check still comes before the caller's own pass."""
    monkeypatch.setattr("convsight.capture._PROBED", OrderedDict())  # no earlier test's probe
    net = network()
    with pytest.raises(convsight.UnitError, match="valid channels are 0..3"):
        convsight.maximize(net, "act:4", steps=2, size=16, progress=False)
    assert net.module.passes == 1  # the probe; the ascent never started
    with pytest.raises(convsight.UnitError, match="valid channels are 0..3"):
        convsight.attribute(net, torch.rand(1, 3, 16, 16), "act:9", method="gradient")
    assert net.module.passes == 1  # cached
    assert layer_channels(net, "act") == 4 and layer_channels(net, "conv2") == 6
    assert layer_channels(net, "head") == 5  # a Linear is probed: on (N, T, F) dim 1 is T
    copy = convsight.Network(Counting().eval(), input_size=(16, 16))  # same architecture
    with pytest.raises(convsight.UnitError, match="valid channels are 0..3"):
        convsight.attribute(copy, torch.rand(1, 3, 16, 16), "act:4", method="gradient")
    assert copy.module.passes == 0  # shapes are the architecture's: no probe again
    wider = Counting()
    wider.conv1 = nn.Conv2d(3, 7, 3, padding=1)
    wider.conv2 = nn.Conv2d(7, 6, 3, padding=1)
    assert layer_channels(convsight.Network(wider.eval(), input_size=(16, 16)), "act") == 7


def test_a_neuron_position_is_checked_at_the_layer_output():
    """The position range depends on the input size, so it is checked when the output is there
    (the channel was checked before)."""
    net = network()
    with pytest.raises(convsight.UnitError, match=r"y must be in 0..7"):
        evaluate(net, torch.rand(1, 3, 8, 8), "conv2:1@8,0")


def test_a_good_target_runs_and_each_unit_is_checked_once(monkeypatch):
    net = network()
    seen = []
    monkeypatch.setattr("convsight.targets.check_layer",
                        lambda module, name: seen.append(name) or name)
    out = convsight.maximize(net, ["conv2:5", "class:1"], steps=3, size=16, progress=False)
    assert out.images.shape == (2, 3, 16, 16)
    assert seen == ["conv2"]  # checked at the door; the three steps found it checked


def test_target_objects_print_as_their_text():
    assert Target.unit("blocks.5", 3, 2, 1) == Target.of(Unit("blocks.5", 3, 2, 1))
    assert str(Target.unit("blocks.5", 3, 2, 1)) == "blocks.5:3@2,1"
    assert str(Target.class_score(281)) == "class:281" and str(Target.probability(7)) == "prob:7"
    assert check_target(network(), "conv1:3") == Target.unit("conv1", 3)


# f-strings shaped like a target ("{}:{}", "{}:{}@{},{}", "class:{}", "prob:{}"): inside src a
# target is an object; text is read at the door (parse_target), never rebuilt to be read again.
TARGET_TEXT = re.compile(r"\{\}:\{\}(@\{\},\{\})?|(class|prob):\{\}")
CAPTIONS = {("figures/atlas.py", "synthesis_facets")}  # a picture's caption, never parsed


def _target_strings(path: Path) -> list[str]:
    found = []

    def walk(node: ast.AST, function: str) -> None:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            function = node.name
        if isinstance(node, ast.JoinedStr):
            text = "".join(v.value if isinstance(v, ast.Constant) else "{}" for v in node.values)
            where = (path.relative_to(SRC).as_posix(), function)
            if TARGET_TEXT.fullmatch(text) and function != "__str__" and where not in CAPTIONS:
                found.append(f"{where[0]}:{node.lineno} f{text!r}")
        for child in ast.iter_child_nodes(node):
            walk(child, function)

    walk(ast.parse(path.read_text(encoding="utf-8")), "")
    return found


def test_no_target_text_is_built_inside_src():
    found = [hit for path in sorted(SRC.rglob("*.py")) for hit in _target_strings(path)]
    assert not found, "target text rebuilt inside src (use Target.unit / class_score):\n" + \
        "\n".join(found)


def test_the_target_text_check_can_fail(tmp_path):
    bad = SRC / "_probe_target_text.py"
    try:
        bad.write_text('def f(layer, c, n):\n    return attribute(n, x, f"{layer}:{c}"), '
                       'f"class:{c}"\n')
        assert len(_target_strings(bad)) == 2
    finally:
        bad.unlink()
