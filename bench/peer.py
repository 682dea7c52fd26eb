"""Time a peer library (Lucent, Captum) as its users run it: in a fresh Python process.

convsight asks glibc to keep freed memory for reuse (``convsight.cpu.keep_freed_memory``,
``mallopt``) from its first computation on. That setting is process-wide: a peer timed in the
same process after convsight has run would get it too, and run faster than for its own users.
So the benches start one child process (``multiprocessing``'s "spawn": a new interpreter, not a
fork of this one) with ``CONVSIGHT_KEEP_MEMORY=0`` in its environment, and send it the peer's
calls; the child times each call itself (wall, user and system CPU seconds, ``getrusage``) and
reports, with each answer, whether the setting is in force there (it must not be).

    with Peer() as peer:
        seconds, result = peer.call("trust_peers.captum_occlusion", size, 32, 16, 8)
"""

from __future__ import annotations

import importlib
import multiprocessing
import os
import resource
import time
import traceback
from typing import Any, Callable


def timed(fn: Callable[[], Any]) -> tuple[tuple[float, float, float], Any]:
    """((wall, user CPU, system CPU) seconds of this process for one call, the call's result)."""
    before, start = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
    result = fn()
    after = resource.getrusage(resource.RUSAGE_SELF)
    return ((time.perf_counter() - start, after.ru_utime - before.ru_utime,
             after.ru_stime - before.ru_stime), result)


def _serve(conn) -> None:
    """The child's loop: ``(function path, args)`` in, ``(ok, result, memory kept)`` out."""
    import convsight.cpu

    while True:
        message = conn.recv()
        if message is None:
            return
        name, args = message
        module, _, function = name.rpartition(".")
        try:
            result = getattr(importlib.import_module(module), function)(*args)
            conn.send((True, result, bool(convsight.cpu._kept)))
        except BaseException:  # report exactly what failed, in the parent
            conn.send((False, traceback.format_exc(), bool(convsight.cpu._kept)))


class Peer:
    """A child process for a peer library's calls (see the module docstring)."""

    def __init__(self) -> None:
        context = multiprocessing.get_context("spawn")
        self._conn, child = context.Pipe()
        before = os.environ.get("CONVSIGHT_KEEP_MEMORY")
        os.environ["CONVSIGHT_KEEP_MEMORY"] = "0"  # inherited by the child only
        try:
            self._process = context.Process(target=_serve, args=(child,), daemon=True)
            self._process.start()
        finally:
            if before is None:
                del os.environ["CONVSIGHT_KEEP_MEMORY"]
            else:
                os.environ["CONVSIGHT_KEEP_MEMORY"] = before
        child.close()

    def call(self, name: str, *args: Any) -> Any:
        """``module.function(*args)`` in the child (a module the bench folder holds)."""
        self._conn.send((name, args))
        ok, result, kept = self._conn.recv()
        if not ok:
            raise RuntimeError(f"peer process failed in {name}:\n{result}")
        if kept:
            raise RuntimeError("the peer process keeps freed memory: its timings would not be "
                               "those of the peer's users")
        return result

    def close(self) -> None:
        if self._process.is_alive():
            self._conn.send(None)
            self._process.join(30)

    def __enter__(self) -> "Peer":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


NOTE = ("peer timed in a fresh child process without convsight's allocator setting "
        "(glibc's mallopt is process-wide), as its users run it")
