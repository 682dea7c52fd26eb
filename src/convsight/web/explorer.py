"""What the web pages show, computed through convsight's public API and cached on disk.

``Explorer`` holds one network (and optionally the atlas mined from it) and answers questions the
pages ask: the layer table, a unit's top patches and their projections, its weights and synthesis,
an image's top classes, activation maps and attributions. Pictures come back as bytes and are
cached by a key that names what they show, so a second visit costs a file read.

Requests run in a thread pool; the model is shared, so every pass through it holds
``model_lock`` (attribution and capture add hooks for the length of one call, and two calls at
once on one module would see each other's hooks). Synthesis runs on its own copy of the model
(see ``jobs.py``) so that it never blocks the pages.
"""

from __future__ import annotations

import difflib
import hashlib
import io
import re
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

import convsight
from convsight.capture import capture, eval_mode
from convsight.capture import layer_table

from .cache import DiskCache, atomic_write
from convsight.figures import PatchCutter
from convsight.pictures import (MapGrid, activation_montage, crop, fit_square, grid,
                                jpeg_bytes, patch_montage, png_bytes, render_attribution)

UNIT_METHODS = ("gradient", "guided", "deconv")
CLASS_METHODS = ("gradient", "guided", "gradcam", "guided-gradcam")
IMAGE_ID = re.compile(r"^(sample-[a-z_]{1,32}|u-[0-9a-f]{16}|a-[0-9]{1,9})$")
MAX_UPLOAD_BYTES = 16 * 1024 * 1024
MAX_UPLOAD_PIXELS = 40_000_000
STORED_SIDE = 1024  # uploads are kept at most this large (the network sees a 224-ish crop)


class NotFound(convsight.ConvsightError):
    """A layer, unit, image or file the explorer does not have (HTTP 404)."""


class BadUpload(convsight.ConvsightError):
    """An upload that is not an image, or too large (HTTP 415 / 413)."""

    def __init__(self, message: str, status: int = 415) -> None:
        super().__init__(message)
        self.status = status


@dataclass
class LayerRow:
    name: str
    type: str
    shape: tuple[int, ...] | None
    channels: int | None
    rf: str  # receptive field as shown: "19x19 /4", "global" or "-"
    mined: bool

    @property
    def shape_text(self) -> str:
        return "x".join(map(str, self.shape)) if self.shape else "-"

    @property
    def spatial(self) -> bool:
        return self.shape is not None and len(self.shape) == 3


