"""Metrics that perturb the input or the question and look again: they run the model.

- **max-sensitivity** (Yeh et al. 2019, "On the (In)fidelity and Sensitivity of Explanations"):
  the largest ``||a(x + d) - a(x)|| / ||a(x)||`` (Frobenius norms) over ``samples`` draws of ``d``
  uniform in ``[-radius, radius]`` per value. Lower is better. Captum's ``sensitivity_max`` (an
  all-zero map divides by 1, as there) and Quantus's ``MaxSensitivity``.
- **infidelity** (Yeh et al. 2019): the mean over ``samples`` draws of Gaussian noise ``I``
  (standard deviation ``noise_std``) of ``(sum(I * a) - (f(x) - f(x - I)))^2``, ``f`` the target's
  value (a class's logit); with ``normalize=True`` (default here, Captum's default is False) the
  map is first scaled by the best factor ``beta`` (Yeh et al.'s scale-invariant form), so maps of
  different units (gradients, Grad-CAM, occlusion) can be compared. Lower is better. Captum's
  ``infidelity``.
- **random logit** (Sixt et al. 2020, "When Explanations Lie: Why Many Modified BP Attributions
  Fail"): the SSIM between the map of the class and the map of another class drawn at random;
  lower is better (a map that explains the class changes with it). Quantus's ``RandomLogit``:
  the other class is ``numpy.random.RandomState(seed).randint(0, classes - 1, N)``-th class that
  is not the image's, and SSIM is scikit-image's on the flattened maps each divided by its own
  largest magnitude (Quantus divides by the batch's).
- **randomisation** (Adebayo et al. 2018): the rank correlation of |map| with the map after
  re-initialising the top layer (``trust_score``'s ``top_layer_correlation``); lower is better.

Perturbed copies of all images run in batches of ``batch_size`` (one backward pass per batch for
the maps, one forward pass without gradients for the values), on the network with its
BatchNorms folded (``Network.fast``) where that changes no value the metric reads.
"""

from __future__ import annotations

from typing import Any, Callable, Mapping, Sequence

import numpy as np
import torch

from ..attribute import attribute, method_info
from ..errors import ConvsightError
from ..targets import Target, evaluate
from .randomize import randomized_copy
from .scope import map_correlation, top_step

Noise = Callable[[int], torch.Tensor]


def explainer(net: Any, method: str) -> Any:
    """The network a metric's own maps are made on: ``Network.fast`` (BatchNorms folded, values
    equal up to rounding) unless the method reads a layer, whose output folding could change."""
    return net if method_info(method).needs_layer else net.fast()


def sample_noise(noise: Any, shape: tuple[int, ...], samples: int, seed: int,
                 draw: Callable[[tuple[int, ...], torch.Generator], torch.Tensor]) -> Noise:
    """Sample ``s`` of the perturbations, (N, C, H, W): from ``noise`` (a tensor (samples, N, C,
    H, W) given by the user) or drawn from a CPU generator seeded with ``seed``, sample by sample
    (the same draws for every batch size and device)."""
    if noise is not None:
        if not isinstance(noise, torch.Tensor) or tuple(noise.shape) != (samples, *shape):
            got = tuple(noise.shape) if isinstance(noise, torch.Tensor) else type(noise).__name__
            raise ConvsightError(f"noise must be a tensor ({samples}, {', '.join(map(str, shape))}"
                                 f"): one perturbation per sample and image, got {got}")
        return lambda s: noise[s]
    gen = torch.Generator().manual_seed(int(seed))
    drawn: list[torch.Tensor | None] = []

    def lazy(s: int) -> torch.Tensor:  # copies come sample by sample: keep the last two
        while len(drawn) <= s:
            drawn.append(draw(shape, gen))
            if len(drawn) > 2:
                drawn[-3] = None
        return drawn[s]  # type: ignore[return-value]

    return lazy


def _copies(n: int, samples: int, batch_size: int):
    rows = [(s, i) for s in range(samples) for i in range(n)]
    for start in range(0, len(rows), batch_size):
        yield rows[start:start + batch_size]


