"""The explorer over HTTP: every page, the pictures, and the refusals (bad input, bad paths).

A real uvicorn server runs in a thread on a free port over a tiny atlas; requests go through
urllib as a browser's would. Expected values come from the atlas and from running the model
directly, never from the web code.
"""

from __future__ import annotations

import html as htmllib
import io
import json
import re
import threading
import time
import urllib.error
import urllib.request
import uuid
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
import torch
from PIL import Image

import convsight
import convsight.capture
from convsight.capture import capture
from convsight.receptive import receptive_field

from .support import INPUT, WIDE, atlas_patch_clipped, start_server, tiny_atlas_dir
from ..untouched import untouched


WRITE = {"X-Convsight": "1"}  # what the explorer's own page sends with changes (see guard.py)


def fetch(url: str, data: bytes | None = None, headers: dict | None = None,
          method: str | None = None) -> tuple[int, dict, bytes]:
    """(status, headers, body) without raising on 4xx/5xx and without following redirects.

    The body comes back with HTML entities decoded (``&#39;`` -> ``'``), as a person reads it.
    """
    class NoRedirect(urllib.request.HTTPRedirectHandler):
        def redirect_request(self, *a, **k):
            return None

    opener = urllib.request.build_opener(NoRedirect)
    req = urllib.request.Request(url, data=data, headers=headers or {}, method=method)
    try:
        with opener.open(req, timeout=120) as r:
            status, reply_headers, body = r.status, dict(r.headers), r.read()
    except urllib.error.HTTPError as e:
        status, reply_headers, body = e.code, dict(e.headers), e.read()
    if reply_headers.get("content-type", "").startswith("text/html"):
        body = htmllib.unescape(body.decode()).encode()
    return status, reply_headers, body


def multipart(field: str, filename: str, payload: bytes) -> tuple[bytes, dict]:
    boundary = uuid.uuid4().hex
    body = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"{field}\"; "
            f"filename=\"{filename}\"\r\nContent-Type: application/octet-stream\r\n\r\n"
            ).encode() + payload + f"\r\n--{boundary}--\r\n".encode()
    return body, {"Content-Type": f"multipart/form-data; boundary={boundary}", **WRITE}


def png_of(image: Image.Image) -> bytes:
    buf = io.BytesIO()
    image.save(buf, format="PNG")
    return buf.getvalue()


@pytest.fixture(scope="module")
def atlas_dir():
    return tiny_atlas_dir()


@pytest.fixture(scope="module")
def atlas(atlas_dir):
    return convsight.Atlas.open(atlas_dir)


@pytest.fixture(scope="module")
def server(atlas_dir, tmp_path_factory):
    srv = start_server(tmp_path_factory.mktemp("web-cache"), atlas=atlas_dir,
                       max_upload_bytes=2_000_000, max_upload_pixels=4_000_000)
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def net(server):
    return server.server.config.app.state.explorer.net


def page(server, path: str) -> str:
    status, headers, body = fetch(server.url + path)
    assert status == 200, (path, status, body[:300])
    assert headers["content-type"].startswith("text/html")
    return body.decode()


# ----- pages ---------------------------------------------------------------------------------
def test_layer_list_shows_every_layer_with_shape_and_receptive_field(server, net, atlas):
    html = page(server, "/")
    for row in convsight.capture.layer_table(net):
        assert f">{row.name}<" in html
    rf = receptive_field(net, "blocks.2")
    row = re.search(r'data-name="blocks.2 MBConvBlock".*?</tr>', html, re.S).group(0)
    assert f"{rf.size[0]} px, stride {rf.stride[0]}" in row
    assert "24x28x28" in row  # 24 channels at 112 / 4
    for layer in atlas.layers:
        assert f'href="/layer/{layer}"' in html
    assert "https://" not in html and "http://" not in html  # no CDN, no external assets


def test_layer_view_lists_all_units_of_a_wide_layer(server, atlas):
    html = page(server, f"/layer/{WIDE}")
    n = atlas.channels(WIDE)
    assert n >= 100
    tiles = re.findall(rf'src="/img/tile/{re.escape(WIDE)}/(\d+)\.jpg"', html)
    assert [int(t) for t in tiles] == list(range(n))
    assert 'loading="lazy"' in html
    # each card shows the unit's best value from the atlas
    best = atlas.top(WIDE, 7)[0].value
    card = re.search(r'id="u7".*?</a>', html, re.S).group(0)
    assert f"{best:.3g}" in card


