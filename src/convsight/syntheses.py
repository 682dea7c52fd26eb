"""Syntheses stored in an atlas folder: an image per unit (and per copy), beside the mining files.

Layout (docs/mining.md, "On-disk format"): ``ATLAS/syntheses/LAYER/`` holds ``synthesis.json``
(how the images were made: model fingerprint, settings, seed, copies, diversity) and one PNG per
unit and copy, ``unit7.png``, ``unit7-copy1.png``, ... Every file is written to a temporary name
and renamed into place, so a kill leaves each file whole or absent: a unit is done when all its
copies' files exist. The folder is independent of ``atlas.json``, ``images.json`` and ``top.npz``
(syntheses depend on the model only, not on the images mined), so saving those never touches it.

>>> store = SynthesisStore("atlas")
>>> store.read("blocks.5", 7)          # a PIL image, or None when that unit has no synthesis
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any
from urllib.parse import quote

import numpy as np
import torch
from PIL import Image, PngImagePlugin

from .errors import ConvsightError, UnitError
from .files import write_atomic
from .images import check_size

SUBFOLDER = "syntheses"
INFO = "synthesis.json"
FORMAT = "convsight-syntheses"
VERSION = 1
VALUE_KEY = "convsight:value"   # PNG text chunk: the unit's value on this image
COMPARED = ("model", "settings", "seed", "copies", "diversity", "diversity_layer")


def layer_folder(root: Path, layer: str) -> Path:
    """``root/syntheses/NAME`` with the layer name percent-quoted ("blocks.5" stays "blocks.5")."""
    return Path(root) / SUBFOLDER / (quote(layer, safe="._-") or "%2A")


def unit_file_name(channel: int, copy: int = 0) -> str:
    return f"unit{int(channel)}.png" if copy == 0 else f"unit{int(channel)}-copy{int(copy)}.png"


def image_png(image: torch.Tensor, value: float) -> tuple[bytes, np.ndarray]:
    """(PNG bytes, the 8-bit pixels written) of a (C, H, W) image in [0, 1], C = 1 or 3."""
    import io

    x = image.detach().float().cpu().clamp(0, 1)
    pixels = (x * 255).round().to(torch.uint8).permute(1, 2, 0).numpy()
    pil = Image.fromarray(pixels[..., 0] if pixels.shape[-1] == 1 else pixels)
    meta = PngImagePlugin.PngInfo()
    meta.add_text(VALUE_KEY, repr(float(value)))
    buf = io.BytesIO()
    pil.save(buf, format="PNG", pnginfo=meta)
    return buf.getvalue(), pixels


class SynthesisStore:
    """The syntheses kept in one atlas folder (``root``); with ``model_name``, only those made by
    that model are seen."""

    def __init__(self, root: str | Path, model_name: str | None = None) -> None:
        self.root = Path(root)
        self.model_name = model_name

    def info(self, layer: str, any_model: bool = False) -> dict[str, Any] | None:
        """The layer's ``synthesis.json``, or None when the layer has no syntheses (of the model)."""
        path = layer_folder(self.root, layer) / INFO
        if not path.is_file():
            return None
        try:
            info = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise ConvsightError(f"cannot read {path}: {exc}") from None
        if not isinstance(info, dict) or info.get("format") != FORMAT or info.get("version") != VERSION:
            raise ConvsightError(f"{path} is not a convsight synthesis index of version {VERSION}")
        made_by = (info.get("model") or {}).get("name")
        return info if any_model or self.model_name in (None, made_by) else None

    def layers(self) -> list[str]:
        """Layers with syntheses, in name order."""
        folder = self.root / SUBFOLDER
        if not folder.is_dir():
            return []
        names = []
        for sub in sorted(folder.iterdir()):
            try:
                info = json.loads((sub / INFO).read_text(encoding="utf-8"))
            except (OSError, ValueError):
                continue  # not a layer folder (or not readable): not listed
            if isinstance(info, dict) and isinstance(info.get("layer"), str) and \
                    self.model_name in (None, (info.get("model") or {}).get("name")):
                names.append(info["layer"])
        return sorted(names)

    def begin(self, layer: str, info: dict[str, Any], overwrite: bool = False) -> None:
        """Start (or continue) storing a layer's syntheses made as ``info`` says.

        Continuing needs the same model and recipe (``COMPARED``); otherwise the stored images
        would mix two recipes, so it is refused unless ``overwrite`` (which deletes them first).
        """
        folder = layer_folder(self.root, layer)
        old = self.info(layer, any_model=True)
        if old is not None and not overwrite:
            for key in COMPARED:
                if old.get(key) != info.get(key):
                    raise ConvsightError(
                        f"{folder} holds syntheses made otherwise ({_difference(key, old, info)}); "
                        "use the same settings to continue them, or overwrite=True (--overwrite) "
                        "to replace them")
            return
        if old is not None or folder.exists():
            shutil.rmtree(folder)
        folder.mkdir(parents=True, exist_ok=True)
        full = {"format": FORMAT, "version": VERSION, "layer": layer, **info}
        write_atomic(folder / INFO, json.dumps(full, indent=1).encode("utf-8"))

    def path(self, layer: str, channel: int, copy: int = 0) -> Path:
        return layer_folder(self.root, layer) / unit_file_name(channel, copy)

    def done(self, layer: str, channel: int, copies: int) -> bool:
        return all(self.path(layer, channel, k).is_file() for k in range(copies))

    def write(self, layer: str, channel: int, copy: int, image: torch.Tensor, value: float
              ) -> np.ndarray:
        """Store one image (atomically); return its 8-bit pixels (H, W, C)."""
        data, pixels = image_png(image, value)
        write_atomic(self.path(layer, channel, copy), data)
        return pixels

    def read(self, layer: str, channel: int, copy: int = 0) -> Image.Image | None:
        """The stored image of a unit (``.info["convsight:value"]``: its value), or None."""
        info = self.info(layer)
        if info is None:
            return None
        n, copies = int(info.get("channels", 0)), int(info.get("copies", 1))
        if not 0 <= int(channel) < n:
            raise UnitError(f"channel {channel} is out of range for layer {layer}: valid channels "
                            f"are 0..{n - 1}")
        if not 0 <= int(copy) < copies:
            raise UnitError(f"copy {copy} is out of range: {layer} has {copies} synthesis copies "
                            f"per unit (0..{copies - 1})")
        path = self.path(layer, channel, copy)
        if not path.is_file():
            return None
        try:
            with Image.open(path) as im:
                check_size(im.width, im.height, im.mode, str(path))  # a shared atlas may hold anything
                im.load()
                return im.copy()  # keeps .info (the PNG text)
        except (OSError, Image.DecompressionBombError) as exc:
            raise ConvsightError(f"cannot read the synthesis {path}: {exc}") from None


def _difference(key: str, old: dict[str, Any], new: dict[str, Any]) -> str:
    a, b = old.get(key), new.get(key)
    if isinstance(a, dict) and isinstance(b, dict):
        for k in sorted(set(a) | set(b)):
            if a.get(k) != b.get(k):
                return f"{key} {k} was {a.get(k)!r}, now {b.get(k)!r}"
    return f"{key} was {a!r}, now {b!r}"


def stored_value(image: Image.Image) -> float | None:
    """The unit's value saved with a stored synthesis (None if the file has none)."""
    text = image.info.get(VALUE_KEY)
    try:
        return float(text) if text is not None else None
    except ValueError:
        return None
