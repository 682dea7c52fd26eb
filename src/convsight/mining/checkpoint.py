"""Checkpoints of a mining run: one ``.npz`` file per process, replaced atomically; resuming from them.

The file holds the running top-k arrays of every layer (``layer{i}_value|image|y|x``) and a JSON
string ``meta``: the run's configuration (to refuse resuming a different run), how many images of
this process' shard are done, and the images skipped so far. The file is written to a temporary
name and renamed over the old one (``os.replace``), so a kill at any moment leaves either the old
or the new checkpoint, never a torn one.

``starting_point`` decides where a run starts: afresh, from its checkpoint, or (when the run had
already finished) with the atlas it saved.
"""

from __future__ import annotations

import json
import time
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..atlas import Atlas
from ..atlas_store import npz_bytes, write_atomic
from ..errors import ConvsightError
from .topk import TopK

ATLAS_FILES = ("atlas.json", "top.npz", "images.json")


@dataclass
class State:
    """What one process has mined so far: the top-k of each layer, the shard images done, the
    ``(id, reason)`` of the images skipped."""

    tops: dict[str, TopK]
    done: int = 0
    skipped: list[tuple[int, str]] = field(default_factory=list)


def checkpoint_path(out: Path, rank: int, world: int) -> Path:
    return out / ("checkpoint.npz" if world == 1 else f"checkpoint.rank{rank}-of-{world}.npz")


def save_checkpoint(path: Path, tops: dict[str, TopK], meta: dict[str, Any]) -> None:
    arrays: dict[str, np.ndarray] = {"meta": np.array(json.dumps(meta))}
    for i, top in enumerate(tops.values()):
        for key, value in top.arrays().items():
            arrays[f"layer{i}_{key}"] = value.numpy()
    write_atomic(path, npz_bytes(arrays))


def load_checkpoint(path: Path, layers: list[str]) -> tuple[dict[str, TopK], dict[str, Any]]:
    try:
        with np.load(path, allow_pickle=False) as z:
            meta = json.loads(str(z["meta"]))
            tops = {name: TopK.from_arrays({key: z[f"layer{i}_{key}"]
                                            for key in ("value", "image", "y", "x")})
                    for i, name in enumerate(layers)}
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as exc:
        raise ConvsightError(f"cannot read the checkpoint {path}: it is damaged or truncated "
                             f"({type(exc).__name__}: {exc}). Delete it to start again") from None
    if not isinstance(meta, dict) or not {"config", "done", "skipped"} <= set(meta):
        raise ConvsightError(f"cannot read the checkpoint {path}: it is not a convsight mining "
                             "checkpoint. Delete it to start again")
    return tops, meta


def config_mismatch(saved: dict[str, Any], current: dict[str, Any]) -> str | None:
    """Name what differs between a checkpoint's run and this one (None when they match)."""
    for key, value in current.items():
        if saved.get(key) != value:
            return f"{key} was {saved.get(key)!r}, now {value!r}"
    return None


def _check_same_run(saved: dict[str, Any], config: dict[str, Any], what: str, out: Path) -> None:
    problem = config_mismatch(saved, config)
    if problem:
        raise ConvsightError(f"the {what} in {out} is from a different run ({problem}); "
                             "run without resume to start again")


class Checkpoints:
    """The checkpoint of one process of a run with ``out`` (none without): written every
    ``every`` seconds (0: after every batch) by ``tick``, at once by ``save``."""

    def __init__(self, out: Path | None, rank: int, world: int, config: dict[str, Any],
                 every: float) -> None:
        self.path = checkpoint_path(out, rank, world) if out is not None else None
        self.config = config
        self.every = every
        self.last = time.monotonic()

    def save(self, state: State) -> None:
        if self.path is not None:
            save_checkpoint(self.path, state.tops, {"config": self.config, "done": state.done,
                                                    "skipped": [list(s) for s in state.skipped]})

    def tick(self, state: State) -> None:
        if self.path is not None and time.monotonic() - self.last >= self.every:
            self.save(state)
            self.last = time.monotonic()

    def load(self, layers: list[str]) -> State:
        tops, meta = load_checkpoint(self.path, layers)
        _check_same_run(meta["config"], self.config, "checkpoint", self.path.parent)
        return State(tops, int(meta["done"]), [tuple(s) for s in meta["skipped"]])

    def remove(self) -> None:
        if self.path is not None:
            self.path.unlink(missing_ok=True)


def starting_point(out: Path | None, resume: bool, checkpoints: Checkpoints, fresh: State,
                   rank: int) -> State | Atlas:
    """Where this process starts: its checkpoint (``resume``), the finished atlas in ``out``
    (``resume`` after the run had ended), or ``fresh``. A fresh run with ``out`` deletes any
    atlas files there first, so that a stale atlas cannot pass for this run's result."""
    if resume and checkpoints.path is not None and checkpoints.path.is_file():
        start: State | Atlas = checkpoints.load(list(fresh.tops))
    elif resume and out is not None and (out / "atlas.json").is_file():
        start = Atlas.open(out)
        # a finished atlas is the same whatever the process count that made it
        same = {k: v for k, v in checkpoints.config.items() if k != "processes"}
        _check_same_run(start.info.get("config", {}), same, "atlas", out)
        return start
    else:
        start = fresh
        if out is not None and rank == 0:
            out.mkdir(parents=True, exist_ok=True)
            for name in ATLAS_FILES:
                (out / name).unlink(missing_ok=True)
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
    return start
