"""Random transforms applied to images in [0, 1] before each forward pass (Olah et al. 2017).

An image that only excites the unit at one exact offset, scale and angle is mostly noise; asking
it to survive small random jitter, scaling and rotation makes the optimiser find robust patterns.
Every transform draws its randomness from a ``torch.Generator``, so runs are repeatable.

>>> g = torch.Generator().manual_seed(0)
>>> standard_transforms()(torch.rand(1, 3, 128, 128), g).shape[-1] in range(120, 170)
True
"""

from __future__ import annotations

import math
from typing import Callable, Sequence

import torch
import torch.nn.functional as F

Transform = Callable[[torch.Tensor, torch.Generator], torch.Tensor]


def _choice(options: Sequence[float], generator: torch.Generator) -> float:
    return options[int(torch.randint(len(options), (1,), generator=generator))]


def pad(width: int, value: float = 0.5) -> Transform:
    """Pad every side with ``width`` pixels of constant ``value`` (0.5: mid grey)."""
    def apply(x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        return F.pad(x, [width] * 4, mode="constant", value=value)
    return apply


def jitter(d: int) -> Transform:
    """Random crop ``d`` pixels smaller in each direction: a shift of 0..d pixels."""
    def apply(x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        h, w = x.shape[-2:]
        if d <= 0 or d >= min(h, w):
            return x
        dy, dx = (int(v) for v in torch.randint(d + 1, (2,), generator=generator))
        return x[..., dy:dy + h - d, dx:dx + w - d]
    return apply


def random_scale(scales: Sequence[float]) -> Transform:
    """Resize (bilinear) by a factor drawn from ``scales``."""
    def apply(x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        s = _choice(scales, generator)
        h, w = x.shape[-2:]
        size = (max(1, round(h * s)), max(1, round(w * s)))
        if size == (h, w):
            return x
        return F.interpolate(x, size=size, mode="bilinear", align_corners=False)
    return apply


def random_rotate(angles: Sequence[float]) -> Transform:
    """Rotate about the centre by an angle in degrees drawn from ``angles``; corners become 0."""
    def apply(x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        a = math.radians(_choice(angles, generator))
        if a == 0:
            return x
        n, _, h, w = x.shape
        cos, sin = math.cos(a), math.sin(a)
        # affine_grid works in [-1, 1] coordinates; correct for non-square images.
        theta = torch.tensor([[cos, -sin * h / w, 0.0], [sin * w / h, cos, 0.0]],
                             dtype=x.dtype, device=x.device).expand(n, 2, 3)
        grid = F.affine_grid(theta, list(x.shape), align_corners=False)
        return F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    return apply


def compose(transforms: Sequence[Transform]) -> Transform:
    def apply(x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        for t in transforms:
            x = t(x, generator)
        return x
    return apply


STANDARD_SCALES = tuple(1 + (i - 5) / 50 for i in range(11))      # 0.90, 0.92, ... 1.10
STANDARD_ANGLES = tuple(range(-10, 11)) + (0,) * 5                 # 0 drawn more often


def standard_transforms() -> Transform:
    """Lucid's standard set: pad 12 (grey), jitter 8, scale 0.90..1.10, rotate -10..10 deg, jitter 4."""
    return compose([pad(12, 0.5), jitter(8), random_scale(STANDARD_SCALES),
                    random_rotate(STANDARD_ANGLES), jitter(4)])


def no_transforms() -> Transform:
    return compose([])
