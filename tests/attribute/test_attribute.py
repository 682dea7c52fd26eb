"""Gradient, guided backprop and deconvnet: peers (Captum), a hand-written reference, the rules."""

from __future__ import annotations

import warnings

import pytest
import torch
import torch.nn.functional as F
import torchvision
from torch import nn

import convsight
from convsight.attribute import attribute
from convsight.attribute.rectifiers import rectifier_rule


def assert_rel_close(ours: torch.Tensor, ref: torch.Tensor, tol: float = 1e-6) -> None:
    ours, ref = ours.detach(), ref.detach()
    scale = float(ref.abs().max())
    assert scale > 0, "reference attribution is all zero: the test would prove nothing"
    err = float((ours - ref).abs().max())
    assert err <= tol * scale, f"max difference {err:.3g} > {tol} * {scale:.3g}"


# --- Captum on models built only from nn.ReLU modules (where Captum is right) -----------------

@pytest.mark.slow
@pytest.mark.parametrize("arch", ["vgg11", "resnet18"])
def test_equal_to_captum_on_relu_module_models(arch):
    from captum.attr import Deconvolution, GuidedBackprop, Saliency

    torch.manual_seed(0)
    model = getattr(torchvision.models, arch)(weights=None).eval()
    x = torch.randn(2, 3, 64, 64)
    targets = [3, 7]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # Captum's notes about requires_grad and hooks
        refs = {"gradient": Saliency(model).attribute(x.clone(), target=targets, abs=False),
                "guided": GuidedBackprop(model).attribute(x.clone(), target=targets),
                "deconv": Deconvolution(model).attribute(x.clone(), target=targets)}
    ours = {m: attribute(model, x, targets, method=m) for m in refs}
    for m in refs:
        assert_rel_close(ours[m], refs[m])
    # the three really differ, so equality above is not vacuous
    assert not torch.allclose(ours["guided"], ours["gradient"], rtol=1e-2, atol=1e-6)
    assert not torch.allclose(ours["deconv"], ours["guided"], rtol=1e-2, atol=1e-6)


# --- A model mixing every rectifier form, against a backward pass written by hand -------------

class MixedRectifiers(nn.Module):
    """Each stage is a linear piece then a rectifier written a different way."""

    #          rectifier form                    upper bound of its forward mask
    STAGES = [("F.relu", None), ("nn.ReLU inplace", None), ("same nn.ReLU again", None),
              ("nn.ReLU6", 6.0), ("clamp(min=0)", None), ("torch.relu", None),
              ("Tensor.relu_", None), ("F.relu6", 6.0), ("hardtanh(0, 6)", 6.0),
              ("clamp(0, 6)", 6.0), ("F.relu(inplace=True)", None)]

    def __init__(self) -> None:
        super().__init__()
        c = 4
        self.pieces = nn.ModuleList(
            [nn.Conv2d(3, c, 3, padding=1)]
            + [nn.Conv2d(c, c, 3, padding=1, stride=2 if i == 4 else 1) for i in range(9)]
            + [nn.Linear(c * 4 * 4, 6)])
        self.head = nn.Linear(6, 5)
        for p in self.pieces:  # He initialisation keeps activations near 1 through the stages
            nn.init.normal_(p.weight, std=(2.0 / p.weight[0].numel()) ** 0.5)
            nn.init.uniform_(p.bias, -0.3, 0.3)
        self.relu = nn.ReLU(inplace=True)
        self.relu6 = nn.ReLU6()

    def rectify(self, i: int, h: torch.Tensor) -> torch.Tensor:
        if i == 0:
            return F.relu(h)
        if i in (1, 2):
            return self.relu(h)  # one in-place module used twice
        if i == 3:
            return self.relu6(h)
        if i == 4:
            return h.clamp(min=0)
        if i == 5:
            return torch.relu(h)
        if i == 6:
            h.relu_()  # result used through the in-place side effect only
            return h
        if i == 7:
            return F.relu6(h)
        if i == 8:
            return F.hardtanh(h, 0.0, 6.0)
        if i == 9:
            return torch.clamp(h, 0, 6)
        return F.relu(h, inplace=True)

    def piece(self, i: int, h: torch.Tensor) -> torch.Tensor:
        if i == len(self.pieces) - 1:
            h = h.flatten(1)
        return self.pieces[i](h) * (4.0 if self.STAGES[i][1] else 1.0)  # so that ReLU6 saturates

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = x
        for i in range(len(self.pieces)):
            h = self.rectify(i, self.piece(i, h))
        return self.head(h)


