"""What a unit's score is measured against: the layers below it, the pixels its neuron sees.

Oracles: pixel-by-pixel deletion written out with NumPy, SciPy's Spearman correlation on the
cropped maps, the support of the gradient (where a neuron's map can be non-zero) and forward
passes read with ``capture``.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from scipy.stats import spearmanr
from torch import nn

import convsight
from convsight.capture import capture
from convsight.trust import faithfulness, randomized_copy, trust_score

from .test_trust import TwoQuadrants
from ..tinynets import tiny_net

pytestmark = pytest.mark.usefixtures("one_thread")

NEURON = "conv2:3@4,4"


def _brute_region_curve(model, x, scores, steps, klass, box):
    """Deletion inside ``box`` only, pixel by pixel (fractions of the box's pixels)."""
    top, left, bottom, right = box
    pixels = [(y, xx) for y in range(top, bottom + 1) for xx in range(left, right + 1)]
    order = sorted(pixels, key=lambda p: (-float(scores[p]), p[0] * x.shape[-1] + p[1]))
    out, xs = [], []
    for k in range(steps + 1):
        count = k * len(pixels) // steps
        a = x.numpy().copy()
        for y, xx in order[:count]:
            a[:, y, xx] = 0.0
        with torch.no_grad():
            out.append(float(F.softmax(model(torch.from_numpy(a)[None]), 1)[0, klass]))
        xs.append(count / len(pixels))
    return np.array(out), float(np.trapezoid(out, xs))


def test_faithfulness_in_a_region_equals_brute_force():
    model = TwoQuadrants()
    x = torch.rand(2, 3, 8, 8) * 2
    scores = torch.rand(2, 1, 8, 8)
    boxes = [(0, 1, 4, 3), (2, 2, 7, 7)]  # 15 and 36 pixels: fractions differ per image
    res = faithfulness(model, x, scores, target="class:0", steps=6, region=boxes,
                       return_curves=True)
    assert res.fractions.shape == (2, 7)
    for i, box in enumerate(boxes):
        curve, auc = _brute_region_curve(model, x[i], scores[i, 0], 6, 0, box)
        assert np.allclose(res.curves[i].numpy(), curve, atol=1e-6)
        assert abs(float(res.auc[i]) - auc) < 1e-6
    # None for an image: the whole image, as without a region
    whole = faithfulness(model, x, scores, target="class:0", steps=6, region=[None, boxes[1]])
    assert torch.allclose(whole[0], faithfulness(model, x[:1], scores[:1], "class:0", steps=6))


@pytest.mark.parametrize("region, message", [([(0, 0, 3, 3)], "one box"),
                                             ([(0, 0, 3, 3), (5, 0, 8, 3)], "inside the 8x8"),
                                             ([(3, 0, 1, 3), None], "top <= bottom")])
def test_bad_regions_are_refused(region, message):
    x = torch.rand(2, 3, 8, 8)
    with pytest.raises(convsight.ConvsightError, match=message):
        faithfulness(TwoQuadrants(), x, torch.rand(2, 1, 8, 8), 0, steps=2, region=region)


def test_the_top_layer_of_a_unit_is_the_last_one_below_it():
    net = convsight.Network(tiny_net(), input_size=(32, 32))
    x = torch.rand(1, 3, 32, 32)
    # why: the layers above a unit cannot change its map
    base = convsight.attribute(net, x, NEURON, method="gradient")
    above = convsight.attribute(randomized_copy(net, x, ["fc", "conv3"]), x, NEURON,
                                method="gradient")
    own = convsight.attribute(randomized_copy(net, x, ["conv2"]), x, NEURON, method="gradient")
    assert torch.equal(base, above) and not torch.allclose(base, own)
    with warnings.catch_warnings():  # a unit may be negative here: NaN curves, a warning
        warnings.simplefilter("ignore")
        tops = {t: trust_score(net, x, t, "gradient", steps=2).top_layer
                for t in (NEURON, "conv3:2", "class:1", "conv1:0@3,3", "act3:2")}
    assert tops == {NEURON: "conv2", "conv3:2": "conv3", "class:1": "fc",
                    "conv1:0@3,3": "conv1", "act3:2": "conv3"}  # act3: the layer below


def _blocks() -> convsight.Network:
    torch.manual_seed(1)
    module = nn.Sequential(nn.Sequential(nn.Conv2d(3, 6, 3, padding=1), nn.BatchNorm2d(6)),
                           nn.ReLU(),
                           nn.Sequential(nn.Conv2d(6, 6, 3, padding=1), nn.BatchNorm2d(6)),
                           nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(6, 3)).eval()
    with torch.no_grad():
        for bn in (module[0][1], module[2][1]):
            bn.running_mean.uniform_(-0.5, 0.5)
            bn.running_var.uniform_(0.5, 2.0)
            bn.weight.uniform_(0.5, 1.5)
    return convsight.Network(module, input_size=(16, 16))


def test_a_unit_s_top_layer_is_its_whole_block():
    """A batch norm that ends a block only rescales the unit's channel: randomised alone, the
    map's ranks stay exactly as they were, so the top step is the unit's whole block."""
    net, x, unit = _blocks(), torch.rand(1, 3, 16, 16), "2:1@8,8"
    top, left, bottom, right = convsight.receptive_field(net, "2").clipped_box(8, 8)

    def ranked(model):
        m = convsight.attribute(model, x, unit, method="gradient")[0].abs().sum(0)
        return m[top:bottom + 1, left:right + 1].flatten().numpy()

    base = ranked(net)
    assert spearmanr(base, ranked(randomized_copy(net, x, ["2.1"]))).statistic > 0.99999
    s = trust_score(net, x, unit, "gradient", steps=3)
    assert s.top_layer == "2"
    block = spearmanr(base, ranked(randomized_copy(net, x, ["2.0", "2.1"]))).statistic
    assert abs(float(s.top_layer_correlation[0]) - block) < 1e-5 and block < 0.9


def test_a_neuron_is_scored_within_its_receptive_field():
    net = convsight.Network(tiny_net(), input_size=(32, 32))
    x = torch.rand(1, 3, 32, 32)
    top, left, bottom, right = convsight.receptive_field(net, "conv2").clipped_box(4, 4)
    attr = convsight.attribute(net, x, NEURON, method="guided")[0].abs().sum(0)
    support = attr.nonzero()
    assert support[:, 0].min() >= top and support[:, 0].max() <= bottom
    assert support[:, 1].min() >= left and support[:, 1].max() <= right
    s = trust_score(net, x, NEURON, "guided", steps=4)
    # rank correlations on the receptive field's pixels, by SciPy
    for layers, measured in ((["conv2"], s.top_layer_correlation),
                             (None, s.randomized_correlation)):
        other = convsight.attribute(randomized_copy(net, x, layers), x, NEURON, method="guided")
        a = attr[top:bottom + 1, left:right + 1].flatten().numpy()
        b = other[0].abs().sum(0)[top:bottom + 1, left:right + 1].flatten().numpy()
        assert abs(float(measured[0]) - spearmanr(a, b).statistic) < 1e-5
    # deletion's last point: every pixel of the box replaced by 0, the neuron over its value
    d = s.curves["deletion"]
    gone = x.clone()
    gone[..., top:bottom + 1, left:right + 1] = 0.0
    with torch.no_grad(), capture(net.module, ["conv2"]) as acts:
        net.module(torch.cat([x, gone]))
    values = acts["conv2"][:, 3, 4, 4]
    assert values[0] > 0
    assert abs(float(d.curves[0, -1]) - float(values[1] / values[0])) < 1e-5
    assert float(d.fractions[-1]) == 1.0 and float(d.fractions[1]) < 0.3
