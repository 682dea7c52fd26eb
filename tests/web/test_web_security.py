"""The explorer against other web sites and junk: real HTTP requests to a running server.

A web page the user opens can send requests to the explorer (it listens on the user's machine),
and through DNS rebinding an attacker's name can point at 127.0.0.1. These tests forge what such
pages send (``Host``, ``Origin``, ``Sec-Fetch-Site``, simple cross-site POSTs) with http.client
and check that nothing is started, stored or shown; then the headers on every answer, query
values that are not plain numbers, what error answers tell, and ``convsight serve`` on a busy
port and on all interfaces.
"""

from __future__ import annotations

import http.client
import io
import json
import math
import re
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
from PIL import Image

import convsight
from convsight.web import create_app, serve

from .support import start_tiny_server
from ..tinynets import tiny_net

SRC = str(Path(__file__).resolve().parents[2] / "src")
SYNTH = "/api/synth/conv2/3"


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    srv = start_tiny_server(tmp_path_factory.mktemp("security-cache"))
    yield srv
    srv.stop()


def request(srv, method: str, path: str, headers: dict | None = None, body: bytes | None = None,
            host: str | None = None) -> tuple[int, dict, bytes]:
    """One request with exactly the headers given (Host defaults to the server's address)."""
    conn = http.client.HTTPConnection("127.0.0.1", srv.port, timeout=60)
    try:
        conn.putrequest(method, path, skip_host=True, skip_accept_encoding=True)
        conn.putheader("Host", host if host is not None else f"127.0.0.1:{srv.port}")
        for name, value in (headers or {}).items():
            conn.putheader(name, value)
        if body is not None:
            conn.putheader("Content-Length", str(len(body)))
        conn.endheaders(body)
        reply = conn.getresponse()
        return reply.status, {k.lower(): v for k, v in reply.getheaders()}, reply.read()
    finally:
        conn.close()


def upload_body(image: Image.Image) -> tuple[bytes, str]:
    buf = io.BytesIO()
    image.save(buf, format="PNG")
    boundary = uuid.uuid4().hex
    body = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"image\"; filename=\"x.png\""
            "\r\nContent-Type: image/png\r\n\r\n").encode() + buf.getvalue() + \
        f"\r\n--{boundary}--\r\n".encode()
    return body, f"multipart/form-data; boundary={boundary}"


def uploads(srv) -> list[Path]:
    return sorted(srv.server.config.app.state.explorer.input_images.uploads.glob("u-*.png"))


def synth_state(srv) -> str:
    return json.loads(request(srv, "GET", SYNTH)[2])["state"]


# ----- DNS rebinding: the Host header --------------------------------------------------------
@pytest.mark.parametrize("path", ["/", "/images", "/img/thumb/sample-chelsea.jpg",
                                  "/static/explorer.js", SYNTH, "/nothing/here"])
def test_a_foreign_host_gets_nothing(server, path):
    """The page of a rebound name (attacker.example -> 127.0.0.1) reads no page, picture, file or
    JSON: 400 with one plain sentence, whatever the route."""
    status, headers, body = request(server, "GET", path, host=f"attacker.example:{server.port}")
    assert status == 400, (path, status)
    assert headers["content-type"].startswith("text/plain")
    assert b"does not answer to the host 'attacker.example" in body and body.count(b"\n") == 1
    assert b"<html" not in body and b"\x89PNG" not in body and b"\xff\xd8" not in body


@pytest.mark.parametrize("host", [None, "localhost:{port}", "LOCALHOST:{port}", "[::1]:{port}",
                                  "127.0.0.1"])
def test_the_explorer_answers_to_its_own_names(server, host):
    status, _, body = request(server, "GET", "/",
                              host=host.format(port=server.port) if host else None)
    assert status == 200 and b"Layers of" in body


@pytest.mark.parametrize("host", ["", "a b", "evil.example:80:80", "127.0.0.1.evil.example",
                                  "localhost.evil.example:{port}", "xn--lcalhost-9za:{port}"])
def test_odd_host_headers_are_refused(server, host):
    assert request(server, "GET", "/", host=host.format(port=server.port))[0] == 400