def max_sensitivity(net: Any, x: torch.Tensor, attr: torch.Tensor, targets: Sequence[Target],
                    method: str, options: Mapping[str, Any], samples: int, radius: float,
                    noise: Any, seed: int, batch_size: int) -> torch.Tensor:
    n = x.shape[0]
    draws = sample_noise(noise, tuple(x.shape), samples, seed,
                         lambda shape, g: torch.rand(shape, generator=g) * (2 * radius) - radius)
    base = attr.detach().to(x.device).double()
    norm = base.flatten(1).norm(dim=1)
    norm = torch.where(norm == 0, torch.ones_like(norm), norm)
    best = torch.full((n,), -float("inf"), dtype=torch.float64, device=x.device)
    for chunk in _copies(n, samples, batch_size):
        idx = torch.tensor([i for _, i in chunk], device=x.device)
        d = torch.stack([draws(s)[i] for s, i in chunk]).to(x.device, x.dtype)
        maps = attribute(explainer(net, method), x[idx] + d, [targets[i] for _, i in chunk],
                         method=method, **options)
        if maps.shape[1:] != base.shape[1:]:
            raise ConvsightError(f"attributions of shape {tuple(attr.shape)} are not what method "
                                 f"{method} gives ({tuple(maps.shape[1:])} per image): pass the "
                                 "method's own map, or the method that made these")
        diff = (maps.double() - base[idx]).flatten(1).norm(dim=1) / norm[idx]
        best.scatter_reduce_(0, idx, diff, reduce="amax")
    return best.float().cpu()


def infidelity(net: Any, x: torch.Tensor, attr: torch.Tensor, targets: Sequence[Target],
               samples: int, noise_std: float, normalize: bool, noise: Any, seed: int,
               batch_size: int) -> torch.Tensor:
    n = x.shape[0]
    draws = sample_noise(noise, tuple(x.shape), samples, seed,
                         lambda shape, g: torch.randn(shape, generator=g) * noise_std)
    a = attr.detach().to(x.device, x.dtype)
    with torch.no_grad():
        intact, _ = evaluate(net, x, list(targets), detach=True, fast=True)
        sums = torch.zeros(3, n, dtype=torch.float64, device=x.device)
        for chunk in _copies(n, samples, batch_size):
            idx = torch.tensor([i for _, i in chunk], device=x.device)
            pert = torch.stack([draws(s)[i] for s, i in chunk]).to(x.device, x.dtype)
            values, _ = evaluate(net, x[idx] - pert, [targets[i] for _, i in chunk], detach=True,
                                 fast=True)
            dot = (a[idx] * pert).flatten(1).sum(1).double()
            diff = (intact[idx] - values).double()
            for row, v in enumerate((dot * dot, dot * diff, diff * diff)):
                sums[row].index_add_(0, idx, v)
    if normalize:
        beta = sums[1] / torch.where(sums[0] == 0, torch.ones_like(sums[0]), sums[0])
        result = beta * beta * sums[0] - 2 * beta * sums[1] + sums[2]
    else:
        result = sums[0] - 2 * sums[1] + sums[2]
    return (result / samples).float().cpu()


def other_classes(classes: Sequence[int], count: int, seed: int) -> list[int]:
    """Quantus's draw of another class per image."""
    pick = np.random.RandomState(seed).randint(0, count - 1, len(classes))
    return [int(p) + (int(p) >= c) for p, c in zip(pick, classes)]


def random_logit(net: Any, x: torch.Tensor, attr: torch.Tensor, targets: Sequence[Target],
                 method: str, options: Mapping[str, Any], classes: int | None, seed: int
                 ) -> torch.Tensor:
    from skimage.metrics import structural_similarity

    own = [t.class_index for t in targets]
    if any(c is None for c in own):
        raise ConvsightError("random_logit compares the maps of two classes: it needs class "
                             "targets (class:N, prob:N or the top class), not units")
    if classes is None:
        with torch.no_grad():
            _, out = evaluate(net, x[:1], [targets[0]], detach=True, fast=True)
        classes = int(out.shape[1])
    if classes < 2:
        raise ConvsightError(f"random_logit needs at least 2 classes, got classes={classes}")
    others = other_classes(own, classes, seed)  # type: ignore[arg-type]
    theirs = attribute(explainer(net, method), x, [Target.class_score(c) for c in others],
                       method=method, **options)
    out = []
    for mine, other in zip(attr.detach().double().cpu(), theirs.detach().double().cpu()):
        a, b = (m.flatten().numpy() for m in (mine, other))
        a = a / np.abs(a).max() if np.abs(a).max() > 0 else a
        b = b / np.abs(b).max() if np.abs(b).max() > 0 else b
        both = np.concatenate([a, b])
        span = float(abs(both.max() - both.min()))
        # two all-zero maps (e.g. Grad-CAM of a class the layer does not see): no similarity
        out.append(structural_similarity(a, b, data_range=span) if span > 0 else float("nan"))
    return torch.tensor(out, dtype=torch.float32)


def randomisation(net: Any, x: torch.Tensor, attr: torch.Tensor, targets: Sequence[Target],
                  method: str, options: Mapping[str, Any], seed: int) -> torch.Tensor:
    _, members = top_step(net, x, list(targets))
    other = randomized_copy(net, x, members, seed=seed)
    theirs = attribute(other, x, list(targets), method=method, **options)
    return map_correlation(attr.to(theirs.device), theirs, [None] * x.shape[0])
