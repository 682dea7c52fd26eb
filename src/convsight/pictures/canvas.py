"""The canvas: scaling values to [0, 1], grids of tiles, captions, colour maps, PNG/JPEG bytes.

Images are float arrays in [0, 1] shaped (H, W, 3) or (H, W) unless said otherwise; PIL images
are accepted wherever a picture is written or encoded. Finished pictures are ``Picture`` arrays:
NumPy arrays that a notebook (IPython, Jupyter) displays as PNG.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFont


class Picture(np.ndarray):
    """A float image (H, W) or (H, W, 3) in [0, 1] that displays itself in a notebook.

    Otherwise an ordinary ``np.ndarray`` (a view, no copy): every caller that took arrays still
    works. ``Picture(array)`` wraps any array; ``save(path)`` writes a PNG.
    """

    def __new__(cls, array: np.ndarray) -> "Picture":
        return np.asarray(array).view(cls)

    def _repr_png_(self) -> bytes | None:
        a = np.asarray(self)
        if a.size == 0 or not (a.ndim == 2 or (a.ndim == 3 and a.shape[-1] in (3, 4))):
            return None  # not an image (a slice, a reduction): shown as text
        return png_bytes(a)

    def save(self, path: str | Path) -> Path:
        """Write the picture as a PNG file (folders are created); return the path."""
        return save_png(np.asarray(self), path)


def to_numpy_image(x: torch.Tensor | np.ndarray) -> np.ndarray:
    """(3, H, W) / (1, 3, H, W) tensor or (H, W[, 3]) array -> float (H, W[, 3]) array."""
    if isinstance(x, torch.Tensor):
        x = x.detach().float().cpu()
        if x.dim() == 4:
            x = x[0]
        if x.dim() == 3 and x.shape[0] in (1, 3):
            x = x.permute(1, 2, 0)
        x = x.numpy()
    x = np.asarray(x, dtype=np.float32)
    if x.ndim == 3 and x.shape[-1] == 1:
        x = x[..., 0]
    return x


def upscale(img: np.ndarray, factor: int) -> np.ndarray:
    """Nearest-neighbour upscaling, so that small filters stay readable."""
    if factor <= 1:
        return img
    return np.repeat(np.repeat(img, factor, axis=0), factor, axis=1)


def symmetric_scale(x: np.ndarray) -> np.ndarray:
    """Map values to [0, 1] with 0 -> 0.5, scaled by the largest |value| (so colour means sign)."""
    m = float(np.abs(x).max())
    return np.full_like(x, 0.5) if m == 0 else 0.5 + 0.5 * x / m


def minmax_scale(x: np.ndarray) -> np.ndarray:
    lo, hi = float(x.min()), float(x.max())
    return np.zeros_like(x) if hi <= lo else (x - lo) / (hi - lo)


def grid(tiles: Sequence[np.ndarray], ncols: int | None = None, pad: int = 2,
         background: float = 1.0) -> np.ndarray:
    """Lay equally sized tiles (H, W[, 3]) out in a grid with ``pad`` pixels between them."""
    if not tiles:
        raise ValueError("grid needs at least one tile")
    tiles = [np.asarray(t, dtype=np.float32) for t in tiles]
    if any(t.ndim == 3 and t.shape[-1] == 1 for t in tiles):
        tiles = [t[..., 0] if t.ndim == 3 and t.shape[-1] == 1 else t for t in tiles]
    rgb = any(t.ndim == 3 for t in tiles)
    tiles = [np.repeat(t[..., None], 3, axis=2) if rgb and t.ndim == 2 else t for t in tiles]
    h = max(t.shape[0] for t in tiles)
    w = max(t.shape[1] for t in tiles)
    n = len(tiles)
    ncols = ncols or int(np.ceil(np.sqrt(n)))
    nrows = int(np.ceil(n / ncols))
    shape = (nrows * h + (nrows + 1) * pad, ncols * w + (ncols + 1) * pad) + ((3,) if rgb else ())
    out = np.full(shape, background, dtype=np.float32)
    for i, t in enumerate(tiles):
        r, c = divmod(i, ncols)
        y, x = pad + r * (h + pad), pad + c * (w + pad)
        out[y:y + t.shape[0], x:x + t.shape[1]] = t
    return Picture(out)


def to_uint8(img: np.ndarray) -> np.ndarray:
    return (np.clip(img, 0, 1) * 255).round().astype(np.uint8)


def as_pil(img: Image.Image | np.ndarray | torch.Tensor) -> Image.Image:
    """A PIL image, an 8-bit array, a float array in [0, 1] or a (C, H, W) tensor -> PIL image."""
    if isinstance(img, Image.Image):
        return img
    if isinstance(img, torch.Tensor):
        img = to_numpy_image(img)
    a = np.asarray(img)
    if a.ndim == 3 and a.shape[-1] == 1:  # a gray image with its channel axis kept
        a = a[..., 0]
    return Image.fromarray(a if a.dtype == np.uint8 else to_uint8(a))


def as_float(img: Image.Image | np.ndarray) -> np.ndarray:
    """A PIL image or array -> float RGB (H, W, 3) array in [0, 1] (8-bit arrays are divided by 255)."""
    if isinstance(img, Image.Image):
        return np.asarray(img.convert("RGB"), dtype=np.float32) / 255.0
    a = np.asarray(img)
    a = a.astype(np.float32) / 255.0 if a.dtype == np.uint8 else a.astype(np.float32)
    return np.repeat(a[..., None], 3, axis=2) if a.ndim == 2 else a


def save_png(img: np.ndarray | Image.Image, path: str | Path) -> Path:
    """Save a float image in [0, 1] (or a PIL image) as PNG, creating folders as needed."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    as_pil(img).save(path)
    return path


def png_bytes(img: Image.Image | np.ndarray) -> bytes:
    buf = io.BytesIO()
    as_pil(img).save(buf, format="PNG")
    return buf.getvalue()


def jpeg_bytes(img: Image.Image | np.ndarray, quality: int = 88) -> bytes:
    buf = io.BytesIO()
    as_pil(img).convert("RGB").save(buf, format="JPEG", quality=quality)
    return buf.getvalue()


def font(size: int = 12) -> ImageFont.ImageFont:
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # older Pillow
        return ImageFont.load_default()


def label(img: np.ndarray, text: str, height: int = 16, size: int = 12) -> np.ndarray:
    """Add a caption strip above an image (float (H, W[, 1 or 3]) in [0, 1])."""
    img = np.asarray(img)
    img = img[..., 0] if img.ndim == 3 and img.shape[-1] == 1 else img
    pil = Image.fromarray(to_uint8(img if img.ndim == 3 else np.repeat(img[..., None], 3, 2)))
    out = Image.new("RGB", (pil.width, pil.height + height), "white")
    out.paste(pil, (0, height))
    ImageDraw.Draw(out).text((2, 1), text, fill="black", font=font(size))
    return Picture(np.asarray(out, dtype=np.float32) / 255.0)


def diverging(x: np.ndarray) -> np.ndarray:
    """Signed (H, W) map -> RGB: blue for negative, white for 0, red for positive."""
    s = symmetric_scale(x) * 2 - 1  # [-1, 1]
    pos, neg = np.clip(s, 0, 1), np.clip(-s, 0, 1)
    r = 1 - neg
    g = 1 - pos - neg
    b = 1 - pos
    return np.stack([r, np.clip(g, 0, 1), b], axis=-1)
