"""Faithfulness (deletion, insertion), randomisation and similarity, against independent oracles."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from scipy.stats import spearmanr
from torch import nn

import convsight
from convsight.images import gaussian_blur
from convsight.trust import (faithfulness, randomization_steps, randomized_copy, sanity_check,
                             trust_score)
from convsight.trust.similarity import Reference, spearman

from ..tinynets import tiny_net

pytestmark = pytest.mark.usefixtures("one_thread")  # small passes: one thread is fastest


class TwoQuadrants(nn.Module):
    """Logits (a * top-left sum, a * bottom-right sum, 0): a class reads one quadrant."""

    def forward(self, x):
        h, w = x.shape[-2] // 2, x.shape[-1] // 2
        tl, br = x[:, :, :h, :w].sum((1, 2, 3)), x[:, :, h:, w:].sum((1, 2, 3))
        return torch.stack([0.1 * tl, 0.1 * br, torch.zeros_like(tl)], dim=1)


def _brute_curve(model, x, scores, kind, steps, klass, fill):
    """Deletion/insertion written out pixel by pixel with NumPy (no convsight)."""
    _, _, h, w = x.shape
    order = sorted(range(h * w), key=lambda p: (-float(scores.flatten()[p]), p))
    out = []
    for k in range(steps + 1):
        chosen = order[:k * h * w // steps]
        a = x[0].numpy().copy() if kind == "deletion" else fill[0].numpy().copy()
        b = fill[0].numpy() if kind == "deletion" else x[0].numpy()
        for p in chosen:
            a[:, p // w, p % w] = b[:, p // w, p % w]
        with torch.no_grad():
            out.append(float(F.softmax(model(torch.from_numpy(a)[None]), 1)[0, klass]))
    xs = np.array([k * h * w // steps for k in range(steps + 1)]) / (h * w)
    return np.array(out), float(np.trapezoid(out, xs))


@pytest.mark.parametrize("kind", ["deletion", "insertion"])
def test_faithfulness_equals_brute_force(kind):
    model = TwoQuadrants()
    x = torch.rand(1, 3, 6, 8) * 2
    scores = torch.rand(1, 3, 6, 8)
    fill = torch.zeros_like(x) if kind == "deletion" else gaussian_blur(x)
    res = faithfulness(model, x, scores, target="class:0", kind=kind, steps=7, batch_size=3,
                       return_curves=True)
    curve, auc = _brute_curve(model, x, scores.sum(1), kind, 7, 0, fill)
    assert np.allclose(res.curves[0].numpy(), curve, atol=1e-6)
    assert abs(float(res.auc[0]) - auc) < 1e-6
    assert torch.allclose(faithfulness(model, x, scores, 0, kind=kind, steps=7), res.auc)


def test_a_map_of_the_quadrant_beats_its_inverse():
    model = convsight.Network(TwoQuadrants(), input_size=(8, 8))
    x = torch.rand(2, 3, 8, 8) + 1
    good = torch.zeros(2, 1, 8, 8)
    good[:, :, :4, :4] = 1  # the pixels class 0 reads
    good_del = faithfulness(model, x, good, 0, kind="deletion", steps=16)
    bad_del = faithfulness(model, x, 1 - good, 0, kind="deletion", steps=16)
    # (blurring keeps a quadrant's sum here, so insertion starts from the mean colour instead)
    good_ins = faithfulness(model, x, good, 0, kind="insertion", steps=16, baseline=0.0)
    bad_ins = faithfulness(model, x, 1 - good, 0, kind="insertion", steps=16, baseline=0.0)
    assert (good_del < bad_del).all() and (good_ins > bad_ins).all()


def test_curve_ends_and_units():
    model = convsight.Network(TwoQuadrants(), input_size=(8, 8))
    x = torch.rand(1, 3, 8, 8) + 1
    a = torch.rand(1, 3, 8, 8)
    with torch.no_grad():
        p = F.softmax(model(x), 1)[0, 1]
        p_mean = F.softmax(model(torch.zeros_like(x)), 1)[0, 1]
        p_blur = F.softmax(model(gaussian_blur(x)), 1)[0, 1]
    d = faithfulness(model, x, a, "class:1", steps=5, return_curves=True)
    i = faithfulness(model, x, a, "prob:1", kind="insertion", steps=5, return_curves=True)
    assert torch.isclose(d.curves[0, 0], p) and torch.isclose(d.curves[0, -1], p_mean)
    assert torch.isclose(i.curves[0, 0], p_blur) and torch.isclose(i.curves[0, -1], p)
    assert d.fractions[0] == 0 and d.fractions[-1] == 1 and d.relative == [False]
    # no target: the top class, as a probability
    top = faithfulness(model, x, a, None, steps=5, return_curves=True)
    assert str(top.targets[0]) == f"prob:{int(model(x).argmax())}"
    # a unit: relative to its value on the intact image
    net = convsight.Network(tiny_net().eval(), input_size=(16, 16))
    xs = torch.rand(1, 3, 16, 16)
    with torch.no_grad():
        means = net.module.conv3(net.module.pool(F.relu(net.module.conv2(net.module.relu(
            net.module.bn1(net.module.conv1(xs))))))).mean((2, 3))[0]
    pos, neg = int(means.argmax()), int(means.argmin())
    assert means[pos] > 0 > means[neg]
    u = faithfulness(net, xs, torch.rand(1, 1, 16, 16), f"conv3:{pos}", steps=4,
                     return_curves=True)
    assert u.relative == [True] and torch.isclose(u.curves[0, 0], torch.tensor(1.0))
    with pytest.warns(UserWarning, match="not positive on the intact image"):
        bad = faithfulness(net, xs, torch.rand(1, 1, 16, 16), f"conv3:{neg}", steps=4)
    assert torch.isnan(bad).all()


def test_faithfulness_errors():
    model = convsight.Network(TwoQuadrants(), input_size=(8, 8))
    x = torch.rand(2, 3, 8, 8)
    for bad in (torch.rand(2, 3, 8, 7), torch.rand(1, 3, 8, 8), torch.rand(2, 2, 8, 8)):
        with pytest.raises(convsight.ConvsightError, match="do not match the images"):
            faithfulness(model, x, bad)
    with pytest.raises(convsight.ConvsightError, match="unknown faithfulness kind"):
        faithfulness(model, x, torch.rand(2, 1, 8, 8), kind="removal")
    with pytest.raises(convsight.ConvsightError, match="steps must be a positive integer"):
        faithfulness(model, x, torch.rand(2, 1, 8, 8), steps=0)


def test_spearman_equals_scipy_with_ties():
    gen = torch.Generator().manual_seed(0)
    a = torch.randint(0, 5, (3, 200), generator=gen).float()  # many ties
    b = a + torch.randint(0, 4, (3, 200), generator=gen).float()
    ours = spearman(a, b)
    for i in range(3):
        assert abs(float(ours[i]) - spearmanr(a[i].numpy(), b[i].numpy()).statistic) < 1e-12
    assert torch.isnan(spearman(torch.zeros(1, 5), torch.rand(1, 5))).all()


def test_reference_of_a_map_with_itself_is_one():
    maps = torch.randn(2, 3, 32, 32)
    scores, _ = Reference(maps).compare(maps.clone())
    for name, v in scores.items():
        assert torch.allclose(v, torch.ones(2), atol=1e-6), name


def test_randomization_steps_order_and_groups():
    net = convsight.Network(tiny_net(), input_size=(16, 16))
    x = torch.rand(1, 3, 16, 16)
    steps = randomization_steps(net, x, "layer")
    assert [s for s, _ in steps] == ["fc", "conv3", "conv2", "bn1", "conv1"]
    seq = nn.Sequential(nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.ReLU()),
                        nn.Sequential(nn.Conv2d(4, 4, 3), nn.ReLU()), nn.Flatten(),
                        nn.LazyLinear(2) if False else nn.Linear(4 * 12 * 12, 2))
    blocks = randomization_steps(seq, x, "block")
    assert blocks == [("3", ["3"]), ("1", ["1.0"]), ("0", ["0.0", "0.1"])]
    assert randomization_steps(seq, x, "all") == [("all layers", ["0.0", "0.1", "1.0", "3"])]
    assert [s for s, _ in randomization_steps(seq, x, lambda n: n[0])] == ["3", "1", "0"]
    with pytest.raises(convsight.ConvsightError, match="unknown layer grouping"):
        randomization_steps(seq, x, "stage")


def test_randomized_copy_is_seeded_and_leaves_the_original():
    module = tiny_net()
    net = convsight.Network(module, input_size=(16, 16))
    x = torch.rand(1, 3, 16, 16)
    before = {k: v.clone() for k, v in module.state_dict().items()}
    state = torch.random.get_rng_state()
    a = randomized_copy(net, x, seed=1)
    assert torch.equal(state, torch.random.get_rng_state())  # global random state untouched
    b = randomized_copy(net, x, ["conv2", "fc"], seed=1)
    for k, v in module.state_dict().items():
        assert torch.equal(v, before[k])
    for name in ("conv2.weight", "fc.weight", "conv1.weight"):
        assert not torch.equal(a.module.state_dict()[name], before[name])
    # a layer gets the same random weights whichever set of layers is randomised with it
    assert torch.equal(a.module.conv2.weight, b.module.conv2.weight)
    assert torch.equal(b.module.conv1.weight, module.conv1.weight)
    assert not torch.equal(randomized_copy(net, x, seed=2).module.fc.weight, a.module.fc.weight)


def test_sanity_check_of_a_linear_model_against_scipy():
    """f(x) = w . x: its gradient is w, so after randomising w the rank correlation is the one of
    |w| and |w'|, which scipy computes from the weights alone."""
    torch.manual_seed(0)
    module = nn.Sequential(nn.Flatten(), nn.Linear(3 * 8 * 8, 4))
    net = convsight.Network(module, input_size=(8, 8))
    x = torch.rand(2, 3, 8, 8)
    rep = sanity_check(net, x, "class:2", methods=("gradient",), progress=False)
    assert rep.layers == ["1"] and rep.spearman_abs["gradient"].shape == (2, 2)
    assert torch.equal(rep.spearman_abs["gradient"][0], torch.ones(2))
    w = module[1].weight[2].detach().view(3, 8, 8)
    w2 = randomized_copy(net, x, ["1"]).module[1].weight[2].detach().view(3, 8, 8)
    expected = spearmanr(w.abs().sum(0).flatten(), w2.abs().sum(0).flatten()).statistic
    assert torch.allclose(rep.spearman_abs["gradient"][1], torch.tensor(expected).float(),
                          atol=1e-6)
    expected_signed = spearmanr(w.sum(0).flatten(), w2.sum(0).flatten()).statistic
    assert abs(float(rep.spearman["gradient"][1, 0]) - expected_signed) < 1e-6


