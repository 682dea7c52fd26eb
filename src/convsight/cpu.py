"""How convsight uses the CPU: OpenMP threads that sleep while they wait, and a settable count.

PyTorch's CPU kernels split work over OpenMP threads (one per core by default). Between parallel
regions, GNU OpenMP's idle threads *spin* (busy-wait) for a while before they sleep. On a quiet
machine that saves a few microseconds per region; when another program holds one of the cores,
every region waits for a thread that is not running, and a backward pass becomes 3-30x slower
(measured by ``bench/threads.py``). Threads that wait passively (``OMP_WAIT_POLICY=PASSIVE``,
from the OpenMP specification) give their core back at once: a few percent slower on a quiet
machine, and close to the one-core speed when the machine is busy.

The wait policy is read once, when PyTorch loads its OpenMP runtime, so it must be in the
environment before ``import torch``. ``import convsight`` sets it (unless the environment already
names a policy) when PyTorch is not loaded yet, and the ``convsight`` command always does.
From Python::

    import convsight          # before torch: passive waits for the whole process
    import torch

    convsight.set_threads(1)  # or: with convsight.threads(1): ...
    convsight.thread_policy() # {'threads': 1, 'wait_policy': 'PASSIVE', ...}

Or from the shell, for any program: ``OMP_WAIT_POLICY=PASSIVE python my_script.py``.
"""

from __future__ import annotations

import contextlib
import os
import sys
from typing import Iterator

WAIT_ENV = "OMP_WAIT_POLICY"
PASSIVE = "PASSIVE"


def prefer_passive_wait() -> None:
    """Ask OpenMP's idle threads to sleep instead of spinning, where that can still take effect:
    before PyTorch is loaded, and only when the environment names no policy of its own."""
    global _LOADED_WITH
    if "torch" not in sys.modules:
        os.environ.setdefault(WAIT_ENV, PASSIVE)
        _LOADED_WITH = os.environ[WAIT_ENV]


# The policy OpenMP reads when PyTorch loads, as set before that (None: PyTorch came first).
_LOADED_WITH: str | None = None


def available_cores() -> int:
    """Cores this process may run on (its CPU affinity; the cores of the machine elsewhere)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


def check_threads(n: object) -> int | None:
    """``n`` as a thread count (None: one per available core); a clear error otherwise."""
    from .errors import ConvsightError

    if n is None:
        return None
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ConvsightError(f"threads must be a whole number >= 1 (this machine has "
                             f"{available_cores()} cores), not {n!r}")
    return n


def set_threads(n: int | None = None) -> int:
    """Use ``n`` CPU threads for PyTorch's work in this process (None: one per available core).

    Returns the count now in force. ``bench/threads.py`` measures the choice: on a quiet machine
    one per core is fastest; beside other busy programs, passive waiting keeps it close to the
    one-thread speed, and ``set_threads(1)`` leaves every other core free.
    """
    import torch

    n = check_threads(n)
    torch.set_num_threads(n if n is not None else available_cores())
    return torch.get_num_threads()


@contextlib.contextmanager
def threads(n: int | None) -> Iterator[int]:
    """Use ``n`` threads inside the ``with`` block, and the count in force before afterwards."""
    import torch

    before = torch.get_num_threads()
    try:
        yield set_threads(n)
    finally:
        torch.set_num_threads(before)


def thread_policy() -> dict:
    """What is in force: PyTorch's thread count, the cores available, OpenMP's wait policy (as
    set when PyTorch loaded, where convsight saw that; else as the environment says)."""
    import torch

    wait = _LOADED_WITH if _LOADED_WITH is not None else os.environ.get(WAIT_ENV)
    return {"threads": torch.get_num_threads(), "cores": available_cores(),
            "wait_policy": wait or "default (spin, then sleep)"}
