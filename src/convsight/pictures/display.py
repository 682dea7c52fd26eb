"""Showing things in a notebook: anything image-like becomes a ``Picture``; ``show`` displays it.

>>> import convsight
>>> convsight.show(convsight.sample_images()["chelsea"])          # a PIL image
>>> convsight.show(net.denormalize(x), labels=["cat"])          # a batch of tensors (N, C, H, W)
>>> pic = convsight.pictures.as_picture(array); pic.save("a.png")

Accepted: PIL images, NumPy arrays (H, W), (H, W, C) or (C, H, W), tensors (C, H, W) or
(N, C, H, W) with C = 1 or 3. uint8 is divided by 255; floats outside [0, 1] are stretched to their
own min..max (a normalised tensor still shows), floats inside are kept as they are.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np
import torch
from PIL import Image

from ..errors import ImageError
from ..progress import in_notebook
from .canvas import Picture, as_float, as_pil, grid, label, minmax_scale, upscale


def _one(x: Any) -> np.ndarray:
    """One image-like thing -> float (H, W) or (H, W, 3) array in [0, 1]."""
    if isinstance(x, Image.Image):
        x = np.asarray(x.convert("RGB") if x.mode not in ("L", "RGB") else x)
    if isinstance(x, torch.Tensor):
        x = x.detach().float().cpu().numpy()
    a = np.asarray(x)
    if a.ndim == 3 and a.shape[0] in (1, 3) and a.shape[-1] not in (1, 3):
        a = np.moveaxis(a, 0, -1)  # CHW -> HWC
    if a.ndim == 3 and a.shape[-1] == 1:
        a = a[..., 0]
    if a.ndim not in (2, 3) or (a.ndim == 3 and a.shape[-1] != 3) or a.size == 0:
        raise ImageError(f"cannot show an array of shape {a.shape}: expected an image (H, W), "
                         "(H, W, 1 or 3), (1 or 3, H, W) or a batch (N, 1 or 3, H, W)")
    if a.dtype == np.uint8:
        return a.astype(np.float32) / 255.0
    a = np.nan_to_num(a.astype(np.float32))
    return a if a.min() >= 0 and a.max() <= 1 else minmax_scale(a)


def _shrink(a: np.ndarray, side: int) -> np.ndarray:
    """``a`` with its longer side at most ``side`` pixels (unchanged when it already is)."""
    h, w = a.shape[:2]
    if max(h, w) <= side:
        return a
    scale = side / max(h, w)
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    small = as_float(as_pil(a).resize(size, Image.LANCZOS))  # (h, w, 3)
    return small[..., 0] if a.ndim == 2 else small


def _items(things: Sequence[Any]) -> list[Any]:
    """Flatten batches (N, C, H, W) and lists into single images."""
    out: list[Any] = []
    for t in things:
        if isinstance(t, (list, tuple)):
            out += _items(t)
        elif isinstance(t, (torch.Tensor, np.ndarray)) and t.ndim == 4:
            out += list(t)
        else:
            out.append(t)
    return out


def as_picture(x: Any) -> Picture:
    """One image (PIL, array or tensor; see the module docstring) as a ``Picture``."""
    return Picture(_one(x))


def image_grid(images: Any, labels: Sequence[str] | None = None, stretch: bool = False,
               ncols: int | None = None, min_side: int = 0, max_side: int | None = None) -> Picture:
    """Images side by side (a batch tensor, or a list), each captioned when ``labels`` are given.

    ``stretch``: each image contrast-stretched to its own min..max (Yosinski's toolbox shows
    syntheses so). ``min_side``: smaller images are enlarged by a whole factor (nearest
    neighbour, pixels stay crisp) to at least this side; ``max_side``: larger ones are shrunk
    (Lanczos) to at most this side. A single image without a label is returned as it is.
    """
    tiles = [_one(t) for t in _items([images])]
    if stretch:
        tiles = [minmax_scale(t) for t in tiles]
    if min_side:
        tiles = [upscale(t, -(-min_side // min(t.shape[:2]))) for t in tiles]
    if max_side:
        tiles = [_shrink(t, max_side) for t in tiles]
    if labels is not None:
        if len(labels) != len(tiles):
            raise ImageError(f"{len(labels)} labels for {len(tiles)} images")
        tiles = [label(t, str(text)) for t, text in zip(tiles, labels)]
    if len(tiles) == 1:
        return Picture(tiles[0])
    return grid(tiles, ncols=ncols or min(len(tiles), 5), pad=4)


def show(*images: Any, labels: Sequence[str] | None = None, stretch: bool = False,
         ncols: int | None = None, min_side: int = 96, max_side: int | None = 512
         ) -> Picture | None:
    """Show images (PIL, arrays, tensors, batches, lists; side by side when several), small ones
    enlarged to ``min_side`` and large ones shrunk to ``max_side`` (see ``image_grid``).

    In a notebook the picture is displayed at once (so several ``show`` calls in one cell all
    show) and None is returned; elsewhere the ``Picture`` is returned, e.g. to ``.save(path)``.
    """
    if not images:
        raise ImageError("show needs at least one image")
    picture = image_grid(list(images), labels, stretch, ncols, min_side, max_side)
    if in_notebook():
        from IPython.display import display

        display(picture)
        return None
    return picture
