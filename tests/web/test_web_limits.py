"""The explorer's memory stays bounded: uploads by the bytes they decode and how many decode at
once, the picture cache's lock table and in-memory copies by what is in use.

Upload memory is the server's own peak (VmHWM, in a child process: ``web_process.py``) above its
settled baseline. ``bench/web_memory.py`` prints the same cases for the original code: there one
82 KB 16-bit PNG took the server up by 962 MB and four 36-megapixel uploads at once by 1288 MB.
"""

from __future__ import annotations

import io
import random
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
from PIL import Image

import convsight
from convsight.web.cache import DiskCache
from convsight.web.inputs import DECODERS

from .support import start_tiny_server
from .web_process import ServerProcess

MB = 2**20
SIDE = 6000  # 36 megapixels, under the default limit of 40


def png(image: Image.Image) -> bytes:
    buf = io.BytesIO()
    image.save(buf, format="PNG")
    return buf.getvalue()


def form(payload: bytes) -> tuple[bytes, dict]:
    boundary = uuid.uuid4().hex
    body = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"image\"; filename=\"a\""
            "\r\nContent-Type: application/octet-stream\r\n\r\n").encode() + payload + \
        f"\r\n--{boundary}--\r\n".encode()
    return body, {"Content-Type": f"multipart/form-data; boundary={boundary}", "X-Convsight": "1"}


def upload(srv, payload: bytes) -> tuple[int, bytes]:
    body, headers = form(payload)
    status, _, reply = srv.request("POST", "/api/upload", body, headers)
    return status, reply


def settled(srv: ServerProcess) -> int:
    """One small upload (imports, Pillow's plugins), then the resident baseline."""
    assert upload(srv, png(Image.new("RGB", (64, 64), (1, 2, 3))))[0] == 201
    srv.reset_peak()
    return srv.rss()


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    srv = start_tiny_server(tmp_path_factory.mktemp("limits-cache"))
    yield srv
    srv.stop()


# ----- uploads -------------------------------------------------------------------------------
@pytest.mark.slow
def test_a_16_bit_upload_takes_about_its_decoded_size(tmp_path):
    """6000x6000 16-bit gray: 72 MB decoded. It used to become float64 arrays (+962 MB)."""
    payload = png(Image.fromarray(np.full((SIDE, SIDE), 40_000, np.uint16)))
    assert len(payload) < 100_000
    decoded = SIDE * SIDE * 2
    with ServerProcess(tmp_path) as srv:
        base = settled(srv)
        status, reply = upload(srv, payload)
        peak = srv.peak() - base
    assert status == 201, reply
    print(f"\n16-bit {SIDE}x{SIDE} upload: peak +{peak / MB:.0f} MB "
          f"({decoded / MB:.0f} MB decoded)")
    assert peak < 1.5 * decoded


@pytest.mark.slow
def test_parallel_uploads_decode_a_few_at_a_time(tmp_path):
    """Four 36-megapixel PNGs at once take about what DECODERS (2) of them take, not four
    times one: the others wait for a decoding slot."""
    images = [png(Image.new("RGB", (SIDE, SIDE), (c, 90, 200))) for c in (10, 60, 110, 160, 210)]
    with ServerProcess(tmp_path) as srv:
        base = settled(srv)
        assert upload(srv, images[0])[0] == 201
        one = srv.peak() - base
        srv.reset_peak()
        base = srv.rss()
        with ThreadPoolExecutor(4) as pool:
            statuses = [s for s, _ in pool.map(lambda p: upload(srv, p), images[1:])]
        four = srv.peak() - base
    print(f"\none 36-megapixel upload: peak +{one / MB:.0f} MB; four at once: +{four / MB:.0f} MB")
    assert statuses == [201] * 4
    assert DECODERS == 2 and four < (DECODERS + 0.6) * one


PALETTE_SIDE = 6300  # 39.7 megapixels, under the default limit of 40


