"""Patches: inclusive boxes cut from images, fitted into square tiles, laid out as montages.

A box is (top, left, bottom, right) in pixels, inclusive, as ``ReceptiveField.box`` gives it.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch
from PIL import Image

from .canvas import as_float, as_pil, grid

EMPTY = 0.93  # grey of an empty slot in a montage (a unit with fewer hits than k)
LIGHT = (236, 238, 243)  # background around a patch that is not square


def crop(image: Image.Image | np.ndarray | torch.Tensor, box: Sequence[int] | None
         ) -> Image.Image | np.ndarray | torch.Tensor:
    """The inclusive ``box`` of ``image`` (PIL, (H, W[, C]) array or (C, H, W) tensor); None: all.

    The box must lie inside the image (clip it first, e.g. with ``ReceptiveField.clipped_box``).
    """
    if box is None:
        return image
    top, left, bottom, right = (int(v) for v in box)
    if isinstance(image, Image.Image):
        return image.crop((left, top, right + 1, bottom + 1))
    if isinstance(image, torch.Tensor):
        return image[..., top:bottom + 1, left:right + 1]
    return np.asarray(image)[top:bottom + 1, left:right + 1]


def fit_square(img: Image.Image | np.ndarray | torch.Tensor, side: int,
               background: tuple[int, int, int] = LIGHT, resample: str = "auto") -> Image.Image:
    """Fit into a ``side`` x ``side`` square, keeping the aspect ratio (patches clipped at the
    image border are not square); the rest is ``background``.

    ``resample="auto"``: nearest neighbour when enlarging three times or more (small patches stay
    crisp), else bilinear; ``"smooth"``: bicubic up, Lanczos down.
    """
    img = as_pil(img).convert("RGB")
    scale = side / max(img.width, img.height)
    size = (max(1, round(img.width * scale)), max(1, round(img.height * scale)))
    if resample == "smooth":
        method = Image.BICUBIC if scale > 1 else Image.LANCZOS
    else:
        method = Image.NEAREST if scale >= 3 else Image.BILINEAR
    out = Image.new("RGB", (side, side), background)
    out.paste(img.resize(size, method), ((side - size[0]) // 2, (side - size[1]) // 2))
    return out


def patch_montage(patches: Sequence[Image.Image], side: int = 40, ncols: int | None = None,
                  slots: int | None = None, background: tuple[int, int, int] = LIGHT,
                  empty: float = EMPTY, resample: str = "auto") -> np.ndarray:
    """The top patches of one unit as one small picture (a 3x3 grid for k = 9).

    ``slots`` fixes the number of cells (empty ones are grey ``empty``) so that all units of a
    layer get tiles of the same size even when a unit has fewer hits than k.
    """
    slots = max(slots or len(patches), 1)
    ncols = ncols or int(np.ceil(np.sqrt(slots)))
    tiles = [as_float(fit_square(p, side, background, resample)) for p in patches]
    tiles += [np.full((side, side, 3), empty, np.float32)] * (slots - len(tiles))
    return grid(tiles, ncols=ncols, pad=1, background=1.0)
