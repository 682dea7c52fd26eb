"""A disk cache of rendered pictures that several requests (and servers) can share safely.

Each entry is computed once: a per-key lock makes concurrent requests for the same key wait for
the first one instead of computing it again, and the bytes land under their final name with
``os.replace`` from a temporary file in the same folder, so a reader never sees half a file (also
when two processes share the folder).

Memory stays bounded however many keys are asked for (a server sees any URL anyone sends): a
key's lock lives only while some request holds it or waits for it, and the in-memory copy of
recent entries is a least-recently-used table capped in items and in bytes.

>>> cache = DiskCache("/tmp/cs-cache")
>>> cache.get_or_make("unit/blocks.5/3.jpg", lambda: b"...")
b'...'
"""

from __future__ import annotations

import hashlib
import re
import threading
from collections import OrderedDict
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterator

from convsight.files import write_atomic

_SAFE = re.compile(r"[^A-Za-z0-9._-]+")


class DiskCache:
    """Bytes by key in a folder; keys are free text, mapped to safe file names."""

    def __init__(self, root: str | Path, memory_items: int = 512,
                 memory_bytes: int = 64 * 2**20) -> None:
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self._locks: dict[str, list] = {}  # key -> [lock, requests holding or waiting]
        self._locks_guard = threading.Lock()
        self._memory: OrderedDict[str, bytes] = OrderedDict()
        self._memory_items = memory_items
        self._memory_bytes = memory_bytes
        self._memory_held = 0
        self.computed = 0  # how many entries this process computed (tests read it)

    def path(self, key: str) -> Path:
        """The file for ``key``: a readable prefix plus a hash, never outside ``root``."""
        digest = hashlib.sha256(key.encode("utf-8")).hexdigest()[:16]
        stem = _SAFE.sub("_", key)[-80:].strip("._") or "entry"
        return self.root / digest[:2] / f"{stem}.{digest}"

    @property
    def locks_in_use(self) -> int:
        """Keys whose lock some request holds or waits for (0 when the server is idle)."""
        with self._locks_guard:
            return len(self._locks)

    @property
    def memory_held(self) -> tuple[int, int]:
        """(entries, bytes) kept in memory."""
        with self._locks_guard:
            return len(self._memory), self._memory_held

    @contextmanager
    def _holding(self, key: str) -> Iterator[None]:
        """Hold ``key``'s lock; the lock is dropped from the table when nobody needs it."""
        with self._locks_guard:
            entry = self._locks.setdefault(key, [threading.Lock(), 0])
            entry[1] += 1
        try:
            with entry[0]:
                yield
        finally:
            with self._locks_guard:
                entry[1] -= 1
                if entry[1] == 0:
                    del self._locks[key]

    def get(self, key: str) -> bytes | None:
        with self._locks_guard:
            data = self._memory.get(key)
            if data is not None:
                self._memory.move_to_end(key)
        if data is not None:
            return data
        try:
            data = self.path(key).read_bytes()
        except FileNotFoundError:
            return None
        self._remember(key, data)
        return data

    def put(self, key: str, data: bytes) -> None:
        path = self.path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        write_atomic(path, data)
        self._remember(key, data)

    def get_or_make(self, key: str, make: Callable[[], bytes]) -> bytes:
        """The cached bytes for ``key``, computing them with ``make()`` at most once at a time."""
        data = self.get(key)
        if data is not None:
            return data
        with self._holding(key):
            data = self.get(key)  # another request may have made it while we waited
            if data is None:
                data = make()
                self.put(key, data)
                with self._locks_guard:  # requests for different keys finish concurrently
                    self.computed += 1
        return data

    def _remember(self, key: str, data: bytes) -> None:
        """Keep ``data`` in memory, dropping the least recently used entries over the caps (an
        entry larger than an eighth of the byte cap stays on disk only)."""
        if self._memory_items <= 0 or len(data) > self._memory_bytes // 8:
            return
        with self._locks_guard:
            old = self._memory.pop(key, None)
            self._memory_held -= len(old) if old is not None else 0
            while self._memory and (len(self._memory) >= self._memory_items
                                    or self._memory_held + len(data) > self._memory_bytes):
                self._memory_held -= len(self._memory.popitem(last=False)[1])
            self._memory[key] = data
            self._memory_held += len(data)
