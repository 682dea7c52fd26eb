"""An atlas folder on disk: saved as a unit, checked when read, every problem one line.

The folder holds ``atlas.json`` (metadata, the manifest), ``images.json`` (the path of every image
id) and ``top.npz`` (per layer the (channels, k) arrays ``value``, ``image``, ``y``, ``x``).

Saving is a small journal, so that a kill at any moment leaves the old atlas or the new one:

1. each new file is written under a temporary name, flushed, then renamed to ``NAME.new``;
2. ``atlas.json.new``, holding the sha256 of the new data files, is renamed into place last: from
   then on the new atlas is committed;
3. the ``.new`` files are renamed over the old ones, ``atlas.json`` last.

While it saves, the writer keeps a file ``.saving.PID`` in the folder. Reading first finishes a
committed save that was cut short (step 3), drops the uncommitted ``.new`` files and temporary
files of writers that are no longer running (never those of a live one), then checks the data files against the checksums in
``atlas.json``: an atlas torn any other way (files copied from two runs, edited by hand) is
refused with a message instead of opening with mismatched arrays.
"""

from __future__ import annotations

import hashlib
import io
import json
import math
import os
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

from .errors import ConvsightError
from .files import npz_bytes, parse_json, write_atomic
from .models import MAX_INPUT_SIDE

