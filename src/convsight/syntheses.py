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
import math
import shutil
from pathlib import Path
from typing import Any
from urllib.parse import quote

import numpy as np
import torch
from PIL import Image, PngImagePlugin

from .errors import ConvsightError, UnitError
from .files import parse_json, write_atomic
from .images import check_size
from .models import MAX_INPUT_SIDE

SUBFOLDER = "syntheses"
INFO = "synthesis.json"
FORMAT = "convsight-syntheses"
VERSION = 1
VALUE_KEY = "convsight:value"   # PNG text chunk: the unit's value on this image
# what must match to continue a layer's stored syntheses: images made by another batching may
# differ by floating-point rounding (which the ascent can amplify), so batch_size is compared too
COMPARED = ("model", "settings", "seed", "copies", "diversity", "diversity_layer", "batch_size",
            "seeding")
SEEDING = "per image: seed, layer, channel, copy"  # how each image's random start is seeded
MAX_COPIES = 64        # facets per unit (visualize_layer refuses more; so does a reader)
MAX_CHANNELS = 1 << 20  # a layer's width, as recorded (sanity bound for a shared atlas)


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
            info = parse_json(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise ConvsightError(f"cannot read {path}: {exc}") from None
        if not isinstance(info, dict) or info.get("format") != FORMAT or info.get("version") != VERSION:
            raise ConvsightError(f"{path} is not a convsight synthesis index of version {VERSION}")
        problem = index_problem(info, layer)
        if problem:
            raise ConvsightError(f"{path} is not a valid synthesis index: {problem}")
        made_by = info["model"]["name"]
        return info if any_model or self.model_name in (None, made_by) else None

    def layers(self) -> list[str]:
        """Layers with syntheses, in name order."""
        folder = self.root / SUBFOLDER
        if not folder.is_dir():
            return []
        names = []
        for sub in sorted(folder.iterdir()):
            try:
                layer = parse_json((sub / INFO).read_text(encoding="utf-8"))["layer"]
                if layer_folder(self.root, layer) == sub and self.info(layer) is not None:
                    names.append(layer)
            except (OSError, ValueError, TypeError, KeyError, ConvsightError):
                continue  # not a layer folder, or not a readable, valid index: not listed
        return sorted(names)

    def begin(self, layer: str, info: dict[str, Any], overwrite: bool = False) -> None:
        """Start (or continue) storing a layer's syntheses made as ``info`` says.

        Continuing needs the same model and recipe (``COMPARED``); otherwise the stored images
        would mix two recipes, so it is refused unless ``overwrite`` (which deletes them first).
        """
        folder = layer_folder(self.root, layer)
        if not overwrite:
            try:
                old = self.info(layer, any_model=True)
            except ConvsightError as exc:
                raise ConvsightError(f"{exc}; use overwrite=True (--overwrite) to replace that "
                                     "layer's syntheses") from None
            if old is not None:
                for key in COMPARED:
                    if old.get(key) != info.get(key):
                        why = (": batches of another size can round an image differently"
                               if key == "batch_size" else "")
                        raise ConvsightError(
                            f"{folder} holds syntheses made otherwise "
                            f"({_difference(key, old, info)}{why}); use the same settings to "
                            "continue them, or overwrite=True (--overwrite) to replace them")
                return
        if folder.exists():  # overwrite, or a folder without an index (never finished a start)
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
        n, copies = info["channels"], info["copies"]
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
            with open_checked(path, str(path)) as im:
                return im.copy()  # keeps .info (the PNG text)
        except BAD_IMAGE as exc:
            raise ConvsightError(f"cannot read the synthesis {path}: {exc}") from None


# what opening a file that is not a sane image raises: PIL's errors, ValueError for a compressed
# text or colour-profile chunk that inflates past PIL's limit ("Decompressed data too large"), and
# convsight's ImageError (a ValueError) for an image too large to decode
BAD_IMAGE = (OSError, ValueError, Image.DecompressionBombError)


def open_checked(source: Any, name: str) -> Image.Image:
    """Open and decode a stored synthesis (a path or a file object) from an atlas that may hold
    anything: its size is checked (``images.check_size``) before the pixels are decoded. Raises
    one of ``BAD_IMAGE``; the caller closes the image."""
    im = Image.open(source)
    try:
        check_size(im.width, im.height, im.mode, name)
        im.load()
    except BaseException:
        im.close()
        raise
    return im


def _whole(value: Any, low: int, high: float) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and low <= value <= high


def index_problem(info: dict[str, Any], layer: str | None = None) -> str | None:
    """What is wrong with a ``synthesis.json`` (read from a shared atlas: anything may be in it),
    or None. Every field the readers use is checked for its type and a sane range."""
    model, settings = info.get("model"), info.get("settings")
    size = settings.get("size") if isinstance(settings, dict) else None
    diversity = info.get("diversity")
    checks = [
        ("layer", isinstance(info.get("layer"), str) and layer in (None, info.get("layer")),
         f"the layer name {layer!r}" if layer else "a layer name"),
        ("model", isinstance(model, dict) and isinstance(model.get("name"), str)
         and isinstance(model.get("fingerprint"), str), "{name, fingerprint} (text)"),
        ("preset", isinstance(info.get("preset"), str), "a preset name"),
        ("settings", isinstance(settings, dict) and _whole(settings.get("steps"), 1, math.inf)
         and (size is None or _whole(size, 1, MAX_INPUT_SIDE)),
         f"settings with steps >= 1 and size None or 1..{MAX_INPUT_SIDE}"),
        ("seed", _whole(info.get("seed"), 0, math.inf), "a whole number >= 0"),
        ("copies", _whole(info.get("copies"), 1, MAX_COPIES), f"a whole number 1..{MAX_COPIES}"),
        ("diversity", isinstance(diversity, (int, float)) and not isinstance(diversity, bool)
         and math.isfinite(diversity) and diversity >= 0, "a number >= 0"),
        ("diversity_layer", info.get("diversity_layer") is None
         or isinstance(info.get("diversity_layer"), str), "a layer name or null"),
        ("channels", _whole(info.get("channels"), 1, MAX_CHANNELS),
         f"a whole number 1..{MAX_CHANNELS}"),
    ]
    for key, fine, valid in checks:
        if not fine:
            shown = repr(info.get(key))
            return f"{key}={shown[:60]}{'...' if len(shown) > 60 else ''} (expected {valid})"
    return None


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
