"""The thread policy (convsight.cpu): passive OpenMP waits set before torch loads, never over the
user's own choice, and a settable thread count from Python and from every CLI command."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import torch

import convsight
from convsight.cli import build_parser, main


def _python(code: str, **env: str | None) -> str:
    environ = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
    environ.update({k: v for k, v in env.items() if v is not None})
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=environ,
                         timeout=120)
    assert out.returncode == 0, out.stderr
    return out.stdout.strip()


SHOW = "import os; print(os.environ.get('OMP_WAIT_POLICY'), convsight.thread_policy()['wait_policy'])"


def test_import_before_torch_sets_passive_wait():
    assert _python("import convsight, torch; " + SHOW) == "PASSIVE PASSIVE"


def test_users_policy_wins():
    assert _python("import convsight; " + SHOW, OMP_WAIT_POLICY="ACTIVE") == "ACTIVE ACTIVE"


def test_too_late_after_torch_changes_nothing():
    """Once torch has loaded OpenMP, setting the variable would only mislead: it is left alone."""
    out = _python("import torch, convsight; " + SHOW)
    assert out == "None default (spin, then sleep)"


def test_cli_sets_passive_wait():
    code = ("import os, sys; sys.argv = ['convsight', '--help']\n"
            "from convsight.cli import build_parser\n"
            "print(os.environ.get('OMP_WAIT_POLICY'))")
    assert _python(code) == "PASSIVE"


def test_set_threads_and_context_restore():
    before = torch.get_num_threads()
    try:
        assert convsight.set_threads(1) == 1 == torch.get_num_threads()
        with convsight.threads(2) as n:
            assert n == 2 == torch.get_num_threads()
        assert torch.get_num_threads() == 1
        assert convsight.set_threads() == convsight.cpu.available_cores()
    finally:
        torch.set_num_threads(before)


@pytest.mark.parametrize("bad", [0, -1, 1.5, "2", True])
def test_bad_thread_count(bad):
    with pytest.raises(convsight.ConvsightError, match="whole number >= 1"):
        convsight.set_threads(bad)


def test_every_command_takes_threads(capsys):
    parser = build_parser()
    commands = parser._subparsers._group_actions[0].choices
    for name, command in commands.items():
        assert any("--threads" in a.option_strings for a in command._actions), name
    before = torch.get_num_threads()
    try:
        assert main(["layers", "--threads", "1", "--json"]) == 0
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)
    assert main(["rf", "blocks.1", "--threads", "zero"]) == 2
    assert "--threads: expected a whole number >= 1, not 'zero'" in capsys.readouterr().err
