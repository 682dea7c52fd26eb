"""Progress of long work, drawn to fit where it goes; algorithm loops only report steps.

A loop (the ascent, the mining pass, a report) calls ``report(n)`` as work gets done; what that
shows is decided once, by the public function the user called, through its ``progress`` argument:

- ``True`` (default): on a terminal a live bar; in a notebook one bar redrawn in place (one
  output per bar, a widget when ipywidgets is installed); when stderr is a
  file or a pipe (logs, CI) at most one plain line every ``LOG_EVERY`` seconds, and a last line.
- ``False`` or ``None``: nothing.
- a callable ``fn(done, total)``: called after every update (the explorer's synthesis progress).

>>> with progress_bar(100, "maximize", "step", progress=True) as report:
...     for step in range(100):
...         report(1)
"""

from __future__ import annotations

import os
import sys
import time
from contextlib import contextmanager
from typing import Any, Callable, Iterator, Union

from .cpu import govern

Callback = Callable[[int, int], Any]
ProgressArg = Union[bool, Callback, None]
LOG_EVERY = 5.0  # seconds between plain progress lines when stderr is not a terminal


def _interactive(stream: Any) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):
        return False


def in_notebook() -> bool:
    """True inside a Jupyter kernel: IPython runs with a kernel attached (ipykernel merely being
    imported, as by a test runner, is not enough)."""
    if "IPython" not in sys.modules:
        return False
    from IPython import get_ipython

    shell = get_ipython()
    return shell is not None and getattr(shell, "kernel", None) is not None


def _in_notebook() -> bool:
    return in_notebook() and not _interactive(sys.stderr)


class _LogLines:
    """Plain lines ``desc: done/total unit (pct) elapsed``, at most one per ``every`` seconds."""

    def __init__(self, total: int | None, desc: str, unit: str, initial: int, every: float,
                 stream: Any) -> None:
        self.total, self.desc, self.unit, self.every, self.stream = total, desc, unit, every, stream
        self.done = initial
        self.start = self.last = time.monotonic()
        self.postfix = ""
        self.printed_done = -1

    def update(self, n: int) -> None:
        self.done += n
        now = time.monotonic()
        if now - self.last >= self.every:
            self.last = now
            self._line()

    def set_postfix_str(self, text: str) -> None:
        self.postfix = text

    def _line(self) -> None:
        if self.done == self.printed_done:
            return
        self.printed_done = self.done
        of = f"/{self.total}" if self.total else ""
        pct = f" ({100 * self.done / self.total:.0f}%)" if self.total else ""
        extra = f", {self.postfix}" if self.postfix else ""
        print(f"{self.desc}: {self.done}{of} {self.unit}s{pct}, {time.monotonic() - self.start:.0f} s"
              f"{extra}", file=self.stream, flush=True)

    def close(self) -> None:
        if self.done:
            self._line()


class _DisplayBar:
    """A text bar in one notebook output, redrawn in place (an IPython display with a
    ``display_id``) at most every ``every`` seconds: one output per bar, however long the loop,
    where a text bar on stderr would add a message (and a stored output) per redraw."""

    def __init__(self, total: int | None, desc: str, unit: str, initial: int, leave: bool,
                 every: float = 0.5) -> None:
        from IPython.display import display

        self.total, self.desc, self.unit, self.leave, self.every = total, desc, unit, leave, every
        self.done, self.postfix = initial, ""
        self.start = self.last = time.monotonic()
        self.handle = display(self._text(), display_id=True)

    def _text(self) -> Any:
        from IPython.display import Pretty
        from tqdm import tqdm

        return Pretty(tqdm.format_meter(self.done, self.total, time.monotonic() - self.start,
                                        prefix=self.desc, unit=self.unit, ncols=100,
                                        postfix=self.postfix or None))

    def update(self, n: int) -> None:
        self.done += n
        if time.monotonic() - self.last >= self.every:
            self.last = time.monotonic()
            self.handle.update(self._text())

    def set_postfix_str(self, text: str) -> None:
        self.postfix = text

    def close(self) -> None:
        from IPython.display import Pretty

        self.handle.update(self._text() if self.leave else Pretty(""))


def _notebook_bar(total: int | None, desc: str, unit: str, initial: int, leave: bool) -> Any:
    """tqdm's widget bar when ipywidgets is there, else a text bar redrawn in one output
    (``_DisplayBar``); never ``tqdm.auto``'s warning about missing widgets."""
    try:
        import ipywidgets  # noqa: F401
        from tqdm.notebook import tqdm
    except ImportError:
        return _DisplayBar(total, desc, unit, initial, leave)
    return tqdm(total=total, initial=initial, desc=desc, unit=unit, leave=leave)


@contextmanager
def progress_bar(total: int | None, desc: str, unit: str = "it", progress: ProgressArg = True,
                 initial: int = 0, leave: bool = True) -> Iterator[Callable[..., None]]:
    """Yield ``report(n=1, **postfix)`` for a loop of ``total`` steps (see the module docstring)."""
    callback = progress if callable(progress) and not isinstance(progress, bool) else None
    bar: Any = None
    if progress is True:
        if _in_notebook():
            bar = _notebook_bar(total=total, initial=initial, desc=desc, unit=unit, leave=leave)
        elif _interactive(sys.stderr) or os.environ.get("CONVSIGHT_PROGRESS") == "bar":
            from tqdm import tqdm

            bar = tqdm(total=total, initial=initial, desc=desc, unit=unit, leave=leave,
                       smoothing=0.1, file=sys.stderr)
        else:
            bar = _LogLines(total, desc, unit, initial, LOG_EVERY, sys.stderr)
    done = initial

    def report(n: int = 1, **postfix: Any) -> None:
        nonlocal done
        done += n
        govern()
        if bar is not None:
            if postfix:
                bar.set_postfix_str(", ".join(f"{k}={v}" for k, v in postfix.items()))
            bar.update(n)
        if callback is not None:
            callback(done, total if total is not None else done)

    try:
        yield report
    finally:
        if bar is not None:
            bar.close()
