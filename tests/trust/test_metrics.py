"""convsight.metric and convsight.evaluate: errors, batching, the table. (Peers: test_metrics_peers.)"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

import convsight
from convsight.errors import ConvsightError

from ..tinynets import tiny_net

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture
def setup():
    torch.manual_seed(0)
    return tiny_net(), torch.randn(2, 3, 24, 24), torch.rand(2, 1, 24, 24)


@pytest.mark.parametrize("call,message", [
    (lambda n, x, a: convsight.metric("sparsenes", n, x, a), "unknown metric 'sparsenes'.*"
                                                             "Did you mean: sparseness"),
    (lambda n, x, a: convsight.metric("pointing_game", n, x, a, box=(0, 0, 30, 5)),
     r"box \(0, 0, 30, 5\) of image 0 is not inside the 24x24 image"),
    (lambda n, x, a: convsight.metric("relevance_mass", n, x, a, box=[(0, 0, 3, 3)]),
     "one box for all images or one per image: got 1 for 2"),
    (lambda n, x, a: convsight.metric("relevance_mass", n, x, a,
                                      mask=torch.ones(2, 20, 24, dtype=torch.bool)),
     r"mask of shape \(2, 20, 24\) does not fit 2 image\(s\) of 24x24"),
    (lambda n, x, a: convsight.metric("pointing_game", n, x, a),
     "need a box=.* or a mask="),
    (lambda n, x, a: convsight.metric("sparseness", n, x, a, steps=10),
     "metric sparseness takes no setting steps; its settings are none"),
    (lambda n, x, a: convsight.metric("road", n, x, a, radius=0.1),
     "metric road takes no setting radius; its settings are percentages, order"),
    (lambda n, x, a: convsight.metric("max_sensitivity", n, x, a),
     "metric max_sensitivity explains again: give method="),
    (lambda n, x, a: convsight.metric("road", n, x, a, order="best"), "unknown ROAD order"),
    (lambda n, x, a: convsight.metric("road", n, x, a, percentages=[120]), "between 0 and 100"),
    (lambda n, x, a: convsight.metric("infidelity", n, x, a, samples=0), "positive integer"),
    (lambda n, x, a: convsight.metric("infidelity", n, x, a, samples=2,
                                      noise=torch.zeros(3, 2, 3, 24, 24)), "noise must be"),
    (lambda n, x, a: convsight.metric("road", n, x, a, "conv3:1"), "needs class targets"),
    (lambda n, x, a: convsight.metric("complexity", n, x, a[:, :, :5]),
     "do not match the images"),
    (lambda n, x, a: convsight.evaluate(n, x, metrics=("road",), steps=3),
     "evaluate takes settings per metric"),
])
def test_clear_one_line_errors(setup, call, message):
    with pytest.raises(ConvsightError, match=message) as info:
        call(*setup)
    assert "\n" not in str(info.value)


def test_batch_size_and_copies_do_not_change_values(setup):
    net, x, a = setup
    grad = convsight.attribute(net, x, method="gradient")
    for name, kw in (("road", {"percentages": [30, 70]}),
                     ("infidelity", {"samples": 3}),
                     ("max_sensitivity", {"samples": 3, "method": "gradient"})):
        one = convsight.metric(name, net, x, grad, batch_size=1, **kw)
        many = convsight.metric(name, net, x, grad, batch_size=7, **kw)
        np.testing.assert_allclose(one.numpy(), many.numpy(), rtol=1e-5, atol=1e-7)


def test_road_combined_is_lerf_minus_morf(setup):
    net, x, a = setup
    kw = dict(percentages=[25, 50, 75], noise=0.0)
    morf = convsight.metric("road", net, x, a, order="morf", **kw)
    lerf = convsight.metric("road", net, x, a, order="lerf", **kw)
    both = convsight.metric("road", net, x, a, **kw)
    np.testing.assert_allclose(both.numpy(), (lerf - morf).numpy(), atol=1e-6)
    # the top-class probability after imputation, by hand for one point: image 0, 50 %, MoRF
    from convsight.trust.road import imputation
    img = x[0].double().numpy()
    order = torch.argsort(a[0, 0].flatten(), descending=True, stable=True).numpy()
    gone = order[:int(24 * 24 * 0.5)]
    flat = img.reshape(3, -1).copy()
    flat[:, gone] = imputation(img, gone)
    top = int(net.eval()(x[:1]).argmax())
    with torch.no_grad():
        prob = torch.softmax(net(torch.from_numpy(flat.reshape(1, 3, 24, 24)).float()),
                             1)[0, top]
    curve = convsight.trust.road_curves(net, x[:1], a[:1], percentages=[50], noise=0.0)
    assert float(curve[0, 0]) == pytest.approx(float(prob), abs=1e-6)


def test_sparseness_and_complexity_extremes(setup):
    net, x, _ = setup
    one_hot = torch.zeros(2, 1, 24, 24)
    one_hot[:, 0, 3, 4] = 2.0
    flat = torch.ones(2, 1, 24, 24)
    # Gini of one non-zero value among n: 1 - 1/n
    assert convsight.metric("sparseness", net, x, one_hot).tolist() == pytest.approx(
        [1 - 1 / 576] * 2, abs=1e-4)  # (Quantus's 1e-7 added to every value)
    assert convsight.metric("sparseness", net, x, flat).tolist() == pytest.approx([0, 0],
                                                                                    abs=1e-6)
    assert convsight.metric("complexity", net, x, one_hot).tolist() == pytest.approx([0, 0],
                                                                                       abs=1e-6)
    assert convsight.metric("complexity", net, x, flat).tolist() == pytest.approx(
        [math.log(24 * 24)] * 2, rel=1e-6)


def test_evaluate_table(setup):
    net, x, _ = setup
    card = convsight.evaluate(net, x, methods=("gradient", "gradcam"),
                              metrics=("sparseness", "pointing_game", "max_sensitivity"),
                              box=(0, 0, 11, 11), max_sensitivity={"samples": 2})
    assert card.array("sparseness").shape == (2, 2)
    grad = convsight.attribute(net, x, method="gradient").abs()
    np.testing.assert_allclose(card.array("sparseness")[0],
                               convsight.metric("sparseness", net, x, grad).numpy(), rtol=1e-6)
    rows = card.rows
    assert [r["method"] for r in rows] == ["gradient", "Grad-CAM", "random map"]
    assert math.isnan(rows[2]["max_sensitivity"])  # no random map for a metric that explains
    md = card.to_markdown()
    assert md.splitlines()[0].startswith("| method | sparseness ↑ | pointing_game ↑ |")
    assert "n/a" in md and "<td>" in card.to_html()
    pic = card.figure()
    assert pic.ndim == 3 and pic.shape[1] > 300
    assert card._repr_png_().startswith(b"\x89PNG")


def test_evaluate_reads_road_direction_from_its_order(setup):
    net, x, _ = setup
    card = convsight.evaluate(net, x, methods=("gradcam",), metrics=("road",),
                              road={"percentages": [50], "order": "morf"})
    assert card.to_markdown().splitlines()[0] == "| method | road ↓ |"
    assert convsight.evaluate(net, x, methods=("gradcam",), metrics=("road",),
                              road={"percentages": [50]}).better("road")
