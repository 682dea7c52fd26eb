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
``batch_size`` (``points_per_pass``: 16 on the CPU while convsight keeps freed memory, else 1;
32 elsewhere), one forward pass per batch, without gradients. ``faithfulness_runs`` measures
several maps' curves on the same images in shared batches (``trust_score``: the map and its
random references), running the points that are the same image in every run once.

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
        intact, _ = evaluate(net, x, targets, detach=True, fast=True)
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


def points_per_pass(device: Any) -> int:
    """Curve points per forward pass when ``batch_size`` is not given: 32 off the CPU; on the CPU
    16 while convsight keeps freed memory for reuse (``convsight.cpu.keep_freed_memory``: no page
    faults, so a batch costs less per image than single images), else 1 (``default_batch_size``)."""
    from ..cpu import keep_freed_memory

    if torch.device(device).type != "cpu":
        return default_batch_size(device)
    return 16 if keep_freed_memory() else default_batch_size(device)


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
    (res,) = faithfulness_runs(model, images, [(kind, attributions)], target, steps, baseline,
                               batch_size, region, progress)
    return res if return_curves else res.auc


def _check(kind: Any, steps: Any, batch_size: Any) -> None:
    if kind not in KINDS:
        raise ConvsightError(f"unknown faithfulness kind {kind!r}: valid kinds are deletion, "
                             "insertion")
    if not isinstance(steps, int) or isinstance(steps, bool) or steps < 1:
        raise ConvsightError(f"steps must be a positive integer, got {steps!r}")
    if not isinstance(batch_size, int) or isinstance(batch_size, bool) or batch_size < 1:
        raise ConvsightError(f"batch_size must be a positive integer, got {batch_size!r}")


def _ranks(scores: torch.Tensor, inside: torch.Tensor | None) -> torch.Tensor:
    """rank[i, p]: position of pixel p in image i's order (stable: ties keep pixel order); pixels
    outside the region come last and are never reached."""
    if inside is not None:
        scores = torch.where(inside, scores, torch.full_like(scores, -float("inf")))
    order = torch.argsort(scores, dim=1, descending=True, stable=True)
    rank = torch.empty_like(order)
    n, pixels = scores.shape
    rank.scatter_(1, order, torch.arange(pixels, device=scores.device).expand(n, -1).contiguous())
    return rank


def faithfulness_runs(model: Any, images: torch.Tensor, runs: list[tuple[str, Any]],
                      target: Any = None, steps: int = DEFAULT_STEPS, baseline: Any = None,
                      batch_size: int | None = None, region: Any = None,
                      progress: ProgressArg = False) -> list[Faithfulness]:
    """``faithfulness(..., return_curves=True)`` for several ``(kind, attributions)`` runs on the
    same images at once: the points of all runs share forward passes (``batch_size`` points per
    pass), and the points whose images are the same in every run of a kind (nothing changed yet,
    everything changed) run once."""
    net = as_network(model)
    batch_size = points_per_pass(net.device) if batch_size is None else batch_size
    for kind, _ in runs:
        _check(kind, steps, batch_size)
    x, _ = image_batch(images, net, "faithfulness")
    x = x.detach().to(net.device)
    n, _, h, w = x.shape
    ends = {}  # kind -> (the image before any change, the image after every change)
    for kind in dict.fromkeys(k for k, _ in runs):
        filled = fill_like(x, DEFAULT_BASELINE[kind] if baseline is None else baseline,
                           f"{kind} baseline")
        ends[kind] = (x, filled) if kind == "deletion" else (filled, x)
    targets, intact, relative = curve_targets(net, x, target)
    inside = region_masks(region, n, h, w)
    pixels = [h * w] * n if inside is None else [int(v) for v in inside.sum(1)]
    inside = None if inside is None else inside.to(x.device)
    ranked = {}  # the runs of one map (its deletion and insertion) rank its pixels once
    for _, a in runs:
        if id(a) not in ranked:
            ranked[id(a)] = _ranks(pixel_scores(a, x), inside)
    ranks = [ranked[id(a)] for _, a in runs]
    counts = torch.stack([_counts(p, steps) for p in pixels]).to(x.device)  # (N, steps + 1)
    # one forward pass per distinct image: a point that changes no pixel or every pixel is the
    # intact image (measured above) or its kind's filled image, the same in every run
    def image_of(kind: str, i: int, k: int) -> tuple | None:
        changed = int(counts[i, k])
        if changed not in (0, pixels[i]):
            return None
        return ("intact", i) if (changed == 0) == (kind == "deletion") else ("filled", kind, i)

    key = {(r, i, k): image_of(kind, i, k) or (r, i, k)
           for r, (kind, _) in enumerate(runs) for i in range(n) for k in range(steps + 1)}
    values = {("intact", i): intact[i].float() for i in range(n)}
    first = {}
    for (r, i, k), u in key.items():
        if u not in values:
            first.setdefault(u, (r, i, k))
    unique = list(first)
    with torch.no_grad(), progress_bar(len(unique), runs[0][0], "point", progress) as report:
        for start in range(0, len(unique), batch_size):
            chunk = [first[u] for u in unique[start:start + batch_size]]
            xs = torch.stack([_point(x, ends[runs[r][0]], ranks[r], counts, i, k, h, w)
                              for r, i, k in chunk])
            v, _ = evaluate(net, net.layout(xs), [targets[i] for _, i, _ in chunk], detach=True,
                            fast=True)
            values.update(zip(unique[start:start + batch_size], v.float()))
            report(len(chunk))
    out = []
    for r, (kind, _) in enumerate(runs):
        curves = torch.stack([values[key[(r, i, k)]] for i in range(n)
                              for k in range(steps + 1)]).view(n, steps + 1)
        out.append(_result(kind, curves, counts, pixels, targets, intact, relative))
    return out


def _point(x: torch.Tensor, ends: tuple[torch.Tensor, torch.Tensor], rank: torch.Tensor,
           counts: torch.Tensor, i: int, k: int, h: int, w: int) -> torch.Tensor:
    """Image ``i`` at curve point ``k``: its first ``counts[i, k]`` ranked pixels changed."""
    source, changed = ends
    mask = (rank[i] < counts[i, k]).view(1, h, w)
    return torch.where(mask, changed[i], source[i])


def _result(kind: str, curves: torch.Tensor, counts: torch.Tensor, pixels: list[int],
            targets: list[Target], intact: torch.Tensor, relative: list[bool]) -> Faithfulness:
    rel = torch.tensor(relative, device=curves.device)
    if rel.any():
        base = intact.float()
        bad = rel & ~(base > 0)
        if bad.any():
            warnings.warn(f"faithfulness: the target is not positive on the intact image(s) "
                          f"{bad.nonzero().flatten().tolist()}, so values relative to it mean "
                          "nothing; their curves are NaN", UserWarning, stacklevel=4)
        scale = torch.where(rel & ~bad, base, torch.ones_like(base))
        curves = torch.where(bad[:, None], torch.full_like(curves, float("nan")),
                             curves / scale[:, None])
    fractions = counts.float() / torch.tensor(pixels, device=curves.device)[:, None]
    auc = torch.trapezoid(curves, fractions, dim=1)
    if len(set(pixels)) == 1:
        fractions = fractions[0]
    return Faithfulness(kind, auc.cpu(), curves.cpu(), fractions.cpu(), targets, relative)
