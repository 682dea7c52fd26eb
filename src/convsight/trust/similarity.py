"""How alike two explanations are: the measures of Adebayo et al. (2018, "Sanity Checks").

Maps (N, C, H, W) are first reduced to one value per pixel: the signed map sums the channels,
the absolute map sums their absolute values. Then, per image:

- ``spearman``: Spearman rank correlation of the signed maps (ties get their average rank);
- ``spearman_abs``: the same on the absolute maps;
- ``ssim``: structural similarity (Wang et al. 2004; scikit-image's, Gaussian window sigma 1.5)
  of the absolute maps drawn as Adebayo's grey-scale pictures: divided by their 99th percentile
  and clipped to [0, 1];
- ``hog``: Pearson correlation of the histograms of oriented gradients (scikit-image's ``hog``
  with its defaults: 9 orientations, 8x8-pixel cells, 3x3-cell blocks) of those pictures.

A correlation with a constant map (e.g. a Grad-CAM that is zero everywhere) is undefined: NaN.
So are SSIM on maps under 11 pixels a side and HOG on maps under 24 (one 3x3 block of cells).

>>> spearman(a.sum(1).flatten(1), b.sum(1).flatten(1))    # (N,)
"""

from __future__ import annotations

import numpy as np
import torch

MEASURES = ("spearman", "spearman_abs", "ssim", "hog")
SSIM_MIN = 11  # scikit-image's Gaussian window for sigma 1.5
HOG_MIN = 24   # one block of 3x3 cells of 8x8 pixels


def signed_map(a: torch.Tensor) -> torch.Tensor:
    """(N, C, H, W) -> (N, H, W): the channels summed."""
    return a.detach().float().sum(1)


def absolute_map(a: torch.Tensor) -> torch.Tensor:
    """(N, C, H, W) -> (N, H, W): the absolute values summed over the channels."""
    return a.detach().float().abs().sum(1)


def grayscale(m: torch.Tensor, percentile: float = 99.0) -> torch.Tensor:
    """Absolute maps (N, H, W) -> pictures in [0, 1]: divided by each map's ``percentile``."""
    flat = m.flatten(1)
    top = torch.quantile(flat, percentile / 100.0, dim=1)
    top = torch.where(top > 0, top, flat.amax(1))
    out = torch.where(top[:, None] > 0, flat / top.clamp_min(1e-30)[:, None], torch.zeros_like(flat))
    return out.clamp(0, 1).view_as(m)


def _ranks(v: torch.Tensor) -> torch.Tensor:
    """Ranks 0..M-1 of each row of (N, M), ties sharing their average rank (float64)."""
    out = torch.empty(v.shape, dtype=torch.float64, device=v.device)
    for i, row in enumerate(v):
        values, order = torch.sort(row, stable=True)
        _, inverse, counts = torch.unique_consecutive(values, return_inverse=True,
                                                      return_counts=True)
        ends = torch.cumsum(counts, 0).double()
        mean_rank = ends - (counts.double() + 1) / 2  # average of the 0-based ranks of each run
        out[i, order] = mean_rank[inverse]
    return out


def pearson(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Pearson correlation of each row of (N, M) with the same row of b; NaN for constant rows."""
    a = a.double() - a.double().mean(1, keepdim=True)
    b = b.double() - b.double().mean(1, keepdim=True)
    den = (a.square().sum(1) * b.square().sum(1)).sqrt()
    r = (a * b).sum(1) / den
    return torch.where(den > 0, r, torch.full_like(r, float("nan"))).clamp(-1, 1)


def spearman(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Spearman rank correlation of each row of (N, M) with the same row of b."""
    return pearson(_ranks(a), _ranks(b))


def ssim(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """SSIM of each (H, W) picture in [0, 1] of a (N, H, W) with the same one of b."""
    from skimage.metrics import structural_similarity

    if min(a.shape[-2:]) < SSIM_MIN:
        return torch.full((a.shape[0],), float("nan"), dtype=torch.float64)
    return torch.tensor([structural_similarity(x, y, data_range=1.0, gaussian_weights=True,
                                               sigma=1.5, use_sample_covariance=False)
                         for x, y in zip(_numpy(a), _numpy(b))], dtype=torch.float64)


def hog_features(m: torch.Tensor) -> torch.Tensor:
    """Histogram-of-oriented-gradients features (N, F) of pictures (N, H, W)."""
    from skimage.feature import hog

    if min(m.shape[-2:]) < HOG_MIN:
        return torch.zeros(m.shape[0], 1, dtype=torch.float64)  # constant: correlations are NaN
    return torch.from_numpy(np.stack([hog(x) for x in _numpy(m)]))


def _numpy(m: torch.Tensor) -> np.ndarray:
    return m.detach().cpu().double().numpy()


class Reference:
    """The explanation of the trained model, prepared once to be compared with many others."""

    def __init__(self, maps: torch.Tensor) -> None:
        self.signed = signed_map(maps).flatten(1)
        absolute = absolute_map(maps)
        self.absolute = absolute.flatten(1)
        self.picture = grayscale(absolute)
        self.signed_ranks = _ranks(self.signed)
        self.absolute_ranks = _ranks(self.absolute)
        self.hog = hog_features(self.picture)

    def compare(self, maps: torch.Tensor) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
        """({measure: (N,)}, the grey-scale pictures of ``maps``) against this reference."""
        absolute = absolute_map(maps)
        picture = grayscale(absolute)
        scores = {"spearman": pearson(self.signed_ranks, _ranks(signed_map(maps).flatten(1))),
                  "spearman_abs": pearson(self.absolute_ranks, _ranks(absolute.flatten(1))),
                  "ssim": ssim(self.picture, picture),
                  "hog": pearson(self.hog, hog_features(picture))}
        return {k: v.float().cpu() for k, v in scores.items()}, picture
