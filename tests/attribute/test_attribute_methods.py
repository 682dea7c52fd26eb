"""The default model (ReLU6), receptive fields, Grad-CAM, SmoothGrad, targets and bad input."""

from __future__ import annotations

import warnings

import pytest
import torch
import torchvision
from torch import nn

import convsight
from convsight.attribute import attribute
from convsight.attribute.rectifiers import rectifier_rule

from .test_attribute import assert_rel_close


@pytest.fixture(scope="module")
def cat(lite0, photos):
    size = (128, 128)  # smaller than 224 to keep the tests fast; the model takes any size
    net = convsight.Network(lite0.module, mean=lite0.mean, std=lite0.std, input_size=size,
                            class_names=lite0.class_names)
    return net, net.preprocess(photos["chelsea"])


@pytest.mark.slow
def test_default_model_guided_follows_the_rules_at_every_relu6(cat):
    """At each of the 33 ReLU6 of EfficientNet-Lite0: signal below == [0<f<6] [R>0] R exactly."""
    net, x = cat
    seen_at: list[tuple[str, torch.Tensor, dict]] = []
    handles = []

    def hook(name):
        def fn(_mod, inp, out):
            rec = {}
            inp[0].register_hook(lambda g: rec.__setitem__("below", g))
            out.register_hook(lambda g: rec.__setitem__("above", g))
            seen_at.append((name, inp[0].detach().clone(), rec))
        return fn

    acts = [(n, m) for n, m in net.module.named_modules() if isinstance(m, nn.ReLU6)]
    assert len(acts) == 33
    xs = x.clone().requires_grad_(True)
    try:
        for name, m in acts:
            handles.append(m.register_forward_hook(hook(name)))
        with torch.enable_grad():
            with rectifier_rule("guided") as seen:
                logits = net.module(xs)
            top = int(logits.argmax())
            (grad,) = torch.autograd.grad(logits[0, top], xs)
    finally:
        for h in handles:
            h.remove()
    assert sum(seen.rectifiers.values()) == 33 and not seen.others
    differs = 0
    for name, f, rec in seen_at:
        r, below = rec["above"], rec["below"]
        expected = torch.where((f > 0) & (f < 6) & (r > 0), r, torch.zeros_like(r))
        assert torch.equal(below, expected), name
        differs += int(((f > 0) & (f < 6) & (r < 0)).sum())  # where plain backprop would pass R
    assert differs > 1000
    # the public call gives the same input attribution, and it is not the gradient
    ours = attribute(net, x, top, method="guided")
    assert torch.equal(ours, grad)
    plain = attribute(net, x, top, method="gradient")
    assert not torch.allclose(ours, plain, rtol=0.1, atol=1e-4 * float(plain.abs().max()))


@pytest.mark.slow
def test_captum_guided_backprop_misses_relu6(cat):
    """Captum 0.9.0's GuidedBackprop hooks only nn.ReLU, so on Lite0 (ReLU6) it returns the plain gradient."""
    from captum.attr import GuidedBackprop

    net, x = cat
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        theirs = GuidedBackprop(net.module).attribute(x.clone(), target=281)
    plain = attribute(net, x, 281, method="gradient")
    ours = attribute(net, x, 281, method="guided")
    assert_rel_close(theirs, plain, 1e-6)
    assert float((ours - theirs).abs().max()) > 0.1 * float(theirs.abs().max())


@pytest.mark.slow
@pytest.mark.parametrize("method", ["gradient", "guided", "deconv"])
def test_neuron_attribution_stays_in_its_receptive_field(cat, method):
    from convsight.receptive import receptive_field

    net, x = cat
    layer, y, xx = "blocks.3", 2, 5
    top, left, bottom, right = receptive_field(net, layer, input_size=(128, 128)).box(y, xx)
    a = attribute(net, x, f"{layer}:7@{y},{xx}", method=method).abs().sum(1)[0]
    inside = torch.zeros_like(a, dtype=torch.bool)
    inside[max(top, 0):bottom + 1, max(left, 0):right + 1] = True
    assert float(a[inside].sum()) > 0
    assert float(a[~inside].abs().max()) == 0.0
    assert (~inside).sum() > 0.5 * a.numel()  # the box is a small part of the image


