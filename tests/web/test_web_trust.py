"""Trust scores in the explorer (``/api/trust/IMAGE?cls=N&method=M``) and in the static report.

The numbers are checked against ``convsight.trust_score`` called directly, on a network built
the same way as the server's (never the web code's cache); refusals must be clear 4xx answers.
"""

from __future__ import annotations

import html
import json
import math
import re
import urllib.error
import urllib.request

import pytest
import torch

import convsight
from convsight.trust import trust_score

from .support import start_tiny_server, tiny_atlas_dir
from ..tinynets import tiny_net

pytestmark = pytest.mark.usefixtures("one_thread")

IMAGE = "sample-chelsea"


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    srv = start_tiny_server(tmp_path_factory.mktemp("trust-cache"))
    yield srv
    srv.stop()


def get(url: str, host: str | None = None) -> tuple[int, str, dict]:
    req = urllib.request.Request(url, headers={"Host": host} if host else {})
    try:
        with urllib.request.urlopen(req, timeout=300) as r:
            return r.status, r.headers.get("content-type", ""), json.loads(r.read())
    except urllib.error.HTTPError as e:
        body = e.read()
        kind = e.headers.get("content-type", "")
        return e.code, kind, json.loads(body) if "json" in kind else {"text": body.decode()}


def tiny_network() -> convsight.Network:
    """The server's network, built again (``start_tiny_server``: ``tiny_net()`` at 64 px)."""
    net = convsight.as_network(tiny_net())
    net.input_size = (64, 64)
    return net


@pytest.mark.parametrize("method", ["gradient", "guided-gradcam"])
def test_trust_answer_equals_trust_score(server, method):
    from convsight.web.attributions import TRUST_STEPS

    status, kind, reply = get(f"{server.url}/api/trust/{IMAGE}?cls=3&method={method}")
    assert status == 200 and kind.startswith("application/json"), reply
    net = tiny_network()
    x = net.preprocess(convsight.sample_images()["chelsea"])
    s = trust_score(net, x, "class:3", method, steps=TRUST_STEPS)
    assert reply["method"] == method and reply["target"] == "class:3"
    assert reply["steps"] == TRUST_STEPS
    for name in ("deletion", "insertion", "random_deletion", "random_insertion",
                 "top_layer_correlation", "randomized_correlation"):
        expected = float(getattr(s, name)[0])
        if math.isnan(expected):
            assert reply[name] is None  # JSON has no NaN
        else:
            assert abs(reply[name] - expected) < 1e-6, name
    assert reply["top_layer"] == "fc"
    assert reply["needs_weights"] == bool(s.needs_weights[0])
    assert reply["verdict"] == s.verdict(0)
    # the line the page shows: the numbers to 3 decimals and the check's outcome
    assert reply["line"] == (
        f"deletion AUC {float(s.deletion[0]):.3f} (random {float(s.random_deletion[0]):.3f}) · "
        f"insertion AUC {float(s.insertion[0]):.3f} (random {float(s.random_insertion[0]):.3f})"
        f" · randomisation: {'passes' if bool(s.needs_weights[0]) else 'fails'}")


@pytest.mark.parametrize("query, status, words", [
    ("cls=3&method=occlusion", 404, "gradient, guided, gradcam, guided-gradcam"),
    ("cls=3&method=", 404, "give method="),
    ("cls=3", 404, "give method="),
    ("method=gradient", 404, "cls=N"),
    ("cls=10&method=gradient", 404, "valid classes are 0..9"),
    ("cls=-1&method=gradient", 404, "whole number"),
    ("cls=%C2%B2&method=gradient", 404, "whole number"),
    ("cls=99999999999&method=gradient", 404, "whole number"),
])
def test_bad_trust_requests_are_clear_4xx(server, query, status, words):
    code, kind, reply = get(f"{server.url}/api/trust/{IMAGE}?{query}")
    assert code == status and kind.startswith("application/json"), reply
    assert words in reply["error"]


def test_unknown_images_and_foreign_hosts_are_refused(server):
    code, _, reply = get(f"{server.url}/api/trust/sample-nothing?cls=1&method=gradient")
    assert code == 404 and "samples:" in reply["error"]
    code, _, reply = get(f"{server.url}/api/trust/..%2F..%2Fetc?cls=1&method=gradient")
    assert code == 404
    code, _, _ = get(f"{server.url}/api/trust/{IMAGE}?cls=1&method=gradient",
                     host="attacker.example")
    assert code == 400


