"""The thread policy (convsight.cpu): with "auto" (the interactive commands' default), PyTorch's
thread count follows the cores other programs leave free; a fixed count or PyTorch's own (the
library's default, so that results repeat bit for bit) is kept."""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import time

import pytest
import torch

import convsight
from convsight import cpu
from convsight.cli import build_parser, main


@pytest.fixture
def restore_threads(monkeypatch):
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    before, fixed = torch.get_num_threads(), cpu._fixed
    cpu._local.__dict__.clear()
    yield
    cpu._fixed = fixed
    torch.set_num_threads(before)
    cpu._local.__dict__.clear()


def test_free_cores_is_what_the_others_leave():
    hz = os.sysconf("SC_CLK_TCK")
    start = (0, 0, 0.0)
    # one second on 2 cores: 2 * hz jiffies in all
    assert cpu.free_cores(start, (0.1 * hz, 2 * hz, 0.1), 2) == 2         # quiet: only us
    assert cpu.free_cores(start, (1.0 * hz, 2 * hz, 0.0), 2) == 1         # another busy core
    assert cpu.free_cores(start, (2.0 * hz, 2 * hz, 1.0), 2) == 1         # us on one, it on one
    assert cpu.free_cores(start, (2.0 * hz, 2 * hz, 0.0), 2) == 1         # both taken: at least 1
    assert cpu.free_cores(start, (1.9 * hz, 2 * hz, 1.6), 2) == 2         # mostly our own work
    assert cpu.free_cores(start, (3.0 * hz, 4 * hz, 0.0), 4) == 1         # 3 of 4 cores busy


@pytest.mark.skipif(cpu.available_cores() < 2 or not os.path.exists("/proc/stat"),
                    reason="needs two cores and /proc/stat")
def test_threads_follow_a_busy_program(restore_threads):
    cpu.set_threads("auto")
    cores = cpu.available_cores()
    busy = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(cores - 1)]
    try:
        cpu.govern()
        time.sleep(1.0)
        cpu.govern()
        assert torch.get_num_threads() == 1, "the busy programs left one core"
    finally:
        for p in busy:
            p.kill()
            p.wait()


def test_threads_come_back_when_the_cores_are_free(restore_threads, monkeypatch):
    """Samples as ``/proc/stat`` would give them once the other program stopped: all cores."""
    cpu.set_threads("auto")
    torch.set_num_threads(1)
    hz, cores = os.sysconf("SC_CLK_TCK"), cpu.available_cores()
    ticks = iter([(0, 0), (0.1 * hz, cores * hz)])  # one second, almost idle
    monkeypatch.setattr(cpu, "_cpu_ticks", lambda: next(ticks))
    monkeypatch.setattr(cpu, "CHECK_EVERY", 0.0)
    cpu.govern()
    assert torch.get_num_threads() == 1  # one sample: no decision yet
    cpu.govern()
    assert torch.get_num_threads() == cores


def test_a_fixed_count_is_kept(restore_threads, monkeypatch):
    assert not cpu.adaptive(), "the library keeps PyTorch's count unless asked"
    for fixed in (1, None):
        convsight.set_threads(fixed)
        cpu._local.decision = 2 if fixed == 1 else 1
        cpu._local.last = (0.0, (0, 0, 0.0))
        before = torch.get_num_threads()
        cpu.govern()
        assert torch.get_num_threads() == before and not cpu.adaptive()
    convsight.set_threads(1)
    with convsight.threads("auto") as n:
        assert n == cpu.available_cores() and cpu.adaptive()
    assert torch.get_num_threads() == 1 and not cpu.adaptive()
    convsight.set_threads("auto")
    assert cpu.adaptive() and convsight.thread_policy()["adaptive"] is True
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    assert not cpu.adaptive() and convsight.thread_policy()["adaptive"] is False


@pytest.mark.parametrize("bad", [0, -1, 1.5, "2", True, "Auto"])
def test_bad_thread_count(bad):
    with pytest.raises(convsight.ConvsightError, match="whole number >= 1 or 'auto'"):
        convsight.set_threads(bad)


def test_every_command_takes_threads(restore_threads, capsys):
    parser = build_parser()
    commands = parser._subparsers._group_actions[0].choices
    for name, command in commands.items():
        assert any("--threads" in a.option_strings for a in command._actions), name
    assert main(["layers", "--threads", "1", "--json"]) == 0
    assert not cpu.adaptive(), "a command's setting ends with the command"
    assert main(["rf", "blocks.1", "--threads", "zero"]) == 2
    assert "--threads: expected a whole number >= 1 or 'auto', not 'zero'" in \
        capsys.readouterr().err
    defaults = {name: next(a.default for a in c._actions if "--threads" in a.option_strings)
                for name, c in commands.items()}
    assert {n for n, d in defaults.items() if d == "auto"} == {"demo", "serve", "live"}
    assert all(d is None for n, d in defaults.items() if n not in ("demo", "serve", "live"))


_FAULTS = """
import resource, sys, torch
import convsight
from convsight import cpu
print(cpu.keep_freed_memory(), file=sys.stderr)
net = torch.nn.Sequential(torch.nn.Conv2d(3, 64, 3, padding=1), torch.nn.ReLU(),
                          torch.nn.Conv2d(64, 64, 3, padding=1))
x = torch.randn(8, 3, 160, 160)  # 52 MB activations: above glibc's largest dynamic threshold
with torch.no_grad():
    for _ in range(4):  # the heap reaches its working size
        net(x)
    per_pass = []
    for _ in range(5):
        before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
        net(x)
        per_pass.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
    print(*per_pass)
"""


def _page_faults(keep: str) -> tuple[float, str]:
    """(the median page faults of a pass, of 5, whether the setting said it is in force)."""
    env = {**os.environ, "CONVSIGHT_KEEP_MEMORY": keep, "OMP_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, "-c", _FAULTS], env=env, capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    return statistics.median(int(v) for v in done.stdout.split()), done.stderr.strip()


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt")
def test_freed_memory_is_reused_instead_of_faulted_in_again():
    """Passes over 52 MB activations: with glibc's defaults every pass maps them afresh (tens of
    thousands of page faults; below 32 MB glibc's own threshold may rise and keep them, or not,
    from run to run); kept for reuse, almost none. The median pass is compared: now and then one
    pass of a kept run faults one buffer in (12,800 faults) where the heap still grows."""
    kept, said = _page_faults("1")
    default, said_default = _page_faults("0")
    assert said == "True" and said_default == "False"
    assert default > 10_000, default
    assert kept < default / 20, (kept, default)


def test_omp_num_threads_fixes_auto_and_the_default(monkeypatch):
    """``OMP_NUM_THREADS=1`` keeps one thread whatever the command's default ("auto" or None)."""
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    with convsight.threads("auto") as n_auto:
        assert n_auto == 1 and not cpu.adaptive()
    with convsight.threads(None) as n_default:
        assert n_default == 1
    monkeypatch.delenv("OMP_NUM_THREADS")
    with convsight.threads(None) as n_default:
        assert n_default == cpu.available_cores()
