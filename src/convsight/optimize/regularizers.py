"""Yosinski et al. (2015) image regularizers, applied to a batch of images between ascent steps.

All functions take images (N, C, H, W) in pixel units around the mean (0 means "the mean colour")
and return a new tensor; percentiles are taken per image, as the original took them per image.

>>> x = torch.randn(1, 3, 32, 32)
>>> gaussian_blur(x, 1.0).std() < x.std()
tensor(True)
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def gaussian_kernel(sigma: float, truncate: float = 4.0) -> torch.Tensor:
    """Normalised 1-D Gaussian, radius ``int(truncate * sigma + 0.5)`` (as scipy.ndimage)."""
    radius = int(truncate * float(sigma) + 0.5)
    t = torch.arange(-radius, radius + 1, dtype=torch.float64)
    k = torch.exp(-0.5 * (t / float(sigma)) ** 2)
    return k / k.sum()


def _symmetric_pad(x: torch.Tensor, r: int, dim: int) -> torch.Tensor:
    """Pad by mirroring with the edge pixel repeated (d c b a | a b c d), scipy's 'reflect'."""
    n = x.shape[dim]
    j = torch.arange(-r, n + r, device=x.device) % (2 * n)
    j = torch.where(j >= n, 2 * n - 1 - j, j)
    return x.index_select(dim, j)


def gaussian_blur(x: torch.Tensor, sigma: float) -> torch.Tensor:
    """Blur each channel with a Gaussian of standard deviation ``sigma`` pixels (0: unchanged)."""
    if sigma <= 0:
        return x
    k = gaussian_kernel(sigma).to(dtype=x.dtype, device=x.device)
    r = (k.numel() - 1) // 2
    n, c, h, w = x.shape
    if r == 0:
        return x
    flat = x.reshape(n * c, 1, h, w)
    flat = F.conv2d(_symmetric_pad(flat, r, 3), k.view(1, 1, 1, -1))
    flat = F.conv2d(_symmetric_pad(flat, r, 2), k.view(1, 1, -1, 1))
    return flat.reshape(n, c, h, w)


def _below_percentile(values: torch.Tensor, pct: float) -> torch.Tensor:
    """Mask (N, H, W) of values strictly below their image's ``pct`` percentile (linear, like numpy)."""
    flat = values.flatten(1).to(torch.float64)
    threshold = torch.quantile(flat, pct / 100.0, dim=1, keepdim=True)
    return (flat < threshold).view_as(values)


def zero_small_norm(x: torch.Tensor, pct: float) -> torch.Tensor:
    """Zero pixels whose norm over the channels is below the ``pct`` percentile of the image."""
    if pct <= 0:
        return x
    small = _below_percentile(x.norm(dim=1), pct)
    return x.masked_fill(small.unsqueeze(1), 0.0)


def zero_small_contribution(x: torch.Tensor, grad: torch.Tensor, pct: float) -> torch.Tensor:
    """Zero pixels whose |sum over channels of grad * (-x)| is below the ``pct`` percentile.

    ``grad * (-x)`` is the first-order change of the objective if the pixel were set to 0 (the
    mean): pixels that hardly matter either way are removed.
    """
    if pct <= 0:
        return x
    contribution = (grad * -x).sum(dim=1).abs()
    small = _below_percentile(contribution, pct)
    return x.masked_fill(small.unsqueeze(1), 0.0)


def decay(x: torch.Tensor, rate: float) -> torch.Tensor:
    """L2 decay: ``x * (1 - rate)``, pulling every pixel towards the mean."""
    return x * (1.0 - rate) if rate else x


def clip_to_range(x: torch.Tensor, low: torch.Tensor, high: torch.Tensor) -> torch.Tensor:
    """Clamp per channel to [low, high] (shape (1, C, 1, 1)): keeps pixels displayable."""
    return torch.maximum(torch.minimum(x, high), low)
