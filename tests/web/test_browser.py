"""The explorer in a real browser: Playwright drives Debian's headless Chromium.

CI installs the browser with ``.ci/browser-setup.sh`` (``apt-get install chromium`` and the Python
``playwright`` package; never ``playwright install``). The tests click through layer -> unit,
start a synthesis, upload a photo and click an activation tile, open the static report from disk,
and save screenshots (also copied to $CONVSIGHT_SCREENS, when set, for people to look at).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import time
from pathlib import Path
from urllib.request import urlopen

import pytest

import convsight

from .support import WIDE, save_screen, start_server, tiny_atlas_dir

CHROMIUM = os.environ.get("CONVSIGHT_CHROMIUM", "/usr/bin/chromium")
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run"]

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(shutil.which(CHROMIUM) is None and not Path(CHROMIUM).is_file(),
                       reason=f"no Chromium at {CHROMIUM} (CI installs Debian's chromium with "
                              ".ci/browser-setup.sh)"),
]

ALL_IMAGES_LOADED = """(sel) => {
  const imgs = [...document.querySelectorAll(sel)];
  return imgs.length > 0 && imgs.every(i => i.complete && i.naturalWidth > 0);
}"""
VISIBLE_IMAGES_LOADED = """(sel) => {
  const h = window.innerHeight;
  const imgs = [...document.querySelectorAll(sel)].filter(i => {
    const r = i.getBoundingClientRect(); return r.bottom > 0 && r.top < h; });
  return imgs.length > 0 && imgs.every(i => i.complete && i.naturalWidth > 0);
}"""


@pytest.fixture(scope="module")
def browser():
    sync_api = pytest.importorskip("playwright.sync_api",
                                   reason="the playwright package is not installed")
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
        yield b
        b.close()


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    srv = start_server(tmp_path_factory.mktemp("browser-cache"), atlas=tiny_atlas_dir())
    yield srv
    srv.stop()


@pytest.fixture
def page(browser):
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    pg = context.new_page()
    errors: list[str] = []
    pg.on("pageerror", lambda exc: errors.append(str(exc)))
    pg.on("console", lambda msg: errors.append(msg.text) if msg.type == "error" else None)
    pg.errors = errors  # a test that expects an error response clears it
    yield pg
    context.close()
    assert not errors, f"the page logged errors: {errors}"


def test_click_from_layer_list_to_layer_to_unit(page, server, tmp_path):
    page.goto(server.url + "/")
    assert page.title().startswith("layers")
    page.fill("#filter", "blocks.9")  # the filter box hides other rows
    assert page.locator("#layer-table tbody tr:visible").count() < 30
    save_screen(page, tmp_path, "explorer-layers", full_page=False)
    page.click(f"#layer-table a:text-is('{WIDE}')")
    page.wait_for_url(re.compile(rf"/layer/{re.escape(WIDE)}$"))

    # cold: the 112 tiles are computed as the browser asks for them; warm: read from the cache
    timings = {}
    for visit in ("cold", "warm"):
        start = time.perf_counter()
        page.goto(server.url + f"/layer/{WIDE}", wait_until="domcontentloaded")
        dom = time.perf_counter() - start
        page.wait_for_function(VISIBLE_IMAGES_LOADED, arg="#units img", timeout=120_000)
        timings[visit] = (dom, time.perf_counter() - start)
    units = page.locator("#units a.unit").count()
    assert units == 112
    print(f"\nlayer view of {units} units: " + ", ".join(
        f"{k}: page {d * 1000:.0f} ms, visible tiles {t * 1000:.0f} ms" for k, (d, t) in timings.items()))
    save_screen(page, tmp_path, "explorer-layer", full_page=False)
    page.evaluate("window.scrollTo(0, document.body.scrollHeight)")
    page.wait_for_function(VISIBLE_IMAGES_LOADED, arg="#units img", timeout=120_000)

    page.click("#u5")
    page.wait_for_url(re.compile(rf"/unit/{re.escape(WIDE)}/5$"))
    page.wait_for_function(ALL_IMAGES_LOADED, arg=".hit img", timeout=120_000)
    assert page.locator(".hit").count() == 9
    save_screen(page, tmp_path, "explorer-unit")
    page.click("text=deconvnet")
    page.wait_for_url(re.compile(r"method=deconv"))
    page.wait_for_function(ALL_IMAGES_LOADED, arg=".hit img.proj", timeout=120_000)
    page.click("a[rel=next]")
    page.wait_for_url(re.compile(rf"/unit/{re.escape(WIDE)}/6\?method=deconv$"))


def test_synthesis_shows_progress_then_the_picture(page, server, tmp_path):
    page.goto(server.url + "/unit/blocks.2/11")
    assert page.locator("#synth-img").is_hidden()
    page.click("#synth-start")
    page.wait_for_selector("#synth-img", state="visible", timeout=180_000)
    page.wait_for_function(ALL_IMAGES_LOADED, arg="#synth-img", timeout=30_000)
    assert page.locator("#synth-controls").is_hidden()
    save_screen(page, tmp_path, "explorer-synthesis")
    page.reload()  # cached: shown straight away
    assert page.locator("#synth-img").is_visible()


@pytest.fixture(scope="module")
def stored_server(tmp_path_factory):
    """The tiny atlas (copied) with two facets stored for units 3 and 5 of blocks.2."""
    folder = tmp_path_factory.mktemp("stored") / "atlas"
    shutil.copytree(tiny_atlas_dir(), folder)
    net = convsight.Atlas.open(folder).network()
    convsight.visualize_layer(net, "blocks.2", [3, 5], atlas=folder, copies=2, preset="lucid",
                              steps=4, size=48, progress=False)
    srv = start_server(tmp_path_factory.mktemp("stored-cache"), atlas=folder)
    yield srv
    srv.stop()


def test_stored_syntheses_show_in_the_layer_grid_and_on_the_unit_page(page, stored_server,
                                                                     tmp_path):
    page.goto(stored_server.url + "/layer/blocks.2")
    page.wait_for_function(ALL_IMAGES_LOADED, arg="#u3 img, #u5 img", timeout=60_000)
    assert page.locator("#u3 img.synth").is_visible() and page.locator("#u4 .nosynth").is_visible()
    synth, tile = (page.locator(f"#u3 {s}").bounding_box() for s in ("img.synth", "img:not(.synth)"))
    assert synth["x"] + synth["width"] <= tile["x"] and abs(synth["y"] - tile["y"]) < 2  # side by side
    save_screen(page, tmp_path, "explorer-layer-syntheses", full_page=False)
    page.click("#u3")
    page.wait_for_url(re.compile(r"/unit/blocks\.2/3$"))
    page.wait_for_function(ALL_IMAGES_LOADED, arg=".facet img", timeout=60_000)
    facets = page.locator(".facet img")
    assert facets.count() == 2 and all(facets.nth(i).is_visible() for i in range(2))
    assert facets.nth(0).evaluate("i => i.naturalWidth") == 48  # the stored image itself
    assert page.locator("#synth-start").count() == 0
    save_screen(page, tmp_path, "explorer-unit-syntheses", full_page=False)
    page.goto(stored_server.url + "/unit/blocks.2/4")  # none stored: the on-demand button
    assert page.locator("#synth-start").is_visible()


def test_upload_a_photo_and_click_a_unit(page, server, tmp_path):
    photo = tmp_path / "cat.jpg"
    convsight.sample_images()["chelsea"].save(photo, quality=92)
    page.goto(server.url + "/images")
    page.wait_for_function(ALL_IMAGES_LOADED, arg=".choice img", timeout=60_000)
    save_screen(page, tmp_path, "explorer-images", full_page=False)
    page.set_input_files("#upload-input", str(photo))
    page.click("#upload-button")
    page.wait_for_url(re.compile(r"/image/u-[0-9a-f]{16}$"))
    assert page.locator("ol.classes li").count() == 5
    page.wait_for_function(ALL_IMAGES_LOADED, arg="#class-attrs img", timeout=120_000)

    page.select_option("#layer-select", "blocks.2")  # the form reloads with that layer
    page.wait_for_url(re.compile(r"layer=blocks\.2"))
    page.wait_for_function(ALL_IMAGES_LOADED, arg="#maps-img", timeout=60_000)
    maps = page.locator("#maps")
    d = {k: int(maps.get_attribute(f"data-{k}")) for k in ("ncols", "tile-w", "tile-h", "pad", "width")}
    box = page.locator("#maps-img").bounding_box()
    scale = box["width"] / d["width"]
    channel = 13
    row, col = divmod(channel, d["ncols"])
    x = (d["pad"] + col * (d["tile-w"] + d["pad"]) + d["tile-w"] / 2) * scale
    y = (d["pad"] + row * (d["tile-h"] + d["pad"]) + d["tile-h"] / 2) * scale
    page.click("#maps-img", position={"x": x, "y": y})
    page.wait_for_selector("#unit-panel", state="visible")
    assert page.locator("#unit-title").inner_text() == f"blocks.2:{channel}"
    page.wait_for_function(ALL_IMAGES_LOADED, arg="#unit-panel img", timeout=120_000)
    assert page.locator("#rf-box").is_visible()
    assert f"unit={channel}" in page.url
    save_screen(page, tmp_path, "explorer-image")
    page.reload()  # the URL is stable: the same unit comes back
    page.wait_for_function(ALL_IMAGES_LOADED, arg="#unit-panel img", timeout=60_000)
    assert page.locator("#unit-title").inner_text() == f"blocks.2:{channel}"


def test_upload_works_without_javascript(browser, server, tmp_path):
    """The form posts itself (the browser sends a matching Origin, which the explorer accepts
    in place of the header its script adds)."""
    photo = tmp_path / "coffee.png"
    convsight.sample_images()["coffee"].resize((120, 80)).save(photo)
    context = browser.new_context(java_script_enabled=False)
    try:
        pg = context.new_page()
        pg.goto(server.url + "/images")
        pg.set_input_files("#upload-input", str(photo))
        pg.click("#upload-button")
        pg.wait_for_url(re.compile(r"/image/u-[0-9a-f]{16}$"))
        assert pg.locator("ol.classes li").count() == 5
    finally:
        context.close()


def test_a_refused_upload_says_why(page, server, tmp_path):
    notes = tmp_path / "notes.png"
    notes.write_text("not a picture at all\n" * 20)
    page.goto(server.url + "/images")
    page.set_input_files("#upload-input", str(notes))
    page.click("#upload-button")
    page.wait_for_selector("#upload-status:has-text('not an image')", timeout=30_000)
    assert page.url.endswith("/images") and page.locator("#upload-button").is_enabled()
    page.errors[:] = [e for e in page.errors if "415" not in e]  # the refusal we asked for


ATTACK = """<!doctype html><title>cat pictures</title><script>
(async () => {
  const target = "EXPLORER", seen = [];
  const canvas = document.createElement("canvas");
  canvas.width = canvas.height = 16;
  const png = await new Promise(done => canvas.toBlob(done, "image/png"));
  const form = () => { const f = new FormData(); f.append("image", png, "x.png"); return f; };
  const tries = [
    ["synth", "/api/synth/blocks.2/5", {body: "x", headers: {"Content-Type": "text/plain"}}],
    ["synth-header", "/api/synth/blocks.2/5", {body: "x", headers: {"X-Convsight": "1"}}],
    ["upload", "/api/upload", {body: form()}],
    ["form", "/images", {body: form()}],
  ];
  for (const [name, path, options] of tries) {
    for (const mode of ["no-cors", "cors"]) {
      try {
        await fetch(target + path, {method: "POST", mode, ...options});
        seen.push(name + " sent");
      } catch (e) { seen.push(name + " blocked"); }
    }
  }
  try { await (await fetch(target + "/api/synth/blocks.2/5")).json(); seen.push("read"); }
  catch (e) { seen.push("read blocked"); }
  document.title = "done " + seen.join(", ");
})();
</script>"""


def test_another_site_in_the_browser_cannot_use_the_explorer(page, server, tmp_path):
    """A page from another origin (another local server) posts to the explorer as a hostile page
    would: simple requests, a custom header, multipart uploads; and tries to read its JSON."""
    explorer = server.server.config.app.state.explorer
    before = sorted(explorer.input_images.uploads.glob("u-*.png"))
    site = serve_page(ATTACK.replace("EXPLORER", server.url))
    try:
        page.goto(f"http://localhost:{site.server_address[1]}/")
        page.wait_for_function("document.title.startsWith('done')", timeout=60_000)
        seen = page.title()
    finally:
        site.shutdown()
    page.errors.clear()  # the refusals and CORS errors the page provoked
    assert "read blocked" in seen, seen  # the browser keeps the answers from the other page
    status = json.loads(urlopen(server.url + "/api/synth/blocks.2/5").read())
    assert status["state"] == "none", (seen, status)  # nothing started
    assert sorted(explorer.input_images.uploads.glob("u-*.png")) == before, seen  # nothing stored


FRAMES = """<!doctype html><title>cat pictures</title>
<iframe src="EXPLORER/api/trust/sample-coffee?cls=1&method=gradient"></iframe>
<iframe src="EXPLORER/img/cattr/sample-coffee/1/gradient.png"></iframe>
<object data="EXPLORER/img/cattr/sample-coffee/2/guided.png" type="image/png"></object>
<embed src="EXPLORER/img/acts/sample-coffee/blocks.2.png" type="image/png">
<iframe src="EXPLORER/image/sample-coffee?layer=blocks.2"></iframe>"""


def serve_page(html: str):
    """A server on another loopback origin (localhost, another port) answering ``html``."""
    import http.server
    import threading

    body = html.encode()

    class Other(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(200)
            self.send_header("Content-Type", "text/html")
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    site = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Other)
    threading.Thread(target=site.serve_forever, daemon=True).start()
    return site


def _settled(cache, quiet: float = 2.0, limit: float = 120.0) -> int:
    """The cache's count of computed entries once it has not changed for ``quiet`` seconds."""
    last, since, deadline = cache.computed, time.time(), time.time() + limit
    while time.time() < deadline and time.time() - since < quiet:
        time.sleep(0.1)
        if cache.computed != last:
            last, since = cache.computed, time.time()
    return last


