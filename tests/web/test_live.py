"""The Live page without a browser: the engine's numbers against plain PyTorch, and the WebSocket
(handshake checks, the newest-frame slot, bounds, nothing written to disk) with a real client.

The browser half (a fake camera in headless Chromium) is tests/web/test_live_browser.py.
"""

from __future__ import annotations

import io
import json
import socket
import struct
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import convsight
from convsight.capture import eval_mode
from convsight.web.explorer import Explorer, NotFound
from convsight.web.live import VIEWS, BadFrame, LiveEngine, LiveSettings

from .support import start_tiny_server
from ..tinynets import tiny_net

websockets = pytest.importorskip("websockets.sync.client")


@pytest.fixture(scope="module")
def engine():
    net = convsight.as_network(tiny_net())
    net.input_size = (64, 64)
    return LiveEngine(Explorer(net, cache_dir=tempfile.mkdtemp(prefix="cs-live-")))


def jpeg(side: int = 64, seed: int = 0, quality: int = 95) -> bytes:
    rng = np.random.default_rng(seed)
    buf = io.BytesIO()
    Image.fromarray((rng.random((side, side, 3)) * 255).astype(np.uint8)).save(
        buf, format="JPEG", quality=quality)
    return buf.getvalue()


def unpack(message: bytes) -> tuple[dict, dict[str, bytes]]:
    (size,) = struct.unpack(">I", message[:4])
    head = json.loads(message[4:4 + size])
    body = message[4 + size:]
    return head, {k: body[a:a + n] for k, (a, n) in head["parts"].items()}


def plain_forward(engine: LiveEngine, data: bytes, layer: str):
    """The layer's output and the logits by a hook of our own on the user's model."""
    net = engine.source
    image = Image.open(io.BytesIO(data)).convert("RGB")
    if image.size == (64, 64):  # the input size: taken as it is
        pixels = torch.from_numpy(np.asarray(image, np.float32) / 255).permute(2, 0, 1)
        x = net.normalize(pixels[None])
    else:  # resized and centre-cropped as every photo
        x = net.preprocess(image)
    found = {}
    handle = net.module.get_submodule(layer).register_forward_hook(
        lambda m, i, o: found.setdefault("a", o.detach().clone()))
    try:
        with torch.no_grad(), eval_mode(net.module):  # tiny_net leaves bn1 in train mode
            logits = net.module(x)
    finally:
        handle.remove()
    return x, found["a"][0], logits[0]


# ----- the engine ------------------------------------------------------------------------------
@pytest.mark.parametrize("norm", ["layer", "tile"])
def test_tiles_and_classes_match_plain_pytorch(engine, norm):
    data = jpeg(80, seed=1)  # not the input size: resized and centre-cropped as photos are
    _, a, logits = plain_forward(engine, data, "conv2")
    head, parts = unpack(engine.process(data, LiveSettings("conv2", 5, norm=norm)).pack())
    assert head["shape"] == list(a.shape)
    a = a.numpy()
    signed = a.min() < 0
    assert head["signed"] == signed
    peak = np.abs(a).max(axis=(1, 2), keepdims=True) if norm == "tile" else np.abs(a).max()
    want = np.clip((0.5 + 0.5 * a / peak) if signed else a / peak, 0, 1)
    got = np.frombuffer(parts["tiles"], np.uint8).reshape(a.shape)
    assert np.abs(got.astype(int) - np.round(want * 255)).max() <= 1
    unit = np.frombuffer(parts["unit"], np.float32).reshape(a.shape[1:])
    np.testing.assert_allclose(unit, a[5], rtol=1e-5, atol=1e-5)
    p = torch.softmax(logits, 0)
    top = p.topk(5)
    assert [c[0] for c in head["classes"]] == top.indices.tolist()
    np.testing.assert_allclose([c[2] for c in head["classes"]], top.values.numpy(), atol=1e-4)
    assert "backward" not in parts and head["stopped"] is False


def test_signed_layers_are_grey_at_zero(engine):
    data = jpeg(64, seed=2)
    _, a, _ = plain_forward(engine, data, "conv1")  # a convolution: negative values too
    head, parts = unpack(engine.process(data, LiveSettings("conv1", 0)).pack())
    assert head["signed"] and a.min() < 0
    got = np.frombuffer(parts["tiles"], np.uint8).reshape(a.shape)
    zero = (a.abs() < 1e-3 * a.abs().max()).numpy()
    assert zero.any() and np.all(np.abs(got[zero].astype(int) - 128) <= 1)


