"""The report card on the explorer's image page (``/api/card/IMAGE?cls=N``): numbers equal to
``convsight.evaluate`` called directly, cached, cancellable, clear refusals."""

from __future__ import annotations

import json
import math
import threading
import urllib.error
import urllib.request

import pytest

import convsight

from .support import start_tiny_server
from .test_web_trust import IMAGE, get, tiny_network

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    srv = start_tiny_server(tmp_path_factory.mktemp("card-cache"))
    yield srv
    srv.stop()


def post(url: str) -> tuple[int, dict]:
    req = urllib.request.Request(url, method="POST", data=b"", headers={"X-Convsight": "1"})
    try:
        with urllib.request.urlopen(req, timeout=60) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, {"text": e.read().decode()}


def test_card_equals_evaluate_and_is_cached(server, monkeypatch):
    from convsight.web import attributions

    calls = []

    def counting(*args, **kwargs):
        calls.append(str(args[2]))  # the target travels as a Target object
        return convsight.evaluate(*args, **kwargs)

    monkeypatch.setattr(attributions, "evaluate", counting)
    status, kind, reply = get(f"{server.url}/api/card/{IMAGE}?cls=3")
    assert status == 200 and kind.startswith("application/json"), reply
    net = tiny_network()
    x = net.preprocess(convsight.sample_images()["chelsea"])
    card = convsight.evaluate(net, x, "class:3", methods=attributions.CLASS_METHODS,
                              metrics=attributions.CARD_METRICS, **attributions.CARD_SETTINGS)
    assert reply["metrics"] == list(attributions.CARD_METRICS)
    assert [r["method"] for r in reply["rows"]] == [r["method"] for r in card.rows]
    for got, want in zip(reply["rows"], card.rows):
        for k in card.metrics:
            if math.isnan(want[k]):
                assert got[k] is None
            else:
                assert got[k] == pytest.approx(want[k], rel=1e-5, abs=1e-6), (got["method"], k)
    assert get(f"{server.url}/api/card/{IMAGE}?cls=3")[2] == reply
    assert calls == ["class:3"]  # the second answer came from the cache
    page = urllib.request.urlopen(f"{server.url}/image/{IMAGE}?cls=3", timeout=60).read().decode()
    assert f'data-card="/api/card/{IMAGE}?cls=3"' in page


def test_card_can_be_cancelled(server, monkeypatch):
    from convsight.web import attributions

    started, cancelled = threading.Event(), threading.Event()

    def waiting(*args, **kwargs):
        started.set()
        assert cancelled.wait(60)
        return convsight.evaluate(*args, **kwargs)  # stops at its first progress report

    monkeypatch.setattr(attributions, "evaluate", waiting)
    answer = {}
    asker = threading.Thread(target=lambda: answer.update(
        r=get(f"{server.url}/api/card/{IMAGE}?cls=4")))
    asker.start()
    assert started.wait(60)
    assert post(f"{server.url}/api/card/{IMAGE}?cls=4") == (200, {"cancelled": True})
    cancelled.set()
    asker.join(120)
    code, _, reply = answer["r"]
    assert code == 400 and reply["error"] == "report card cancelled"
    assert post(f"{server.url}/api/card/{IMAGE}?cls=4") == (200, {"cancelled": False})
    monkeypatch.setattr(attributions, "evaluate", convsight.evaluate)
    assert get(f"{server.url}/api/card/{IMAGE}?cls=4")[0] == 200  # not cached as a failure


@pytest.mark.parametrize("query, words", [("", "cls=N"), ("cls=10", "valid classes are 0..9"),
                                           ("cls=x", "whole number")])
def test_bad_card_requests_are_clear_4xx(server, query, words):
    code, _, reply = get(f"{server.url}/api/card/{IMAGE}?{query}")
    assert code == 404 and words in reply["error"]
    code, _, _ = get(f"{server.url}/api/card/sample-nothing?cls=1")
    assert code == 404


def test_report_can_include_the_card(tmp_path):
    """``write_report(card=True)``: under each detailed unit, the card's metrics of the
    projection, equal to ``convsight.metric`` on the same neuron."""
    import html
    import re

    from convsight.report import write_report

    from .support import tiny_atlas_dir

    atlas = convsight.Atlas.open(tiny_atlas_dir())
    out = write_report(atlas, tmp_path / "r.html", layers=["blocks.2"], max_units=2,
                       detail_units=1, progress=False, card=True)
    lines = re.findall(r"report card: (.*?)</span>",
                       html.unescape(out.read_text(encoding="utf-8")))
    assert len(lines) == 1
    net = atlas.network()
    hit = atlas.top("blocks.2", 0)[0]
    x = net.normalize(atlas.image(hit.image)[None])
    target = f"blocks.2:0@{hit.y},{hit.x}"
    attr = convsight.attribute(net, x, target, method="guided")
    sparse = float(convsight.metric("sparseness", net, x, attr.abs(), target))
    sens = float(convsight.metric("max_sensitivity", net, x, attr, target, method="guided",
                                  samples=3))
    assert f"sparseness {sparse:.3f}" in lines[0] and f"max-sensitivity {sens:.3f}" in lines[0]
    plain = write_report(atlas, tmp_path / "p.html", layers=["blocks.2"], max_units=2,
                         detail_units=1, progress=False)
    assert "report card:" not in plain.read_text(encoding="utf-8")
