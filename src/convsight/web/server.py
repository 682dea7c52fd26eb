"""Run the explorer in a background thread on a free local port (tests, notebooks).

>>> from convsight.web import create_app
>>> from convsight.web.server import BackgroundServer
>>> with BackgroundServer(create_app(model="efficientnet_lite0")) as server:   # doctest: +SKIP
...     print(server.url)
http://127.0.0.1:53817
"""

from __future__ import annotations

import threading
import time
from typing import Any


class BackgroundServer:
    """uvicorn serving ``app`` from a daemon thread; port 0 picks a free port (no race)."""

    def __init__(self, app: Any, host: str = "127.0.0.1", port: int = 0,
                 timeout: float = 30.0) -> None:
        import uvicorn

        config = uvicorn.Config(app, host=host, port=port, log_level="warning", lifespan="off")
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
