"""Progress that fits where it goes: log lines when piped, nothing when asked, callbacks for apps."""

from __future__ import annotations

import io
import subprocess
import sys
import time

import numpy as np
import pytest

import convsight
from convsight import progress

from .tinynets import tiny_net


def test_log_lines_are_throttled(monkeypatch):
    """Piped (not a terminal): at most one line per LOG_EVERY seconds, then a last line."""
    now = [0.0]
    monkeypatch.setattr(progress.time, "monotonic", lambda: now[0])
    stream = io.StringIO()
    monkeypatch.setattr(progress.sys, "stderr", stream)
    with progress.progress_bar(400, "work", "step", progress=True) as report:
        for _ in range(400):
            now[0] += 0.125  # 50 s in all
            report(1, loss=1.5)
    lines = stream.getvalue().splitlines()
    assert progress.LOG_EVERY == 5
    assert len(lines) == 10  # one every 5 s; the last one, at 400/400, is not repeated
    assert lines[0] == "work: 40/400 steps (10%), 5 s, loss=1.5"
    assert lines[-1] == "work: 400/400 steps (100%), 50 s, loss=1.5"


def test_a_kernel_is_needed_for_a_notebook_bar(monkeypatch):
    """Importing ipykernel (a test runner, a library) does not make a terminal a notebook."""
    pytest.importorskip("ipykernel")
    import ipykernel  # noqa: F401

    assert not progress.in_notebook()
    import IPython

    class Shell:
        kernel = object()

    monkeypatch.setattr(IPython, "get_ipython", lambda: Shell())
    assert progress.in_notebook()


def test_a_notebook_bar_is_one_output_redrawn_in_place(monkeypatch):
    """In a notebook without ipywidgets: one display per bar, updated in place (throttled), the
    last update showing the total; nothing written to stderr (each write would be an output)."""
    IPython_display = pytest.importorskip("IPython.display")
    monkeypatch.setitem(sys.modules, "ipywidgets", None)  # not installed
    monkeypatch.setattr(progress, "_in_notebook", lambda: True)
    now = [0.0]
    monkeypatch.setattr(progress.time, "monotonic", lambda: now[0])
    stream = io.StringIO()
    monkeypatch.setattr(progress.sys, "stderr", stream)
    shown, updates = [], []

    class Handle:
        def update(self, obj):
            updates.append(obj.data)

    def display(obj, display_id=False):
        assert display_id is True
        shown.append(obj.data)
        return Handle()

    monkeypatch.setattr(IPython_display, "display", display)
    for leave in (True, False):
        shown.clear(), updates.clear()
        with progress.progress_bar(400, "maximize", "step", progress=True, leave=leave) as report:
            for _ in range(400):
                now[0] += 0.0125  # 5 s in all: a redraw every 0.5 s
                report(1, objective=2.5)
        assert len(shown) == 1 and shown[0].startswith("maximize:")
        assert 9 <= len(updates) <= 11
        dones = [int(u.split("/400")[0].split()[-1].split("|")[-1]) for u in updates[:-1]]
        assert dones == sorted(dones) and dones[0] < 60 and "objective=2.5" in updates[-2]
        assert ("400/400" in updates[-1]) if leave else updates[-1] == ""
    assert stream.getvalue() == ""


def test_false_none_and_callables(capfd):
    calls = []
    for arg in (False, None, lambda done, total: calls.append((done, total))):
        with progress.progress_bar(3, "quiet", progress=arg) as report:
            for _ in range(3):
                report(1)
    assert calls == [(1, 3), (2, 3), (3, 3)]
    out, err = capfd.readouterr()
    assert out == err == ""


def test_public_calls_with_progress_false_print_nothing(tmp_path, capfd):
    from convsight.report import write_report

    net = convsight.Network(tiny_net(), input_size=(32, 32))
    seen = []
    convsight.maximize(net, "class:1", steps=4, size=24, progress=False)
    convsight.maximize(net, "class:1", steps=4, size=24, progress=lambda d, t: seen.append((d, t)))
    assert seen == [(1, 4), (2, 4), (3, 4), (4, 4)]
    rng = np.random.default_rng(0)
    atlas = convsight.mine(net, [rng.random((40, 40, 3)) for _ in range(3)], ["conv3"], k=2,
                           progress=False)
    write_report(atlas, tmp_path / "r.html", net=net, detail_units=0, progress=False)
    out, err = capfd.readouterr()
    assert out == err == ""


def _maximize_cli(tmp_path, steps: int, *extra: str) -> tuple[subprocess.CompletedProcess, float]:
    start = time.monotonic()
    r = subprocess.run([sys.executable, "-m", "convsight.cli", "maximize", "--target", "class:130",
                        "--steps", str(steps), "--size", "64", "-o", str(tmp_path / "m.png"), *extra],
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, timeout=600)
    return r, time.monotonic() - start


@pytest.mark.slow
def test_piped_maximize_writes_few_lines(tmp_path):
    """`convsight maximize --steps 60` with stderr to a pipe: a line per 5 s at most, plus the last."""
    r, seconds = _maximize_cli(tmp_path, 60)
    assert r.returncode == 0, r.stderr
    lines = r.stderr.splitlines()
    assert lines, "a piped run still reports where it ended"
    head = f"maximize ({convsight.optimize.DEFAULT_PRESET}): "
    assert all(line.startswith(head) for line in lines), lines
    assert len(lines) <= seconds / progress.LOG_EVERY + 1
    assert lines[-1].startswith(head + "60/60 steps (100%)")
    r, _ = _maximize_cli(tmp_path, 5, "--quiet")
    assert r.returncode == 0 and r.stderr == ""
    assert "objective" in r.stdout and "wrote" in r.stdout


def test_quiet_flags():
    from convsight.cli import build_parser

    parser = build_parser()
    for command in (["maximize", "--target", "class:1"], ["report", "atlas"], ["demo"],
                    ["mine", "photos", "--layers", "x", "-o", "a"]):
        assert parser.parse_args(command + ["--quiet"]).quiet
