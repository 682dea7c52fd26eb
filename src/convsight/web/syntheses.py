"""Syntheses stored in the atlas (``convsight.visualize_layer(..., atlas=...)``), as the pages show them.

OpenAI Microscope lays each unit out as the image synthesised for it beside the dataset patches
that excite it most; the layer and unit pages do the same with the images the atlas folder holds
(``ATLAS/syntheses/LAYER/``). A layer's syntheses are shown only when they were made by the very
weights the explorer serves (the model fingerprint in ``synthesis.json``): an atlas re-mined or
served with other weights may still hold the old ones, which say nothing about this network.
Units without a stored image keep the on-demand synthesis of ``jobs.py``; nothing here writes
into the atlas.

Pictures are the stored PNG files, byte for byte, and a small JPEG of each for the layer grid,
both cached under keys that carry the file's size and time, so syntheses made again show at once.
"""

from __future__ import annotations

import io
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from PIL import Image

import convsight
from convsight import optimize
from convsight.models import weights_fingerprint
from convsight.pictures import fit_square, jpeg_bytes
from convsight.atlas import inside
from convsight.syntheses import BAD_IMAGE, SynthesisStore, open_checked, stored_value

from .layers import Layers
from .workbench import NotFound, Workbench

TILE_SIDE = 124  # a cell of the layer grid, as tall as the unit's patch tile
MAX_FILE_BYTES = 32 << 20  # a stored synthesis is a few hundred kB; larger files are not served


@dataclass(frozen=True)
class Recipe(optimize.Recipe):
    """How a layer's stored syntheses were made (read from its ``synthesis.json``): the
    ``convsight.optimize.Recipe`` (checked when built; size None: the network's input size) and
    the facets per unit."""

    copies: int = 1
    diversity: float = 0.0

    @classmethod
    def of(cls, info: dict[str, Any]) -> "Recipe":
        """From an index ``SynthesisStore.info`` has checked (types and ranges); a recipe this
        convsight cannot make (an unknown preset...) is a ``ConvsightError``."""
        settings = info["settings"]
        return cls(preset=info["preset"], steps=settings["steps"], size=settings.get("size"),
                   seed=info["seed"], copies=info["copies"], diversity=float(info["diversity"]))

    def text(self) -> str:
        """``preset lucid, 512 steps, 128 px, seed 0`` (+ ``, 4 facets, diversity 0.5``)."""
        size = f"{self.size} px" if self.size else "the network's input size"
        words = f"preset {self.preset}, {self.steps} steps, {size}, seed {self.seed}"
        if self.copies > 1:
            words += f", {self.copies} facets per unit, diversity {self.diversity:g}"
        return words


@dataclass(frozen=True)
class Facet:
    """One stored image of a unit: its copy number, the unit's value on it and its URL."""

    copy: int
    value: float | None
    url: str