FORMAT = "convsight-atlas"
VERSION = 1
DATA_FILES = ("top.npz", "images.json")
META = "atlas.json"
KEYS = ("value", "image", "y", "x")
SAVING = ".saving."  # + the writer's process id, while a save is under way


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _sync_folder(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def save_folder(folder: Path, meta: dict[str, Any], arrays: dict[str, np.ndarray],
                image_paths: list[str]) -> None:
    """Write an atlas folder as a unit (see the module docstring)."""
    folder.mkdir(parents=True, exist_ok=True)
    recover(folder)
    for name in DATA_FILES:  # an earlier writer's uncommitted files (recover keeps a live one's)
        (folder / f"{name}.new").unlink(missing_ok=True)
    data = {"top.npz": npz_bytes(arrays),
            "images.json": json.dumps(image_paths).encode("utf-8")}
    meta = dict(meta, checksums={name: _sha256(blob) for name, blob in data.items()})
    lock = folder / f"{SAVING}{os.getpid()}"  # tells readers a live writer owns the .new files
    lock.touch()
    try:
        for name, blob in data.items():
            write_atomic(folder / f"{name}.new", blob)
        write_atomic(folder / f"{META}.new", json.dumps(meta, indent=1).encode("utf-8"))  # commit
        _sync_folder(folder)
        _roll_forward(folder)
    finally:
        lock.unlink(missing_ok=True)


def _roll_forward(folder: Path) -> None:
    # a reader may be finishing the same committed save: a file already moved is skipped
    for name in DATA_FILES + (META,):
        try:
            os.replace(folder / f"{name}.new", folder / name)
        except FileNotFoundError:
            pass
    _sync_folder(folder)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True
    return True


def recover(folder: Path) -> None:
    """Finish a committed save cut short; drop the uncommitted ``.new`` files and temporary files
    of writers that died (those of a writer still saving, e.g. ``mine`` while ``serve`` opens the
    folder, are left to it)."""
    try:
        writers = [p for p in folder.glob(f"{SAVING}*") if p.name[len(SAVING):].isdigit()]
        live = False
        for lock in writers:
            if _pid_alive(int(lock.name[len(SAVING):])):
                live = True
            else:
                lock.unlink(missing_ok=True)
        if (folder / f"{META}.new").exists():
            _roll_forward(folder)
        elif not live:
            for name in DATA_FILES:
                (folder / f"{name}.new").unlink(missing_ok=True)
        for tmp in folder.glob(".*.tmp"):
            parts = tmp.name.rsplit(".", 2)
            if len(parts) == 3 and parts[1].isdigit() and not _pid_alive(int(parts[1])):
                tmp.unlink(missing_ok=True)
    except OSError:  # a read-only folder: read what is there, the checks below still apply
        pass


def _fail(folder: Path, problem: str) -> ConvsightError:
    return ConvsightError(f"cannot read the atlas at {folder}: {problem}")


def read_folder(folder: Path) -> tuple[dict[str, Any], list[str], dict[str, np.ndarray]]:
    """(metadata, image paths, flat arrays) of an atlas folder, after recovery and checks."""
    meta_file = folder / META
    if not folder.is_dir():
        raise ConvsightError(f"no atlas at {folder}: not a folder")
    recover(folder)
    if not meta_file.is_file():
        hint = " (a mining run was interrupted there: finish it with resume=True)" if any(
            folder.glob("checkpoint*.npz")) else ""
        raise ConvsightError(f"no atlas at {folder}: {meta_file.name} is missing{hint}")
    blobs = {}
    for name in (META,) + DATA_FILES:
        try:
            blobs[name] = (folder / name).read_bytes()
        except OSError as exc:
            raise _fail(folder, f"{name}: {exc.strerror or exc}") from None
    try:
        meta = parse_json(blobs[META].decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise _fail(folder, f"{META} is not valid JSON ({exc})") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise _fail(folder, f"{META} is not a convsight atlas description")
    if meta.get("version") != VERSION:
        raise _fail(folder, f"{META} has version {meta.get('version')!r}; this convsight reads "
                            f"version {VERSION}")
    sums = meta.get("checksums")
    if isinstance(sums, dict):
        for name in DATA_FILES:
            if sums.get(name) != _sha256(blobs[name]):
                raise _fail(folder, f"{name} does not match {META} (the atlas was torn, e.g. by "
                                    "a save that was cut short or files copied from two runs); "
                                    "mine it again")
    try:
        paths = parse_json(blobs["images.json"].decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise _fail(folder, f"images.json is not valid JSON ({exc})") from None
    if not isinstance(paths, list) or not all(isinstance(p, str) for p in paths):
        raise _fail(folder, "images.json must be a list of image paths")
    try:
        with np.load(io.BytesIO(blobs["top.npz"]), allow_pickle=False) as z:
            flat = {key: z[key] for key in z.files}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile, KeyError) as exc:
        raise _fail(folder, f"top.npz is damaged or empty ({type(exc).__name__}: {exc})") from None
    return meta, paths, flat


def _need(meta: dict[str, Any], key: str, kind: type | tuple[type, ...], folder: Path) -> Any:
    value = meta.get(key)
    if not isinstance(value, kind):
        raise _fail(folder, f"{META} has no valid {key!r}")
    return value


def _whole(value: Any, low: float, high: float) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and low <= value <= high


def _number(value: Any, low: float, high: float) -> bool:
    return (isinstance(value, (int, float)) and not isinstance(value, bool)
            and math.isfinite(value) and low <= value <= high)


MAX_K = 10_000
RATIOS = (0.5, 8.0)  # resize_ratio: 1 / crop fraction (timm's crop_pct 0.875 -> 1.14)


def check_values(meta: dict[str, Any], folder: Path) -> None:
    """The ranges of ``atlas.json``'s values (a shared atlas may hold anything): sizes as the
    rest of convsight takes them (``MAX_INPUT_SIDE``), finite numbers."""
    for key, kind in (("model_name", str), ("mean", list), ("std", list), ("input_size", list),
                      ("resize_ratio", (int, float)), ("skipped", list), ("k", int),
                      ("layers", list)):
        _need(meta, key, kind, folder)
    size, mean, std = meta["input_size"], meta["mean"], meta["std"]
    checks = [
        ("k", _whole(meta["k"], 1, MAX_K), f"a whole number 1..{MAX_K}"),
        ("input_size", len(size) == 2 and all(_whole(v, 1, MAX_INPUT_SIDE) for v in size),
         f"[height, width], whole numbers 1..{MAX_INPUT_SIDE}"),
        ("resize_ratio", _number(meta["resize_ratio"], *RATIOS),
         f"a number {RATIOS[0]:g}..{RATIOS[1]:g}"),
        ("mean", 1 <= len(mean) <= 64 and all(_number(v, -1e3, 1e3) for v in mean),
         "1 to 64 finite numbers, one per input channel"),
        ("std", len(std) == len(mean) and all(_number(v, 1e-6, 1e3) for v in std),
         "as many numbers above 0 as mean has"),
    ]
    for key, fine, valid in checks:
        if not fine:
            shown = repr(meta[key])
            raise _fail(folder, f"{META} has {key}={shown[:40]}{'...' if len(shown) > 40 else ''}"
                                f" (expected {valid})")


def _check_positions(name: str, shape: tuple, a: dict[str, np.ndarray], folder: Path) -> None:
    """Every filled slot's (y, x) inside the layer's maps (0, 0 for a layer without them)."""
    used = a["image"] >= 0
    sides = (shape[1], shape[2]) if len(shape) >= 3 else (1, 1)
    for key, side in zip(("y", "x"), sides):
        v = a[key][used]
        if not np.issubdtype(a[key].dtype, np.integer) or (v.size and (v.min() < 0
                                                                      or v.max() >= side)):
            raise _fail(folder, f"layer {name} has {key} positions outside 0..{side - 1} (its "
                                f"maps are {sides[0]}x{sides[1]})")


def layer_arrays(meta: dict[str, Any], paths: list[str], flat: dict[str, np.ndarray],
                 folder: Path) -> tuple[dict[str, dict[str, np.ndarray]], dict[str, tuple]]:
    """Per layer its (channels, k) arrays and output shape, checked against each other."""
    check_values(meta, folder)
    k, layers = meta["k"], meta["layers"]
    arrays, shapes = {}, {}
    for i, layer in enumerate(layers):
        if not isinstance(layer, dict) or not isinstance(layer.get("name"), str) or \
                not isinstance(layer.get("shape"), list):
            raise _fail(folder, f"{META}: layer entry {i} needs a name and a shape")
        name, shape = layer["name"], tuple(layer["shape"])
        if not shape or len(shape) > 8 or not all(_whole(v, 1, 1 << 20) for v in shape):
            raise _fail(folder, f"{META}: layer {name!r} has shape {list(shape)!r}; a shape is a "
                                "list of whole numbers 1..1,048,576 (at most 8)")
        try:
            a = {key: flat[f"layer{i}_{key}"] for key in KEYS}
        except KeyError as exc:
            raise _fail(folder, f"top.npz has no array {exc.args[0]} for layer {name}") from None
        channels = shape[0]
        if any(v.shape != (channels, k) for v in a.values()):
            raise _fail(folder, f"layer {name}: arrays of shape "
                                f"{sorted({v.shape for v in a.values()})} do not match "
                                f"{channels} channels x k={k}")
        ids = a["image"]
        if ids.size and (ids.min() < -1 or ids.max() >= len(paths)):
            raise _fail(folder, f"layer {name} refers to image ids outside 0..{len(paths) - 1}")
        _check_positions(name, shape, a, folder)
        arrays[name], shapes[name] = a, shape
    return arrays, shapes


def layer_boxes(meta: dict[str, Any], flat: dict[str, np.ndarray],
                arrays: dict[str, dict[str, np.ndarray]], folder: Path) -> dict[str, dict]:
    """Each layer's stored crop boxes (``layer{i}_box``, (channels, k, 4)) put into ``arrays``, and
    its crop rule from ``atlas.json`` ({"crop": rule, "q": ...}). Atlases mined before boxes were
    stored have neither: their boxes are computed on demand."""
    crops = {}
    for i, layer in enumerate(meta["layers"]):
        name, box = layer["name"], flat.get(f"layer{i}_box")
        rule = layer.get("crop")
        if box is None and rule is None:
            continue
        channels, k = arrays[name]["value"].shape
        if box is None or rule not in ("exact", "local", "effective") or \
                box.shape != (channels, k, 4) or box.dtype.kind not in "iu":
            raise _fail(folder, f"layer {name}: its crop boxes do not match (rule {rule!r}, "
                                f"array {None if box is None else box.shape}; need "
                                f"{(channels, k, 4)} whole numbers)")
        arrays[name]["box"] = box
        crops[name] = {key: layer[key] for key in ("crop", "q") if key in layer}
    return crops