def test_two_host_headers_are_refused(server):
    assert request(server, "GET", "/", {"Host": "attacker.example"})[0] == 400


def test_allowed_hosts_add_names(tmp_path):
    srv = start_tiny_server(tmp_path, allowed_hosts=["explorer.lan", "Lab-Box:8080"])
    try:
        for host, status in [("explorer.lan", 200), (f"explorer.lan:{srv.port}", 200),
                             ("lab-box", 200), ("other.lan", 400), ("localhost", 200)]:
            assert request(srv, "GET", "/static/style.css", host=host)[0] == status, host
    finally:
        srv.stop()
    with pytest.raises(convsight.ConvsightError, match="is not a host name"):
        create_app(model=tiny_net(), cache_dir=tmp_path, allowed_hosts=["http://x/"])


# ----- cross-site writes ---------------------------------------------------------------------
CROSS_SITE = [
    # what a page on another site can send without a preflight (a "simple" request)
    {"Origin": "http://attacker.example", "Content-Type": "text/plain"},
    {"Origin": "http://attacker.example", "Sec-Fetch-Site": "cross-site", "X-Convsight": "1"},
    {"Origin": "http://localhost:1", "Sec-Fetch-Site": "same-site"},  # another local server
    {"Origin": "null", "Content-Type": "text/plain"},  # a sandboxed frame or a file:// page
    {"Sec-Fetch-Site": "cross-site"},  # a browser that sent no Origin
    {"Content-Type": "text/plain"},  # neither: a client that is not the explorer's page
]


@pytest.mark.parametrize("headers", CROSS_SITE)
def test_cross_site_synthesis_requests_start_nothing(server, headers):
    status, reply_headers, body = request(server, "POST", SYNTH, headers, b"")
    assert status == 403, (headers, status, body)
    assert reply_headers["content-type"].startswith("text/plain")
    assert synth_state(server) == "none"  # nothing queued


@pytest.mark.parametrize("headers", CROSS_SITE)
@pytest.mark.parametrize("path", ["/images", "/api/upload"])
def test_cross_site_uploads_store_nothing(server, headers, path):
    body, kind = upload_body(Image.new("RGB", (40, 30), (250, 10, 10)))
    before = uploads(server)
    status, _, _ = request(server, "POST", path, {**headers, "Content-Type": kind}, body)
    assert status == 403
    assert uploads(server) == before


def test_a_rebound_page_cannot_write_either(server):
    """Same-origin in the browser's eyes (the rebound name), refused by the Host check."""
    evil = f"attacker.example:{server.port}"
    headers = {"Origin": f"http://{evil}", "Sec-Fetch-Site": "same-origin", "X-Convsight": "1"}
    assert request(server, "POST", SYNTH, headers, b"", host=evil)[0] == 400
    assert synth_state(server) == "none"


def test_the_explorers_own_page_can_write(server):
    """What explorer.js sends (X-Convsight, same origin), and the form posted without script
    (a matching Origin); a non-browser client with the header also works."""
    own = f"http://127.0.0.1:{server.port}"
    body, kind = upload_body(Image.new("RGB", (40, 30), (10, 250, 10)))
    status, _, reply = request(server, "POST", "/api/upload",
                               {"Content-Type": kind, "X-Convsight": "1", "Origin": own,
                                "Sec-Fetch-Site": "same-origin"}, body)
    assert status == 201
    info = json.loads(reply)
    assert re.fullmatch(r"u-[0-9a-f]{16}", info["id"]) and info["url"] == f"/image/{info['id']}"
    body, kind = upload_body(Image.new("RGB", (40, 30), (10, 10, 250)))
    status, headers, _ = request(server, "POST", "/images",
                                 {"Content-Type": kind, "Origin": own}, body)
    assert status == 303 and headers["location"].startswith("/image/u-")
    assert len(uploads(server)) == 2
    status, _, _ = request(server, "POST", SYNTH, {"X-Convsight": "1"}, b"")
    assert status == 202 and synth_state(server) in ("queued", "running", "done")


