"""The explorer's synthesis progress is the real step count, reported by ``maximize``'s callback.

A gate module at the front of a small network stops every forward pass of the synthesis until the
test has read the job's status, so the status is read at known points: when the forward pass of
step k starts, exactly k steps have finished, whatever the speed of the machine.
"""

from __future__ import annotations

import queue
import time

import pytest
import torch
from torch import nn

import convsight
from convsight.web.cache import DiskCache
from convsight.web.jobs import SynthesisQueue, SynthesisSettings

STEPS = 5


class Gate(nn.Module):
    """Identity that, at each forward pass, tells the test and waits until the test says go.

    Its queues are class attributes, so the synthesis worker's deep copy of the network shares them.
    """

    reached: queue.Queue = queue.Queue()
    resume: queue.Queue = queue.Queue()
    open = False

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not Gate.open:
            Gate.reached.put(None)
            Gate.resume.get(timeout=60)
        return x


class Gated(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.gate = Gate()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(self.conv(self.gate(x)))


@pytest.fixture
def gate():
    Gate.reached, Gate.resume, Gate.open = queue.Queue(), queue.Queue(), False
    yield Gate
    Gate.open = True  # a failed test must not leave the worker waiting
    for _ in range(4 * STEPS):
        Gate.resume.put(None)


def test_synthesis_status_counts_the_steps_maximize_reports(gate, tmp_path):
    net = convsight.Network(Gated(), input_size=(16, 16))
    jobs = SynthesisQueue(net, DiskCache(tmp_path), SynthesisSettings(steps=STEPS, size=16))
    assert jobs.start("conv", 2)["state"] in ("queued", "running")
    seen = []
    for _ in range(STEPS):
        gate.reached.get(timeout=60)  # a forward pass has started and waits for us
        seen.append(jobs.status("conv", 2))
        gate.resume.put(None)
    assert [s["state"] for s in seen] == ["running"] * STEPS
    assert [s["step"] for s in seen] == list(range(STEPS))  # real steps, not an estimate
    assert all(s["steps"] == STEPS and "estimated" not in s for s in seen)
    gate.open = True
    deadline = time.monotonic() + 60
    while jobs.status("conv", 2)["state"] not in ("done", "error") and time.monotonic() < deadline:
        time.sleep(0.02)
    status = jobs.status("conv", 2)
    assert status["state"] == "done" and status["step"] == STEPS, status
    assert jobs.picture("conv", 2) is not None
