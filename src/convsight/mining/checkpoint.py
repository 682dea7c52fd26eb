"""Checkpoints of a mining run: one ``.npz`` file per process, replaced atomically.

The file holds the running top-k arrays of every layer (``layer{i}_value|image|y|x``) and a JSON
string ``meta``: the run's configuration (to refuse resuming a different run), how many images of
this process' shard are done, and the images skipped so far. The file is written to a temporary
name and renamed over the old one (``os.replace``), so a kill at any moment leaves either the old
or the new checkpoint, never a torn one.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from ..atlas import npz_bytes, write_atomic
from ..errors import ConvsightError
from .topk import TopK


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
    except (OSError, ValueError, KeyError) as exc:
        raise ConvsightError(f"cannot read the checkpoint {path}: {exc}. Delete it to start "
                             "again") from None
    return tops, meta


def config_mismatch(saved: dict[str, Any], current: dict[str, Any]) -> str | None:
    """Name what differs between a checkpoint's run and this one (None when they match)."""
    for key, value in current.items():
        if saved.get(key) != value:
            return f"{key} was {saved.get(key)!r}, now {value!r}"
    return None
