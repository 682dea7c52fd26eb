"""How convsight uses the CPU: as many threads as other programs leave cores free, where asked.

PyTorch's CPU kernels split work over OpenMP threads, one per core by default, and GNU OpenMP's
idle threads *spin* (busy-wait) between parallel regions. On a quiet machine that is the fastest
way. When another program holds a core, every parallel region waits for a thread that is not
running, and a backward pass becomes 3-5x slower (``bench/threads.py``). Neither fix alone
works: threads that sleep while they wait (``OMP_WAIT_POLICY=PASSIVE``) cost 1.4-2x on a quiet
machine, and one thread always costs 1.5-1.9x there.

So convsight measures, at most twice a second while it works, how much CPU the *other* programs
use (``/proc/stat`` minus this process's own time), and runs PyTorch on the cores they leave free
(at least one): two threads on a quiet 2-core machine, one beside a busy program, two again when
it stops. The check runs in convsight's own loops (every target evaluation and progress step),
costs a few microseconds, and applies to the thread that does the work (the count stays as it
was last set there, for PyTorch code of your own too, until convsight looks again).

The thread count changes floating-point rounding, so results that must repeat bit for bit (a
resumed mining run, a synthesis from a seed, equality with Captum) need a fixed count: the
library and the batch commands (``mine``, ``maximize``, ``attribute``, ...) keep PyTorch's own
(one thread per core) unless asked, and the interactive ones (``serve``, ``live``, ``demo``) run
adaptive. ``--threads N|auto`` on every command, ``convsight.set_threads(n | "auto" | None)``
or ``with convsight.threads(...)`` from Python choose; ``OMP_NUM_THREADS`` fixes the count.

    convsight.set_threads("auto")
    convsight.thread_policy()   # {'threads': 2, 'cores': 2, 'adaptive': True, ...}

Memory: glibc's ``malloc`` hands every block above a threshold (128 kB, rising to at most 32 MB)
straight back to the kernel when PyTorch frees it, so the next batch of activations the same
size is mapped afresh and every page of it faults in again. On this kind of work that is most
of the time of a forward pass at batch 8 or more (a batch of 24 at 224 px: 1.57 s, of which
1.0 s kernel time, against 0.57 s without the faults). PyTorch's CPU tuning guide advises
another allocator for this reason; convsight asks glibc to keep freed memory for reuse instead
(``mallopt``: blocks up to 1 GB from the heap, no trimming below 1 GB), once, from its first
computation on. The process then holds on to its peak memory; ``CONVSIGHT_KEEP_MEMORY=0``
before the first call keeps glibc's defaults. Results are unchanged: only where the memory
comes from changes.
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
from typing import Iterator

CHECK_EVERY = 0.5  # seconds between two looks at the other programs' load
AUTO = "auto"
_fixed: int | str | None = None  # a count the user chose, AUTO (adaptive), None: PyTorch's own
_local = threading.local()  # per working thread: last look, and the count to restore


def available_cores() -> int:
    """Cores this process may run on (its CPU affinity; the cores of the machine elsewhere)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


def check_threads(n: object) -> int | str | None:
    """``n`` as a thread count, ``"auto"`` or None; a clear error otherwise."""
    from .errors import ConvsightError

    if n is None or n == AUTO:
        return n  # type: ignore[return-value]
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ConvsightError(f"threads must be a whole number >= 1 or 'auto' (this machine has "
                             f"{available_cores()} cores), not {n!r}")
    return n


def adaptive() -> bool:
    """Whether the thread count follows the free cores (``set_threads("auto")``, the explorer,
    the live page and the demo), unless ``OMP_NUM_THREADS`` fixes it."""
    return _fixed == AUTO and "OMP_NUM_THREADS" not in os.environ


def set_threads(n: int | str | None = None) -> int:
    """Use ``n`` CPU threads for PyTorch's work in this process; ``"auto"``: as many as other
    programs leave cores free, measured as convsight works (see the module docstring); None: one
    per core, PyTorch's default. Returns the count now in force."""
    import torch

    global _fixed
    _fixed = check_threads(n)
    torch.set_num_threads(_fixed if isinstance(_fixed, int) else default_threads())
    return torch.get_num_threads()


def default_threads() -> int:
    """PyTorch's own count: ``OMP_NUM_THREADS`` where it is set (it also fixes "auto"), else one
    thread per available core."""
    try:
        return max(1, int(os.environ.get("OMP_NUM_THREADS", "")))
    except ValueError:
        return available_cores()