def test_another_site_cannot_make_the_explorer_compute_by_framing_it(page, server):
    """Iframes, <object> and <embed> on another origin's page are navigations: /api/trust and
    /img/cattr in iframes were computed for 12-24 s of CPU each (issue 23). Now every one is
    refused (403) before anything is computed (framed HTML pages too), and nothing lands in
    the cache."""
    explorer = server.server.config.app.state.explorer
    computed = _settled(explorer.cache)  # earlier tests' pages may leave work finishing
    answers: dict[str, int] = {}
    page.context.on("response", lambda r: answers.__setitem__(r.url, r.status)
                    if r.url.startswith(server.url) else None)
    site = serve_page(FRAMES.replace("EXPLORER", server.url))
    try:
        page.goto(f"http://localhost:{site.server_address[1]}/")
        deadline = time.time() + 60
        while len(answers) < 3 and time.time() < deadline:
            page.wait_for_timeout(200)
        page.wait_for_timeout(1000)  # <object> and <embed> (Playwright does not list them)
    finally:
        site.shutdown()
    page.errors.clear()  # the refusals the page provoked
    framed = {url[len(server.url):] for url in answers}
    assert {"/api/trust/sample-coffee?cls=1&method=gradient", "/image/sample-coffee?layer=blocks.2",
            "/img/cattr/sample-coffee/1/gradient.png"} <= framed, answers
    assert set(answers.values()) == {403}, answers
    assert explorer.cache.computed == computed  # no picture, score or map was made