def hand_backward(model: MixedRectifiers, x: torch.Tensor, rule: str, classes=None,
                  neuron: tuple[int, int, int, int] | None = None) -> torch.Tensor:
    """The rules of Springenberg et al. 2015 (Fig. 1) applied by hand, stage by stage, from the top.

    The backward pass starts at the class scores ``classes`` (one per image) or at ``neuron``
    (stage, channel, y, x): one neuron of a stage's linear output ``pieces.STAGE``, before its
    rectifier.
    """
    top = len(model.pieces) - 1 if neuron is None else neuron[0]
    pre, inputs = [], []
    h = x
    with torch.no_grad():
        for i in range(top + 1):
            inputs.append(h)
            f = model.piece(i, h)
            upper = model.STAGES[i][1]
            pre.append((f.clone(), upper))
            h = f.clamp(0, upper)
    if neuron is None:  # d(class score)/d(last stage output), through the linear head
        r = F.one_hot(torch.tensor(classes), 5).to(x.dtype) @ model.head.weight
    else:
        r = torch.zeros_like(h)
        r[:, neuron[1], neuron[2], neuron[3]] = 1.0
    for i in reversed(range(top + 1)):
        f, upper = pre[i]
        if neuron is not None and i == top:
            forward_mask = torch.ones_like(f, dtype=torch.bool)  # start below this rectifier
            rule_here = "gradient"
        else:
            forward_mask = None
            rule_here = rule
        if forward_mask is None:
            forward_mask = (f > 0) if upper is None else ((f > 0) & (f < upper))
        if rule_here == "gradient":
            r = r * forward_mask
        elif rule_here == "guided":
            r = r * forward_mask * (r > 0)
        else:
            r = r * (r > 0)
        # back through the linear piece: its vector-Jacobian product (no rectifier in it)
        z = inputs[i].clone().requires_grad_(True)
        with torch.enable_grad():
            (r,) = torch.autograd.grad(model.piece(i, z), z, grad_outputs=r)
    return r


@pytest.fixture(scope="module")
def mixed():
    torch.manual_seed(1)
    model = MixedRectifiers().double().eval()
    x = torch.randn(3, 3, 8, 8, dtype=torch.float64)
    return model, x


@pytest.mark.parametrize("rule", ["gradient", "guided", "deconv"])
def test_every_rectifier_form_follows_the_rule(mixed, rule):
    model, x = mixed
    classes = [1, 4, 2]
    ref = hand_backward(model, x, rule, classes=classes)
    ours = attribute(model, x, classes, method=rule)
    assert_rel_close(ours, ref, 1e-10)


def test_mixed_model_saturates_and_every_form_is_routed(mixed):
    model, x = mixed
    with torch.no_grad():
        h = x
        for i, (_, upper) in enumerate(model.STAGES[:-1]):
            h = model.piece(i, h).clamp(0, upper)
            assert ((h > 0) & (h < (upper or 1e9))).any(), f"stage {i} passes nothing: weak test"
            if upper:
                assert (h == upper).any(), f"stage {i} never saturates: weak test"
    with rectifier_rule("guided") as seen:
        model(x.clone())
    assert sum(seen.rectifiers.values()) == len(MixedRectifiers.STAGES)
    assert not seen.others


def test_gradient_rule_through_the_mode_equals_autograd(mixed):
    """The mechanism with the plain rule reproduces PyTorch's own gradient bit for bit."""
    model, x = mixed
    xs = x.clone().requires_grad_(True)
    (native,) = torch.autograd.grad(model(xs)[:, 2].sum(), xs)
    xs = x.clone().requires_grad_(True)
    with torch.enable_grad(), rectifier_rule("gradient"):
        out = model(xs)
    (routed,) = torch.autograd.grad(out[:, 2].sum(), xs)
    assert torch.equal(native, routed)


