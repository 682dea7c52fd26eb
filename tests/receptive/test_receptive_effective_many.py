"""The fast effective boxes (crops of the field, shared forward passes, batched backward passes)
against the plain definition: one image, one unit, one gradient, written out here."""

from __future__ import annotations

import copy

import pytest
import torch

import convsight
from convsight.efficientnet_lite import EfficientNetLite0
from convsight.models import as_network
from convsight.receptive.effective import smallest_box
from convsight.receptive.effective_many import _Crops, _cropped_masses, hit_boxes

from .test_receptive_local import GatedNet
from ..tinynets import tiny_net


def per_hit(model, layer, images, hits, q, field):
    """The definition, one hit at a time: the gradient of the unit on its whole image."""
    model = copy.deepcopy(model).eval()
    module = dict(model.named_modules())[layer]
    masses, boxes = [], []
    for image_id, c, y, x in hits:
        xi = images[image_id][None].clone().requires_grad_(True)
        acts = []
        handle = module.register_forward_hook(lambda _m, _i, o: acts.append(o))
        model(xi)
        handle.remove()
        (g,) = torch.autograd.grad(acts[-1][0, c, y, x], xi)
        mass = g[0].abs().sum(0)
        top, left, bottom, right = field.clipped_box(y, x)
        t, l, b, r = smallest_box(mass[top:bottom + 1, left:right + 1], q)
        masses.append(mass)
        boxes.append((top + t, left + l, top + b, left + r))
    return masses, boxes


def lite(size):
    torch.manual_seed(3)
    model = EfficientNetLite0().eval()
    with torch.no_grad():  # running statistics as trained weights have them, not 0 and 1
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-0.2, 0.2)
                m.running_var.uniform_(0.5, 2.0)
    return model


def spread_hits(field, images, channels, seed=0):
    """Hits at the corners, on the edges and inside, several per image, unevenly."""
    rows, cols = field.grid
    spots = [(0, 0), (0, cols - 1), (rows - 1, 0), (rows - 1, cols - 1), (rows // 2, cols // 2),
             (0, cols // 2), (rows // 2, 0), (rows - 1, cols // 3), (rows // 3, cols - 1)]
    g = torch.Generator().manual_seed(seed)
    hits = []
    for n, (y, x) in enumerate(spots * 2):
        image_id = [0, 0, 0, 1, 2, 0, 3, 1][n % 8]
        hits.append((image_id % len(images), int(torch.randint(channels, (1,), generator=g)), y, x))
    return hits


@pytest.mark.parametrize("model, layer, size", [
    (tiny_net(), "conv3", (32, 32)),
    (tiny_net(), "conv2", (30, 27)),       # a size that is no multiple of the stride
    (lite(None), "blocks.2", (100, 90)),   # TF "same" padding, asymmetric at stride 2
    (lite(None), "blocks.4", (128, 128)),
])
def test_crops_give_the_gradient_of_the_whole_image_and_the_same_boxes(model, layer, size):
    net = as_network(model)
    field = convsight.receptive_field(net, layer, size)
    torch.manual_seed(1)
    images = torch.randn(4, 3, *size)
    hits = spread_hits(field, images, 8)  # every layer here has at least 8 channels
    crops = _Crops(net, layer, field, size)
    assert all(crops.window(h) is not None for h in hits)  # this test is about the crop path
    masses, boxes = per_hit(model, layer, images, hits, 0.5, field)
    cropped = {}
    for i, (image_id, *_u) in enumerate(hits):
        cropped.setdefault(image_id, []).append(i)
    seen = 0
    for done in _cropped_masses(net, layer, lambda k: images[k], hits, cropped, crops, 2):
        for i, mass, (r0, c0) in done:
            whole = masses[i]
            h, w = mass.shape
            torch.testing.assert_close(mass, whole[r0:r0 + h, c0:c0 + w], rtol=1e-4, atol=1e-6)
            outside = whole.clone()
            outside[r0:r0 + h, c0:c0 + w] = 0
            assert float(outside.abs().max()) == 0  # nothing left out of the crop
            seen += 1
    assert seen == len(hits)
    for q in (0.3, 0.5, 0.9, 1.0):
        expected = per_hit(model, layer, images, hits, q, field)[1] if q != 0.5 else boxes
        assert hit_boxes(net, layer, lambda k: images[k], hits, q, field, batch_size=2) == expected


@pytest.mark.parametrize("batch_size", [1, 2, 8])
def test_shared_forward_passes_give_the_same_boxes(batch_size):
    """A field the crops cannot take (gates, global context): one forward pass per image, one
    backward pass per round; batch sizes that force leftovers to come back in a later batch."""
    torch.manual_seed(0)
    model = GatedNet().eval()
    net = as_network(model)
    layer, size = "split", (48, 48)
    field = convsight.receptive_field(net, layer, size, context="local")
    images = torch.randn(4, 3, *size)
    hits = spread_hits(field, images, 16, seed=2)
    assert all(_Crops(net, layer, field, size).window(h) is None for h in hits)
    for q in (0.5, 1.0):
        expected = per_hit(model, layer, images, hits, q, field)[1]
        assert hit_boxes(net, layer, lambda k: images[k], hits, q, field, batch_size) == expected


def test_large_fields_share_forward_passes_and_small_ones_take_crops_in_one_call():
    model = lite(None)
    net = as_network(model)
    layer, size = "blocks.6", (96, 96)  # a 115 px field: whole images inside, crops in corners
    field = convsight.receptive_field(net, layer, size)
    images = torch.randn(3, 3, *size)
    hits = spread_hits(field, images, 40, seed=4)
    windows = [_Crops(net, layer, field, size).window(h) for h in hits]
    assert any(w is None for w in windows) and any(w is not None for w in windows)
    expected = per_hit(model, layer, images, hits, 0.5, field)[1]
    assert hit_boxes(net, layer, lambda k: images[k], hits, 0.5, field, batch_size=2) == expected