@pytest.mark.parametrize("view", ["gradient", "guided", "deconv"])
def test_backward_view_is_the_attribution_of_the_unit(engine, view):
    data = jpeg(64, seed=3)
    x, _, _ = plain_forward(engine, data, "conv3")
    want = convsight.attribute(engine.source, x, "conv3:4", method=view)[0]
    s = LiveSettings("conv3", 4, view=view)
    acts, logits, grad, stopped = engine._run(engine._network(), engine.decode(data), s)
    assert torch.allclose(grad, want, rtol=1e-4, atol=1e-6 * float(want.abs().max()))
    assert float(want.abs().max()) > 0
    head, parts = unpack(engine.process(data, s).pack())
    assert Image.open(io.BytesIO(parts["backward"])).size == (64, 64)
    assert head["settings"]["view"] == view


def test_no_gradients_without_a_backward_view_and_early_stop_without_classes(engine):
    net = engine._network()
    seen = {"grad": [], "fc": 0}
    hooks = [net.module.conv2.register_forward_hook(
                 lambda m, i, o: seen["grad"].append(torch.is_grad_enabled())),
             net.module.fc.register_forward_hook(
                 lambda m, i, o: seen.__setitem__("fc", seen["fc"] + 1))]
    try:
        data = jpeg(64, seed=4)
        head = engine.process(data, LiveSettings("conv2", 0, classes=False)).header
        assert seen == {"grad": [False], "fc": 0} and head["stopped"] and head["classes"] is None
        engine.process(data, LiveSettings("conv2", 0))  # the top classes need the whole pass
        assert seen == {"grad": [False, False], "fc": 1}
        engine.process(data, LiveSettings("conv2", 0, view="guided"))
        assert seen["grad"][-1] is True
    finally:
        for h in hooks:
            h.remove()


def test_settings_are_checked(engine):
    s = engine.settings({"layer": "conv3", "unit": 15, "view": "deconv"})
    assert (s.layer, s.unit, s.view, s.norm, s.classes) == ("conv3", 15, "deconv", "layer", True)
    assert engine.settings({"layer": "conv2"}, s).unit == 0  # another layer: its first unit
    assert engine.settings({"norm": "tile"}, s).unit == 15
    for bad, message in [({"layer": "conv9"}, "Did you mean: conv3"), ({"layer": "fc"}, "no spatial"),
                         ({"unit": 16}, r"0\.\.15"), ({"unit": True}, "does not exist"),
                         ({"view": "occlusion"}, "view must be one of"), ({"x": 1}, "unknown"),
                         ({"classes": "yes"}, "true or false"), ([1], "JSON object")]:
        with pytest.raises(NotFound, match=message):
            engine.settings(bad, s)
    assert set(VIEWS) == {"off", "gradient", "guided", "deconv"}


def test_bad_frames_are_refused_before_decoding(engine):
    s = LiveSettings("conv2")
    with pytest.raises(BadFrame, match="JPEG or PNG"):
        engine.process(b"GIF89a not a frame", s)
    with pytest.raises(BadFrame, match="limit"):
        engine.process(b"\xff" * (4 * 2**20 + 1), s)
    buf = io.BytesIO()
    Image.new("L", (5000, 10)).save(buf, format="PNG")  # small file, too wide a frame
    with pytest.raises(BadFrame, match="too large"):
        engine.process(buf.getvalue(), s)


# ----- the socket ------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def server(tmp_path_factory):
    srv = start_tiny_server(tmp_path_factory.mktemp("live-cache"))
    yield srv
    srv.stop()


def socket_url(srv) -> str:
    return f"ws://127.0.0.1:{srv.port}/live/socket"


@contextmanager
def open_socket(srv, host: str = "127.0.0.1", **kw):
    """A client socket to the Live page's WebSocket (named ``host`` in the URL and Host header,
    connected to the server's port) and the settings the server greets it with."""
    raw = socket.create_connection(("127.0.0.1", srv.port), timeout=30)
    url = f"ws://{host}:{srv.port}/live/socket"
    with websockets.connect(url, sock=raw, open_timeout=30, **kw) as ws:
        hello = json.loads(ws.recv(timeout=30))
        assert hello["type"] == "settings"
        yield ws, hello


