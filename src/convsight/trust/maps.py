"""Metrics that read the map alone (complexity) or the map and a region (localisation).

- **sparseness** (Chalasani et al. 2020, "Concise Explanations of Neural Networks using
  Adversarial Training"): the Gini index of the |map|; 1 = all relevance on one pixel, 0 = spread
  evenly. Higher is sparser.
- **complexity** (Bhatt et al. 2020, "Evaluating and Aggregating Feature-based Model
  Explanations"): the entropy of the |map| as a distribution over pixels; lower is simpler.
- **pointing game** (Zhang et al. 2018, "Top-down Neural Attention by Excitation Backprop"): 1
  when the map's maximum lies in the given box or mask, else 0. Higher is better.
- **relevance mass** (Arras et al. 2022, "CLEVR-XAI"): the map's sum inside the box or mask over
  its sum everywhere. Higher is better.

Formulas as Quantus 0.6.0 (``Sparseness``, ``Complexity``, ``PointingGame``,
``RelevanceMassAccuracy``), including its 1e-7 and 1e-12 guards. On purpose, a map with several
channels is first summed over them, per pixel (``|a|`` summed where the metric takes magnitudes,
as convsight's pictures show a map): Quantus ranks every channel value as if it were a pixel.
Maps are divided by their own largest magnitude (Quantus divides a whole batch by the batch's
largest, which makes one image's score depend on the others; the scores here do not).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from ..errors import ConvsightError


def pixel_map(attributions: torch.Tensor, absolute: bool) -> torch.Tensor:
    """(N, C or 1, H, W) -> (N, H * W) float64: the map summed over channels (of |a| if
    ``absolute``), divided by each image's largest magnitude (an all-zero map stays zero)."""
    a = attributions.detach().double()
    m = (a.abs() if absolute else a).sum(1).flatten(1)
    top = m.abs().amax(1, keepdim=True)
    return torch.where(top > 0, m / torch.where(top > 0, top, torch.ones_like(top)), m)


def sparseness(attributions: torch.Tensor) -> torch.Tensor:
    """Gini index of |map| per image (N,)."""
    m = attributions.detach().double().abs().sum(1).flatten(1).cpu()
    # sort before pixel_map's scaling (monotone: the same sorted values), in float32 where the
    # values are float32 numbers (one-channel maps): NumPy sorts those 1.6x faster
    as32 = m.float()
    exact = bool((as32.double() == m).all())
    m = torch.from_numpy(np.sort(as32.numpy() if exact else m.numpy(), axis=1)).double()
    top = m[:, -1:]
    a = torch.where(top > 0, m / torch.where(top > 0, top, torch.ones_like(top)), m) + 1e-7
    a = a.to(attributions.device)
    n = a.shape[1]
    k = torch.arange(1, n + 1, dtype=a.dtype, device=a.device)
    return ((2 * k - n - 1) * a).sum(1) / (n * a.sum(1))


def complexity(attributions: torch.Tensor) -> torch.Tensor:
    """Entropy of |map| / sum |map| per image (N,), natural logarithm."""
    a = pixel_map(attributions, True)
    a = a / a.abs().sum(1, keepdim=True)
    return -(a * torch.log(a + 1e-12)).sum(1)


def region_mask(n: int, h: int, w: int, box: Any = None, mask: Any = None) -> torch.Tensor:
    """One boolean mask (N, H * W) from ``box`` (``(top, left, bottom, right)``, inclusive, for
    all images, or a list with one per image) or ``mask`` (a boolean tensor (H, W), (N, H, W) or
    (N, 1, H, W)); exactly one of them."""
    if (box is None) == (mask is None):
        raise ConvsightError("localisation metrics need a box=(top, left, bottom, right) or a "
                             "mask= (a boolean tensor (H, W) or (N, H, W)): give exactly one")
    if mask is not None:
        if not isinstance(mask, torch.Tensor):
            raise ConvsightError(f"mask must be a boolean tensor (H, W) or (N, H, W), got "
                                 f"{type(mask).__name__}")
        m = mask
        if m.dim() == 4 and m.shape[1] == 1:
            m = m[:, 0]
        if m.dim() == 2:
            m = m[None].expand(n, -1, -1)
        if m.dim() != 3 or tuple(m.shape) != (n, h, w):
            raise ConvsightError(f"mask of shape {tuple(mask.shape)} does not fit {n} image(s) of "
                                 f"{h}x{w}: give ({h}, {w}) or ({n}, {h}, {w})")
        return (m != 0).reshape(n, h * w).cpu()
    boxes = list(box) if isinstance(box, (list, tuple)) and box and \
        isinstance(box[0], (list, tuple)) else [box] * n
    if len(boxes) != n:
        raise ConvsightError(f"give one box for all images or one per image: got {len(boxes)} "
                             f"for {n} image(s)")
    out = torch.zeros(n, h, w, dtype=torch.bool)
    for i, b in enumerate(boxes):
        try:
            top, left, bottom, right = (int(v) for v in b)
        except (TypeError, ValueError):
            raise ConvsightError(f"a box is (top, left, bottom, right), got {b!r}") from None
        if not (0 <= top <= bottom < h and 0 <= left <= right < w):
            raise ConvsightError(f"box {tuple(b)} of image {i} is not inside the {h}x{w} image: "
                                 f"give (top, left, bottom, right) with 0 <= top <= bottom < {h} "
                                 f"and 0 <= left <= right < {w}")
        out[i, top:bottom + 1, left:right + 1] = True
    return out.flatten(1)


def pointing_game(attributions: torch.Tensor, inside: torch.Tensor, absolute: bool = False
                  ) -> torch.Tensor:
    """1.0 where a largest value of the map lies inside the region, else 0.0; NaN for an empty
    region (N,)."""
    a = pixel_map(attributions, absolute).cpu()
    hit = ((a == a.amax(1, keepdim=True)) & inside).any(1).double()
    return torch.where(inside.any(1), hit, torch.full_like(hit, float("nan")))


def relevance_mass(attributions: torch.Tensor, inside: torch.Tensor, absolute: bool = False
                   ) -> torch.Tensor:
    """Sum of the map inside the region / its sum everywhere (N,); NaN for an empty region."""
    a = pixel_map(attributions, absolute).cpu()
    mass = (a * inside).sum(1) / a.sum(1)
    return torch.where(inside.any(1), mass, torch.full_like(mass, float("nan")))
