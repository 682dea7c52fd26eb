"""The Live page in headless Chromium with a fake camera (a Y4M clip made from the sample photos).

Chromium plays the clip as the camera (``--use-fake-device-for-media-stream
--use-fake-ui-for-media-stream --use-file-for-fake-video-capture=FILE.y4m``). The tests check
that tiles change from frame to frame, that clicking a tile changes the unit view (with its top
patches from the atlas), that the backward toggle shows a map, that the frame counter moves and
pausing stops it, that the sample photos stand in without a camera, and that another site's page
cannot open the explorer's WebSocket.
"""

from __future__ import annotations

import re
import shutil
import time
from pathlib import Path

import pytest

from .fake_camera import camera_args, write_y4m
from .test_browser import ARGS, CHROMIUM, serve_page
from .support import save_screen, start_server, tiny_atlas_dir

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(shutil.which(CHROMIUM) is None and not Path(CHROMIUM).is_file(),
                       reason=f"no Chromium at {CHROMIUM} (CI installs Debian's chromium with "
                              ".ci/browser-setup.sh)"),
]

DRAWN = "() => window.convsightLive ? window.convsightLive.drawn : 0"
TILES = "() => document.getElementById('tiles').toDataURL()"
CANVAS_SPREAD = """(id) => {  // the spread of a canvas's pixel values (0: one flat colour)
  const c = document.getElementById(id), d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
  let lo = 255, hi = 0;
  for (let i = 0; i < d.length; i += 4) { lo = Math.min(lo, d[i], d[i+1], d[i+2]); hi = Math.max(hi, d[i], d[i+1], d[i+2]); }
  return hi - lo;
}"""


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    return write_y4m(tmp_path_factory.mktemp("camera") / "camera.y4m", hold=12)


@pytest.fixture(scope="module")
def playwright():
    sync_api = pytest.importorskip("playwright.sync_api",
                                   reason="the playwright package is not installed")
    with sync_api.sync_playwright() as p:
        yield p


@pytest.fixture(scope="module")
def camera_browser(playwright, clip):
    b = playwright.chromium.launch(executable_path=CHROMIUM, args=ARGS + camera_args(clip),
                                   headless=True)
    yield b
    b.close()


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    srv = start_server(tmp_path_factory.mktemp("live-browser-cache"), atlas=tiny_atlas_dir())
    yield srv
    srv.stop()


def new_page(browser):
    context = browser.new_context(viewport={"width": 1400, "height": 950})
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.on("console", lambda msg: errors.append(msg.text) if msg.type == "error" else None)
    return context, page, errors


@pytest.fixture
def page(camera_browser):
    context, pg, errors = new_page(camera_browser)
    yield pg
    context.close()
    assert not errors, f"the page logged errors: {errors}"


def drawn_more_than(page, n: int, timeout: float = 120_000) -> int:
    page.wait_for_function(f"() => window.convsightLive && window.convsightLive.drawn > {n}",
                           timeout=timeout)
    return page.evaluate(DRAWN)


def click_tile(page, channel: int) -> None:
    """Click the middle of a channel's tile, placed as the page lays out the montage."""
    head = page.evaluate("() => window.convsightLive.head")
    c, h, w = head["shape"]
    ncols, pad = head["ncols"], 1
    width = pad + ncols * (w + pad)
    box = page.locator("#tiles").bounding_box()
    scale = box["width"] / width
    row, col = divmod(channel, ncols)
    page.click("#tiles", position={"x": (pad + col * (w + pad) + w / 2) * scale,
                                   "y": (pad + row * (h + pad) + h / 2) * scale})


def test_the_camera_drives_tiles_units_and_the_backward_view(page, server, tmp_path):
    page.goto(server.url + "/")
    page.click("header nav a:text-is('Live')")  # `convsight serve ATLAS` links to the page
    page.wait_for_url(re.compile(r"/live$"))
    start = drawn_more_than(page, 2)
    assert page.inner_text("#source-note") == "camera"

    tiles = set()  # the tiles change from frame to frame (the clip pans across the photos)
    deadline = time.time() + 60
    while len(tiles) < 3 and time.time() < deadline:
        tiles.add(page.evaluate(TILES))
        time.sleep(0.3)
    assert len(tiles) >= 3
    shown = int(page.inner_text("#stat-frames"))
    assert shown > start and page.evaluate(DRAWN) >= shown  # the frame counter moves
    assert page.locator("#classes li").count() == 5
    # at most two frames in flight (one computed, one waiting): the server never drops one
    assert page.evaluate("() => [convsightLive.dropped, convsightLive.received]")[0] == 0

    page.select_option("#layer", "blocks.2")
    page.wait_for_function("() => convsightLive.head && convsightLive.head.settings.layer === 'blocks.2'",
                           timeout=60_000)
    before = page.evaluate("() => document.getElementById('unit-map').toDataURL()")
    click_tile(page, 13)
    page.wait_for_function("() => convsightLive.head.settings.unit === 13", timeout=60_000)
    assert page.inner_text("#unit-title") == "blocks.2:13"
    assert page.get_attribute("#unit-link", "href") == "/unit/blocks.2/13"
    assert page.evaluate("() => document.getElementById('unit-map').toDataURL()") != before
    page.wait_for_function("""() => { const imgs = [...document.querySelectorAll('#patches img')];
        return imgs.length === 9 && imgs.every(i => i.complete && i.naturalWidth > 0); }""",
                           timeout=120_000)  # blocks.2 is mined: its top 9 patches

    assert page.locator("#backward-box").is_hidden()  # off by default: no gradients
    page.click("#views button[data-view=guided]")
    page.wait_for_selector("#backward-box", state="visible", timeout=60_000)
    assert page.evaluate("() => convsightLive.head.settings.view") == "guided"
    assert page.evaluate(CANVAS_SPREAD, "backward") > 40  # a map, not a flat picture
    assert "guided backprop of blocks.2:13" in page.inner_text("#backward-caption")
    save_screen(page, tmp_path, "live-camera", full_page=False)


