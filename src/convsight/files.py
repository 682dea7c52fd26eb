"""Files written whole or not at all: a temporary file beside the target, then a rename.

``os.replace`` is atomic on POSIX and Windows, so a reader (or a process killed mid-write) sees
either the old file or the new one, never a torn one.
"""

from __future__ import annotations

import io
import os
from pathlib import Path

import numpy as np


def write_atomic(path: Path, data: bytes) -> None:
    """Write ``data`` to a temporary file next to ``path``, flush it, rename it over ``path``
    (the temporary file is removed when writing fails)."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "wb") as f:
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