def test_cascading_and_independent_modes():
    module = tiny_net()
    net = convsight.Network(module, input_size=(16, 16))
    x = torch.rand(2, 3, 16, 16)
    methods = ("gradient", "guided", "gradcam")
    casc = sanity_check(net, x, None, methods=methods, seed=3, progress=False)
    indep = sanity_check(net, x, None, methods=methods, mode="independent", seed=3,
                         progress=False)
    n_steps = len(casc.layers) + 1
    for rep in (casc, indep):
        for m in methods:
            for measure in ("spearman", "spearman_abs", "ssim", "hog"):
                v = rep.measure(measure)[m]
                assert v.shape == (n_steps, 2) and torch.equal(v[0], torch.ones(2))
    # the first step is the same in both modes (only the top layer randomised)
    assert torch.allclose(casc.spearman_abs["guided"][1], indep.spearman_abs["guided"][1],
                          equal_nan=True)
    # the end of the cascade is the fully randomised copy; an independent step is one layer alone
    full = trust_score(net, x, None, "gradient", steps=4, seed=3)
    assert torch.allclose(casc.spearman_abs["gradient"][-1], full.randomized_correlation,
                          atol=1e-6)
    assert torch.allclose(indep.spearman_abs["gradient"][1], full.top_layer_correlation,
                          atol=1e-6)
    fig = casc.figure(image=1, tile=32)
    assert fig.ndim == 3 and fig.shape[1] > 32 * (n_steps + 1)


