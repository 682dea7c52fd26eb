"""The method registry: a method registered at run time is everywhere, without further edits.

A toy method, input x gradient (Shrikumar et al. 2016), is registered by the ``toy`` fixture (and
removed afterwards). It must then answer ``convsight.attribute``, be offered by the CLI, drawn
in the attribution figure, randomised by the sanity check, scored by the trust checks and shown
by the explorer. Its values are checked against autograd called directly, not against the code
that computes them.
"""

from __future__ import annotations

import io
import json
import re
import urllib.request

import numpy as np
import pytest
import torch
from PIL import Image

import convsight
from convsight.attribute import Method, MethodNames, method_info, methods, register_method
from convsight.attribute import random_pixels, unregister_method
from convsight.attribute.gradients import plain_gradient
from convsight.attribute.registry import CARD, CHECK, CLASSES, FIGURE, GROUPS, SANITY, UNITS
from convsight.pictures import render_attribution
from convsight.pictures.attribution import KINDS

from ..web.support import start_tiny_server
from ..tinynets import tiny_net

pytestmark = pytest.mark.usefixtures("one_thread")

NAME, TITLE = "toy-xgrad", "input x gradient"


def x_times_gradient(net, x, targets, batch_size=None):
    """The toy method's one file: input times gradient."""
    return x * plain_gradient(net, x, targets, batch_size)


@pytest.fixture
def toy():
    record = register_method(Method(NAME, x_times_gradient, title=TITLE, display="signed",
                                    reference="pixels", random_map=random_pixels, signed=True,
                                    groups=set(GROUPS)))
    try:
        yield record
    finally:
        unregister_method(NAME)
    assert NAME not in convsight.attribute.METHODS


def tiny_network() -> convsight.Network:
    net = convsight.as_network(tiny_net())
    net.input_size = (64, 64)
    return net


@pytest.fixture(scope="module")
def tiny():
    net = tiny_network()
    return net, net.preprocess(convsight.sample_images()["chelsea"])


def expected_map(net, x, cls):
    """x * d(class score)/dx by autograd, directly (the model in eval mode, as attribute runs it)."""
    net.module.eval()
    xs = x.clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(net.module(xs)[:, cls].sum(), xs)
    return x * grad


def test_toy_method_answers_attribute(toy, tiny):
    net, x = tiny
    got = convsight.attribute(net, x, "class:3", method=NAME)
    assert torch.allclose(got, expected_map(net, x, 3), rtol=1e-5, atol=1e-7)
    assert toy.options == {"batch_size"} and not toy.needs_layer
    assert torch.equal(convsight.attribute(net, x, "class:3", method=NAME, batch_size=1), got)
    with pytest.raises(convsight.ConvsightError, match="takes no option window"):
        convsight.attribute(net, x, method=NAME, window=8)


def test_toy_method_is_offered_by_the_cli(toy):
    from convsight.cli import build_parser

    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "command").choices
    for command in ("attribute", "check"):
        action = next(a for a in sub[command]._actions if a.dest == "methods")
        assert NAME in action.help, (command, action.help)
        assert NAME in action.default.split(","), (command, action.default)  # in both defaults


def test_unknown_methods_are_named_with_the_toy(toy, tiny):
    net, x = tiny
    with pytest.raises(convsight.ConvsightError, match=f"valid methods are .*{NAME}.*"
                                                       f"Did you mean: {NAME}"):
        convsight.attribute(net, x, method="toy-xgrda")


def test_toy_method_is_drawn_in_the_attribution_figure(toy, tiny, monkeypatch):
    import convsight.figures.attribution as figure

    net, x = tiny
    captions = []
    real_label = figure.label
    monkeypatch.setattr(figure, "label", lambda pic, text, **kw: captions.append(text) or
                        real_label(pic, text, **kw))
    default = figure.attribution_figure(net, x, "class:3")  # the toy is in the FIGURE group
    assert captions[1:] == [method_info(m).title for m in MethodNames(FIGURE)]
    assert TITLE in captions
    plain = figure.attribution_figure(net, x, "class:3", methods=["gradient"])
    assert default.shape[0] == plain.shape[0] and default.shape[1] > plain.shape[1] * 2
    captions.clear()
    own = figure.attribution_figure(net, x, "class:3", methods=[NAME], kind="signed")
    assert captions[1:] == [TITLE]
    # its tile is the signed picture of input x gradient (the figure enlarges 64 px 2x)
    want = render_attribution(expected_map(net, x, 3)[0], "signed")
    tile = np.asarray(own)[-132:-4, -132:-4]  # the last tile, below its caption, inside the border
    big = np.repeat(np.repeat(np.asarray(want), 2, 0), 2, 1)
    assert np.abs(tile - big).max() < 1e-2


def test_toy_method_is_randomised_by_the_sanity_check(toy, tiny, monkeypatch):
    import convsight.trust.sanity as sanity

    net, x = tiny
    rep = convsight.sanity_check(net, x, "class:3", group="all", progress=False)
    assert NAME in rep.methods and list(rep.methods) == list(MethodNames(SANITY))
    assert rep.spearman_abs[NAME].shape[0] == 2  # trained, then every layer random
    captions = []
    real_label = sanity.label
    monkeypatch.setattr(sanity, "label", lambda pic, text, **kw: captions.append(text) or
                        real_label(pic, text, **kw))
    rep.figure()
    assert TITLE in captions