def test_frames_come_back_with_their_number(server):
    with open_socket(server, origin=f"http://127.0.0.1:{server.port}") as (ws, hello):
        assert hello["settings"]["layer"] in ("conv1", "conv2", "conv3", "pool", "relu", "bn1")
        ws.send(json.dumps({"layer": "conv3", "unit": 2, "view": "guided"}))
        reply = json.loads(ws.recv(timeout=30))
        assert reply["settings"]["unit"] == 2 and reply["unit"]["unit_url"] == "/unit/conv3/2"
        ws.send(struct.pack(">I", 41) + jpeg())
        head, parts = unpack(ws.recv(timeout=60))
        assert (head["id"], head["received"], head["dropped"], head["done"]) == (41, 1, 0, 1)
        assert head["shape"] == [16, 16, 16] and set(parts) == {"tiles", "unit", "backward"}
        ws.send(json.dumps({"unit": 99}))
        assert "0..15" in json.loads(ws.recv(timeout=30))["message"]
        ws.send(struct.pack(">I", 42) + b"not a picture")
        error = json.loads(ws.recv(timeout=30))
        assert error["type"] == "error" and error["id"] == 42
        ws.send(struct.pack(">I", 43) + jpeg())  # the socket goes on after errors
        assert unpack(ws.recv(timeout=60))[0]["id"] == 43


def test_the_server_keeps_only_the_newest_frame(server):
    live = server.server.config.app.state.live
    process = live.process

    def slow(data, settings):
        time.sleep(0.3)
        return process(data, settings)

    live.process = slow
    try:
        with open_socket(server) as (ws, _):
            for i in range(1, 11):
                ws.send(struct.pack(">I", i) + jpeg(seed=i))
            heads = [unpack(ws.recv(timeout=60))[0]]
            while heads[-1]["done"] + heads[-1]["dropped"] < 10:
                heads.append(unpack(ws.recv(timeout=60))[0])
    finally:
        live.process = process
    last = heads[-1]
    assert last["received"] == 10 and last["id"] == 10  # the newest frame is always shown
    assert last["dropped"] >= 5 and len(heads) == last["done"] <= 5


def test_the_worker_goes_on_to_the_waiting_frame_without_the_event_loop(server):
    """Frame 2 waits while frame 1 is computed; then the event loop is blocked (a settings
    message that sleeps in it). The worker must start frame 2 as soon as frame 1 is done, not
    when the event loop is free again: the loop is never between two passes."""
    import threading

    live = server.server.config.app.state.live
    process, settings = live.process, live.settings
    go, starts, ends = threading.Event(), {}, {}

    def slow(data, s):
        frame_id = len(starts) + 1
        starts[frame_id] = time.perf_counter()
        if frame_id == 1:
            go.wait(30)
        try:
            return process(data, s)
        finally:
            ends[frame_id] = time.perf_counter()

    def blocking(data, current=None):
        if data == {"norm": "tile"}:
            go.set()
            time.sleep(1.5)  # in the event loop: nothing is received or sent meanwhile
        return settings(data, current)

    live.process, live.settings = slow, blocking
    try:
        with open_socket(server) as (ws, _):
            ws.send(struct.pack(">I", 1) + jpeg(seed=1))
            deadline = time.time() + 30
            while 1 not in starts and time.time() < deadline:
                time.sleep(0.02)
            ws.send(struct.pack(">I", 2) + jpeg(seed=2))
            time.sleep(0.5)  # frame 2 reaches the slot
            ws.send(json.dumps({"norm": "tile"}))
            messages = [ws.recv(timeout=60) for _ in range(3)]
    finally:
        live.process, live.settings = process, settings
    assert [unpack(m)[0]["id"] for m in messages if isinstance(m, bytes)] == [1, 2]
    assert starts[2] - ends[1] < 0.5, "frame 2 waited for the blocked event loop"


def test_frames_are_never_written_to_disk(server):
    root = server.server.config.app.state.explorer.cache.root
    before = sorted(p for p in root.rglob("*"))
    with open_socket(server) as (ws, _):
        for i in range(5):
            ws.send(struct.pack(">I", i) + jpeg(seed=10 + i))
            unpack(ws.recv(timeout=60))
    assert sorted(p for p in root.rglob("*")) == before