def _encoded(image: Image.Image, fmt: str, **options) -> bytes:
    buf = io.BytesIO()
    image.save(buf, format=fmt, **options)
    return buf.getvalue()


def _palette() -> Image.Image:
    image = Image.new("P", (PALETTE_SIDE, PALETTE_SIDE), 0)
    image.putpalette([(i * 7) % 256 for i in range(768)])
    return image


def tiny_uploads() -> dict[str, bytes]:
    """A few kB each that decode to 40 megapixels of 1 byte (palette, 1-bit, GIF) or 4 bytes
    (LA) a pixel; the attack run's cases (issue 23)."""
    one = Image.new("1", (PALETTE_SIDE, PALETTE_SIDE), 1)
    return {
        "palette+transparency": _encoded(_palette(), "PNG", transparency=0),
        "palette": _encoded(_palette(), "PNG"),
        "1-bit png": _encoded(one, "PNG"),
        "group-4 tiff": _encoded(one, "TIFF", compression="group4"),
        "gif": _encoded(_palette(), "GIF"),
        "gray+alpha": _encoded(Image.new("LA", (PALETTE_SIDE, PALETTE_SIDE), (3, 100)), "PNG"),
    }


# what Pillow holds for the decoded picture in its own mode (1, L and P take one byte a pixel,
# LA four), and what a decode may add: a band converted at a time, the image shrunk to 1024 px
SOURCE_BYTES = {"gray+alpha": 4}
SLACK = 48 * MB


@pytest.mark.slow
@pytest.mark.parametrize("name", list(tiny_uploads()))
def test_tiny_uploads_of_every_mode_cost_about_their_decoded_size(tmp_path, name):
    """Palette, 1-bit and GIF uploads were converted to RGB(A) at full size before they were
    shrunk: +623 MB peak for a 40 KB palette PNG with transparency, +210 MB without."""
    payload = tiny_uploads()[name]
    assert len(payload) < 100_000
    decoded = PALETTE_SIDE ** 2 * SOURCE_BYTES.get(name, 1)
    with ServerProcess(tmp_path) as srv:
        base = settled(srv)
        status, reply = upload(srv, payload)
        peak = srv.peak() - base
        kept = srv.rss() - base
    print(f"\n{name} ({len(payload):,} bytes): peak +{peak / MB:.0f} MB, kept +{kept / MB:.0f} MB "
          f"(decoded in its mode {decoded / MB:.0f} MB)")
    assert status == 201, reply
    assert peak < decoded + SLACK
    assert kept < 24 * MB


@pytest.mark.slow
def test_four_palette_uploads_at_once_keep_little_after(tmp_path):
    """Four 40 KB palette PNGs at once took +1.29 GB and kept +862 MB after."""
    image = _palette()
    payloads = [_encoded(image, "PNG", transparency=t) for t in (0, 1, 2, 3)]
    with ServerProcess(tmp_path) as srv:
        base = settled(srv)
        with ThreadPoolExecutor(4) as pool:
            statuses = [s for s, _ in pool.map(lambda p: upload(srv, p), payloads)]
        peak = srv.peak() - base
        time.sleep(0.2)
        kept = srv.rss() - base
    print(f"\nfour palette uploads at once: peak +{peak / MB:.0f} MB, kept +{kept / MB:.0f} MB")
    assert statuses == [201] * 4
    assert peak < DECODERS * (PALETTE_SIDE ** 2 + SLACK)
    assert kept < 32 * MB


def test_uploads_wait_for_a_decoding_slot_then_get_503(server):
    images = server.server.config.app.state.explorer.input_images
    wait = images.decode_wait
    images.decode_wait = 0.3
    release = threading.Event()
    busy = [images._decoders.submit(release.wait, 30) for _ in range(DECODERS)]  # all threads
    try:
        start = time.perf_counter()
        status, reply = upload(server_client(server), png(Image.new("RGB", (20, 20), (5, 6, 7))))
        assert status == 503 and b"busy decoding other uploads" in reply
        assert time.perf_counter() - start >= 0.3
    finally:
        release.set()
        images.decode_wait = wait
    assert all(b.result(timeout=10) for b in busy)
    status, _ = upload(server_client(server), png(Image.new("RGB", (20, 20), (5, 6, 7))))
    assert status == 201