def test_sanity_check_errors():
    net = convsight.Network(tiny_net(), input_size=(16, 16))
    x = torch.rand(1, 3, 16, 16)
    with pytest.raises(convsight.ConvsightError, match="unknown method 'guidded'.*guided"):
        sanity_check(net, x, methods=("guidded",), progress=False)
    with pytest.raises(convsight.ConvsightError, match="unknown randomisation mode"):
        sanity_check(net, x, mode="cascade", progress=False)
    with pytest.raises(convsight.ConvsightError, match="options given for methods not checked"):
        sanity_check(net, x, methods=("gradient",), options={"occlusion": {}}, progress=False)


def test_trust_score_fields_and_verdicts():
    net = convsight.Network(tiny_net(), input_size=(16, 16))
    x = torch.rand(2, 3, 16, 16)
    for method, opts in (("gradcam", {}), ("occlusion", {"window": 8, "stride": 4}),
                         ("guided", {})):
        s = trust_score(net, x, [1, 2], method, steps=5, options=opts)
        for v in (s.deletion, s.insertion, s.random_deletion, s.random_insertion,
                  s.top_layer_correlation, s.randomized_correlation):
            assert v.shape == (2,)
        assert s.top_layer == "fc" and len(s.verdicts()) == 2
        assert s.curves["deletion"].curves.shape == (2, 6)
        summary = json.loads(json.dumps(s.summary(1)))
        assert summary["method"] == method and summary["target"] == "class:2"
        assert summary["deletion"] == float(s.deletion[1]) and summary["verdict"] == s.verdict(1)
        assert s.random_curves["insertion"].shape == (2, 6)


