"""Deletion and insertion (Petsiuk et al. 2018, RISE): does the map rank the pixels the model uses?

Pixels are taken in order of decreasing score (the attribution summed over its channels; pass
``attr.abs()`` to rank by magnitude). **Deletion** replaces them, a fraction at a time, by
``baseline`` (default 0: the mean colour of the normalised input); the class probability should
fall fast, so a *lower* area under the curve is better. **Insertion** starts from a blurred copy
(Gaussian kernel 11, sigma 5, as RISE) and puts the original pixels back in the same order; the
probability should rise fast, so a *higher* area is better.

The curve is the softmax probability of the class for class targets (``class:N`` and ``prob:N``,
and the top class when no target is given); for any other target (a unit, a sum) it is the
target's value relative to its value on the intact image. Each curve has ``steps + 1`` points,
from nothing changed to every pixel changed; the area is the trapezoid rule over the fraction of
pixels changed. The curve points of all images run through the network in batches of
``batch_size`` (default 1 on the CPU, 32 elsewhere: ``default_batch_size``), one forward pass per batch, without
gradients.

>>> auc = faithfulness(net, x, attr, kind="deletion")              # (N,)
>>> res = faithfulness(net, x, attr, kind="insertion", return_curves=True)
>>> res.auc, res.curves, res.fractions                            # (N,), (N, 51), (51,)
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Any

import torch

from ..attribute import image_batch
from ..attribute.occlusion import default_batch_size, fill_like
from ..errors import ConvsightError
from ..models import as_network
from ..progress import ProgressArg, progress_bar
from ..targets import Target, evaluate, fixed_targets

KINDS = ("deletion", "insertion")
DEFAULT_STEPS = 50
PAGE_STEPS = 20  # points per curve for the scores shown beside a picture (explorer, report): ~4x faster
DEFAULT_BASELINE = {"deletion": 0.0, "insertion": "blur"}


@dataclass
class Faithfulness:
    """Deletion or insertion curves of N images and their areas."""

    kind: str
    auc: torch.Tensor          # (N,) area under each curve
    curves: torch.Tensor       # (N, steps + 1)
    fractions: torch.Tensor    # (steps + 1,) fraction of pixels changed at each point, or
    #                            (N, steps + 1) when images change different numbers (``region``)
    targets: list[Target]      # the target each curve measures (class targets as probabilities)
    relative: list[bool]       # per image: values relative to the intact image (not probabilities)


def pixel_scores(attributions: Any, x: torch.Tensor) -> torch.Tensor:
    """Attributions (N, C or 1, H, W), or (C or 1, H, W) for one image -> scores (N, H * W)."""
    if not isinstance(attributions, torch.Tensor):
        raise ConvsightError(f"attributions must be a tensor shaped like the images, got "
                             f"{type(attributions).__name__}")
    a = attributions[None] if attributions.dim() == 3 else attributions
    n, c, h, w = x.shape
    if a.dim() != 4 or a.shape[0] != n or a.shape[2:] != (h, w) or a.shape[1] not in (1, c):
        raise ConvsightError(f"attributions of shape {tuple(attributions.shape)} do not match the "
                             f"images {tuple(x.shape)}: give ({n}, {c} or 1, {h}, {w})")
    return a.detach().to(x.device, torch.float32).sum(1).flatten(1)


def curve_targets(net: Any, x: torch.Tensor, target: Any
                  ) -> tuple[list[Target], torch.Tensor, list[bool]]:
    """(the target each curve measures, its value on the intact images, whether it is relative).

    Class targets become class probabilities; others are measured relative to the intact image.
    """
    targets = fixed_targets(net, x, target)
    targets = [Target.probability(t.class_index) if t.class_index is not None else t
               for t in targets]
    with torch.no_grad():
        intact, _ = evaluate(net, x, targets, detach=True)
    return targets, intact, [t.class_index is None for t in targets]


Box = tuple[int, int, int, int]


def _counts(pixels: int, steps: int) -> torch.Tensor:
    return torch.tensor([k * pixels // steps for k in range(steps + 1)])


def region_masks(region: Any, n: int, h: int, w: int) -> torch.Tensor | None:
    """``region`` (None, or one ``(top, left, bottom, right)`` box or None per image, inclusive)
    -> (N, H * W) booleans (True: the pixel may change), or None for whole images."""
    if region is None:
        return None
    boxes = list(region)
    if len(boxes) != n:
        raise ConvsightError(f"region needs one box (or None) per image: got {len(boxes)} for "
                             f"{n} image(s)")
    masks = torch.ones(n, h, w, dtype=torch.bool)
    for i, box in enumerate(boxes):
        if box is None:
            continue
        top, left, bottom, right = (int(v) for v in box)
        if not (0 <= top <= bottom < h and 0 <= left <= right < w):
            raise ConvsightError(f"region box {tuple(box)} of image {i} is not inside the "
                                 f"{h}x{w} image: give (top, left, bottom, right) with "
                                 f"0 <= top <= bottom < {h} and 0 <= left <= right < {w}")
        masks[i] = False
        masks[i, top:bottom + 1, left:right + 1] = True
    return masks.flatten(1)


def faithfulness(model: Any, images: torch.Tensor, attributions: Any, target: Any = None,
                 kind: str = "deletion", steps: int = DEFAULT_STEPS, baseline: Any = None,
                 batch_size: int | None = None, return_curves: bool = False,
                 region: Any = None, progress: ProgressArg = False
                 ) -> torch.Tensor | Faithfulness:
    """Deletion or insertion AUC (N,) of ``attributions`` for normalised ``images`` (see above).

    ``baseline``: what deleted pixels become (deletion, default 0.0 = the mean colour) or the
    image pixels are inserted into (insertion, default ``"blur"``): a number in the space of the
    images, ``"blur"`` or a tensor broadcastable to them. ``return_curves=True`` returns a
    ``Faithfulness`` with the curves instead of the areas alone. ``region``: one box
    ``(top, left, bottom, right)`` (inclusive) or None per image: only the box's pixels are
    ranked and changed, and the fractions are of the box (for a neuron, its receptive field:
    the pixels outside cannot change it). ``fractions`` is ``(steps + 1,)`` when every image
    changes as many pixels, else ``(N, steps + 1)``.
    """
    if kind not in KINDS:
        raise ConvsightError(f"unknown faithfulness kind {kind!r}: valid kinds are deletion, "
                             "insertion")
    if not isinstance(steps, int) or isinstance(steps, bool) or steps < 1:
        raise ConvsightError(f"steps must be a positive integer, got {steps!r}")
    net = as_network(model)
    batch_size = default_batch_size(net.device) if batch_size is None else batch_size
    if not isinstance(batch_size, int) or isinstance(batch_size, bool) or batch_size < 1:
        raise ConvsightError(f"batch_size must be a positive integer, got {batch_size!r}")
    x, _ = image_batch(images, net, "faithfulness")
    x = x.detach().to(net.device)
    scores = pixel_scores(attributions, x)
    n, _, h, w = x.shape
    filled = fill_like(x, DEFAULT_BASELINE[kind] if baseline is None else baseline,
                       f"{kind} baseline")
    source, changed = (x, filled) if kind == "deletion" else (filled, x)
    targets, intact, relative = curve_targets(net, x, target)
    inside = region_masks(region, n, h, w)
    pixels = [h * w] * n
    if inside is not None:  # pixels outside the region come last and are never reached
        inside = inside.to(x.device)
        scores = torch.where(inside, scores, torch.full_like(scores, -float("inf")))
        pixels = [int(v) for v in inside.sum(1)]
    # rank[i, p]: position of pixel p in image i's order (stable: ties keep pixel order)
    order = torch.argsort(scores, dim=1, descending=True, stable=True)
    rank = torch.empty_like(order)
    rank.scatter_(1, order, torch.arange(h * w, device=x.device).expand(n, -1).contiguous())
    counts = torch.stack([_counts(p, steps) for p in pixels]).to(x.device)  # (N, steps + 1)
    rows = [(i, k) for i in range(n) for k in range(steps + 1)]
    values = torch.empty(len(rows), dtype=torch.float32, device=x.device)
    with torch.no_grad(), progress_bar(len(rows), kind, "point", progress) as report:
        for start in range(0, len(rows), batch_size):
            chunk = rows[start:start + batch_size]
            img = torch.tensor([i for i, _ in chunk], device=x.device)
            k = torch.tensor([k for _, k in chunk], device=x.device)
            mask = (rank[img] < counts[img, k][:, None]).view(-1, 1, h, w)
            xs = torch.where(mask, changed[img], source[img])
            v, _ = evaluate(net, net.layout(xs), [targets[i] for i, _ in chunk], detach=True)
            values[start:start + len(chunk)] = v.float()
            report(len(chunk))
    curves = values.view(n, steps + 1)
    rel = torch.tensor(relative, device=x.device)
    if rel.any():
        base = intact.float()
        bad = rel & ~(base > 0)
        if bad.any():
            warnings.warn(f"faithfulness: the target is not positive on the intact image(s) "
                          f"{bad.nonzero().flatten().tolist()}, so values relative to it mean "
                          "nothing; their curves are NaN", UserWarning, stacklevel=2)
        scale = torch.where(rel & ~bad, base, torch.ones_like(base))
        curves = torch.where(bad[:, None], torch.full_like(curves, float("nan")),
                             curves / scale[:, None])
    fractions = counts.float() / torch.tensor(pixels, device=x.device)[:, None]
    auc = torch.trapezoid(curves, fractions, dim=1)
    if len(set(pixels)) == 1:
        fractions = fractions[0]
    if not return_curves:
        return auc.cpu()
    return Faithfulness(kind, auc.cpu(), curves.cpu(), fractions.cpu(), targets, relative)