class StoredSyntheses:
    """The atlas's stored syntheses of the served network (none without an atlas folder)."""

    def __init__(self, bench: Workbench, layers: Layers) -> None:
        self.bench, self.layers = bench, layers
        self.net, self.atlas, self.cache = bench.net, bench.atlas, bench.cache
        folder = getattr(self.atlas, "path", None) if self.atlas is not None else None
        self.store = SynthesisStore(folder) if folder is not None else None  # any model's
        self.root = Path(folder).resolve() if folder is not None else None
        self._fingerprint: str | None = None
        self._guard = threading.Lock()

    def fingerprint(self) -> str:
        """The served weights' fingerprint, as ``visualize_layer`` records it (computed once)."""
        with self._guard:
            if self._fingerprint is None:
                self._fingerprint = weights_fingerprint(self.net)
            return self._fingerprint

    def _read(self, layer: str) -> tuple[dict[str, Any] | None, str | None]:
        """(the layer's ``synthesis.json`` if it may be shown, else None; why it may not)."""
        if self.store is None:
            return None, None
        try:
            info = self.store.info(layer, any_model=True)
        except convsight.ConvsightError:
            return None, "the atlas's synthesis index of this layer cannot be read"
        if info is None:
            return None, None
        made_by = info["model"]  # checked by SynthesisStore.info: {name, fingerprint} as text
        if made_by["fingerprint"] != self.fingerprint():
            name = made_by["name"] or "an unknown model"
            return None, (f"the atlas holds syntheses of this layer made by other weights "
                          f"({name}, fingerprint {made_by['fingerprint']}); they are not "
                          f"shown, since they say nothing about the network served here")
        try:
            Recipe.of(info)
        except convsight.ConvsightError as exc:
            return None, f"the atlas's synthesis index of this layer names another recipe: {exc}"
        return info, None

    def recipe(self, layer: str) -> Recipe | None:
        """How the layer's syntheses were made, or None when it has none of this network."""
        info = self._read(layer)[0]
        return Recipe.of(info) if info is not None else None

    def hidden(self, layer: str) -> str | None:
        """Why the layer's stored syntheses are not shown (made by other weights), or None."""
        return self._read(layer)[1]

    def layers_with_syntheses(self) -> list[str]:
        """Layers whose stored syntheses are shown (made by the served weights)."""
        if self.store is None:
            return []
        return [name for name in self.store.layers() if self.recipe(name) is not None]

    def units(self, layer: str) -> set[int]:
        """The layer's units with a stored synthesis (its first copy)."""
        recipe = self.recipe(layer)
        if recipe is None:
            return set()
        return {c for c in range(self.layers.layer(layer).channels or 0)
                if self.store.path(layer, c, 0).is_file()}

    def facets(self, layer: str, channel: int) -> list[Facet]:
        """The unit's stored images (one per copy), with the unit's value on each."""
        self.layers.channel(layer, channel)
        recipe = self.recipe(layer)
        if recipe is None:
            return []
        out = []
        for k in range(recipe.copies):
            path = self.store.path(layer, channel, k)
            if path.is_file() and self._allowed(path):
                out.append(Facet(k, _value(path), f"/img/atlas-synth/{layer}/{channel}/{k}.png"))
        return out

    def _allowed(self, path: Path) -> bool:
        """Whether a stored file, links followed, lies inside the atlas folder (or
        ``--allow-outside``): a link in ``syntheses/`` to elsewhere is not served."""
        return self.bench.allow_outside or inside(path.resolve(), [self.root])

    def _file(self, layer: str, channel: int, copy: int) -> Path:
        """The stored PNG of a unit's copy, checked (unknown unit or copy, or none: 404)."""
        self.layers.channel(layer, channel)
        recipe = self.recipe(layer)
        if recipe is None:
            raise NotFound(f"no syntheses of layer {layer} made by this network are stored in "
                           "the atlas")
        if not 0 <= copy < recipe.copies:
            raise NotFound(f"copy {copy} does not exist: layer {layer} has {recipe.copies} "
                           f"stored syntheses per unit (copies 0..{recipe.copies - 1})")
        path = self.store.path(layer, channel, copy)
        if not path.is_file():
            raise NotFound(f"unit {layer}:{channel} has no stored synthesis (copy {copy})")
        if not self._allowed(path):
            raise NotFound(f"the stored synthesis of {layer}:{channel} (copy {copy}) is a link to "
                           "a file outside the atlas folder; it is not served (serve "
                           "--allow-outside serves it)")
        return path

    def png(self, layer: str, channel: int, copy: int = 0) -> bytes:
        """The stored PNG of a unit's copy, byte for byte (checked to be a sane image): read
        once, and those very bytes checked, so a file replaced meanwhile is never served
        unchecked; files above ``MAX_FILE_BYTES`` are refused."""
        path = self._file(layer, channel, copy)

        def make() -> bytes:
            data = _read_capped(path)
            _open(io.BytesIO(data), path.name).close()
            return data
        return self.cache.get_or_make(f"atlas-synth/{layer}/{channel}/{copy}/{_stamp(path)}.png",
                                      make)

    def tile(self, layer: str, channel: int, side: int = TILE_SIDE) -> bytes:
        """The unit's first stored synthesis as a small JPEG (its cell of the layer grid)."""
        path = self._file(layer, channel, 0)

        def make() -> bytes:
            with _open(io.BytesIO(_read_capped(path)), path.name) as im:
                return jpeg_bytes(fit_square(im.convert("RGB"), side, resample="smooth"),
                                  quality=90)
        return self.cache.get_or_make(
            f"atlas-synth-tile/{layer}/{channel}/{_stamp(path)}/{side}.jpg", make)


def _stamp(path: Path) -> str:
    """Size and modification time of a file: a key that changes when the file is made again."""
    st = path.stat()
    return f"{st.st_size}-{st.st_mtime_ns}"


def _read_capped(path: Path) -> bytes:
    """The file's bytes, refused (404) when it holds more than ``MAX_FILE_BYTES``."""
    try:
        with open(path, "rb") as f:
            data = f.read(MAX_FILE_BYTES + 1)
    except OSError as exc:
        raise _unreadable(path.name, exc) from None
    if len(data) > MAX_FILE_BYTES:
        raise NotFound(f"the stored synthesis {path.name} is over {MAX_FILE_BYTES >> 20} MiB: "
                       "not a synthesis convsight wrote, so it is not served")
    return data


def _open(source: io.BytesIO, name: str) -> Image.Image:
    """Open a stored synthesis, refusing (404) data that are not an image of a sane size."""
    try:
        return open_checked(source, name)
    except BAD_IMAGE as exc:
        raise _unreadable(name, exc) from None


def _unreadable(name: str, exc: BaseException) -> NotFound:
    return NotFound(f"cannot read the stored synthesis {name}: {type(exc).__name__}")


def _value(path: Path) -> float | None:
    """The unit's value saved in a stored synthesis (its PNG text), read without decoding."""
    try:
        with Image.open(path) as im:
            return stored_value(im)
    except BAD_IMAGE:
        return None
