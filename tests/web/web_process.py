"""The explorer in its own process, so that a test can read the server's memory (no tests here).

``ServerProcess`` starts ``convsight.web.create_app`` over a tiny model (a few convolutions, so
start-up is quick and its memory small) behind uvicorn in a child Python, on a free local port,
and reads the child's resident memory from ``/proc``: ``rss()`` now, ``peak()`` the highest since
the last ``reset_peak()`` (Linux's VmHWM, reset by writing 5 to ``/proc/PID/clear_refs``).
``src`` runs another checkout's code (``bench/web_memory.py`` compares against the original).
"""

from __future__ import annotations

import http.client
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

SERVER = r"""
import json, socket, sys
import torch
from torch import nn
import uvicorn
from convsight.web import SynthesisSettings, create_app

torch.set_num_threads(1)
torch.manual_seed(0)
options = json.loads(sys.argv[1])
net = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                    nn.Conv2d(8, 8, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1),
                    nn.Flatten(), nn.Linear(8, 5)).eval()
if "synthesis" in options:
    options["synthesis"] = SynthesisSettings(**options["synthesis"])
app = create_app(model=net, **options)
sock = socket.socket()
sock.bind(("127.0.0.1", 0))
print(sock.getsockname()[1], flush=True)
uvicorn.Server(uvicorn.Config(app, log_level="error", lifespan="off")).run(sockets=[sock])
"""


class ServerProcess:
    """A child process serving the explorer; ``with ServerProcess(tmp) as srv: srv.port``."""

    def __init__(self, cache_dir: Path, src: Path | None = None, **options: object) -> None:
        self.options = {"cache_dir": str(cache_dir), **options}
        self.src = Path(src) if src else Path(__file__).resolve().parents[2] / "src"
        self.proc: subprocess.Popen | None = None
        self.port = 0

    def start(self) -> "ServerProcess":
        env = {**os.environ, "PYTHONPATH": str(self.src), "OMP_NUM_THREADS": "1"}
        self.log = tempfile.TemporaryFile("w+")  # a pipe could fill up and stall the server
        self.proc = subprocess.Popen([sys.executable, "-c", SERVER, json.dumps(self.options)],
                                     stdout=subprocess.PIPE, stderr=self.log, env=env, text=True)
        line = self.proc.stdout.readline()
        if not line.strip().isdigit():
            self.proc.kill()
            raise RuntimeError(f"the server did not start: {line}{self.stop()}")
        self.port = int(line)
        deadline = time.time() + 60
        while True:  # listening from the bind on; wait until uvicorn answers
            try:
                self.request("GET", "/static/style.css")
                return self
            except OSError:
                if time.time() > deadline or self.proc.poll() is not None:
                    raise
                time.sleep(0.1)

    def stop(self) -> str:
        """Stop the child; return what it wrote to stderr (the server's log)."""
        if self.proc is None:
            return ""
        self.proc.terminate()
        try:
            self.proc.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.communicate()
        self.log.seek(0)
        return self.log.read()

    def __enter__(self) -> "ServerProcess":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _status(self, field: str) -> int:
        """A ``/proc/PID/status`` memory field in bytes (VmRSS, VmHWM)."""
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
        raise KeyError(field)

    def rss(self) -> int:
        return self._status("VmRSS")

    def peak(self) -> int:
        return self._status("VmHWM")

    def reset_peak(self) -> None:
        Path(f"/proc/{self.proc.pid}/clear_refs").write_text("5")

    def request(self, method: str, path: str, body: bytes | None = None,
                headers: dict | None = None, timeout: float = 120) -> tuple[int, dict, bytes]:
        """(status, lower-case headers, body) of one request, nothing added or followed."""
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
        try:
            conn.request(method, path, body=body, headers=headers or {})
            reply = conn.getresponse()
            return reply.status, {k.lower(): v for k, v in reply.getheaders()}, reply.read()
        finally:
            conn.close()
