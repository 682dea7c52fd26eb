"""ROAD (Rong et al. 2022, "A Consistent and Efficient Evaluation Strategy for Attribution Methods").

Remove a fraction of the pixels, most relevant first (MoRF) or least relevant first (LeRF), and
see what the model still says. Removed pixels are not set to a fixed baseline: each becomes the
weighted mean of its 8 neighbours (noisy linear imputation: weight 1/6 for the 4 direct
neighbours, 1/12 for the diagonal ones, solved as one sparse linear system per image and
fraction, then Gaussian noise of standard deviation ``noise`` is added), so the outline of the
removed region carries no information about the class (the paper's point).

This is Quantus 0.6.0's ``noisy_linear_imputation`` (adapted there from
https://github.com/tleemann/road_evaluation) built without Python loops over pixels: the system
is the same, and so is the solver (SciPy's SuperLU), so values agree to rounding. Differences on
purpose, shown by tests/trust/test_metrics_peers.py: a pixel is removed with all its channels (Quantus
0.6.0 indexes the channels of a colour image as if they were pixels and fails on RGB images);
pixels are ranked by the attribution summed over its channels, ties in pixel order (a stable
sort).

The noise is drawn from ``numpy.random.RandomState(seed)``, ``randn(channels, pixels removed)``
for each fraction and, within it, each image, in the order the pixels are ranked: the draws of
Quantus after ``np.random.seed(seed)``.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np
import torch
from scipy.sparse import csc_matrix
from scipy.sparse.linalg import spsolve

from ..errors import ConvsightError

DEFAULT_PERCENTAGES = (10, 20, 30, 40, 50, 60, 70, 80, 90)
ORDERS = ("morf", "lerf", "combined")
MEASURES = ("probability", "accuracy")
# (row offset, column offset, weight), Quantus's and road_evaluation's order and weights
NEIGHBOURS = ((1, 1, 1 / 12), (0, 1, 1 / 6), (-1, 1, 1 / 12), (1, -1, 1 / 12), (0, -1, 1 / 6),
              (-1, -1, 1 / 12), (1, 0, 1 / 6), (-1, 0, 1 / 6))


def imputation(image: np.ndarray, removed: np.ndarray) -> np.ndarray:
    """The linear imputation (no noise) of the ``removed`` pixels (flat indices into H * W) of
    ``image`` (C, H, W): (C, len(removed)), in the order of ``removed``."""
    c, h, w = image.shape
    flat = image.reshape(c, h * w)
    k = len(removed)
    if k == 0:
        return np.zeros((c, 0))
    var = np.full(h * w, -1, dtype=np.int64)
    var[removed] = np.arange(k)
    rows, cols = removed // w, removed % w
    diag = np.ones(k)
    b = np.zeros((k, c))
    ai, aj, av = [np.arange(k)], [np.arange(k)], []
    for dr, dc, weight in NEIGHBOURS:
        r, q = rows + dr, cols + dc
        inside = (r >= 0) & (q >= 0) & (r < h) & (q < w)
        diag[~inside] -= weight
        ids = np.flatnonzero(inside)
        other = (r[ids] * w + q[ids])
        unknown = var[other] >= 0
        b[ids[~unknown]] -= weight * flat[:, other[~unknown]].T
        ai.append(ids[unknown])
        aj.append(var[other[unknown]])
        av.append(np.full(int(unknown.sum()), weight))
    values = np.concatenate([-diag] + av)
    a = csc_matrix((values, (np.concatenate(ai), np.concatenate(aj))), shape=(k, k))
    solution = spsolve(a, b)
    return np.asarray(solution).reshape(k, c).T


def check_percentages(percentages: Any) -> list[float]:
    try:
        values = [float(p) for p in percentages]
    except (TypeError, ValueError):
        raise ConvsightError(f"percentages must be numbers between 0 and 100, got "
                             f"{percentages!r}") from None
    if not values or any(not 0 <= p <= 100 for p in values):
        raise ConvsightError(f"percentages must be numbers between 0 and 100, got {percentages!r}")
    return values


def removal_sets(scores: torch.Tensor, percentages: Sequence[float], order: str
                 ) -> list[list[np.ndarray]]:
    """For each image (scores (N, H * W)) and percentage: the flat pixel indices removed,
    most relevant first (``morf``) or least relevant first (``lerf``), in ranked order."""
    n, pixels = scores.shape
    ranked = torch.argsort(scores.cpu().double(), dim=1, descending=(order == "morf"),
                           stable=True).numpy()
    return [[ranked[i, :int(pixels * p / 100)] for p in percentages] for i in range(n)]


def imputed_batches(x: torch.Tensor, removed: list[list[np.ndarray]], noise: float,
                    rng: np.random.RandomState):
    """Yield ``(percentage index, (N, C, H, W) imputed images)``, drawing the noise in Quantus's
    order (percentage, then image)."""
    images = x.detach().cpu().double().numpy()
    n, c, h, w = images.shape
    for j in range(len(removed[0])):
        out = images.copy()
        for i in range(n):
            idx = removed[i][j]
            if len(idx) == 0:
                continue
            values = imputation(images[i], idx) + noise * rng.randn(c, len(idx))
            out[i].reshape(c, h * w)[:, idx] = values
        yield j, torch.from_numpy(out).to(x.device, x.dtype)