def test_layer_view_pages_a_layer_wider_than_a_page(server):
    html = page(server, "/layer/conv_head")  # 1280 units, not mined: plain links, 10 pages
    assert "not in the atlas" in html
    assert 'href="/unit/conv_head/127"' in html and 'href="/unit/conv_head/128"' not in html
    html = page(server, "/layer/conv_head?page=2")
    assert 'href="/unit/conv_head/128"' in html and 'href="/unit/conv_head/255"' in html
    status, _, body = fetch(server.url + "/layer/conv_head?page=11")
    assert status == 404 and b"10 page(s)" in body


def test_unit_tile_shows_the_units_top_patches_in_rank_order(server, atlas, net):
    status, headers, body = fetch(server.url + f"/img/tile/{WIDE}/3.jpg")
    assert status == 200 and headers["content-type"] == "image/jpeg"
    tile = np.asarray(Image.open(io.BytesIO(body)).convert("RGB"), dtype=np.float32)
    assert tile.shape == (3 * 40 + 4, 3 * 40 + 4, 3)
    distinct = 0
    for rank, (r, c) in zip(range(9), [(i, j) for i in range(3) for j in range(3)]):
        expected = atlas_patch_clipped(atlas, WIDE, 3, rank, net, 40)
        cell = tile[1 + r * 41:1 + r * 41 + 40, 1 + c * 41:1 + c * 41 + 40]
        assert np.abs(cell - expected).mean() < 8  # JPEG noise only
        other = atlas_patch_clipped(atlas, WIDE, 4, rank, net, 40)
        if np.abs(other - expected).mean() > 30:
            assert np.abs(cell - other).mean() > 20  # it is this unit's patch, not any patch
            distinct += 1
    assert distinct >= 3


def test_unit_view_lists_the_hits_of_the_atlas(server, atlas):
    html = page(server, f"/unit/{WIDE}/5")
    hits = atlas.top(WIDE, 5)
    assert len(hits) == atlas.k
    for rank, h in enumerate(hits):
        assert f"/img/patch/{WIDE}/5/{rank}.jpg" in html
        assert f"{h.value:.4g} at ({h.y}, {h.x})" in html
        assert f"/image/a-{h.image}?layer={WIDE}&unit=5" in html
    assert 'rel="prev"' in html and 'rel="next"' in html


def test_patch_and_projection_pictures(server, atlas, net):
    status, _, body = fetch(server.url + f"/img/patch/{WIDE}/5/0.jpg")
    assert status == 200
    patch = np.asarray(Image.open(io.BytesIO(body)).convert("RGB"), dtype=np.float32)
    assert np.abs(patch - atlas_patch_clipped(atlas, WIDE, 5, 0, net, 160)).mean() < 8
    for method in ("guided", "deconv", "gradient"):
        status, headers, body = fetch(server.url + f"/img/proj/{WIDE}/5/0/{method}.png")
        assert status == 200, body[:300]
        proj = np.asarray(Image.open(io.BytesIO(body)).convert("RGB"))
        assert proj.shape == (160, 160, 3) and proj.std() > 1  # not a blank picture


def test_weights_of_the_rgb_stem_and_none_for_a_block(server, net):
    html = page(server, "/unit/conv_stem/4")
    assert "/img/weights/conv_stem/4.png" in html
    status, _, body = fetch(server.url + "/img/weights/conv_stem/4.png")
    assert status == 200
    picture = np.asarray(Image.open(io.BytesIO(body)).convert("RGB"), dtype=np.float32) / 255
    w = net.module.get_submodule("conv_stem").weight[4].detach().permute(1, 2, 0).numpy()
    expected = 0.5 + 0.5 * w / np.abs(w).max()  # symmetric scale: grey is 0
    step = picture.shape[0] // 3
    assert np.abs(picture[::step, ::step][:3, :3] - expected).max() < 1 / 255 + 1e-6
    assert "/img/weights/" not in page(server, f"/unit/{WIDE}/4")
    assert fetch(server.url + f"/img/weights/{WIDE}/4.png")[0] == 404
    html = page(server, "/unit/fc/281")  # Linear(1280 -> 1000): its weights are no picture
    assert "/img/weights/" not in html and "Synthesise" in html