@pytest.mark.parametrize("origin, host, headers", [
    ("http://evil.example", None, None),
    ("null", None, None),
    ("http://127.0.0.1:1", None, None),  # another port is another origin
    (None, None, {"Sec-Fetch-Site": "cross-site"}),
    ("http://attacker.example:{port}", "attacker.example", None),  # DNS rebinding
])
def test_cross_site_handshakes_are_refused(server, origin, host, headers):
    """What a browser sends when another site's page opens a WebSocket to the explorer."""
    from websockets.exceptions import InvalidStatus

    with pytest.raises(InvalidStatus) as refused:
        with open_socket(server, host or "127.0.0.1",
                         origin=origin.format(port=server.port) if origin else None,
                         additional_headers=headers):
            pass
    assert refused.value.response.status_code == 403


def test_the_explorers_own_origin_and_scripts_are_let_in(server):
    for host, origin in [("127.0.0.1", "http://127.0.0.1:{port}"),
                         ("localhost", "http://localhost:{port}"), ("localhost", None)]:
        with open_socket(server, host, origin=origin.format(port=server.port) if origin else None,
                         additional_headers={"Sec-Fetch-Site": "same-origin"} if origin else None
                         ) as (ws, hello):
            assert hello["settings"]["view"] == "off"


def test_a_frame_over_the_limit_closes_the_socket(server):
    from websockets.exceptions import ConnectionClosed

    with open_socket(server, max_size=None) as (ws, _):
        with pytest.raises(ConnectionClosed) as closed:
            ws.send(struct.pack(">I", 1) + b"\0" * (5 * 2**20))
            ws.recv(timeout=30)
    # 1009 (message too big), or the connection cut while the client was still sending
    assert closed.value.rcvd is None or closed.value.rcvd.code == 1009
    with open_socket(server) as (ws, _):  # the server goes on
        ws.send(struct.pack(">I", 2) + jpeg())
        assert unpack(ws.recv(timeout=60))[0]["id"] == 2


def test_at_most_eight_live_pages(server):
    from contextlib import ExitStack

    from websockets.exceptions import InvalidStatus

    with ExitStack() as stack:
        for _ in range(8):
            stack.enter_context(open_socket(server))
        with pytest.raises(InvalidStatus):
            with open_socket(server):
                pass
    deadline = time.time() + 10
    while server.server.config.app.state.live_sockets.count and time.time() < deadline:
        time.sleep(0.05)
    with open_socket(server):  # places are given back
        pass


def test_the_live_page_keeps_its_csp_and_links(server, tmp_path):
    import urllib.request

    with urllib.request.urlopen(f"http://127.0.0.1:{server.port}/live") as r:
        csp, body = r.headers["content-security-policy"], r.read().decode()
    assert "script-src 'self'" in csp and "media-src blob:" in csp and "unsafe" not in csp
    assert 'src="/static/live.js"' in body and "<script>" not in body
    with urllib.request.urlopen(f"http://127.0.0.1:{server.port}/") as r:
        assert 'href="/live"' in r.read().decode()
    assert Path(convsight.web.__file__).with_name("static").joinpath("live.js").is_file()


# ----- convsight live ---------------------------------------------------------------------------
def test_convsight_live_serves_the_page_for_the_default_model(tmp_path):
    import os
    import re
    import subprocess
    import sys
    import urllib.request

    src = str(Path(__file__).resolve().parents[2] / "src")
    proc = subprocess.Popen([sys.executable, "-m", "convsight", "live", "--port", "0",
                             "--cache", str(tmp_path)], stdout=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONPATH": src, "OMP_NUM_THREADS": "1"})
    try:
        line = proc.stdout.readline()
        url = re.search(r"http://127\.0\.0\.1:[0-9]+/live(?=\s)", line)
        assert url, line
        with urllib.request.urlopen(url.group(0), timeout=120) as r:
            body = r.read().decode()
        assert 'id="live"' in body and "efficientnet_lite0" in body and 'value="blocks.9"' in body
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def test_convsight_live_says_what_is_wrong(capsys):
    from convsight.cli import main

    assert main(["live", "--port", "70000"]) == 2
    assert "port 70000 is not valid" in capsys.readouterr().err
    assert main(["live", "--device", "nonsense", "--port", "0"]) == 2
