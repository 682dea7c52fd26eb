"""Traced receptive fields of real architectures against the gradient-support oracle and the
published numbers (Araujo, Norris & Sim, "Computing Receptive Fields of CNNs", Distill 2019). torchvision models have random weights (geometry only)."""

from __future__ import annotations

import pytest
import torch
import torchvision

import convsight

from .test_receptive_oracle import clip, linear_positive_copy, probe_boxes


def tv(name: str) -> torch.nn.Module:
    kwargs = dict(aux_logits=False, init_weights=False) if name == "inception_v3" else {}
    torch.manual_seed(0)
    return torchvision.models.get_model(name, weights=None, **kwargs).eval()


# (model, probe input size): the smallest sizes every layer still runs at, to keep the probe cheap
PROBED = [("alexnet", 96), ("vgg16", 32), ("resnet50", 32), ("inception_v3", 75),
          ("convnext_tiny", 32), ("efficientnet_b0", 32), ("efficientnet_lite0", 48)]


@pytest.mark.slow
@pytest.mark.parametrize("name,side", PROBED)
def test_every_layer_matches_gradient_probe(name, side, request):
    module = request.getfixturevalue("lite0").module if name == "efficientnet_lite0" else tv(name)
    size = (side, side)
    fields = convsight.receptive_fields(module, input_size=size)
    oracle = linear_positive_copy(module, torch.float32 if name in DEPTHWISE else torch.float64)
    shapes = {}
    with torch.no_grad():
        hooks = [oracle.get_submodule(n).register_forward_hook(
            lambda _m, _i, o, n=n: shapes.__setitem__(n, tuple(o.shape)) if isinstance(
                o, torch.Tensor) else None) for n in fields]
        oracle(torch.zeros(1, 3, *size, dtype=next(oracle.parameters()).dtype))
        for h in hooks:
            h.remove()
    layers = [n for n in fields if n in shapes and len(shapes[n]) in (2, 4)]
    assert len(layers) > 0.9 * len(fields)
    channels_last = frozenset(n for n in layers if _channels_last(module, n))
    probed = probe_boxes(oracle, layers, size, channels_last)
    for layer in layers:
        rf = fields[layer]
        assert rf.method == "trace", layer
        for unit, support in probed[layer]:
            assert support is not None, (layer, unit)
            assert clip(rf.box(*unit), size) == support, (layer, unit, rf)
        if len(shapes[layer]) == 2:
            assert rf.is_global, layer


def _channels_last(module, name: str) -> bool:
    """convnext's block internals between its two Permutes run channels-last (N, H, W, C)."""
    if ".block." not in name:
        return False
    owner, index = name.rsplit(".block.", 1)
    return type(module.get_submodule(owner)).__name__ == "CNBlock" and index in "12345"


DEPTHWISE = {"convnext_tiny", "efficientnet_b0", "efficientnet_lite0"}


UNCLIPPED = [("resnet50", ["layer1", "layer2"], 112), ("inception_v3", ["Mixed_5b"], 99),
             ("efficientnet_lite0", ["blocks.3", "blocks.5"], 112)]


@pytest.mark.slow
@pytest.mark.parametrize("name,layers,side", UNCLIPPED)
def test_deeper_layers_whole_box_inside_the_image(name, layers, side, request):
    """At a size where the centre unit's box lies inside the image, nothing is clipped: the
    probe's support is exactly the traced box (size, stride and padding all checked)."""
    module = request.getfixturevalue("lite0").module if name == "efficientnet_lite0" else tv(name)
    fields = convsight.receptive_fields(module, layers, input_size=(side, side))
    dtype = torch.float32 if name in DEPTHWISE else torch.float64
    probed = probe_boxes(linear_positive_copy(module, dtype), layers, (side, side))
    for layer in layers:
        (_, _), (centre, support), (_, _) = probed[layer]
        box = fields[layer].box(*centre)
        assert min(box) >= 0 and max(box) < side, (layer, box)
        assert support == box, (layer, centre, fields[layer])


PUBLISHED = [  # (model, layer, input side, size, stride, padding or None)
    ("alexnet", "features.0", 224, 11, 4, None),
    ("alexnet", "features.2", 224, 19, 8, None),
    ("alexnet", "features.12", 224, 195, 32, None),
    ("vgg16", "features.0", 224, 3, 1, 1),
    ("vgg16", "features.4", 224, 6, 2, 2),
    ("vgg16", "features.23", 224, 100, 16, 42),
    ("vgg16", "features.30", 224, 212, 32, 90),
    ("resnet50", "layer2", 224, 91, 8, None),
    ("resnet50", "layer3", 224, 267, 16, None),
    ("resnet50", "layer4", 224, 427, 32, None),
    ("inception_v3", "Mixed_5b", 299, 63, 8, 18),
    ("inception_v3", "Mixed_6a", 299, 159, 16, 58),
    ("inception_v3", "Mixed_6e", 299, 927, 16, 442),
    ("inception_v3", "Mixed_7c", 299, 1311, 32, 618),
    ("convnext_tiny", "features.5", 224, 1096, 16, None),
    ("convnext_tiny", "features.7", 224, 1688, 32, None),
]


@pytest.mark.parametrize("name,layer,side,size,stride,padding", PUBLISHED)
def test_published_numbers(name, layer, side, size, stride, padding):
    rf = convsight.receptive_field(tv(name), layer, input_size=(side, side))
    assert rf.size == (size, size) and rf.stride == (stride, stride) and not rf.is_global
    if padding is not None:
        assert rf.padding == (padding, padding)


def test_efficientnet_b0_is_global_after_first_squeeze_excitation():
    fields = convsight.receptive_fields(tv("efficientnet_b0"), ["features.0", "features.1.0.block.0",
                                                                "features.1.0.block.1", "features.1"])
    assert not fields["features.0"].is_global and not fields["features.1.0.block.0"].is_global
    assert fields["features.1.0.block.1"].is_global and fields["features.1"].is_global
    assert fields["features.1"].box(5, 7) == (0, 0, 223, 223)
