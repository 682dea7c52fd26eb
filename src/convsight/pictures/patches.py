"""Patches: inclusive boxes cut from images, fitted into square tiles, laid out as montages.

A box is (top, left, bottom, right) in pixels, inclusive, as ``ReceptiveField.box`` gives it;
``draw_box`` outlines one on its image.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch
from PIL import Image, ImageDraw

from .canvas import Picture, as_float, as_pil, grid, label

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


def draw_box(image: Image.Image | np.ndarray | torch.Tensor, box: Sequence[int], caption: str = "",
             colour: tuple[int, int, int] = (230, 30, 30), width: int = 2) -> Picture:
    """``image`` with the inclusive ``box`` outlined; the canvas grows (grey margin) to hold the
    whole box when it leaves the image, as deep layers' receptive fields do.

    ``image``: PIL, (H, W[, 3]) array or (C, H, W) tensor in [0, 1] (C = 1 or 3).
    """
    im = as_pil(image).convert("RGB")
    top, left, bottom, right = (int(v) for v in box)
    cap = 2 * max(im.width, im.height)  # a box of a global layer can be huge: keep it drawable
    pad_top, pad_left = (min(max(0, -v), cap) + width + 1 for v in (top, left))
    pad_bottom = min(max(0, bottom - (im.height - 1)), cap) + width + 1
    pad_right = min(max(0, right - (im.width - 1)), cap) + width + 1
    canvas = Image.new("RGB", (im.width + pad_left + pad_right, im.height + pad_top + pad_bottom),
                       (200, 200, 200))
    canvas.paste(im, (pad_left, pad_top))
    draw = ImageDraw.Draw(canvas)
    for i in range(width):  # the outline just outside the box, so the box's own pixels show
        draw.rectangle((left + pad_left - 1 - i, top + pad_top - 1 - i, right + pad_left + 1 + i,
                        bottom + pad_top + 1 + i), outline=colour)
    out = as_float(canvas)
    return label(out, caption) if caption else Picture(out)