def test_error_page_is_readable(page, server, tmp_path):
    response = page.goto(server.url + "/layer/blocks.99")
    assert response.status == 404
    assert "unknown layer 'blocks.99'" in page.inner_text(".message")
    page.errors[:] = [e for e in page.errors if "404" not in e]  # the 404 we asked for
    save_screen(page, tmp_path, "explorer-404", full_page=False)


def test_trust_scores_appear_under_the_class_attributions(page, server, tmp_path):
    page.goto(server.url + "/image/sample-chelsea")
    page.wait_for_function(ALL_IMAGES_LOADED, arg="#class-attrs img", timeout=120_000)
    page.wait_for_function("""() => {
      const lines = [...document.querySelectorAll("#class-attrs .trust-line")];
      return lines.length === 4 && lines.every(l => l.textContent.startsWith("deletion AUC"));
    }""", timeout=240_000)
    line = page.locator("#trust-guided .trust-line").inner_text()
    assert re.fullmatch(r"deletion AUC [0-9.]+ \(random [0-9.]+\) · insertion AUC [0-9.]+ "
                        r"\(random [0-9.]+\) · randomisation: (passes|fails)", line), line
    assert page.locator("#trust-guided .trust-verdict").inner_text()
    save_screen(page, tmp_path, "explorer-trust", full_page=False)


def test_static_report_opens_from_disk(page, tmp_path):
    from convsight.report import write_report

    out = write_report(tiny_atlas_dir(), tmp_path / "report.html", max_units=48,
                       detail_units=1, progress=False)
    page.goto(out.resolve().as_uri())
    page.wait_for_function(ALL_IMAGES_LOADED, arg="img", timeout=60_000)
    assert page.locator(".unit").count() == 32 + 24 + 48
    save_screen(page, tmp_path, "report", full_page=False)