def test_pause_single_step_and_units_of_the_paused_frame(page, server):
    page.goto(server.url + "/live")
    drawn_more_than(page, 2)
    page.click("#pause")
    paused, still, deadline = page.evaluate(DRAWN), time.time(), time.time() + 20
    while time.time() - still < 2.0:  # frames already sent still come back; then nothing moves
        time.sleep(0.25)
        now = page.evaluate(DRAWN)
        if now != paused:
            paused, still = now, time.time()
        assert time.time() < deadline, "frames keep coming while paused"
    page.click("#step")
    drawn_more_than(page, paused, timeout=60_000)
    time.sleep(1.0)
    assert page.evaluate(DRAWN) == paused + 1
    frame = page.evaluate("() => document.getElementById('frame').toDataURL()")
    click_tile(page, 3)  # paused: the same frame again, for the new unit
    page.wait_for_function("() => convsightLive.head.settings.unit === 3", timeout=60_000)
    assert page.evaluate(DRAWN) == paused + 2
    assert page.evaluate("() => document.getElementById('frame').toDataURL()") == frame
    page.click("#pause")  # resume
    drawn_more_than(page, paused + 3, timeout=60_000)


def test_without_a_camera_the_page_cycles_the_sample_photos(playwright, server):
    browser = playwright.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
    try:
        context, page, errors = new_page(browser)
        page.goto(server.url + "/live")
        drawn_more_than(page, 2)
        note = page.inner_text("#source-note")
        assert note.startswith("no camera") and "cycling the sample photos" in note, note
        assert page.input_value("#source") == "samples"
        context.close()
        assert not errors, errors
    finally:
        browser.close()


ATTACK = """<!doctype html><title>cat pictures</title><script>
const ws = new WebSocket("TARGET");
ws.onopen = () => { document.title = "done opened"; };
ws.onmessage = () => { document.title = "done read"; };
ws.onclose = (ev) => { if (!document.title.startsWith("done")) document.title = "done refused " + ev.code; };
</script>"""


def test_another_site_cannot_open_the_live_socket(camera_browser, server):
    """Browsers let any page open a WebSocket anywhere; the explorer refuses the handshake."""
    site = serve_page(ATTACK.replace("TARGET", server.url.replace("http", "ws") + "/live/socket"))
    context, page, _ = new_page(camera_browser)
    try:
        page.goto(f"http://localhost:{site.server_address[1]}/")
        page.wait_for_function("() => document.title.startsWith('done')", timeout=60_000)
        assert page.title() == "done refused 1006", page.title()
    finally:
        context.close()
        site.shutdown()


def test_an_image_chosen_or_dropped_replaces_the_camera(page, server, tmp_path):
    import torch

    import convsight
    from convsight.capture import eval_mode

    photo = tmp_path / "coffee.png"
    convsight.sample_images()["coffee"].save(photo)
    net = server.server.config.app.state.explorer.net
    with torch.no_grad(), eval_mode(net.module):  # the model's own top class for the photo
        want = net.class_name(int(net.module(net.preprocess(str(photo))).argmax()))
    page.goto(server.url + "/live")
    drawn_more_than(page, 2)
    page.set_input_files("#file", str(photo))
    page.wait_for_function("() => document.getElementById('source-note').textContent === 'coffee.png'")
    page.wait_for_function("(want) => convsightLive.head.classes.some(c => c[1] === want)",
                           arg=want, timeout=60_000)
    page.evaluate("""async () => {
      const blob = await (await fetch('/img/input/sample-chelsea.png')).blob();
      const dt = new DataTransfer();
      dt.items.add(new File([blob], 'cat.png', {type: 'image/png'}));
      document.getElementById('drop').dispatchEvent(new DragEvent('drop', {dataTransfer: dt, bubbles: true}));
    }""")
    page.wait_for_function("() => document.getElementById('source-note').textContent === 'cat.png'")
    page.wait_for_function("() => /cat|tabby/.test(convsightLive.head.classes[0][1])",
                           timeout=60_000)