def test_neuron_box_by_hand_on_a_small_model():
    """Two 3x3 convs (stride 2, then 1), both padded by 1: unit (y, x) of the second covers input
    rows 2y-3 .. 2y+3 (size 7 = 1 + 2 + 2*2, stride 2, padding 1 + 2*1 = 3)."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 4, 3, stride=2, padding=1), nn.ReLU(),
                          nn.Conv2d(4, 4, 3, padding=1), nn.ReLU6()).double()
    x = torch.randn(1, 3, 20, 20, dtype=torch.float64)
    for method in ("gradient", "guided", "deconv"):
        a = attribute(model, x, "2:1@4,6", method=method).abs().sum(1)[0]
        ys, xs = torch.nonzero(a, as_tuple=True)
        assert len(ys) > 0
        assert int(ys.min()) >= 2 * 4 - 3 and int(ys.max()) <= 2 * 4 + 3
        assert int(xs.min()) >= 2 * 6 - 3 and int(xs.max()) <= 2 * 6 + 3


# --- Grad-CAM ------------------------------------------------------------------------------------

@pytest.mark.slow
def test_gradcam_equals_captum_layer_gradcam():
    from captum.attr import LayerAttribution, LayerGradCam

    torch.manual_seed(0)
    model = torchvision.models.resnet18(weights=None).eval()
    x = torch.randn(2, 3, 64, 64)
    for layer in ("layer4", "layer3.1.conv2"):
        ours = attribute(model, x, [3, 7], method="gradcam", layer=layer)
        lgc = LayerGradCam(model, model.get_submodule(layer))
        theirs = LayerAttribution.interpolate(lgc.attribute(x, target=[3, 7], relu_attributions=True),
                                              (64, 64), "bilinear")
        assert ours.shape == (2, 1, 64, 64)
        assert_rel_close(ours, theirs, 1e-6)


@pytest.mark.slow
def test_gradcam_default_layer_and_guided_gradcam(cat):
    from convsight.attribute import default_gradcam_layer

    net, x = cat
    assert default_gradcam_layer(net, x) == "act1"
    cam = attribute(net, x, method="gradcam")
    assert cam.shape == (1, 1, 128, 128) and float(cam.min()) >= 0 and float(cam.max()) > 0
    explicit = attribute(net, x, method="gradcam", layer="act1")
    assert torch.equal(cam, explicit)
    gg = attribute(net, x, method="guided-gradcam", layer="act1")
    guided = attribute(net, x, method="guided")
    assert torch.allclose(gg, guided * cam, rtol=1e-6, atol=0)


def test_gradcam_rejects_layers_without_a_map(cat):
    net, x = cat
    with pytest.raises(convsight.UnitError, match="spatial map"):
        attribute(net, x, method="gradcam", layer="fc")
    with pytest.raises(convsight.UnknownLayerError, match="conv_hed"):
        attribute(net, x, method="gradcam", layer="conv_hed")


# --- SmoothGrad ----------------------------------------------------------------------------------

def _small():
    torch.manual_seed(2)
    return nn.Sequential(nn.Conv2d(3, 6, 3, padding=1), nn.ReLU(inplace=True), nn.Conv2d(6, 6, 3),
                         nn.ReLU6(), nn.Flatten(), nn.Linear(6 * 6 * 6, 4)).double().eval()


def test_smoothgrad_averages_gradients_at_noisy_copies():
    model = _small()
    x = torch.randn(2, 3, 8, 8, dtype=torch.float64)
    sg = attribute(model, x, [1, 2], method="smoothgrad", samples=5, noise=0.2, seed=7, batch_size=3)
    # the same noise, drawn as the docs say: per image sigma = noise * (max - min); image i draws
    # its 5 copies at once from its own generator seeded from (seed, i)
    from convsight.attribute.smoothgrad import _image_generator

    sigma = 0.2 * (x.flatten(1).amax(1) - x.flatten(1).amin(1))
    expected = torch.zeros_like(x)
    for i in range(2):
        eps = torch.randn((5, 3, 8, 8), generator=_image_generator(7, i)).double()
        for s in range(5):
            xi = (x[i] + eps[s] * sigma[i]).clone()[None].requires_grad_(True)
            (g,) = torch.autograd.grad(model(xi)[0, [1, 2][i]], xi)
            expected[i] += g[0] / 5
    assert_rel_close(sg, expected, 1e-10)
    assert not torch.allclose(sg, attribute(model, x, [1, 2]))
    again = attribute(model, x, [1, 2], method="smoothgrad", samples=5, noise=0.2, seed=7)
    assert torch.equal(sg, again)  # seeded: reproducible, whatever the batch size


def test_smoothgrad_without_noise_is_the_base_method():
    model = _small()
    x = torch.randn(2, 3, 8, 8, dtype=torch.float64)
    for base in ("gradient", "guided", "deconv"):
        sg = attribute(model, x, None, method="smoothgrad", samples=3, noise=0.0, base=base)
        assert_rel_close(sg, attribute(model, x, None, method=base), 1e-12)


# --- targets, shapes and bad input ---------------------------------------------------------------

def test_targets_default_single_image_and_per_image_list():
    model = _small()
    x = torch.randn(3, 3, 8, 8, dtype=torch.float64)
    with torch.no_grad():
        top = model(x).argmax(1).tolist()
    default = attribute(model, x)
    assert torch.equal(default, attribute(model, x, top))
    assert torch.equal(attribute(model, x[1]), default[1])  # (3, H, W) in, (3, H, W) out
    mixed = attribute(model, x, [None, "class:0", convsight.targets.parse_target("prob:3")])
    assert torch.equal(mixed[0], default[0])
    assert torch.equal(mixed[1], attribute(model, x[1:2], 0)[0])
    # prob target: d softmax_3 / dx = p3 * (dS3/dx - sum_k p_k dS_k/dx)
    with torch.no_grad():
        p = torch.softmax(model(x[2:3]), 1)[0]
    grads = [attribute(model, x[2:3], k)[0] for k in range(4)]
    expected = p[3] * (grads[3] - sum(p[k] * grads[k] for k in range(4)))
    assert_rel_close(mixed[2], expected, 1e-10)
    chunked = attribute(model, x, [None, "class:0", "prob:3"], method="guided", batch_size=2)
    assert torch.equal(chunked, attribute(model, x, [None, "class:0", "prob:3"], method="guided"))


def test_bad_input_gives_clear_errors():
    model = _small()
    x = torch.randn(2, 3, 8, 8, dtype=torch.float64)
    with pytest.raises(convsight.ConvsightError, match="valid methods are gradient, guided"):
        attribute(model, x, method="guidedbackprop")
    with pytest.raises(convsight.UnitError, match="2 targets for a batch of 3"):
        attribute(model, torch.randn(3, 3, 8, 8, dtype=torch.float64), [0, 1])
    with pytest.raises(convsight.UnitError, match="class 9 is out of range"):
        attribute(model, x, 9)
    with pytest.raises(convsight.ImageError, match="channels"):
        attribute(model, torch.randn(2, 1, 8, 8))
    with pytest.raises(convsight.ImageError, match="tensor"):
        attribute(model, [[1.0]])
    with pytest.raises(convsight.ConvsightError, match="takes no option layer"):
        attribute(model, x, method="guided", layer="0")
    with pytest.raises(convsight.ConvsightError, match="gate, gradient"):
        attribute(model, x, method="guided", others="ignore")
    with pytest.raises(convsight.ConvsightError, match="samples"):
        attribute(model, x, method="smoothgrad", samples=0)