def test_image_view_top5_and_activation_maps_match_the_model(server, net):
    html = page(server, "/image/sample-chelsea?layer=blocks.2")
    x = net.preprocess(convsight.sample_images()["chelsea"])
    with torch.no_grad(), capture(net.module, ["blocks.2"]) as acts:
        probs = net.module(x).softmax(1)[0]
    top = probs.topk(5)
    names = re.findall(r'<span class="cname">([^<]*)</span>', html)
    assert names == [net.class_names[int(i)] for i in top.indices]
    assert f"{float(top.values[0]) * 100:.1f}%" in html
    assert f'/img/cattr/sample-chelsea/{int(top.indices[0])}/guided.png' in html
    # the montage has a tile per channel at the layer's resolution
    a = acts["blocks.2"][0]
    status, _, body = fetch(server.url + "/img/acts/sample-chelsea/blocks.2.png")
    assert status == 200
    montage = Image.open(io.BytesIO(body))
    ncols = int(re.search(r'data-ncols="(\d+)"', html).group(1))
    tile_w = int(re.search(r'data-tile-w="(\d+)"', html).group(1))
    assert tile_w == a.shape[2]
    nrows = -(-a.shape[0] // ncols)
    assert montage.size == (ncols * (tile_w + 1) + 1, nrows * (a.shape[1] + 1) + 1)
    # unit JSON: the strongest position of a channel, checked against the captured activations
    for c in (0, 5, 23):
        status, _, body = fetch(server.url + f"/api/unit/sample-chelsea/blocks.2/{c}")
        assert status == 200
        info = json.loads(body)
        y, xx = divmod(int(a[c].flatten().argmax()), a.shape[2])
        assert (info["y"], info["x"]) == (y, xx)
        assert info["value"] == pytest.approx(float(a[c].max()), rel=1e-3, abs=1e-4)
        box = receptive_field(net, "blocks.2").box(y, xx)
        assert info["box"] == [int(v) for v in box]


def test_input_picture_is_what_the_network_sees(server, net):
    from convsight.images import to_tensor

    status, _, body = fetch(server.url + "/img/input/sample-coffee.png")
    assert status == 200
    seen = np.asarray(Image.open(io.BytesIO(body)).convert("RGB"), dtype=np.float32) / 255
    x = to_tensor(convsight.sample_images()["coffee"], net.input_size, net.resize_ratio)
    assert np.abs(seen - x.permute(1, 2, 0).numpy()).max() <= 1 / 255 + 1e-6


def test_unit_patch_and_attribution_pictures(server, net):
    from convsight.images import to_tensor
    from convsight.pictures import fit_square as square

    x = to_tensor(convsight.sample_images()["coffee"], net.input_size, net.resize_ratio)
    with torch.no_grad(), capture(net.module, ["blocks.2"]) as acts:
        net.module(net.normalize(x[None]))
    y, xx = divmod(int(acts["blocks.2"][0, 3].flatten().argmax()), acts["blocks.2"].shape[3])
    top, left, bottom, right = receptive_field(net, "blocks.2").box(y, xx)
    top, left = max(top, 0), max(left, 0)
    bottom, right = min(bottom, INPUT[0] - 1), min(right, INPUT[1] - 1)
    seen = Image.fromarray((x.permute(1, 2, 0).numpy() * 255).round().astype(np.uint8))
    expected = np.asarray(square(seen.crop((left, top, right + 1, bottom + 1)), 160), np.float32)
    status, _, body = fetch(server.url + "/img/upatch/sample-coffee/blocks.2/3.png")
    assert status == 200
    got = np.asarray(Image.open(io.BytesIO(body)).convert("RGB"), dtype=np.float32)
    assert np.abs(got - expected).max() <= 1
    for method in ("gradient", "guided", "deconv"):
        status, _, body = fetch(server.url + f"/img/uattr/sample-coffee/blocks.2/3/{method}.png")
        assert status == 200, body[:300]
        assert Image.open(io.BytesIO(body)).size == (160, 160)


def test_class_attribution_pictures(server):
    for method in ("gradient", "guided", "gradcam", "guided-gradcam"):
        status, _, body = fetch(server.url + f"/img/cattr/sample-coffee/967/{method}.png")
        assert status == 200, body[:300]
        assert Image.open(io.BytesIO(body)).size == INPUT[::-1]
        assert np.asarray(Image.open(io.BytesIO(body))).std() > 1
    assert fetch(server.url + "/img/cattr/sample-coffee/1000/guided.png")[0] == 404
    assert fetch(server.url + "/img/uattr/sample-coffee/blocks.2/3/lrp.png")[0] == 404


def test_dataset_images_can_be_explained(server, atlas):
    html = page(server, f"/image/a-2?layer={WIDE}&unit=5")
    assert '<script type="application/json" id="chosen">' in html
    status, _, body = fetch(server.url + "/img/source/2.jpg")
    assert status == 200 and Image.open(io.BytesIO(body)).size[0] > 0


# ----- uploads -------------------------------------------------------------------------------
def test_upload_a_photo_then_view_it(server, net):
    photo = convsight.sample_images()["astronaut"]
    body, headers = multipart("image", "astronaut.png", png_of(photo))
    status, reply_headers, _ = fetch(server.url + "/images", body, headers)
    assert status == 303
    location = reply_headers["location"]
    assert re.fullmatch(r"/image/u-[0-9a-f]{16}", location)
    html = page(server, location)
    x = net.preprocess(photo.copy())
    with torch.no_grad():
        best = int(net.module(x).argmax())
    assert re.findall(r'<span class="cname">([^<]*)</span>', html)[0] == net.class_names[best]
    again = fetch(server.url + "/images", body, headers)  # same bytes, same id
    assert again[1]["location"] == location


@pytest.mark.parametrize("name, payload, status, words", [
    ("notes.jpg", b"this is a text file, not a picture\n" * 20, 415, b"not an image"),
    ("empty.png", b"", 400, b"empty"),
    ("script.png", b"<script>alert(1)</script>", 415, b"not an image"),
])
def test_upload_refuses_non_images(server, name, payload, status, words):
    body, headers = multipart("image", name, payload)
    got, reply_headers, reply = fetch(server.url + "/images", body, headers)
    assert got == status and words in reply
    assert b"<script>alert" not in reply


def test_upload_refuses_a_truncated_jpeg(server):
    buf = io.BytesIO()
    convsight.sample_images()["coffee"].save(buf, format="JPEG")
    body, headers = multipart("image", "cut.jpg", buf.getvalue()[: len(buf.getvalue()) // 2])
    status, _, reply = fetch(server.url + "/images", body, headers)
    assert status == 415 and b"not an image" in reply


def test_upload_refuses_a_decompression_bomb(server):
    bomb = png_of(Image.new("L", (4000, 3000)))  # 12 megapixels in a few kilobytes
    assert len(bomb) < 100_000
    body, headers = multipart("image", "bomb.png", bomb)
    status, _, reply = fetch(server.url + "/images", body, headers)
    assert status == 413 and b"4000x3000" in reply and b"4,000,000" in reply


def test_upload_refuses_too_many_bytes(server):
    noise = Image.fromarray(np.random.default_rng(0).integers(0, 256, (1000, 1000, 3), np.uint8))
    payload = png_of(noise)
    assert len(payload) > 2_000_000
    body, headers = multipart("image", "big.png", payload)
    status, _, reply = fetch(server.url + "/images", body, headers)
    assert status == 413 and b"2,000,000" in reply


def test_upload_without_content_length_is_refused(server):
    """A chunked body could grow past any limit before it is parsed: it is refused up front."""
    import http.client
    from urllib.parse import urlsplit

    body, headers = multipart("image", "a.png", png_of(Image.new("RGB", (8, 8))))
    url = urlsplit(server.url)
    conn = http.client.HTTPConnection(url.hostname, url.port, timeout=30)
    try:
        conn.putrequest("POST", "/images")
        conn.putheader("Content-Type", headers["Content-Type"])
        conn.putheader("Transfer-Encoding", "chunked")
        conn.putheader("X-Convsight", "1")
        conn.endheaders()
        conn.send(b"%x\r\n%s\r\n0\r\n\r\n" % (len(body), body))
        reply = conn.getresponse()
        assert reply.status == 411 and b"Content-Length" in reply.read()
    finally:
        conn.close()


def test_upload_without_a_file_field(server):
    body, headers = multipart("other", "a.png", b"123")
    status, _, reply = fetch(server.url + "/images", body, headers)
    assert status == 400 and b"'image'" in reply


# ----- refusals: unknown things and paths ----------------------------------------------------
@pytest.mark.parametrize("path, words", [
    ("/layer/blocks.99", b"unknown layer 'blocks.99'"),
    (f"/unit/{WIDE}/112", b"valid units are 0..111"),
    ("/unit/nope/1", b"unknown layer 'nope'"),
    (f"/img/tile/{WIDE}/999.jpg", b"valid units are 0..111"),
    ("/img/tile/conv_head/0.jpg", b"not in the atlas"),
    (f"/img/patch/{WIDE}/0/9.jpg", b"rank 9 does not exist"),
    (f"/img/proj/{WIDE}/0/0/lrp.png", b"unknown method 'lrp'"),
    ("/image/sample-nothing", b"no sample photo 'nothing'"),
    ("/image/u-0123456789abcdef", b"no uploaded image"),
    ("/image/a-999", b"not in the atlas"),
    ("/img/source/999.jpg", b"not in the atlas"),
    ("/image/sample-chelsea?layer=fc", b"activation maps need"),
    ("/image/sample-chelsea?unit=abc", b"unit must be a whole number"),
    (f"/api/synth/{WIDE}/500", b"valid units are 0..111"),
    ("/img/synth/blocks.2/1.png", b"no synthesis"),
])
def test_unknown_things_give_404_with_a_message(server, path, words):
    status, _, body = fetch(server.url + path)
    assert status == 404, (path, status, body[:200])
    assert words in body, body[:300]


@pytest.mark.parametrize("path", [
    "/static/../atlas.json", "/static/%2e%2e/%2e%2e/%2e%2e/etc/passwd",
    "/static/..%2f..%2f..%2fetc%2fpasswd", "/image/..%2f..%2fatlas.json",
    "/image/u-..%2f..%2f..%2fetc%2fpasswd", "/img/thumb/..%2f..%2fatlas.json.jpg",
    "/img/source/-1.jpg", "/img/input/%2fetc%2fpasswd.png", "/static/%2fetc%2fpasswd",
])
def test_paths_cannot_escape(server, path):
    status, _, body = fetch(server.url + path)
    assert status in (400, 404), (path, status)
    assert b"root:" not in body and b"convsight-atlas" not in body


def test_static_assets_are_served_locally(server):
    for name in ("style.css", "explorer.js", "favicon.svg"):
        status, _, body = fetch(server.url + f"/static/{name}")
        assert status == 200 and len(body) > 100
        if name != "favicon.svg":  # (an SVG names its XML namespace by URL)
            assert b"http://" not in body and b"https://" not in body


# ----- concurrency and the cache -------------------------------------------------------------
def test_concurrent_requests_compute_each_picture_once(server):
    explorer = server.server.config.app.state.explorer
    urls = [server.url + f"/img/tile/{WIDE}/{c}.jpg" for c in (90, 91)] * 8
    before = explorer.cache.computed
    with ThreadPoolExecutor(max_workers=8) as pool:
        replies = list(pool.map(fetch, urls))
    assert all(r[0] == 200 for r in replies)
    assert len({r[2] for r in replies[0::2]}) == 1 and len({r[2] for r in replies[1::2]}) == 1
    assert explorer.cache.computed - before == 2
    assert not list(explorer.cache.root.rglob(".*.tmp"))


def test_disk_cache_writers_never_leave_a_half_file(tmp_path):
    from convsight.web.cache import DiskCache

    a, b = DiskCache(tmp_path), DiskCache(tmp_path)  # two servers sharing one folder
    payloads = [bytes([i]) * 300_000 for i in range(4)]
    seen, stop = [], threading.Event()

    def write(cache, start):
        for i in range(40):
            cache.put("shared", payloads[(start + i) % 4])

    def read():
        while not stop.is_set():
            data = DiskCache(tmp_path, memory_items=0).path("shared")
            if data.exists():
                seen.append(data.read_bytes())

    reader = threading.Thread(target=read)
    reader.start()
    writers = [threading.Thread(target=write, args=(c, s)) for c, s in ((a, 0), (b, 1), (a, 2))]
    for t in writers:
        t.start()
    for t in writers:
        t.join()
    stop.set()
    reader.join()
    assert seen and all(s in payloads for s in seen)
    assert not list(tmp_path.rglob(".*.tmp"))


def test_disk_cache_runs_make_once_under_contention(tmp_path):
    from convsight.web.cache import DiskCache

    cache, calls = DiskCache(tmp_path), []

    def make():
        calls.append(1)
        time.sleep(0.2)
        return b"picture"

    with ThreadPoolExecutor(max_workers=6) as pool:
        results = list(pool.map(lambda _: cache.get_or_make("k", make), range(6)))
    assert results == [b"picture"] * 6 and len(calls) == 1
    assert cache.path("../../etc/passwd").resolve().is_relative_to(tmp_path.resolve())


# ----- synthesis on demand -------------------------------------------------------------------
@pytest.mark.slow
def test_synthesis_on_demand_with_progress_and_cache(server):
    api = server.url + "/api/synth/blocks.2/7"
    status, _, body = fetch(api)
    assert status == 200 and b'"state":"none"' in body.replace(b" ", b"")
    status, _, body = fetch(api, b"", WRITE, method="POST")
    assert status == 202 and json.loads(body)["state"] in ("queued", "running")
    states = set()
    deadline = time.time() + 120
    while time.time() < deadline:
        info = json.loads(fetch(api)[2])
        states.add(info["state"])
        if info["state"] in ("done", "error"):
            break
        time.sleep(0.2)
    assert info["state"] == "done", info
    status, _, png = fetch(server.url + "/img/synth/blocks.2/7.png")
    assert status == 200
    image = np.asarray(Image.open(io.BytesIO(png)).convert("RGB"))
    assert image.shape == (64, 64, 3) and image.std() > 2
    assert 'src="/img/synth/blocks.2/7.png"' in page(server, "/unit/blocks.2/7")
    again = json.loads(fetch(api, b"", WRITE, method="POST")[2])
    assert again["state"] == "done"  # cached: nothing recomputed


def test_the_served_model_stays_untouched(server, net):
    with untouched(net.module):
        for path in ["/image/sample-rocket?layer=blocks.2&unit=4", f"/img/proj/{WIDE}/6/1/guided.png",
                     "/img/uattr/sample-rocket/blocks.2/4/deconv.png",
                     "/img/cattr/sample-rocket/1/gradcam.png", "/unit/conv_stem/1"]:
            assert fetch(server.url + path)[0] == 200


# ----- model alone, and the command line -----------------------------------------------------
def test_model_only_server(tmp_path):
    net = convsight.load_model()
    net.input_size = INPUT
    srv = start_server(tmp_path, model=net)
    try:
        html = page(srv, "/")
        assert "no atlas loaded" in html
        html = page(srv, "/unit/blocks.5/3")
        assert "No atlas is loaded" in html and "Synthesise" in html
        assert "sample-chelsea" in page(srv, "/images")
        assert fetch(srv.url + "/img/tile/blocks.5/3.jpg")[0] == 404
    finally:
        srv.stop()


def test_serve_command_refuses_without_atlas_or_model(capsys):
    from convsight.cli import main

    assert main(["serve"]) == 2
    assert "give an atlas folder" in capsys.readouterr().err
    assert main(["serve", "/no/such/atlas"]) == 2
    assert "atlas folder not found" in capsys.readouterr().err


def test_serve_command_runs_a_server(atlas_dir, tmp_path):
    import socket
    import subprocess
    import sys

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen([sys.executable, "-m", "convsight.cli", "serve", str(atlas_dir),
                             "--port", str(port), "--cache", str(tmp_path)],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline, status = time.time() + 120, None
        while time.time() < deadline and proc.poll() is None:
            try:
                status, _, body = fetch(f"http://127.0.0.1:{port}/layer/blocks.2")
                break
            except (urllib.error.URLError, ConnectionError):
                time.sleep(0.3)
        assert status == 200 and b"blocks.2" in body
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def test_atlas_with_another_preprocessing_is_seen_at_the_atlas_size(atlas_dir, tmp_path):
    from convsight.web import create_app

    net = convsight.load_model()  # 224 px, the atlas was mined at 112 px
    app = create_app(atlas_dir, net, cache_dir=tmp_path)
    served = app.state.explorer.net
    assert served.input_size == INPUT and served.module is net.module
    assert net.input_size == (224, 224)  # the caller's Network is left as it was