@contextlib.contextmanager
def threads(n: int | str | None) -> Iterator[int]:
    """Use ``n`` threads inside the ``with`` block (as ``set_threads``), and what was in force
    before afterwards."""
    import torch

    global _fixed
    before, fixed = torch.get_num_threads(), _fixed
    try:
        yield set_threads(n)
    finally:
        _fixed = fixed
        torch.set_num_threads(before)


def _cpu_ticks() -> tuple[float, float] | None:
    """(busy, all) jiffies of the cores this process may use, from ``/proc/stat`` (Linux)."""
    try:
        cores = os.sched_getaffinity(0)
        with open("/proc/stat", "rb") as f:
            lines = f.read().split(b"\n")
    except (AttributeError, OSError):
        return None
    busy = total = 0
    for line in lines:
        if not line.startswith(b"cpu") or line[3:4] == b" ":
            continue
        name, *values = line.split()
        if int(name[3:]) not in cores:
            continue
        ticks = [int(v) for v in values[:8]]
        total += sum(ticks)
        busy += sum(ticks) - ticks[3] - ticks[4]  # idle and iowait are not busy
    return busy, total


def free_cores(before: tuple[float, float, float], after: tuple[float, float, float],
               cores: int) -> int:
    """Cores the other programs left free between two samples ``(busy, all, own seconds)``."""
    busy, total, own = (a - b for a, b in zip(after, before))
    if total <= 0:
        return cores
    seconds = total / cores / os.sysconf("SC_CLK_TCK")  # wall seconds of the window
    others = max(0.0, busy / os.sysconf("SC_CLK_TCK") - own) / max(seconds, 1e-9)
    return max(1, min(cores, int(cores - others + 0.5)))


def _look() -> int | None:
    """The thread count for the cores other programs leave free, from the last two samples taken
    at least ``CHECK_EVERY`` seconds apart in this thread (None until there are two)."""
    now = time.monotonic()
    last = getattr(_local, "last", None)
    if last is None or now - last[0] >= CHECK_EVERY:
        ticks = _cpu_ticks()
        if ticks is None:
            return None
        sample = (*ticks, time.process_time())
        _local.last = (now, sample)
        if last is not None:
            _local.decision = free_cores(last[1], sample, available_cores())
    return getattr(_local, "decision", None)


def govern() -> None:
    """Fit PyTorch's thread count (in the calling thread) to the cores other programs leave
    free, while no count is fixed. Called by convsight's loops; cheap between two looks. The
    first call also keeps freed memory for reuse (``keep_freed_memory``)."""
    if _kept is None:
        keep_freed_memory()
    if not adaptive():
        return
    n = _look()
    if n is not None:
        import torch

        if n != torch.get_num_threads():
            torch.set_num_threads(n)


KEEP_MEMORY_ENV = "CONVSIGHT_KEEP_MEMORY"
_KEEP_BYTES = 1 << 30  # blocks up to this size come from the heap; the heap keeps this much free
_kept: bool | None = None  # None: not tried yet; then whether glibc took the setting


def keep_freed_memory() -> bool:
    """Ask glibc (once per process) to keep freed memory for reuse rather than unmap it, which
    spares every batch its page faults (see the module docstring). True if the setting is in
    force; False on other C libraries or with ``CONVSIGHT_KEEP_MEMORY=0``."""
    global _kept
    if _kept is None:
        _kept = False
        if os.environ.get(KEEP_MEMORY_ENV, "1").strip().lower() not in ("0", "no", "false", "off"):
            try:
                import ctypes

                libc = ctypes.CDLL(None)
                mallopt = libc.mallopt  # glibc only; musl and macOS have none
                m_trim_threshold, m_mmap_threshold = -1, -3  # from glibc's malloc.h
                _kept = bool(mallopt(m_mmap_threshold, _KEEP_BYTES)
                             and mallopt(m_trim_threshold, _KEEP_BYTES))
            except (OSError, AttributeError, TypeError):  # no C library to load, no mallopt
                _kept = False
    return _kept


def thread_policy() -> dict:
    """What is in force: PyTorch's thread count, the cores available, whether the count adapts
    to the free cores, and OpenMP's wait policy."""
    import torch

    return {"threads": torch.get_num_threads(), "cores": available_cores(),
            "adaptive": adaptive(), "keeps_freed_memory": bool(_kept),
            "wait_policy": os.environ.get("OMP_WAIT_POLICY") or "default (spin, then sleep)"}
