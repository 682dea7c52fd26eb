"""The images one can look at in the explorer: sample photos, atlas images and uploads.

An image has an id that says where it comes from (``sample-chelsea``, ``a-12`` for image 12 of
the atlas's data set, ``u-<hash>`` for an upload), so a URL never carries a path. ``InputImages``
checks and keeps uploads, turns an image into the network's input, and answers its thumbnails
and top classes.

An upload's memory follows its bytes, not only its pixels. Its size and mode are checked from
its header before decoding: ``max_upload_pixels``, ``convsight.images.check_size``, and the
bytes decoding takes (``decoded_bytes``: 16-bit, 32-bit and alpha images need more than 8-bit
RGB) at most those of an 8-bit RGB image of ``max_upload_pixels``. JPEGs decode at a reduced
scale; no image is converted at full size (8-bit modes, palette and 1-bit included, go to RGB a
band at a time while reduced: ``images.shrink``; 16/32-bit ones are box-shrunk in their own
mode first), so an upload costs about its decoded size in its own mode plus a few tens of MB.
At most ``DECODERS`` uploads decode at once, on threads kept for that (others wait up to
``decode_wait`` seconds, then get 503), and each hands its freed memory back to the system.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import hashlib
import io
import re
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import BinaryIO

import torch
from PIL import Image

import convsight
from convsight.capture import eval_mode
from convsight.images import WIDE_MODES, check_size, decoded_bytes, shrink
from convsight.files import write_atomic
from convsight.pictures import jpeg_bytes, png_bytes

from .workbench import MAX_UPLOAD_BYTES, MAX_UPLOAD_PIXELS, BadUpload, NotFound, Workbench

# one spelling per image: matched whole (``$`` would let a trailing newline through), atlas
# numbers without leading zeros
IMAGE_ID = re.compile(r"sample-[a-z_]{1,32}|u-[0-9a-f]{16}|a-(?:0|[1-9][0-9]{0,8})")


def image_id_ok(image_id: str | None) -> bool:
    """Whether ``image_id`` is spelled as the explorer writes ids (``IMAGE_ID``, whole)."""
    return IMAGE_ID.fullmatch(image_id or "") is not None
STORED_SIDE = 1024  # uploads are kept at most this large (the network sees a 224-ish crop)
DECODERS = 2  # uploads decoding at once


def give_back_memory() -> None:
    """Return the C allocator's free memory to the system (glibc's ``malloc_trim``): a decode
    frees tens of MB in blocks that glibc would otherwise keep for the process."""
    try:
        _LIBC.malloc_trim(0)
    except AttributeError:  # not glibc
        pass


try:
    _LIBC = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
except OSError:  # no C library by that name: nothing to trim
    _LIBC = None


class InputImages:
    """Images by id, the uploads folder, input tensors and predictions."""

    def __init__(self, bench: Workbench, max_upload_bytes: int = MAX_UPLOAD_BYTES,
                 max_upload_pixels: int = MAX_UPLOAD_PIXELS) -> None:
        self.bench = bench
        self.net, self.atlas, self.cache = bench.net, bench.atlas, bench.cache
        self.access = bench.access
        self.max_upload_bytes = int(max_upload_bytes)
        self.max_upload_pixels = int(max_upload_pixels)
        self.max_decoded_bytes = 3 * self.max_upload_pixels  # 8-bit RGB at the pixel limit
        self.uploads = self.cache.root / "uploads"
        self.uploads.mkdir(parents=True, exist_ok=True)
        self._samples: dict[str, Image.Image] | None = None
        self._inputs: dict[str, torch.Tensor] = {}
        self._guard = threading.Lock()
        self._decoders = ThreadPoolExecutor(DECODERS, thread_name_prefix="convsight-upload")
        self.decode_wait = 20.0  # seconds an upload waits for a decoding thread
        self._classes: int | None = None

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
        if not image_id_ok(image_id):
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
            raise NotFound(f"no uploaded image {image_id!r}: upload it again from /images")
        return convsight.load_image(path)

    def source_image(self, index: int) -> Image.Image:
        """Image number ``index`` of the atlas's data set (by number only: no path from a URL)."""
        if self.atlas is None:
            raise NotFound("no atlas is loaded, so there are no data-set images")
        paths = list(self.atlas.image_paths)
        if not 0 <= index < len(paths):
            raise NotFound(f"image {index} is not in the atlas (it has {len(paths)} images)")
        try:  # (outside the atlas's folders: refused, see AtlasAccess.image_file)
            path = self.access.image_file(index)
        except convsight.ConvsightError as exc:
            raise NotFound(str(exc)) from None
        try:
            return convsight.load_image(path)
        except convsight.ImageError as exc:  # named from the atlas, not where it lives
            reason = str(exc).replace(str(path), self.access.shown_name(path))
            raise NotFound(f"data-set image {index} cannot be read: {reason}") from None

    def add_upload(self, data: bytes | BinaryIO) -> str:
        """Check and keep an uploaded image (bytes or a file); return its id (the hash of its
        bytes). It is read and decoded on one of ``DECODERS`` threads kept for that: at most that
        many decode at once, and the memory the C allocator keeps after a decode stays with those
        threads, for the next one (request threads would each keep their own)."""
        started = threading.Event()

        def keep() -> str:
            started.set()
            try:
                return self._keep(data)
            finally:
                give_back_memory()

        job = self._decoders.submit(keep)
        if not started.wait(self.decode_wait) and job.cancel():
            raise BadUpload("the server is busy decoding other uploads; try again in a moment",
                            status=503)
        return job.result()

    def _keep(self, data: bytes | BinaryIO) -> str:
        if not isinstance(data, bytes):
            data = data.read(self.max_upload_bytes + 1)
        if len(data) > self.max_upload_bytes:
            raise BadUpload(f"the upload has {len(data):,} bytes or more; the limit is "
                            f"{self.max_upload_bytes:,}", status=413)
        if not data:
            raise BadUpload("the upload is empty: choose an image file", status=400)
        image_id = "u-" + hashlib.sha256(data).hexdigest()[:16]
        path = self.uploads / f"{image_id}.png"
        if not path.is_file():
            image = self._decode(data)
            path.parent.mkdir(parents=True, exist_ok=True)
            write_atomic(path, png_bytes(image))  # the upload appears whole or not at all
        return image_id

    def _decode(self, data: bytes) -> Image.Image:
        """The upload as an RGB image at most ``STORED_SIDE`` a side, its size and mode checked
        from the header before decoding (no process-wide warning filters here: requests run in
        threads)."""
        try:
            with Image.open(io.BytesIO(data)) as probe:
                w, h = probe.size
                if w * h > self.max_upload_pixels:
                    raise BadUpload(f"the image is {w}x{h} = {w * h:,} pixels; the limit is "
                                    f"{self.max_upload_pixels:,}", status=413)
                check_size(w, h, probe.mode, "the image")
                need = decoded_bytes(w, h, probe.mode)
                if need > self.max_decoded_bytes:
                    raise BadUpload(
                        f"a {w}x{h} {probe.mode} image takes {need / 2**20:,.0f} MiB to decode; "
                        f"the limit is {self.max_decoded_bytes / 2**20:,.0f} MiB (an 8-bit RGB "
                        f"image of {self.max_upload_pixels:,} pixels)", status=413)
                probe.draft(None, (STORED_SIDE, STORED_SIDE))  # JPEG: decode at 1/2..1/8 scale
                probe.load()
                if probe.mode not in WIDE_MODES:  # converted band by band while reduced
                    return shrink(probe, STORED_SIDE)
                # 16/32-bit: shrunk with a box filter (Pillow's reduce() takes no 16-bit
                # images), which never overshoots, so the value range that scales them stays
                probe.thumbnail((STORED_SIDE, STORED_SIDE), Image.Resampling.BOX,
                                reducing_gap=None)
                image = convsight.load_image(probe)
            image.thumbnail((STORED_SIDE, STORED_SIDE))
            return image
        except BadUpload:
            raise
        except convsight.ImageError as exc:
            raise BadUpload(str(exc), status=413) from None
        except (Image.DecompressionBombError, Image.DecompressionBombWarning):
            raise BadUpload("the image declares too many pixels (a decompression bomb?); the "
                            f"limit is {self.max_upload_pixels:,}", status=413) from None
        except Exception:  # Pillow raises many types for broken or foreign data
            raise BadUpload("the upload is not an image Pillow can read; send a JPEG, PNG, "
                            "WebP, GIF, BMP or TIFF file", status=415) from None

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
        with self.bench.model_lock, torch.no_grad(), eval_mode(self.net.module):  # BN stats stay
            logits = self.net.module(x)
        if logits.dim() != 2:
            self._classes = 0
            return []
        self._classes = int(logits.shape[1])
        probs = logits.float().softmax(dim=1)[0]
        top = probs.topk(min(k, probs.numel()))
        return [(int(i), self.net.class_name(int(i)), float(p))
                for p, i in zip(top.values, top.indices)]

    def class_count(self, image_id: str) -> int:
        """How many classes the network scores (0 when its output is not class scores)."""
        if self._classes is None:
            self.predictions(image_id, k=1)
        return int(self._classes or 0)