def test_toy_method_is_scored_by_the_trust_checks(toy, tiny):
    from convsight.trust import map_kind
    from convsight.trust.check import check as trust_check
    from convsight.trust.scores import ranking_map

    net, x = tiny
    assert map_kind(NAME) == "pixels"
    a = torch.randn(1, 3, 8, 8)
    assert torch.equal(ranking_map(NAME, a), a)  # signed: ranked by value
    s = convsight.trust.trust_score(net, x, "class:3", NAME, steps=4)
    assert s.method == NAME and s.deletion.shape == (1,)
    result = trust_check(net, x, "class:3", steps=4, group="all", progress=False)
    assert list(result.scores) == list(MethodNames(CHECK)) and NAME in result.scores
    assert any(r["title"] == TITLE for r in result.rows())
    card = convsight.evaluate(net, x, "class:3", metrics=("sparseness",), progress=False)
    assert NAME in card.methods and list(card.methods) == list(MethodNames(CARD))
    assert any(r["method"] == TITLE for r in card.rows)


def test_toy_method_is_shown_by_the_explorer(toy, tiny, tmp_path):
    net, x = tiny
    server = start_tiny_server(tmp_path / "cache")
    try:
        with urllib.request.urlopen(f"{server.url}/image/sample-chelsea?cls=3", timeout=300) as r:
            page = r.read().decode()
        url = f"/img/cattr/sample-chelsea/3/{NAME}.png"
        assert url in page and f"<figcaption>{TITLE}</figcaption>" in page
        assert list(MethodNames(CLASSES))[-1] == NAME and NAME in MethodNames(UNITS)
        with urllib.request.urlopen(server.url + url, timeout=300) as r:
            assert r.headers["content-type"] == "image/png"
            shown = np.asarray(Image.open(io.BytesIO(r.read())).convert("RGB"), np.float32) / 255
        want = np.asarray(render_attribution(expected_map(net, x, 3)[0], "signed"))
        assert shown.shape == want.shape and np.abs(shown - want).max() <= 1 / 255 + 1e-6
        trust = f"{server.url}/api/trust/sample-chelsea?cls=3&method={NAME}"
        with urllib.request.urlopen(trust, timeout=300) as r:
            assert json.loads(r.read())["method"] == NAME
    finally:
        server.stop()


def test_every_registered_method_has_a_display_a_reference_and_a_cli_name(tiny):
    net, x = tiny
    assert len(methods()) >= 7
    for m in methods():
        assert re.fullmatch(r"[a-z][a-z0-9_-]*", m.name), m.name  # fits --methods a,b and URLs
        assert m.title and m.short and m.caption, m.name
        assert m.display in KINDS, m.name
        assert m.reference and callable(m.random_map), m.name
        maps = m.random_map(net, x, dict(m.check_options), torch.Generator().manual_seed(0))
        assert maps.shape == (1, 1, 64, 64) and 0 <= float(maps.min()) <= float(maps.max()) <= 1
        assert set(m.groups) <= set(GROUPS), m.name


@pytest.mark.parametrize("missing, error", [
    ({"display": "picture"}, "display 'picture' is not one of"),
    ({"reference": ""}, "needs a title and a reference"),
    ({"title": ""}, "needs a title and a reference"),
    ({"name": "x,y"}, "is not a CLI name"),
    ({"name": "Toy"}, "is not a CLI name"),
    ({"random_map": None}, "random_map must be a function"),
    ({"groups": {"everything"}}, "unknown groups everything"),
])
def test_a_record_without_display_reference_or_cli_name_is_refused(missing, error):
    fields = dict(name=NAME, compute=x_times_gradient, title=TITLE, display="signed",
                  reference="pixels", random_map=random_pixels)
    with pytest.raises(convsight.ConvsightError, match=re.escape(error)):
        Method(**dict(fields, **missing))
    with pytest.raises(TypeError):  # display and reference have no default
        Method(NAME, x_times_gradient, title=TITLE, random_map=random_pixels)


def test_registering_twice_needs_replace(toy):
    with pytest.raises(convsight.ConvsightError, match="already registered"):
        register_method(toy)
    assert register_method(toy, replace=True) is toy
    with pytest.raises(convsight.ConvsightError, match="unknown method 'nothing'"):
        unregister_method("nothing")


def test_builtin_records_keep_the_facts_the_tables_held():
    """The tables this registry replaced, as they were (titles, signs, random maps, sets)."""
    titles = {m.name: m.title for m in methods()}
    assert titles == {"gradient": "gradient", "guided": "guided backprop",
                      "deconv": "deconvnet", "smoothgrad": "SmoothGrad", "gradcam": "Grad-CAM",
                      "guided-gradcam": "guided Grad-CAM", "occlusion": "occlusion"}
    assert {m.name for m in methods() if m.signed} == {"gradcam", "occlusion"}
    assert {m.name: m.reference for m in methods() if m.reference != "pixels"} == \
        {"gradcam": "Grad-CAM grid", "occlusion": "occlusion windows"}
    assert tuple(MethodNames(SANITY)) == ("gradient", "guided", "gradcam")
    assert tuple(MethodNames(CHECK)) == ("gradient", "guided", "deconv", "gradcam", "occlusion")
    assert tuple(MethodNames(CARD)) == ("gradient", "guided", "gradcam", "occlusion")
    assert tuple(MethodNames(FIGURE)) == tuple(MethodNames(UNITS)) == \
        ("gradient", "guided", "deconv")
    assert tuple(MethodNames(CLASSES)) == ("gradient", "guided", "gradcam", "guided-gradcam")
    assert {m.name for m in methods() if m.needs_layer} == {"gradcam", "guided-gradcam"}
    assert method_info("occlusion").check_options == {"window": 32, "stride": 16}
    assert [m.name for m in methods() if m.slow] == ["occlusion"]
