"""What the parts of the explorer share, and the errors its pages turn into HTTP statuses.

The explorer answers three kinds of question (``layers.py``: layers and their units;
``inputs.py``: the images one can look at; ``attributions.py``: what a network does with one
image). All three read the same ``Workbench``: the network, the atlas mined from it (optional),
the disk cache of pictures and ``model_lock``.

Requests run in a thread pool and the model is shared, so every pass through it holds
``model_lock``: attribution and capture add hooks for the length of one call, and two calls at
once on one module would see each other's hooks. Synthesis runs on its own copy of the model
(see ``jobs.py``) so that it never blocks the pages.
"""

from __future__ import annotations

import hashlib
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import convsight
from convsight.atlas_access import AtlasAccess
from convsight.attribute.registry import CLASSES, UNITS, MethodNames
from convsight.models import weights_fingerprint

from .cache import DiskCache

UNIT_METHODS = MethodNames(UNITS)      # projections of a unit (read from the method registry)
CLASS_METHODS = MethodNames(CLASSES)  # class attributions of the image page
MAX_UPLOAD_BYTES = 16 * 1024 * 1024
MAX_UPLOAD_PIXELS = 40_000_000


class NotFound(convsight.ConvsightError):
    """A layer, unit, image or file the explorer does not have (HTTP 404)."""


class BadUpload(convsight.ConvsightError):
    """An upload that is not an image, or too large (HTTP 415 / 413)."""

    def __init__(self, message: str, status: int = 415) -> None:
        super().__init__(message)
        self.status = status


def check_method(method: str, allowed: Sequence[str]) -> None:
    if method not in allowed:
        raise NotFound(f"unknown method {method!r}; use one of {', '.join(allowed)}")


@dataclass
class Workbench:
    """The network, the atlas (or None), the atlas's folder (or None), the cache, the lock and
    whether files outside the atlas and its image folders may be read; ``access``: the atlas's
    images and boxes, read only inside its folders unless ``allow_outside``."""

    net: convsight.Network
    atlas: Any | None
    atlas_dir: Path | None
    cache: DiskCache
    model_lock: threading.RLock = field(default_factory=threading.RLock)
    allow_outside: bool = False  # read files outside the atlas and image folders too
    access: AtlasAccess | None = field(init=False)

    def __post_init__(self) -> None:
        self.access = (AtlasAccess(self.atlas, self.net, confined=not self.allow_outside)
                       if self.atlas is not None else None)

    @property
    def mined_layers(self) -> list[str]:
        return list(self.atlas.layers) if self.atlas is not None else []


def default_cache_dir(net: convsight.Network, atlas_dir: Path | None) -> Path:
    """One cache per model (by its weights, not its name) and per atlas version."""
    atlas_file = atlas_dir / "atlas.json" if atlas_dir is not None else None
    stamp = atlas_file.stat().st_mtime_ns if atlas_file is not None and atlas_file.is_file() else 0
    key = hashlib.sha256(f"{weights_fingerprint(net.module)}|{net.input_size}|{net.mean}|{net.std}"
                         f"|{atlas_dir}|{stamp}".encode()).hexdigest()[:12]
    return Path.home() / ".cache" / "convsight" / "web" / f"{net.name}-{key}"
