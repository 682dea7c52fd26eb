"""Files written whole or not at all: a temporary file beside the target, then a rename.

``os.replace`` is atomic on POSIX and Windows, so a reader (or a process killed mid-write) sees
either the old file or the new one, never a torn one.
"""

from __future__ import annotations

import io
import json
import os
from pathlib import Path
from typing import Any, Sequence

import numpy as np


def write_atomic(path: Path, data: bytes) -> None:
    """Write ``data`` to a temporary file next to ``path``, flush it, rename it over ``path``
    (the temporary file is removed when writing fails). The one atomic write of convsight:
    atlases, syntheses, checkpoints, the explorer's cache and uploads. Each call has its own
    temporary file (``.NAME.RANDOM.PID.tmp``: threads and processes writing the same path do
    not meet; ``Atlas.open`` removes those of dead processes)."""
    tmp = path.with_name(f".{path.name}.{os.urandom(4).hex()}.{os.getpid()}.tmp")
    try:
        with open(tmp, "xb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def npz_bytes(arrays: dict[str, np.ndarray]) -> bytes:
    """The bytes of ``np.savez(arrays)`` (no pickles)."""
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    return buf.getvalue()


MAX_JSON_DEPTH = 32  # convsight's own JSON files nest 4 deep; a shared file may hold anything


def parse_json(data: bytes | str, max_depth: int = MAX_JSON_DEPTH) -> Any:
    """JSON from a file anyone may have written: ``ValueError`` (one line) for invalid JSON and
    for values nested deeper than ``max_depth`` (Python's parser would raise RecursionError at
    about 1,000 levels, and deep values cost every reader that walks them)."""
    try:
        value = json.loads(data)
    except RecursionError:
        raise ValueError(f"values nested more than {max_depth} deep") from None
    level, todo = 0, [value]
    while todo:
        level += 1
        if level > max_depth:
            raise ValueError(f"values nested more than {max_depth} deep")
        todo = [v for item in todo if isinstance(item, (dict, list))
                for v in (item.values() if isinstance(item, dict) else item)]
    return value


def inside(path: Path, folders: Sequence[Path]) -> bool:
    """Whether ``path`` is one of ``folders`` or lies under one (paths compared as given)."""
    return any(path == f or f in path.parents for f in folders)