# ----- headers on every answer ---------------------------------------------------------------
def test_security_headers_on_every_answer(server, monkeypatch):
    explorer = server.server.config.app.state.explorer

    def broken():
        raise RuntimeError(f"secret detail from {explorer.cache.root}")

    answers = {path: request(server, "GET", path) for path in
               ["/", "/static/explorer.js", "/img/thumb/sample-chelsea.jpg", SYNTH,
                "/layer/nope", "/img/tile/nope/0.jpg", "/api/unit/x/y/1"]}
    answers["refused"] = request(server, "GET", "/", host="attacker.example")
    answers["cross-site"] = request(server, "POST", SYNTH, {"Origin": "http://a.example"}, b"")
    monkeypatch.setattr(explorer, "layers", broken)
    answers["crash"] = request(server, "GET", "/")
    statuses = {k: v[0] for k, v in answers.items()}
    assert statuses["/"] == 200 and statuses["/layer/nope"] == 404 and statuses["crash"] == 500
    for name, (status, headers, _) in answers.items():
        csp = headers.get("content-security-policy", "")
        assert "default-src 'none'" in csp and "script-src 'self'" in csp, name
        assert "frame-ancestors 'none'" in csp and "unsafe-inline" not in csp, name
        assert headers.get("x-content-type-options") == "nosniff", name
        assert headers.get("x-frame-options") == "DENY", name
        assert headers.get("referrer-policy") == "same-origin", name
    body = answers["crash"][2].decode()
    assert "internal error" in body and "secret" not in body and "RuntimeError" not in body


def test_pages_need_no_inline_script_or_style():
    """The CSP allows only the explorer's own files: templates hold no inline code or styles
    (a JSON data block is not code)."""
    folder = Path(convsight.__file__).parent / "web" / "templates"
    for path in folder.glob("*.html"):
        text = path.read_text()
        assert "style=" not in text and "<style" not in text, path.name
        assert not re.search(r"\son[a-z]+\s*=", text), path.name
        for tag in re.findall(r"<script[^>]*>", text):
            assert 'src="/static/' in tag or 'type="application/json"' in tag, (path.name, tag)


# ----- query and path values -----------------------------------------------------------------
@pytest.mark.parametrize("path", [
    "/image/sample-chelsea?unit=%C2%B2",  # "²".isdigit() is True
    "/image/sample-chelsea?unit=%D9%A3",  # Arabic-Indic 3: int() takes it
    "/image/sample-chelsea?unit=99", "/image/sample-chelsea?unit=-1",
    "/image/sample-chelsea?unit=+1",
    "/image/sample-chelsea?unit=1_0", "/image/sample-chelsea?unit=%201",
    "/image/sample-chelsea?cls=-5", "/image/sample-chelsea?cls=10", "/image/sample-chelsea?cls=1e3",
    "/layer/conv2?page=%C2%B2", "/layer/conv2?page=0", "/layer/conv2?page=" + "9" * 5000,
    "/unit/conv2/%C2%B2", "/unit/conv2/" + "7" * 5000, "/unit/conv2/16",
    "/img/cattr/sample-chelsea/10/gradient.png", "/img/cattr/sample-chelsea/999999999/guided.png",
    "/img/cattr/sample-chelsea/" + "9" * 40 + "/guided.png", "/api/synth/conv2/4294967296",
    "/img/uattr/sample-chelsea/conv2/99/guided.png", "/unit/conv2/3?method=%00",
])
def test_bad_numbers_are_4xx_never_500(server, path):
    status, headers, body = request(server, "GET", path)
    assert 400 <= status < 500, (path, status, body[:300])


@pytest.mark.parametrize("path", [
    "/image/sample-chelsea%0A", "/img/thumb/sample-chelsea%0A.jpg",
    "/unit/conv2/1%0A", "/unit/conv2/01", "/unit/conv2/00", "/api/synth/conv2/1%0A",
    "/img/tile/conv2/01.jpg", "/image/sample-chelsea?unit=01", "/image/sample-chelsea?unit=1%0A",
    "/layer/conv2?page=01", "/img/cattr/sample-chelsea/01/gradient.png",
    "/img/input/sample-chelsea%0A.png", "/static/style.css%0A",
])
def test_one_value_one_url_no_trailing_newline_no_leading_zero(server, path):
    """``$`` matches before a trailing newline, and int("01") is 1: ``a-0%0A``,
    ``/unit/blocks.3/1%0A`` and ``01`` were answered, each a cache entry of its own (issue 23)."""
    cache = server.server.config.app.state.explorer.cache
    computed = cache.computed
    status, _, body = request(server, "GET", path)
    assert status == 404, (path, status, body[:200])
    assert cache.computed == computed


