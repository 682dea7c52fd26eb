"""ROAD (Rong et al. 2022, "A Consistent and Efficient Evaluation Strategy for Attribution Methods").

Remove a fraction of the pixels, most relevant first (MoRF) or least relevant first (LeRF), and
see what the model still says. Removed pixels are not set to a fixed baseline: each becomes the
weighted mean of its 8 neighbours (noisy linear imputation: weight 1/6 for the 4 direct
neighbours, 1/12 for the diagonal ones, solved as one sparse linear system per image and
fraction, then Gaussian noise of standard deviation ``noise`` is added), so the outline of the
removed region carries no information about the class (the paper's point).

This is Quantus 0.6.0's ``noisy_linear_imputation`` (adapted there from
https://github.com/tleemann/road_evaluation) built without Python loops over pixels: the system
is the same, and so is the solver family (SciPy's SuperLU), so values agree to rounding. The
system is symmetric (the weights are) and, negated, diagonally dominant: a Laplacian on the
pixel grid with the kept pixels as fixed boundary values. So it is factorised without pivoting
in a nested-dissection order of the grid (George 1973: split the grid by a line of pixels, order
both halves first and the line last, recursively), which keeps the factor's fill near
``n log n`` where SuperLU's default column order (COLAMD) fills 2-4x more at 90 % removed
(0.4 s instead of 1.6 s for 45,000 unknowns); the colour channels are 3 right-hand sides of one
factorisation, and the images of a batch are solved in parallel threads (SuperLU releases the
GIL). A system SuperLU finds singular without pivoting goes to SciPy's ``spsolve``, as in
Quantus (with 100 % removed there is no kept value to spread: both give zeros). Differences
on purpose, shown by tests/trust/test_metrics_peers.py: a pixel is removed with all its
channels (Quantus 0.6.0 indexes the channels of a colour image as if they were pixels and
fails on RGB images); pixels are ranked by the attribution summed over its channels, ties in
pixel order (a stable sort).

The noise is drawn from ``numpy.random.RandomState(seed)``, ``randn(channels, pixels removed)``
for each fraction and, within it, each image, in the order the pixels are ranked: the draws of
Quantus after ``np.random.seed(seed)``.
"""

from __future__ import annotations

import functools
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Sequence

import numpy as np
import torch
from scipy.sparse import csc_matrix
from scipy.sparse.linalg import splu, spsolve

from ..errors import ConvsightError

DEFAULT_PERCENTAGES = (10, 20, 30, 40, 50, 60, 70, 80, 90)
ORDERS = ("morf", "lerf", "combined")
MEASURES = ("probability", "accuracy")
# (row offset, column offset, weight), Quantus's and road_evaluation's order and weights
NEIGHBOURS = ((1, 1, 1 / 12), (0, 1, 1 / 6), (-1, 1, 1 / 12), (1, -1, 1 / 12), (0, -1, 1 / 6),
              (-1, -1, 1 / 12), (1, 0, 1 / 6), (-1, 0, 1 / 6))


@functools.lru_cache(maxsize=8)
def dissection_rank(h: int, w: int, leaf: int = 16) -> np.ndarray:
    """Each pixel's place (flat index into H * W) in a nested-dissection order of the H x W grid:
    a rectangle is split across its longer side by one line of pixels (which separates the two
    halves for 8 neighbours), the halves come first and the line last; rectangles of at most
    ``leaf`` pixels keep raster order."""
    parts: list[np.ndarray] = []
    stack = [(0, h, 0, w, False)]
    while stack:  # depth first, halves before their line: the line is pushed first
        r0, r1, c0, c1, is_line = stack.pop()
        if r1 <= r0 or c1 <= c0:
            continue
        if is_line or (r1 - r0) * (c1 - c0) <= leaf:
            rr, cc = np.mgrid[r0:r1, c0:c1]
            parts.append((rr * w + cc).ravel())
        elif r1 - r0 >= c1 - c0:
            m = (r0 + r1) // 2
            stack += [(m, m + 1, c0, c1, True), (m + 1, r1, c0, c1, False),
                      (r0, m, c0, c1, False)]
        else:
            m = (c0 + c1) // 2
            stack += [(r0, r1, m, m + 1, True), (r0, r1, m + 1, c1, False),
                      (r0, r1, c0, m, False)]
    rank = np.empty(h * w, dtype=np.int64)
    rank[np.concatenate(parts)] = np.arange(h * w)
    return rank


def _solve(a: csc_matrix, b: np.ndarray) -> np.ndarray:
    """``a x = b`` for the imputation system, its unknowns already in dissection order."""
    try:
        lu = splu(a, permc_spec="NATURAL", diag_pivot_thresh=0.0,
                  options={"SymmetricMode": True})
    except RuntimeError:  # singular (no kept pixel touches a region): as Quantus, via spsolve
        return np.asarray(spsolve(a, b)).reshape(b.shape)
    return lu.solve(b)


def imputation(image: np.ndarray, removed: np.ndarray) -> np.ndarray:
    """The linear imputation (no noise) of the ``removed`` pixels (flat indices into H * W) of
    ``image`` (C, H, W): (C, len(removed)), in the order of ``removed``."""
    c, h, w = image.shape
    flat = image.reshape(c, h * w)
    k = len(removed)
    if k == 0:
        return np.zeros((c, 0))
    order = np.argsort(dissection_rank(h, w)[removed], kind="stable")
    removed = removed[order]  # unknown j is pixel removed[j], in dissection order
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
    out = np.empty((c, k))
    out[:, order] = _solve(a, b).reshape(k, c).T
    return out


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
    order (percentage, then image); the images' systems are solved in parallel threads."""
    from ..cpu import available_cores

    images = x.detach().cpu().double().numpy()
    n, c, h, w = images.shape
    with ThreadPoolExecutor(max(1, min(n, available_cores()))) as pool:
        for j in range(len(removed[0])):
            out = images.copy()
            todo = [i for i in range(n) if len(removed[i][j])]
            draws = [noise * rng.randn(c, len(removed[i][j])) for i in todo]
            solved = pool.map(lambda i: imputation(images[i], removed[i][j]), todo)
            for i, values, drawn in zip(todo, solved, draws):
                out[i].reshape(c, h * w)[:, removed[i][j]] = values + drawn
            yield j, torch.from_numpy(out).to(x.device, x.dtype)