@pytest.mark.parametrize("rule", ["gradient", "guided", "deconv"])
def test_neuron_target_matches_hand_reference(mixed, rule):
    """A neuron of ``pieces.6`` (a conv, read before its rectifier)."""
    model, x = mixed
    ref = hand_backward(model, x, rule, neuron=(6, 1, 2, 1))
    ours = attribute(model, x, "pieces.6:1@2,1", method=rule)
    assert_rel_close(ours, ref, 1e-10)


def test_in_place_side_effect_is_kept_and_nothing_left_behind(mixed):
    model, x = mixed
    plain = model(x.clone())
    with torch.enable_grad(), rectifier_rule("guided"):
        routed = model(x.clone())
    assert torch.equal(plain, routed)  # Tensor.relu_ stage relies on the side effect
    assert not torch._C._is_torch_function_mode_enabled()


def test_mode_removed_after_a_failing_forward():
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU())
    with pytest.raises(RuntimeError):
        attribute(model, torch.randn(1, 3, 2, 2), "0:1", method="guided")  # 2x2 < kernel
    assert not torch._C._is_torch_function_mode_enabled()
    x = torch.randn(5, requires_grad=True)
    (g,) = torch.autograd.grad(torch.relu(x).sum(), x)  # plain relu works normally again
    assert torch.equal(g, (x > 0).float())


# --- Other activations: documented rule and a warning naming them ------------------------------

class OtherActivations(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.l1, self.l2, self.l3, self.l4 = (nn.Linear(6, 6) for _ in range(4))
        self.acts = [nn.SiLU(), nn.GELU(), nn.Hardswish(), nn.LeakyReLU(0.1)]
        self.out = nn.Linear(6, 3)

    def forward(self, x):
        for layer, act in zip((self.l1, self.l2, self.l3, self.l4), self.acts):
            x = act(layer(x))
        return self.out(x)


def test_other_activations_get_the_sign_gate_and_a_warning():
    torch.manual_seed(3)
    model = OtherActivations().double()
    x = torch.randn(4, 6, dtype=torch.float64)
    # Built by hand: each activation passes its local derivative times [R > 0].
    xs = x.clone().requires_grad_(True)
    pre, h = [], xs
    for layer, act in zip((model.l1, model.l2, model.l3, model.l4), model.acts):
        f = layer(h)
        pre.append((f, act))
        h = act(f)
    r = model.out.weight[1].expand(4, 6).clone()
    for (f, act), layer in zip(reversed(pre), (model.l4, model.l3, model.l2, model.l1)):
        fd = f.detach().requires_grad_(True)
        (deriv,) = torch.autograd.grad(act(fd).sum(), fd)  # elementwise activations
        r = (r * (r > 0)) * deriv
        r = r @ layer.weight
    net = convsight.Network(_Flat(model), mean=(0,) * 6, std=(1,) * 6, input_size=(1, 1))
    with pytest.warns(UserWarning, match="not rectifiers") as record:
        ours = attribute(net, x[:, :, None, None], 1, method="guided")
    assert len(record) == 1
    for name in ("SiLU", "GELU", "Hardswish", "LeakyReLU"):
        assert name in str(record[0].message)
    assert record[0].filename == __file__  # points at the caller
    with pytest.warns(UserWarning, match="deconvnet: .*SiLU") as record:
        convsight.attribute(net, x[:, :, None, None], 1, method="deconv")  # the callable package
    assert record[0].filename == __file__
    assert_rel_close(ours[:, :, 0, 0], r, 1e-10)
    # others="gradient": plain gradient through them (the model has no rectifier at all)
    plain = attribute(net, x[:, :, None, None], 1, method="gradient")
    with pytest.warns(UserWarning, match="ordinary gradient"):
        ungated = attribute(net, x[:, :, None, None], 1, method="guided", others="gradient")
    assert torch.equal(plain, ungated)
    assert not torch.allclose(plain, ours)


class _Flat(nn.Module):
    def __init__(self, inner: nn.Module) -> None:
        super().__init__()
        self.inner = inner

    def forward(self, x):
        return self.inner(x.flatten(1))


def test_no_warning_for_pure_rectifier_models(mixed):
    model, x = mixed
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        attribute(model, x, 0, method="guided")
        attribute(model, x, 0, method="deconv")