def test_image_ids_are_whole_matches():
    from convsight.web.inputs import image_id_ok

    for bad in ["a-0\n", "a-01", "a-00", "sample-chelsea\n", "u-0123456789abcdef\n", "a-0\r"]:
        assert not image_id_ok(bad), bad
    for good in ["a-0", "a-10", "a-999999999", "sample-chelsea", "u-0123456789abcdef"]:
        assert image_id_ok(good), good


def test_a_valid_class_and_unit_still_work(server):
    status, _, body = request(server, "GET", "/image/sample-chelsea?layer=conv2&cls=9&unit=15")
    assert status == 200 and b"(class 9)" in body and b"conv2:15" in body


def test_an_unknown_upload_does_not_tell_where_the_cache_is(server):
    root = str(server.server.config.app.state.explorer.cache.root)
    for path in ["/image/u-0123456789abcdef", "/img/thumb/u-0123456789abcdef.jpg",
                 "/api/unit/u-0123456789abcdef/conv2/1"]:
        status, _, body = request(server, "GET", path)
        assert status == 404 and b"no uploaded image" in body
        assert root.encode() not in body and b"/uploads" not in body and b".cache" not in body


# ----- convsight serve -----------------------------------------------------------------------
def _serve(*args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "convsight.cli", "serve", *args],
                          capture_output=True, text=True, timeout=timeout,
                          env={"PYTHONPATH": SRC, "PATH": "/usr/bin:/bin",
                               "HOME": str(Path.home())})


def test_serve_on_a_busy_port_says_so_and_exits_2(tmp_path):
    """It used to start the prewarm thread, fail to bind, and abort (SIGABRT) on the way out."""
    from .support import tiny_atlas_dir

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        done = _serve(str(tiny_atlas_dir()), "--port", str(port), "--cache", str(tmp_path))
        assert done.returncode == 2, done
        assert done.stderr == (f"convsight: error: port {port} is in use (another server, or "
                               "another convsight serve); choose another with --port\n")
        with pytest.raises(convsight.ConvsightError, match=f"port {port} is in use"):
            serve(tiny_atlas_dir(), port=port, cache_dir=tmp_path)


def test_serve_stops_cleanly_on_ctrl_c_while_prewarming(tmp_path):
    """Ctrl-C while the prewarm thread draws tiles: the thread is stopped and waited for."""
    import signal

    from .support import tiny_atlas_dir

    proc = subprocess.Popen([sys.executable, "-m", "convsight.cli", "serve", str(tiny_atlas_dir()),
                             "--port", "0", "--cache", str(tmp_path)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env={"PYTHONPATH": SRC})
    try:
        assert "convsight explorer: http://127.0.0.1:" in proc.stdout.readline()
        time.sleep(0.5)  # tiles are being drawn
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=120)
    finally:
        proc.kill()
    assert proc.returncode == 0 and err == "", err
    assert [p for p in tmp_path.rglob("*") if p.is_file()]  # it was prewarming


def test_serve_refuses_a_bad_allow_host_in_one_line(tmp_path):
    done = _serve("--model", "efficientnet_lite0", "--allow-host", "a/b", "--port", "1")
    assert done.returncode == 2 and done.stderr.count("\n") == 1
    assert "--allow-host 'a/b' is not a host name" in done.stderr


