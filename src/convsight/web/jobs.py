"""Syntheses on demand: one background worker, a queue, progress the page can poll.

A synthesis (``convsight.maximize``) takes seconds to minutes on a CPU, far too long for a request.
The unit page asks for one (POST), then polls its status until the picture is in the disk cache;
the status counts the steps ``maximize`` has finished (its ``progress`` callback).
The worker runs on its own deep copy of the network, so the interactive pages never wait for it
and the user's model is never touched by a background thread. Asking twice for the same synthesis
joins the job already queued.
"""

from __future__ import annotations

import copy
import logging
import queue
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

import convsight
from convsight.optimize.presets import ON_DEMAND_SIZE, ON_DEMAND_STEPS, Recipe
from convsight.pictures import png_bytes
from convsight.targets import Target

from .cache import DiskCache

MAX_QUEUED = 16
log = logging.getLogger("convsight.web")


@dataclass(frozen=True)
class SynthesisSettings(Recipe):
    """The recipe of the explorer's on-demand syntheses (``convsight.optimize.Recipe``, checked
    when built, so ``convsight serve`` refuses a bad one before it listens), small by default so
    that a synthesis finishes in tens of seconds on a laptop CPU. The Yosinski presets need
    hundreds of steps to leave the grey start; the Fourier ``lucid`` parameterisation shows a
    unit's pattern after a few dozen."""

    steps: int | None = ON_DEMAND_STEPS
    size: int | None = ON_DEMAND_SIZE


def check_settings(settings: Any) -> SynthesisSettings:
    """The explorer's synthesis recipe: ``SynthesisSettings()`` for None, a ``Recipe`` as it is;
    anything else is refused in one line (before the server listens)."""
    if settings is None:
        return SynthesisSettings()
    if isinstance(settings, Recipe):
        return settings
    raise convsight.ConvsightError(f"synthesis={settings!r} is not valid: give "
                                   "convsight.web.SynthesisSettings(preset=..., steps=..., size=...)")


@dataclass
class Job:
    layer: str
    channel: int
    key: str
    steps: int
    state: str = "queued"  # queued, running, done, error
    step: int = 0
    error: str = ""
    started: float = 0.0
    finished: float = 0.0
    created: float = field(default_factory=time.time)

    def status(self) -> dict[str, Any]:
        elapsed = (self.finished or time.time()) - self.started if self.started else 0.0
        return {"state": self.state, "step": self.step, "steps": self.steps,
                "elapsed": round(elapsed, 1), "error": self.error}


class SynthesisQueue:
    """Runs ``maximize`` for one unit at a time and stores the picture in the cache."""

    def __init__(self, net: convsight.Network, cache: DiskCache,
                 settings: SynthesisSettings | None = None) -> None:
        self.net = net
        self.cache = cache
        self.settings = check_settings(settings)
        self._steps = self.settings.settings.steps  # the preset's when the recipe names none
        self._jobs: dict[str, Job] = {}
        self._lock = threading.Lock()
        self._queue: queue.Queue[Job] = queue.Queue()
        self._worker: threading.Thread | None = None
        # The worker's own network, copied now, while no request can have hooks on the shared one.
        self._copy = copy.deepcopy(net)

    def key(self, layer: str, channel: int) -> str:
        s = self.settings
        knobs = "".join(f"/{k}={v}" for k, v in s.knobs)
        return f"synth/{layer}/{channel}/{s.preset}/{s.steps}/{s.size}/{s.seed}{knobs}.png"

    def picture(self, layer: str, channel: int) -> bytes | None:
        return self.cache.get(self.key(layer, channel))

    def status(self, layer: str, channel: int) -> dict[str, Any]:
        key = self.key(layer, channel)
        with self._lock:
            job = self._jobs.get(key)
        if self.cache.get(key) is not None:
            done = job.status() if job else {"step": self._steps, "elapsed": 0.0,
                                             "error": ""}
            return {**done, "state": "done", "steps": self._steps}
        if job is None:
            return {"state": "none", "step": 0, "steps": self._steps, "elapsed": 0.0,
                    "error": ""}
        status = job.status()
        if job.state == "queued":
            status["ahead"] = sum(1 for j in list(self._jobs.values())
                                  if j.state in ("queued", "running") and j.created < job.created)
        return status

    def start(self, layer: str, channel: int) -> dict[str, Any]:
        """Queue a synthesis unless it is cached or already queued; return its status."""
        key = self.key(layer, channel)
        if self.cache.get(key) is None:
            with self._lock:
                job = self._jobs.get(key)
                if job is None or job.state == "error":
                    active = sum(1 for j in self._jobs.values() if j.state in ("queued", "running"))
                    if active >= MAX_QUEUED:
                        raise QueueFull(f"{active} syntheses are already waiting; try again later")
                    job = Job(layer, channel, key, self._steps)
                    self._jobs[key] = job
                    self._queue.put(job)
                    self._ensure_worker()
        return self.status(layer, channel)

    def _ensure_worker(self) -> None:
        if self._worker is None or not self._worker.is_alive():
            self._worker = threading.Thread(target=self._work, name="convsight-synthesis",
                                            daemon=True)
            self._worker.start()

    def _work(self) -> None:
        while True:
            job = self._queue.get()
            job.state, job.started = "running", time.time()
            try:
                self.cache.put(job.key, self._synthesise(job))
                job.state = "done"
            except convsight.ConvsightError as exc:  # a one-line reason (no paths): shown
                job.state, job.error = "error", str(exc)
            except Exception as exc:  # e.g. the cache cannot be written: its text (paths) is
                log.error("synthesis of %s:%s failed", job.layer, job.channel, exc_info=exc)
                job.state, job.error = "error", (f"the synthesis failed ({type(exc).__name__}); "
                                                 "the server's log says why")
            job.finished = time.time()

    def _synthesise(self, job: Job) -> bytes:
        """Run ``maximize`` for the job's unit; ``job.step`` follows its steps as they finish."""
        s = self.settings

        def finished(done: int, total: int) -> None:
            job.step = done

        result = convsight.maximize(self._copy, [Target.unit(job.layer, job.channel)],
                                    progress=finished, **s.arguments())
        image = result.images[0].detach().float().clamp(0, 1).permute(1, 2, 0).cpu().numpy()
        return png_bytes(np.asarray(image))


class QueueFull(convsight.ConvsightError):
    """Too many syntheses waiting (HTTP 503)."""
