"""Attribution tensors -> pictures, each image scaled on its own with percentile clipping.

Kinds:

- ``"signed"``: channels summed, blue (negative) - white (0) - red (positive), clipped at the
  ``percentile`` of |value| so that a few extreme pixels do not wash the rest out.
- ``"saliency"``: Simonyan et al.'s map, max over channels of |value|, white on black.
- ``"rgb"``: the usual guided-backprop display: zero is grey, each channel shown as colour,
  scaled by the ``percentile`` of |value| over all channels.
- ``"heatmap"``: a non-negative map (Grad-CAM) in a jet colour map, laid over ``image`` if given.

Pure drawing: attributions come from ``convsight.attribute``.

>>> render_attribution(attr[0], kind="rgb").shape     # attr from convsight.attribute
(224, 224, 3)
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from PIL import Image

from ..errors import ConvsightError
from .canvas import Picture, diverging, to_numpy_image

KINDS = ("signed", "saliency", "rgb", "heatmap")


def _as_chw(attr: Any) -> np.ndarray:
    if isinstance(attr, torch.Tensor):
        attr = attr.detach().float().cpu().numpy()
    a = np.asarray(attr, dtype=np.float32)
    if a.ndim == 4 and a.shape[0] == 1:
        a = a[0]
    if a.ndim == 2:
        a = a[None]
    if a.ndim != 3:
        raise ConvsightError(f"render_attribution needs one attribution (C, H, W) or (H, W), "
                             f"got shape {a.shape}")
    return np.nan_to_num(a)


def _clip_value(values: np.ndarray, percentile: float) -> float:
    c = float(np.percentile(np.abs(values), percentile)) if values.size else 0.0
    return c if c > 0 else float(np.abs(values).max())


def jet(v: np.ndarray) -> np.ndarray:
    """Values in [0, 1] -> the jet colour map (blue - cyan - yellow - red), (H, W, 3)."""
    v = np.clip(v, 0, 1)[..., None]
    centres = np.array([3.0, 2.0, 1.0])  # red, green, blue peaks at 3/4, 1/2, 1/4
    return np.clip(1.5 - np.abs(4 * v - centres), 0, 1).astype(np.float32)


def _image_like(image: Any, h: int, w: int) -> np.ndarray:
    if isinstance(image, Image.Image):
        img = np.asarray(image.convert("RGB"), dtype=np.float32) / 255.0
    else:
        img = to_numpy_image(image)
        if img.dtype == np.uint8 or img.max() > 1.5:
            img = img / 255.0
    if img.ndim == 2:
        img = np.repeat(img[..., None], 3, axis=2)
    if img.shape[:2] != (h, w):
        pil = Image.fromarray((np.clip(img, 0, 1) * 255).round().astype(np.uint8))
        img = np.asarray(pil.resize((w, h), Image.BILINEAR), dtype=np.float32) / 255.0
    return np.clip(img, 0, 1)


def render_attribution(attr: Any, kind: str = "signed", image: Any = None,
                       percentile: float = 99.5, alpha: float = 0.5) -> Picture:
    """One attribution (C, H, W) or (H, W) -> float (H, W, 3) ``Picture`` in [0, 1].

    A gray network's attribution (1, H, W) shows in ``"rgb"`` as gray (zero is mid-grey).
    ``image`` (for ``"heatmap"``): the photo in [0, 1] as (H, W, 3) array, (3, H, W) tensor or
    PIL image (use ``net.denormalize`` on a model input first); the map is blended over it with
    weight ``alpha``.
    """
    return Picture(_render(attr, kind, image, percentile, alpha))


def _render(attr: Any, kind: str, image: Any, percentile: float, alpha: float) -> np.ndarray:
    if kind not in KINDS:
        raise ConvsightError(f"unknown attribution display {kind!r}: valid kinds are {', '.join(KINDS)}")
    if not 0 < percentile <= 100:
        raise ConvsightError(f"percentile must be in (0, 100], got {percentile}")
    a = _as_chw(attr)
    if kind == "signed":
        m = a.sum(axis=0)
        c = _clip_value(m, percentile)
        if c == 0:
            return np.ones(m.shape + (3,), dtype=np.float32)
        return diverging(np.clip(m / c, -1, 1)).astype(np.float32)
    if kind == "saliency":
        m = np.abs(a).max(axis=0)
        c = _clip_value(m, percentile)
        m = np.zeros_like(m) if c == 0 else np.clip(m / c, 0, 1)
        return np.repeat(m[..., None], 3, axis=2).astype(np.float32)
    if kind == "rgb":
        c = _clip_value(a, percentile)
        rgb = np.full_like(a, 0.5) if c == 0 else np.clip(0.5 + 0.5 * a / c, 0, 1)
        if rgb.shape[0] == 1:
            rgb = np.repeat(rgb, 3, axis=0)
        return np.transpose(rgb[:3], (1, 2, 0)).astype(np.float32)
    # heatmap
    m = a[0] if a.shape[0] == 1 else np.abs(a).max(axis=0)
    top = float(m.max())
    heat = jet(m / top if top > 0 else np.zeros_like(m))
    if image is None:
        return heat
    img = _image_like(image, *m.shape)
    return np.clip((1 - alpha) * img + alpha * heat, 0, 1).astype(np.float32)