def test_check_table_and_pictures():
    net = convsight.Network(tiny_net(), input_size=(32, 32))
    x = torch.rand(3, 32, 32)
    result = convsight.trust.check(net, x, "class:3", methods=("gradient", "occlusion", "gradcam"),
                                   steps=4, group="all", progress=False)
    assert result.sanity.methods == ("gradient", "gradcam")  # occlusion is scored, not drawn
    table = result.table()
    for title in ("gradient", "occlusion", "Grad-CAM", "rho top", "(fc)"):
        assert title in table
    rows = result.rows()
    assert [r["method"] for r in rows] == ["gradient", "occlusion", "gradcam"]
    assert all(np.isfinite(r["deletion"]) and r["verdict"] for r in rows)
    curves = result.curves_figure(size=(200, 150))
    assert curves.shape[0] > 3 * 150 and curves.shape[1] > 2 * 200
    with pytest.raises(convsight.ConvsightError, match="one image"):
        convsight.trust.check(net, torch.rand(2, 3, 32, 32), progress=False)


def test_smoothgrad_is_seeded_inside_the_checks():
    """The trained and the randomised maps share their noise: row 0 of a check of the same model
    twice gives identical maps, and a fixed seed gives the same report."""
    net = convsight.Network(tiny_net(), input_size=(24, 24))
    x = torch.rand(1, 3, 24, 24)
    a = sanity_check(net, x, 1, methods=("smoothgrad",), group="all", progress=False,
                     options={"smoothgrad": {"samples": 3}})
    b = sanity_check(net, x, 1, methods=("smoothgrad",), group="all", progress=False,
                     options={"smoothgrad": {"samples": 3}})
    assert torch.equal(a.spearman_abs["smoothgrad"], b.spearman_abs["smoothgrad"])
    assert torch.equal(a.pictures["smoothgrad"], b.pictures["smoothgrad"])


def test_default_model_guided_ignores_the_classifier_weights(lite0, photos):
    """Adebayo et al.'s finding on EfficientNet-Lite0 (the cat, 128 px): with the classifier
    re-initialised, guided backprop's map keeps its rank order, the gradient's does not."""
    net = convsight.Network(lite0.module, mean=lite0.mean, std=lite0.std, input_size=(128, 128))
    x = net.preprocess(photos["chelsea"])
    rep = sanity_check(net, x, 281, methods=("gradient", "guided"),
                       group=lambda name: "classifier" if name == "fc" else "features",
                       progress=False)
    assert rep.layers == ["classifier", "features"]
    assert float(rep.spearman_abs["guided"][1, 0]) > 0.95
    assert float(rep.spearman_abs["gradient"][1, 0]) < 0.7