@pytest.mark.parametrize("name, image, words", [
    # same pixels as an accepted 8-bit image, four bytes each: over 3 bytes x 40 megapixels
    ("float", Image.fromarray(np.full((SIDE, SIDE), 0.5, np.float32)), b"takes 137 MiB to decode"),
    ("thin", Image.new("L", (1, 40_000)), b"has a side over the 32,768"),
])
def test_uploads_are_limited_by_the_bytes_they_decode(server, name, image, words):
    buf = io.BytesIO()
    image.save(buf, format="TIFF" if name == "float" else "PNG", compression="tiff_adobe_deflate"
               if name == "float" else None)
    status, reply = upload(server_client(server), buf.getvalue())
    assert status == 413 and words in reply, reply


class server_client:  # noqa: N801 - a tiny adapter: ServerProcess.request over a BackgroundServer
    def __init__(self, srv) -> None:
        self.srv = srv

    def request(self, method, path, body=None, headers=None):
        import http.client

        conn = http.client.HTTPConnection("127.0.0.1", self.srv.port, timeout=60)
        try:
            conn.request(method, path, body=body, headers=headers or {})
            reply = conn.getresponse()
            return reply.status, dict(reply.getheaders()), reply.read()
        finally:
            conn.close()


# ----- the picture cache ---------------------------------------------------------------------
def test_the_lock_table_keeps_only_keys_in_use(tmp_path):
    """The cache once kept a lock for every key ever asked for: 8000 unknown keys, 8000 locks."""
    cache = DiskCache(tmp_path)

    def missing():
        raise convsight.ConvsightError("no such picture")

    for i in range(8000):
        with pytest.raises(convsight.ConvsightError):
            cache.get_or_make(f"thumb/u-{i:016x}/160.jpg", missing)
    assert cache.locks_in_use == 0

    started, release, seen = threading.Event(), threading.Event(), []

    def slow():
        started.set()
        release.wait(10)
        return b"picture"

    with ThreadPoolExecutor(4) as pool:
        futures = [pool.submit(cache.get_or_make, "k", slow) for _ in range(4)]
        started.wait(10)
        time.sleep(0.1)
        seen.append(cache.locks_in_use)  # one key: one lock, however many wait for it
        release.set()
        assert [f.result() for f in futures] == [b"picture"] * 4
    assert seen == [1] and cache.locks_in_use == 0 and cache.computed == 1


def test_random_404_urls_leave_no_locks_behind(server):
    cache = server.server.config.app.state.explorer.cache
    client = server_client(server)
    rng = random.Random(0)
    for _ in range(1000):
        kind = rng.choice(["thumb/u-{:016x}.jpg", "input/u-{:016x}.png"])
        assert client.request("GET", "/img/" + kind.format(rng.getrandbits(64)))[0] == 404
    assert cache.locks_in_use == 0


def test_the_memory_copy_is_bounded_in_bytes(tmp_path):
    cache = DiskCache(tmp_path, memory_items=1000, memory_bytes=1 * MB)
    for i in range(100):
        cache.put(f"k{i}", bytes([i]) * 100_000)
    entries, held = cache.memory_held
    assert held <= 1 * MB and entries == 10
    assert cache.get("k0") == bytes([0]) * 100_000  # still on disk
    cache.get("k99")  # most recently used: kept in memory, though its file is gone
    cache.path("k99").unlink()
    assert cache.get("k99") == bytes([99]) * 100_000
    cache.put("big", b"x" * (MB // 4))  # over an eighth of the cap: on disk only
    assert cache.memory_held[1] <= 1 * MB and cache.get("big") == b"x" * (MB // 4)
