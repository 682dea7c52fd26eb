"""Run the explorer: ``serve`` until Ctrl-C (``convsight serve``), or ``BackgroundServer`` in a
background thread on a free local port (tests, notebooks).

Connections that send their request too slowly are closed (``connections.py``: 10 s for the
headers, 60 s more for the body). ``serve`` binds its port before anything else starts, so a port in use is one line
(``ConvsightError``) instead of a crash with the prewarm thread half-way through a picture.

>>> from convsight.web import create_app
>>> from convsight.web.server import BackgroundServer
>>> with BackgroundServer(create_app(model="efficientnet_lite0")) as server:   # doctest: +SKIP
...     print(server.url)
http://127.0.0.1:53817
"""

from __future__ import annotations

import errno
import socket
import sys
import threading
import time
from pathlib import Path
from typing import Any, Iterable

from ..errors import ConvsightError
from .connections import BODY_TIMEOUT, HEADER_TIMEOUT, protocol
from .guard import host_name

WILDCARDS = ("0.0.0.0", "::", "")
# WebSockets (the Live page's): the largest message uvicorn takes, a frame (live.MAX_FRAME_BYTES)
# and its number; no per-message compression (JPEG frames do not shrink, and on loopback the
# answers are not worth the CPU time it takes on both ends).
WS_OPTIONS = {"ws_max_size": 4 * 2**20 + 1024, "ws_per_message_deflate": False}


def bind(host: str, port: int) -> socket.socket:
    """A listening socket on ``host:port``, or ``ConvsightError`` saying why not."""
    try:
        family = socket.getaddrinfo(host or None, port, type=socket.SOCK_STREAM)[0][0]
    except socket.gaierror as exc:
        raise ConvsightError(f"cannot listen on host {host!r}: {exc.strerror}; use an address "
                             "of this computer such as 127.0.0.1") from None
    try:
        return socket.create_server((host, port), family=family)
    except OSError as exc:
        if exc.errno == errno.EADDRINUSE:
            raise ConvsightError(f"port {port} is in use (another server, or another convsight "
                                 "serve); choose another with --port") from None
        if exc.errno == errno.EACCES:
            raise ConvsightError(f"port {port} needs administrator rights; use a port above "
                                 "1023 with --port") from None
        raise ConvsightError(f"cannot listen on {host}:{port}: {exc.strerror}") from None


def addresses(host: str, port: int) -> tuple[str, str | None]:
    """(the URL to open, a warning or None): a wildcard host is shown as this machine's address
    on the network, since http://0.0.0.0/ is not an address to give anyone."""
    if host in WILDCARDS:
        shown = _network_address() or socket.gethostname()
    else:
        shown = host
    url = f"http://{f'[{shown}]' if ':' in shown else shown}:{port}/"
    if host in ("127.0.0.1", "localhost", "::1") or host.startswith("127."):
        return url, None
    return url, (f"--host {host} makes the explorer reachable by other machines, and it has no "
                 "authentication: anyone who can reach this port can browse the atlas and its "
                 "images, upload pictures and start syntheses. Use it on trusted networks only.")


def _network_address() -> str | None:
    """This machine's address on its network (a UDP connect sends nothing), or None."""
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.connect(("192.0.2.1", 9))  # TEST-NET-1: never routed, only picks the interface
            return s.getsockname()[0]
    except OSError:
        return None


def serve(atlas: Any | str | Path | None = None, model: Any | None = None,
          host: str = "127.0.0.1", port: int = 8000, cache_dir: str | Path | None = None,
          synthesis: Any | None = None, allowed_hosts: Iterable[str] = (),
          device: Any = None, page: str = "/", prewarm: bool = True,
          allow_outside: bool = False) -> None:
    """Run the explorer with uvicorn until Ctrl-C (bound to 127.0.0.1 unless ``host`` says).

    The port is bound first; then the atlas and model load and the prewarm thread starts; on the
    way out the prewarm thread is stopped and waited for. With a wildcard ``host`` (0.0.0.0),
    this machine's host name is also accepted in the ``Host`` header. ``page`` is the path
    printed to open (``convsight live``: ``/live``, without the prewarm thread).
    ``allow_outside``: see ``create_app``.
    """
    import uvicorn

    from .app import create_app
    from .jobs import check_settings

    synthesis = check_settings(synthesis)  # a bad recipe is told before the port is bound
    sock = bind(host, port)
    app = None
    try:
        own = socket.gethostname() if host in WILDCARDS else ""
        hosts = [*allowed_hosts, *([own] if own and host_name(own) else [])]
        app = create_app(atlas, model, cache_dir=cache_dir, synthesis=synthesis, prewarm=prewarm,
                         allowed_hosts=hosts, device=device, allow_outside=allow_outside)
        url, warning = addresses(host, sock.getsockname()[1])
        if warning:
            print(f"convsight: warning: {warning}", file=sys.stderr)
        print(f"convsight explorer: {url}{page.lstrip('/')}  (Ctrl-C to stop)", flush=True)
        config = uvicorn.Config(app, log_level="warning", lifespan="off", http=protocol(),
                                **WS_OPTIONS)
        uvicorn.Server(config).run(sockets=[sock])
    except KeyboardInterrupt:  # Ctrl-C is how one stops it
        pass
    finally:
        if app is not None:
            app.state.prewarm_stop.set()
            if app.state.prewarm_thread is not None:
                app.state.prewarm_thread.join(timeout=60)
        sock.close()


class BackgroundServer:
    """uvicorn serving ``app`` from a daemon thread; port 0 picks a free port (no race)."""

    def __init__(self, app: Any, host: str = "127.0.0.1", port: int = 0,
                 timeout: float = 30.0, header_timeout: float = HEADER_TIMEOUT,
                 body_timeout: float = BODY_TIMEOUT) -> None:
        import uvicorn

        config = uvicorn.Config(app, host=host, port=port, log_level="warning", lifespan="off",
                                http=protocol(header_timeout, body_timeout), **WS_OPTIONS)
        self.server = uvicorn.Server(config)
        self.host = host
        self.timeout = timeout
        self.thread = threading.Thread(target=self.server.run, name="convsight-web", daemon=True)

    @property
    def port(self) -> int:
        return int(self.server.servers[0].sockets[0].getsockname()[1])

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self) -> "BackgroundServer":
        self.thread.start()
        deadline = time.time() + self.timeout
        while not self.server.started:
            if not self.thread.is_alive():
                raise RuntimeError("the web server stopped during start-up")
            if time.time() > deadline:
                raise TimeoutError(f"the web server did not start within {self.timeout} s")
            time.sleep(0.02)
        return self

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=self.timeout)

    def __enter__(self) -> "BackgroundServer":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