class Explorer:
    """The network, the atlas (optional) and the cache behind the web pages."""

    def __init__(self, net: convsight.Network, atlas: Any | None = None,
                 cache_dir: str | Path | None = None, atlas_dir: str | Path | None = None,
                 max_upload_bytes: int = MAX_UPLOAD_BYTES,
                 max_upload_pixels: int = MAX_UPLOAD_PIXELS) -> None:
        self.net = net
        self.max_upload_bytes = int(max_upload_bytes)
        self.max_upload_pixels = int(max_upload_pixels)
        self.atlas = atlas
        self.atlas_dir = Path(atlas_dir).resolve() if atlas_dir else None
        self.model_lock = threading.RLock()
        self.cache = DiskCache(cache_dir or _default_cache_dir(net, self.atlas_dir))
        self.uploads = self.cache.root / "uploads"
        self.uploads.mkdir(parents=True, exist_ok=True)
        self._samples: dict[str, Image.Image] | None = None
        self._rows: list[LayerRow] | None = None
        self._rfs: dict[str, Any] = {}
        self._acts_memo: dict[tuple[str, str], tuple[np.ndarray, np.ndarray]] = {}
        self._inputs: dict[str, torch.Tensor] = {}
        self.cutter = PatchCutter(atlas, net) if atlas is not None else None
        self._guard = threading.Lock()

    # ----- layers -----------------------------------------------------------------------------
    @property
    def mined_layers(self) -> list[str]:
        return list(self.atlas.layers) if self.atlas is not None else []

    def layers(self) -> list[LayerRow]:
        with self._guard:
            if self._rows is None:
                with self.model_lock:  # both run the model with hooks
                    table = layer_table(self.net)
                    names = [r.name for r in table if r.shape is not None and len(r.shape) == 3]
                    self._rfs = _receptive_fields(self.net, names)
                    for name in self.mined_layers:  # the atlas caches these for its patches
                        try:
                            self.atlas.receptive_field(name, net=self.net)
                        except Exception:
                            pass
                mined = set(self.mined_layers)
                self._rows = [LayerRow(r.name, r.type, r.shape, r.channels,
                                       _caption(self._rfs.get(r.name)), r.name in mined)
                              for r in table]
            return self._rows

    def layer(self, name: str) -> LayerRow:
        for row in self.layers():
            if row.name == name:
                return row
        names = [r.name for r in self.layers()]
        close = difflib.get_close_matches(name, names, n=4, cutoff=0.6) or \
            [n for n in names if n.split(".")[-1] == name.split(".")[-1]][:4]
        hint = f" Did you mean {', '.join(close)}?" if close else ""
        raise NotFound(f"unknown layer {name!r}.{hint} The layer list shows every layer.")

    def channel(self, layer: str, channel: int) -> LayerRow:
        row = self.layer(layer)
        if not row.channels:
            raise NotFound(f"layer {layer} has no channels (output shape {row.shape_text})")
        if not 0 <= channel < row.channels:
            raise NotFound(f"unit {channel} is out of range for layer {layer}: valid units are "
                           f"0..{row.channels - 1}")
        return row

    def receptive_field(self, layer: str) -> Any | None:
        self.layers()
        return self._rfs.get(layer)

    # ----- atlas: top patches -----------------------------------------------------------------
    def hits(self, layer: str, channel: int) -> list[Any]:
        self.channel(layer, channel)
        if self.atlas is None or layer not in self.mined_layers:
            return []
        return list(self.atlas.top(layer, channel))

    def unit_tile(self, layer: str, channel: int, side: int = 40) -> bytes:
        """The unit's top-k patches as one small JPEG (one cell of the layer view)."""
        self.channel(layer, channel)
        if layer not in self.mined_layers:
            raise NotFound(f"layer {layer} is not in the atlas; mined layers: "
                           f"{', '.join(self.mined_layers) or 'none'}")

        def make() -> bytes:
            patches = [self.mined_patch(layer, hit) for hit in self.atlas.top(layer, channel)]
            return jpeg_bytes(patch_montage(patches, side, slots=self.atlas.k), quality=85)
        return self.cache.get_or_make(f"tile/{layer}/{channel}/{side}.jpg", make)

    def prewarm(self, stop: threading.Event | None = None) -> int:
        """Compute every unit tile of every mined layer into the cache; return how many.

        Run in a background thread by ``serve`` so that layer views are instant later.
        """
        count = 0
        for layer in self.mined_layers:
            for channel in range(self.atlas.channels(layer)):
                if stop is not None and stop.is_set():
                    return count
                try:
                    self.unit_tile(layer, channel)
                except Exception:  # a page will show the error; warming goes on
                    pass
                count += 1
                time.sleep(0)  # let request threads have the interpreter
        return count

    def mined_patch(self, layer: str, hit: Any) -> Image.Image:
        """The hit's receptive-field box, clipped to its image (see ``PatchCutter``)."""
        return self.cutter.cut(layer, hit)

    def patch(self, layer: str, channel: int, rank: int, side: int = 160) -> bytes:
        hits = self.hits(layer, channel)
        if not 0 <= rank < len(hits):
            raise NotFound(f"unit {layer}:{channel} has {len(hits)} top patches; rank {rank} "
                           "does not exist")
        return self.cache.get_or_make(
            f"patch/{layer}/{channel}/{rank}/{side}.jpg",
            lambda: jpeg_bytes(fit_square(self.mined_patch(layer, hits[rank]), side)))

    def projection(self, layer: str, channel: int, rank: int, method: str, side: int = 160) -> bytes:
        """Guided backprop / deconvnet / gradient of the hit's single activation, cut to its box."""
        _check_method(method, UNIT_METHODS)
        hits = self.hits(layer, channel)
        if not 0 <= rank < len(hits):
            raise NotFound(f"unit {layer}:{channel} has {len(hits)} top patches; rank {rank} "
                           "does not exist")
        hit = hits[rank]

        def make() -> bytes:
            x = self.net.normalize(self.atlas.image(hit.image)[None]).to(self.net.device)
            target = f"{layer}:{channel}@{hit.y},{hit.x}"
            with self.model_lock:
                attr = convsight.attribute(self.net, x, target=target, method=method)
            picture = crop(render_attribution(attr[0], "rgb"), self.cutter.box(layer, hit))
            return png_bytes(fit_square(picture, side))  # the same clipped box as the patch
        return self.cache.get_or_make(f"proj/{layer}/{channel}/{rank}/{method}/{side}.png", make)

    def source_image(self, index: int) -> Image.Image:
        """Image number ``index`` of the atlas's data set (by number only: no path from a URL)."""
        if self.atlas is None:
            raise NotFound("no atlas is loaded, so there are no data-set images")
        paths = list(self.atlas.image_paths)
        if not 0 <= index < len(paths):
            raise NotFound(f"image {index} is not in the atlas (it has {len(paths)} images)")
        path = Path(paths[index])
        if not path.is_absolute() and self.atlas_dir is not None:
            path = self.atlas_dir / path
        try:
            return convsight.load_image(path)
        except convsight.ImageError as exc:
            raise NotFound(f"data-set image {index} cannot be read: {exc}") from None

    # ----- weights ----------------------------------------------------------------------------
    def weights(self, layer: str, channel: int) -> bytes | None:
        """The unit's filter as a picture where that means something (RGB, 1-input or Linear)."""
        self.channel(layer, channel)
        from convsight.filters import weight_images, weight_kind

        try:
            kind = weight_kind(self.net, layer)
        except (AttributeError, convsight.ConvsightError):
            return None  # not a Conv2d / Linear layer: no filter of its own

        def make() -> bytes:
            image = weight_images(self.net, layer, units=[channel])[0]
            if kind == "stack":
                image = image[:64]
                if image.shape[1] * image.shape[2] <= 1:
                    raise _NoPicture
                image = grid([np.kron(t, np.ones((8, 8))) for t in image], pad=1)
                return png_bytes(image)
            factor = max(1, 96 // max(image.shape[:2]))
            return png_bytes(np.kron(image, np.ones((factor, factor) + (1,) * (image.ndim - 2))))
        try:
            return self.cache.get_or_make(f"weights/{layer}/{channel}.png", make)
        except (_NoPicture, convsight.ConvsightError):  # e.g. a Linear layer not fed by an image
            return None

    # ----- images -----------------------------------------------------------------------------
    def samples(self) -> dict[str, Image.Image]:
        with self._guard:
            if self._samples is None:
                self._samples = convsight.sample_images()
            return self._samples

    def image_choices(self) -> list[tuple[str, str]]:
        """(id, label) for the images one can pick: sample photos, then some atlas images."""
        choices = [(f"sample-{name}", name) for name in self.samples()]
        if self.atlas is not None:
            paths = list(self.atlas.image_paths)
            choices += [(f"a-{i}", Path(p).name) for i, p in enumerate(paths[:12])]
        return choices

    def image(self, image_id: str) -> Image.Image:
        if not IMAGE_ID.match(image_id or ""):
            raise NotFound(f"no image {image_id!r}: ids look like sample-chelsea, a-12 or u-<hash>")
        if image_id.startswith("sample-"):
            name = image_id[len("sample-"):]
            if name not in self.samples():
                raise NotFound(f"no sample photo {name!r}; samples: {', '.join(self.samples())}")
            return self.samples()[name]
        if image_id.startswith("a-"):
            return self.source_image(int(image_id[2:]))
        path = self.uploads / f"{image_id}.png"
        if not path.is_file():
            raise NotFound(f"no uploaded image {image_id!r} (uploads live in {self.uploads})")
        return convsight.load_image(path)

    def add_upload(self, data: bytes) -> str:
        """Check and keep an uploaded image; return its id (the hash of its bytes)."""
        if len(data) > self.max_upload_bytes:
            raise BadUpload(f"the upload has {len(data):,} bytes; the limit is "
                            f"{self.max_upload_bytes:,}", status=413)
        if not data:
            raise BadUpload("the upload is empty: choose an image file", status=400)
        image_id = "u-" + hashlib.sha256(data).hexdigest()[:16]
        path = self.uploads / f"{image_id}.png"
        if path.is_file():
            return image_id
        try:
            # The pixel count is checked from the header before decoding (no process-wide
            # warning filters here: requests run in threads).
            with Image.open(io.BytesIO(data)) as probe:
                w, h = probe.size
                if w * h > self.max_upload_pixels:
                    raise BadUpload(f"the image is {w}x{h} = {w * h:,} pixels; the limit is "
                                    f"{self.max_upload_pixels:,}", status=413)
                probe.load()
                image = convsight.load_image(probe)
        except BadUpload:
            raise
        except (Image.DecompressionBombError, Image.DecompressionBombWarning):
            raise BadUpload("the image declares too many pixels (a decompression bomb?); the "
                            f"limit is {self.max_upload_pixels:,}", status=413) from None
        except Exception:  # Pillow raises many types for broken or foreign data
            raise BadUpload("the upload is not an image Pillow can read; send a JPEG, PNG, "
                            "WebP, GIF, BMP or TIFF file", status=415) from None
        image.thumbnail((STORED_SIDE, STORED_SIDE))
        atomic_write(path, png_bytes(image))  # the upload appears whole or not at all
        return image_id

    def input_tensor(self, image_id: str) -> torch.Tensor:
        with self._guard:
            x = self._inputs.get(image_id)
        if x is None:
            x = self.net.preprocess(self.image(image_id)).to(self.net.device)
            with self._guard:
                if len(self._inputs) > 64:
                    self._inputs.clear()
                self._inputs[image_id] = x
        return x

    def input_png(self, image_id: str) -> bytes:
        def make() -> bytes:
            x = self.input_tensor(image_id)
            return png_bytes(self.net.denormalize(x)[0].clamp(0, 1))
        return self.cache.get_or_make(f"input/{image_id}.png", make)

    def thumbnail(self, image_id: str, side: int = 160) -> bytes:
        def make() -> bytes:
            image = self.image(image_id).copy()
            image.thumbnail((side, side))
            return jpeg_bytes(image)
        return self.cache.get_or_make(f"thumb/{image_id}/{side}.jpg", make)

    def predictions(self, image_id: str, k: int = 5) -> list[tuple[int, str, float]]:
        x = self.input_tensor(image_id)
        with self.model_lock, torch.no_grad(), eval_mode(self.net.module):  # BN stats stay
            logits = self.net.module(x)
        if logits.dim() != 2:
            return []
        probs = logits.float().softmax(dim=1)[0]
        top = probs.topk(min(k, probs.numel()))
        return [(int(i), self.net.class_name(int(i)), float(p))
                for p, i in zip(top.values, top.indices)]

    # ----- activations and attributions of one image ------------------------------------------
    def activations(self, image_id: str, layer: str) -> tuple[np.ndarray, np.ndarray]:
        """(C, H, W) activations of ``layer`` and each channel's strongest (y, x)."""
        row = self.layer(layer)
        if not row.spatial:
            raise NotFound(f"layer {layer} has output shape {row.shape_text}: activation maps "
                           "need a layer with channels x height x width")
        key = (image_id, layer)
        with self._guard:
            memo = self._acts_memo.get(key)
        if memo is not None:
            return memo
        x = self.input_tensor(image_id)
        with self.model_lock, torch.no_grad(), capture(self.net.module, [layer], stop=True) as acts:
            self.net.module(x)
        a = acts[layer][0].float().cpu().numpy()
        flat = a.reshape(a.shape[0], -1).argmax(axis=1)
        where = np.stack(np.unravel_index(flat, a.shape[1:]), axis=1)
        with self._guard:
            if len(self._acts_memo) > 32:
                self._acts_memo.clear()
            self._acts_memo[key] = (a, where)
        return a, where

    def activation_maps(self, image_id: str, layer: str) -> tuple[bytes, MapGrid]:
        acts, _ = self.activations(image_id, layer)
        scale = max(1, 12 // acts.shape[1])
        picture, layout = activation_montage(acts, scale=scale)
        data = self.cache.get_or_make(f"acts/{image_id}/{layer}.png", lambda: png_bytes(picture))
        return data, layout

    def map_layout(self, image_id: str, layer: str) -> MapGrid:
        return self.activation_maps(image_id, layer)[1]

    def strongest(self, image_id: str, layer: str, channel: int) -> tuple[int, int, float]:
        self.channel(layer, channel)
        acts, where = self.activations(image_id, layer)
        y, x = (int(v) for v in where[channel])
        return y, x, float(acts[channel, y, x])

    def unit_box(self, image_id: str, layer: str, channel: int) -> tuple[int, int, int, int] | None:
        """The input box seen by the channel's strongest neuron on this image, clipped to the
        input (None when the layer sees the whole image or its receptive field is unknown)."""
        y, x, _ = self.strongest(image_id, layer, channel)
        rf = self.receptive_field(layer)
        if rf is None or rf.is_global:
            return None
        return rf.clipped_box(y, x)

    def unit_patch(self, image_id: str, layer: str, channel: int, side: int = 160) -> bytes:
        """The part of the input that the channel's strongest neuron sees, enlarged."""
        box = self.unit_box(image_id, layer, channel)

        def make() -> bytes:
            image = Image.open(io.BytesIO(self.input_png(image_id)))
            return png_bytes(fit_square(crop(image, box), side))
        return self.cache.get_or_make(f"upatch/{image_id}/{layer}/{channel}/{side}.png", make)

    def unit_attribution(self, image_id: str, layer: str, channel: int, method: str,
                         side: int = 160) -> bytes:
        """What in this image drives ``layer:channel`` at its strongest position, shown over the
        neuron's receptive field (it is zero outside it)."""
        _check_method(method, UNIT_METHODS)
        y, x, _ = self.strongest(image_id, layer, channel)
        box = self.unit_box(image_id, layer, channel)

        def make() -> bytes:
            inp = self.input_tensor(image_id)
            with self.model_lock:
                attr = convsight.attribute(self.net, inp, target=f"{layer}:{channel}@{y},{x}",
                                           method=method)
            return png_bytes(fit_square(crop(render_attribution(attr[0], "rgb"), box), side))
        return self.cache.get_or_make(f"uattr/{image_id}/{layer}/{channel}/{method}/{side}.png",
                                      make)

    def class_attribution(self, image_id: str, cls: int, method: str) -> bytes:
        _check_method(method, CLASS_METHODS)
        n = len(self.net.class_names or []) or None
        if cls < 0 or (n is not None and cls >= n):
            raise NotFound(f"class {cls} does not exist: valid classes are 0..{(n or 1) - 1}")

        def make() -> bytes:
            inp = self.input_tensor(image_id)
            with self.model_lock:
                attr = convsight.attribute(self.net, inp, target=f"class:{cls}", method=method)
            if method == "gradcam":
                image = self.net.denormalize(inp)[0].clamp(0, 1)
                return png_bytes(render_attribution(attr[0], "heatmap", image=image))
            return png_bytes(render_attribution(attr[0], "saliency" if method == "gradient"
                                                else "rgb"))
        return self.cache.get_or_make(f"cattr/{image_id}/{cls}/{method}.png", make)


class _NoPicture(Exception):
    pass


def _check_method(method: str, allowed: tuple[str, ...]) -> None:
    if method not in allowed:
        raise NotFound(f"unknown method {method!r}; use one of {', '.join(allowed)}")


def _caption(rf: Any | None) -> str:
    return rf.caption() if rf is not None else "-"


def _receptive_fields(net: convsight.Network, names: list[str]) -> dict[str, Any]:
    """Receptive fields of the spatial layers (those that have one)."""
    try:
        return dict(convsight.receptive_fields(net, names))
    except Exception:  # one awkward layer should not cost the whole table
        out = {}
        for name in names:
            try:
                out[name] = convsight.receptive_field(net, name)
            except Exception:
                pass
        return out


def _default_cache_dir(net: convsight.Network, atlas_dir: Path | None) -> Path:
    """One cache per model (by its weights, not its name) and per atlas version."""
    from convsight.models import weights_fingerprint

    atlas_file = atlas_dir / "atlas.json" if atlas_dir is not None else None
    stamp = atlas_file.stat().st_mtime_ns if atlas_file is not None and atlas_file.is_file() else 0
    key = hashlib.sha256(f"{weights_fingerprint(net.module)}|{net.input_size}|{net.mean}|{net.std}"
                         f"|{atlas_dir}|{stamp}".encode()).hexdigest()[:12]
    return Path.home() / ".cache" / "convsight" / "web" / f"{net.name}-{key}"

