"""Local receptive fields (``context="local"``: global-context gates held fixed) against an
independent probe: the support of the unit's input gradient on a positive linearised copy of the
model (tests/receptive/test_receptive_oracle.py) with every gate's *output detached* by a forward hook.

The gates are named here by hand for each architecture (which module computes the gate), not found
by the trace: the probe shares nothing with ``convsight.receptive``. Random weights throughout:
receptive fields are geometry.
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

import convsight
from convsight.errors import ReceptiveFieldError

from .test_receptive_oracle import clip, linear_positive_copy, probe_boxes

timm = pytest.importorskip("timm")
from timm.layers import EcaModule, GlobalContext, SelectiveKernel, SplitAttn  # noqa: E402


class SqueezeExcite(nn.Module):
    """Hu et al. 2018, written out: mean over positions, two 1x1 convolutions, a sigmoid gate."""

    def __init__(self, c: int) -> None:
        super().__init__()
        self.reduce, self.act = nn.Conv2d(c, c // 2, 1), nn.ReLU()
        self.expand, self.gate = nn.Conv2d(c // 2, c, 1), nn.Sigmoid()

    def forward(self, x):
        return x * self.gate(self.expand(self.act(self.reduce(x.mean((2, 3), keepdim=True)))))


class GatedNet(nn.Module):
    """A hand-made network with every kind of gate: squeeze-and-excitation, a global-context block
    (attention pooling; a scaling and an additive fusion), ECA, selective kernel, split attention."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 8, 3, 2, 1), nn.ReLU())
        self.se = SqueezeExcite(8)
        self.conv1 = nn.Conv2d(8, 8, 3, 1, 1)
        self.gc = GlobalContext(8, fuse_add=True, fuse_scale=True, rd_channels=4)
        self.conv2 = nn.Conv2d(8, 16, 3, 2, 1)
        self.eca = EcaModule(16)
        self.sk = SelectiveKernel(16, 16, kernel_size=[3, 5])
        self.split = SplitAttn(16, 16, kernel_size=3, radix=2)
        self.head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(16, 10))

    def forward(self, x):
        x = self.conv1(self.se(self.stem(x)))
        return self.head(self.split(self.sk(self.eca(self.conv2(self.gc(x))))))


def gate_outputs(model: nn.Module) -> list[str]:
    """The modules whose outputs are gates, by architecture (read from the blocks' source)."""
    names = []
    for name, m in model.named_modules():
        kind = type(m).__name__
        if kind in ("SqueezeExcite", "SEModule", "EcaModule"):
            names.append(f"{name}.gate")
        elif kind == "GlobalContext":
            names += [f"{name}.gate"] + ([f"{name}.mlp_add"] if m.mlp_add is not None else [])
        elif kind == "SelectiveKernel":
            names.append(f"{name}.attn")
        elif kind == "SplitAttn":
            names.append(f"{name}.rsoftmax")
    return names


def detached_probe(module: nn.Module, layers: list[str], size: tuple[int, int]):
    """Gradient supports of top-left, centre and bottom-right units, every gate detached.

    The detached gate is also squashed into (0, 1): the linearised copy turns hard-sigmoid gates
    into identities, and products of unbounded gates overflow after a few blocks. A positive,
    finite, constant factor or addend leaves the gradient's support as it is."""
    oracle = linear_positive_copy(module, torch.float32)
    gates = gate_outputs(oracle)
    assert gates, "no gates found: the probe would test nothing"
    hooks = [oracle.get_submodule(n).register_forward_hook(
        lambda _m, _i, out: torch.sigmoid(out.detach())) for n in gates]
    try:
        return probe_boxes(oracle, layers, size), gates
    finally:
        for h in hooks:
            h.remove()


def timm_model(name: str) -> nn.Module:
    torch.manual_seed(0)
    return timm.create_model(name, pretrained=False).eval()


def spatial_layers(module: nn.Module, fields, size, gates) -> list[str]:
    """Layers with (N, C, H, W) outputs, leaving out the gates themselves (detached there)."""
    shapes = {}
    hooks = [module.get_submodule(n).register_forward_hook(
        lambda _m, _i, o, n=n: shapes.__setitem__(n, tuple(o.shape)) if isinstance(
            o, torch.Tensor) else None) for n in fields]
    with torch.no_grad():
        module(torch.zeros(1, 3, *size))
    for h in hooks:
        h.remove()
    inside_gate = tuple(g + "." for g in gates)
    return [n for n in fields if len(shapes.get(n, ())) == 4 and n not in gates
            and not n.startswith(inside_gate)]


CASES = [("efficientnet_b0", 64), ("mobilenetv3_large_100", 64), ("regnety_002", 64),
         ("handmade", 48)]


@pytest.mark.slow
@pytest.mark.parametrize("name,side", CASES)
def test_local_field_equals_probe_with_gates_detached(name, side):
    module = GatedNet().eval() if name == "handmade" else timm_model(name)
    size = (side, side)
    fields = convsight.receptive_fields(module, input_size=size, context="local")
    layers = spatial_layers(module, fields, size, gate_outputs(module))
    assert len(layers) > 20 if name != "handmade" else len(layers) >= 8
    probed, _ = detached_probe(module, layers, size)
    local = 0
    for layer in layers:
        rf = fields[layer]
        assert rf.method == "trace" and rf.context == "local", layer
        for unit, support in probed[layer]:
            assert support is not None, (layer, unit)
            assert clip(rf.box(*unit), size) == support, (layer, unit, rf)
        local += not rf.is_global
    assert local > 0.5 * len(layers)  # most layers are not global once gates are held


def test_handmade_names_every_gate_and_exact_stays_global():
    net = GatedNet().eval()
    exact = convsight.receptive_field(net, "split", (48, 48))
    rf = convsight.receptive_field(net, "split", (48, 48), context="local")
    assert exact.is_global and exact.context == "exact" and exact.gates == ()
    assert not rf.is_global and rf.context == "local"
    assert rf.gates == ("se", "gc", "eca", "sk", "split")
    assert rf.caption().endswith("(local)")
    # head: global pooling is a reduction that is never broadcast back, so it stays global
    assert convsight.receptive_field(net, "head", (48, 48), context="local").is_global


def test_timm_local_sizes_are_finite_and_named():
    fields = convsight.receptive_fields(timm_model("efficientnet_b0"),
                                        [f"blocks.{i}" for i in range(1, 7)], (224, 224),
                                        context="local")
    # by hand (Araujo et al.): stem 3x3/2 gives 3; blocks.0.0 dw 3x3 at stride 2 adds 2*2;
    # blocks.1.0 dw 3x3/2 at stride 2 adds 2*2 (stride 4); blocks.1.1 dw 3x3 at stride 4 adds 2*4
    assert fields["blocks.1"].size == (19, 19) and fields["blocks.1"].stride == (4, 4)
    assert fields["blocks.1"].gates == ("blocks.0.0.se", "blocks.1.0.se", "blocks.1.1.se")
    assert all(not f.is_global for f in fields.values())


def test_unknown_context_is_one_line():
    with pytest.raises(ReceptiveFieldError, match="unknown receptive-field context 'global'.*exact, local"):
        convsight.receptive_field(GatedNet(), "se", (32, 32), context="global")