def test_second_request_comes_from_the_cache(server, monkeypatch):
    from convsight.trust import random_reference
    from convsight.web import attributions

    calls, references = [], []

    def counting(*args, **kwargs):
        calls.append((str(args[2]), args[3]))  # the target travels as a Target object
        return trust_score(*args, **kwargs)

    def counting_reference(*args, **kwargs):
        references.append(args[4])
        return random_reference(*args, **kwargs)

    monkeypatch.setattr(attributions, "trust_score", counting)
    monkeypatch.setattr(attributions, "random_reference", counting_reference)
    url = f"{server.url}/api/trust/{IMAGE}?cls=5&method=guided"
    first = get(url)
    second = get(url)
    assert first == second and first[0] == 200
    assert calls == [("class:5", "guided")]
    # another class or method is another entry; methods whose random maps are pixel noise
    # share them (gradient, guided, guided Grad-CAM), Grad-CAM's are on its grid
    for query in ("cls=6&method=guided", "cls=5&method=gradient", "cls=5&method=gradcam"):
        assert get(f"{server.url}/api/trust/{IMAGE}?{query}")[0] == 200
    assert len(calls) == 4 and references == ["guided", "guided", "gradcam"]


def test_image_page_has_a_trust_line_under_each_class_attribution(server):
    from convsight.web.explorer import CLASS_METHODS

    with urllib.request.urlopen(f"{server.url}/image/{IMAGE}?cls=4", timeout=120) as r:
        page = html.unescape(r.read().decode())
    for m in CLASS_METHODS:
        assert f'data-trust="/api/trust/{IMAGE}?cls=4&method={m}"' in page
    assert "Petsiuk et al. 2018" in page and "Adebayo et al. 2018" in page


# ----- the static report ---------------------------------------------------------------------
@pytest.fixture(scope="module")
def atlas():
    return convsight.Atlas.open(tiny_atlas_dir())


def test_report_shows_the_projection_s_trust_under_each_detailed_unit(atlas, tmp_path):
    from convsight.report import TRUST_STEPS, write_report

    out = write_report(atlas, tmp_path / "r.html", layers=["blocks.2"], max_units=4,
                       detail_units=2, progress=False)
    text = html.unescape(out.read_text(encoding="utf-8"))
    lines = re.findall(r"<p class='trust'>(.*?)</p>", text, re.S)
    assert len(lines) == 2
    net = atlas.network()
    for c, line in enumerate(lines):
        hit = atlas.top("blocks.2", c)[0]
        x = net.normalize(atlas.image(hit.image)[None])
        s = trust_score(net, x, f"blocks.2:{c}@{hit.y},{hit.x}", "guided", steps=TRUST_STEPS)
        assert s.line(0) in line and s.verdict(0) in line
        assert s.top_layer == "blocks.2"  # the unit's own block, not the classifier
    plain = write_report(atlas, tmp_path / "plain.html", layers=["blocks.2"], max_units=4,
                         detail_units=2, progress=False, trust=False)
    assert "class='trust'" not in plain.read_text(encoding="utf-8")


def test_report_progress_counts_the_trust_scores(atlas, tmp_path):
    from convsight.report import write_report

    seen = []
    write_report(atlas, tmp_path / "r.html", layers=["conv_stem"], max_units=3, detail_units=1,
                 progress=lambda done, total: seen.append((done, total)))
    totals = {t for _, t in seen}
    assert totals == {3 + 1 + 1} and seen[-1][0] == 5  # 3 cells, 1 figure, 1 trust score
    seen.clear()
    write_report(atlas, tmp_path / "r2.html", layers=["conv_stem"], max_units=3,
                 detail_units=1, trust=False, progress=lambda d, t: seen.append((d, t)))
    assert seen[-1] == (4, 4)


def test_report_command_without_trust(tmp_path, capsys):
    from convsight.cli import main

    out = tmp_path / "report.html"
    assert main(["report", str(tiny_atlas_dir()), "-o", str(out), "--layers", "conv_stem",
                 "--max-units", "2", "--details", "1", "--no-trust"]) == 0
    text = out.read_text(encoding="utf-8")
    assert "id='layer-conv_stem-0'" in text and "class='trust'" not in text


def test_trust_runs_on_the_explorer_s_own_copy(tmp_path):
    """A trust score takes seconds: it runs on a copy, so the pages never wait for it."""
    from convsight.web.explorer import Explorer

    net = tiny_network()
    ex = Explorer(net, cache_dir=tmp_path)
    reply = ex.attributions.class_trust(IMAGE, 2, "gradcam")
    assert reply["target"] == "class:2"
    copy = ex.attributions._trust_net
    assert copy is not None and copy.module is not net.module
    for (name, mine), theirs in zip(net.module.state_dict().items(),
                                    copy.module.state_dict().values()):
        assert torch.equal(mine, theirs), name