def test_serve_on_all_interfaces_prints_a_usable_address_and_a_warning(tmp_path):
    with socket.socket() as s:
        s.bind(("0.0.0.0", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen([sys.executable, "-m", "convsight.cli", "serve", "--model",
                             "efficientnet_lite0", "--host", "0.0.0.0", "--port", str(port),
                             "--cache", str(tmp_path)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env={"PYTHONPATH": SRC})
    try:
        line = proc.stdout.readline()
        match = re.search(r"http://([^/\s]+)/", line)
        assert match and "0.0.0.0" not in line, line
        address = match.group(1)
        assert address.rsplit(":", 1)[1] == str(port)
        status = None
        for _ in range(100):  # the printed address answers (its Host is accepted)
            try:
                conn = http.client.HTTPConnection(*address.rsplit(":", 1), timeout=30)
                conn.request("GET", "/static/style.css")
                status = conn.getresponse().status
                break
            except OSError:
                time.sleep(0.2)
        assert status == 200
    finally:
        proc.terminate()
        _, err = proc.communicate(timeout=60)
    assert "reachable by other machines" in err and "no authentication" in err
    assert "Traceback" not in err and "terminate called" not in err


# ----- cross-site reads that make the explorer compute ---------------------------------------
@pytest.mark.parametrize("site", ["cross-site", "same-site"])
@pytest.mark.parametrize("path", ["/api/trust/sample-coffee?cls=1&method=gradient",
                                  "/static/style.css", "/"])
def test_other_sites_pages_cannot_embed_or_fetch(server, site, path):
    """An <img> or fetch() on another site's page is refused before any work is done."""
    for mode in ("no-cors", "cors"):
        status, _, body = request(server, "GET", path, {"Sec-Fetch-Site": site,
                                                        "Sec-Fetch-Mode": mode})
        assert status == 403, (path, mode, status, body)


@pytest.mark.parametrize("site", ["cross-site", "same-site", "none", "same-origin"])
def test_links_from_anywhere_still_open_the_explorer(server, site):
    status, _, _ = request(server, "GET", "/", {"Sec-Fetch-Site": site, "Sec-Fetch-Mode": "navigate"})
    assert status == 200
    status, _, _ = request(server, "GET", "/static/style.css", {"Sec-Fetch-Site": "same-origin",
                                                                "Sec-Fetch-Mode": "no-cors"})
    assert status == 200


# ----- cross-site navigations: only the HTML pages, never framed, and cheap ------------------
COMPUTING = ["/api/trust/sample-coffee?cls=1&method=gradient", "/api/unit/sample-coffee/conv2/1",
             "/img/cattr/sample-coffee/1/gradient.png", "/img/thumb/sample-coffee.jpg",
             "/img/acts/sample-coffee/conv2.png", "/static/style.css"]


@pytest.mark.parametrize("site", ["cross-site", "same-site"])
@pytest.mark.parametrize("path", COMPUTING)
def test_other_sites_cannot_navigate_or_frame_pictures_scores_or_api(server, site, path):
    """An iframe, <object> or a top-level link on another site is a navigation too: it used to
    be let through, and /api/trust or /img/cattr in an iframe were computed (issue 23)."""
    explorer = server.server.config.app.state.explorer
    computed = explorer.cache.computed
    for dest in ("document", "iframe", "object", "embed", "frame"):
        status, headers, body = request(server, "GET", path, {
            "Sec-Fetch-Site": site, "Sec-Fetch-Mode": "navigate", "Sec-Fetch-Dest": dest})
        assert status == 403, (path, dest, status, body)
        assert b"only to its own pages" in body
        assert headers["x-frame-options"] == "DENY"
    assert explorer.cache.computed == computed


@pytest.mark.parametrize("dest", ["iframe", "object", "embed", "frame"])
def test_other_sites_cannot_frame_the_pages(server, dest):
    status, _, body = request(server, "GET", "/", {
        "Sec-Fetch-Site": "cross-site", "Sec-Fetch-Mode": "navigate", "Sec-Fetch-Dest": dest})
    assert status == 403 and b"link to the explorer" in body, (status, body)


def test_a_link_from_another_site_to_an_image_page_computes_nothing(server, monkeypatch):
    """The image page runs the network (top classes, activations); opened from another site it
    shows a link to itself instead, which a click turns into a same-origin visit."""
    explorer = server.server.config.app.state.explorer
    passes = []
    monkeypatch.setattr(explorer.input_images, "input_tensor",
                        lambda image_id: passes.append(image_id))
    path = "/image/sample-rocket?layer=conv2&unit=1&cls=2"
    status, _, body = request(server, "GET", path, {
        "Sec-Fetch-Site": "cross-site", "Sec-Fetch-Mode": "navigate", "Sec-Fetch-Dest": "document"})
    assert status == 200 and passes == []
    text = body.decode()
    assert 'href="/image/sample-rocket?layer=conv2&amp;unit=1&amp;cls=2"' in text, text
    assert "opened from another site" in text
    for path in ("/", "/layer/conv2", "/unit/conv2/1", "/images"):  # pages that do not compute
        status, _, _ = request(server, "GET", path, {
            "Sec-Fetch-Site": "cross-site", "Sec-Fetch-Mode": "navigate",
            "Sec-Fetch-Dest": "document"})
        assert status == 200, path
    assert passes == []


# ----- slow connections and the server's own answers -----------------------------------------
@pytest.fixture(scope="module")
def impatient(server):
    """The same app behind a second server that gives a request 1 s for its headers and 2 s for
    its body (the defaults are 10 s and 60 s)."""
    from convsight.web.server import BackgroundServer

    srv = BackgroundServer(server.server.config.app, header_timeout=1.0, body_timeout=2.0)
    yield srv.start()
    srv.stop()


def _closed_after(sock: socket.socket, drip: bytes, limit: float) -> float:
    """Send ``drip`` a byte at a time (0.2 s apart) until the server closes; the seconds it took."""
    start = time.perf_counter()
    sock.settimeout(0.2)
    i = 0
    while time.perf_counter() - start < limit:
        try:
            if sock.recv(4096) == b"":
                return time.perf_counter() - start
        except socket.timeout:
            pass
        except OSError:  # reset
            return time.perf_counter() - start
        try:
            sock.sendall(drip[i % len(drip):i % len(drip) + 1])
        except OSError:
            return time.perf_counter() - start
        i += 1
    return math.inf


def test_slow_headers_and_slow_bodies_are_dropped(impatient):
    """Three connections sending a byte now and then were held for 60 s and more (issue 23)."""
    port = impatient.port
    with socket.create_connection(("127.0.0.1", port)) as sock:
        sock.sendall(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n")
        assert _closed_after(sock, b"X-Slow: abcdefgh\r\n", 10) < 3
    with socket.create_connection(("127.0.0.1", port)) as sock:
        sock.sendall(f"POST /api/upload HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nX-Convsight: 1\r\n"
                     "Content-Type: multipart/form-data; boundary=b\r\nContent-Length: 100000"
                     "\r\n\r\n--b\r\nContent-Disposition: form-data; name=\"image\"; "
                     "filename=\"a.png\"\r\n\r\n".encode())
        took = _closed_after(sock, b"x", 10)
        assert 1.5 < took < 4, took
    with socket.create_connection(("127.0.0.1", port)) as sock:  # the next request, kept alive
        sock.sendall(f"GET /static/style.css HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\r\n".encode())
        assert sock.recv(100).startswith(b"HTTP/1.1 200")
        sock.sendall(b"GET / HTTP/1.1\r\n")
        assert _closed_after(sock, b"X: y\r\n", 10) < 3


def test_a_slow_answer_is_not_cut(impatient, monkeypatch):
    """The limits are on what the client sends; the server may take its time to answer."""
    explorer = impatient.server.config.app.state.explorer
    monkeypatch.setattr(type(explorer.layers), "atlas_summary", lambda self: time.sleep(2.5))
    status, _, _ = request(impatient, "GET", "/")
    assert status == 200


def test_the_servers_own_400_answers_carry_the_security_headers(server):
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        sock.sendall(b"NOT HTTP AT ALL\r\n\r\n")
        reply = b""
        while chunk := sock.recv(4096):
            reply += chunk
    head = reply.split(b"\r\n\r\n")[0].decode().lower()
    assert head.startswith("http/1.1 400"), head
    assert "content-security-policy: default-src 'none'" in head
    assert "x-frame-options: deny" in head and "x-content-type-options: nosniff" in head
