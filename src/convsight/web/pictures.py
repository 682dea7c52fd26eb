"""Small drawing steps the explorer and the static report share: encode, crop, montage.

Everything here turns data that convsight's public API returns (PIL patches, attribution maps,
activation tensors) into bytes a browser shows. No model is run here.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from typing import Sequence

import numpy as np
from PIL import Image

from ..render import grid, to_uint8


def jpeg_bytes(img: Image.Image | np.ndarray, quality: int = 88) -> bytes:
    pil = img if isinstance(img, Image.Image) else Image.fromarray(to_uint8(np.asarray(img)))
    buf = io.BytesIO()
    pil.convert("RGB").save(buf, format="JPEG", quality=quality)
    return buf.getvalue()


def png_bytes(img: Image.Image | np.ndarray) -> bytes:
    pil = img if isinstance(img, Image.Image) else Image.fromarray(to_uint8(np.asarray(img)))
    buf = io.BytesIO()
    pil.save(buf, format="PNG")
    return buf.getvalue()


def square(img: Image.Image, side: int) -> Image.Image:
    """Resize to ``side`` x ``side`` (patches are square boxes, up to clipping at the border)."""
    resample = Image.NEAREST if img.width < side // 2 else Image.BILINEAR
    return img.convert("RGB").resize((side, side), resample)


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


def crop_box(img: np.ndarray, box: Sequence[int], fill: float = 0.5) -> np.ndarray:
    """Cut an inclusive (top, left, bottom, right) box out of an (H, W[, 3]) array.

    Parts of the box outside the image are filled with ``fill`` so the crop keeps the box's size.
    """
    top, left, bottom, right = (int(v) for v in box)
    h, w = img.shape[:2]
    out = np.full((bottom - top + 1, right - left + 1) + img.shape[2:], fill, dtype=np.float32)
    y0, y1 = max(top, 0), min(bottom, h - 1)
    x0, x1 = max(left, 0), min(right, w - 1)
    if y0 <= y1 and x0 <= x1:
        out[y0 - top:y1 - top + 1, x0 - left:x1 - left + 1] = img[y0:y1 + 1, x0:x1 + 1]
    return out


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
