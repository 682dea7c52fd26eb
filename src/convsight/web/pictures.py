"""Small drawing steps the explorer and the static report share: encode, crop, montage.

Everything here turns data that convsight's public API returns (PIL patches, attribution maps,
activation tensors) into bytes a browser shows. No model is run here.
"""

from __future__ import annotations

import io
import threading
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np
from PIL import Image

from ..render import grid, to_uint8


def as_pil(img: Image.Image | np.ndarray) -> Image.Image:
    """A PIL image, an 8-bit array, or a float array in [0, 1] -> PIL image."""
    if isinstance(img, Image.Image):
        return img
    a = np.asarray(img)
    return Image.fromarray(a if a.dtype == np.uint8 else to_uint8(a))


def jpeg_bytes(img: Image.Image | np.ndarray, quality: int = 88) -> bytes:
    buf = io.BytesIO()
    as_pil(img).convert("RGB").save(buf, format="JPEG", quality=quality)
    return buf.getvalue()


def png_bytes(img: Image.Image | np.ndarray) -> bytes:
    buf = io.BytesIO()
    as_pil(img).save(buf, format="PNG")
    return buf.getvalue()


def square(img: Image.Image, side: int, background: tuple[int, int, int] = (236, 238, 243)
           ) -> Image.Image:
    """Fit into a ``side`` x ``side`` square, keeping the aspect ratio (patches clipped at the
    image border are not square); the rest is a light background."""
    img = img.convert("RGB")
    scale = side / max(img.width, img.height)
    size = (max(1, round(img.width * scale)), max(1, round(img.height * scale)))
    resample = Image.NEAREST if scale >= 3 else Image.BILINEAR
    out = Image.new("RGB", (side, side), background)
    out.paste(img.resize(size, resample), ((side - size[0]) // 2, (side - size[1]) // 2))
    return out


def clip_box(box: Sequence[int], height: int, width: int) -> tuple[int, int, int, int]:
    """The part of an inclusive (top, left, bottom, right) box inside a height x width image."""
    top, left, bottom, right = (int(v) for v in box)
    return max(top, 0), max(left, 0), min(bottom, height - 1), min(right, width - 1)


def patch_montage(patches: Sequence[Image.Image], side: int = 40, ncols: int | None = None,
                  slots: int | None = None) -> np.ndarray:
    """The top patches of one unit as one small picture (a 3x3 grid for k = 9).

    ``slots`` fixes the number of cells (empty ones stay light grey) so that all units of a
    layer get tiles of the same size even when a unit has fewer hits than k.
    """
    slots = max(slots or len(patches), 1)
    ncols = ncols or int(np.ceil(np.sqrt(slots)))
    tiles = [np.asarray(square(p, side), dtype=np.float32) / 255.0 for p in patches]
    tiles += [np.full((side, side, 3), 0.93, np.float32)] * (slots - len(tiles))
    return grid(tiles, ncols=ncols, pad=1, background=1.0)


class PatchCutter:
    """Cut hits' receptive-field boxes from the atlas's images, clipped to the image.

    ``atlas.patch`` pads a box that leaves the image with the mean colour; deep layers' boxes are
    larger than the image, so the explorer and the report show the part inside the image instead.
    Preprocessed images are kept (8-bit, LRU): a layer's tiles crop about k patches per unit,
    often from the same few hundred images.
    """

    def __init__(self, atlas, net=None, keep: int = 512) -> None:
        self.atlas, self.net, self.keep = atlas, net, keep
        self._images: OrderedDict[int, Image.Image] = OrderedDict()
        self._lock = threading.Lock()

    def image(self, image_id: int) -> Image.Image:
        with self._lock:
            image = self._images.get(image_id)
            if image is not None:
                self._images.move_to_end(image_id)
                return image
        x = self.atlas.image(image_id)  # (3, H, W) in [0, 1], as the network saw it
        image = Image.fromarray(to_uint8(x.detach().cpu().permute(1, 2, 0).numpy()))
        with self._lock:
            self._images[image_id] = image
            while len(self._images) > self.keep:
                self._images.popitem(last=False)
        return image

    def box(self, layer: str, hit) -> tuple[int, int, int, int] | None:
        """The clipped (top, left, bottom, right) box of a hit; None for a global layer."""
        rf = self.atlas.receptive_field(layer, net=self.net)
        if rf.is_global:
            return None
        return clip_box(rf.box(hit.y, hit.x), *self.atlas.input_size)

    def cut(self, layer: str, hit) -> Image.Image:
        image = self.image(hit.image)
        box = self.box(layer, hit)
        if box is None:
            return image
        top, left, bottom, right = box
        return image.crop((left, top, right + 1, bottom + 1))


@dataclass
class MapGrid:
    """Where each channel's tile sits in an activation montage (the page maps clicks with it)."""

    channels: int
    ncols: int
    tile_h: int
    tile_w: int
    pad: int
    width: int
    height: int


def activation_montage(acts: np.ndarray, scale: int = 1, pad: int = 1
                       ) -> tuple[np.ndarray, MapGrid]:
    """(C, H, W) activations -> one picture with a tile per channel, and its layout.

    All tiles share one scale (the layer's largest magnitude), so a weak channel looks weak, as in
    Yosinski's toolbox. Non-negative layers are drawn black to white; signed ones grey at 0,
    brighter for positive and darker for negative.
    """
    acts = np.asarray(acts, dtype=np.float32)
    c, h, w = acts.shape
    peak = float(np.abs(acts).max()) or 1.0
    if float(acts.min()) >= 0:
        tiles = acts / peak
    else:
        tiles = 0.5 + 0.5 * acts / peak
    if scale > 1:
        tiles = np.repeat(np.repeat(tiles, scale, axis=1), scale, axis=2)
    ncols = int(np.ceil(np.sqrt(c * w / max(h, 1) * 1.6)))  # a bit wider than tall
    ncols = max(1, min(ncols, c))
    picture = grid(list(tiles), ncols=ncols, pad=pad, background=0.35)
    layout = MapGrid(channels=c, ncols=ncols, tile_h=h * scale, tile_w=w * scale, pad=pad,
                     width=picture.shape[1], height=picture.shape[0])
    return picture, layout


def rf_text(rf: Any | None) -> str:
    """A receptive field in a few words: "83 px, stride 16", "5x3 px, stride 2x1", "global"."""
    if rf is None:
        return "-"
    if getattr(rf, "is_global", False):
        return "global"
    (h, w), (sy, sx) = rf.size, rf.stride
    size = f"{h}" if h == w else f"{h}x{w}"
    stride = f"{sy}" if sy == sx else f"{sy}x{sx}"
    return f"{size} px, stride {stride}"
