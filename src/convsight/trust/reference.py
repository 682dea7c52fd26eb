"""Random maps to hold an explanation against: made like the method's maps, from random numbers.

Deletion and insertion depend on *how* pixels are changed as much as on *which*: replacing
scattered single pixels (a pixel-wise random order) ruins the texture the network reads far faster
than replacing one region of the same area. So a map is compared with random maps of its own
kind, and only *where* differs:

- gradient-like methods (pixel maps): an independent uniform number per pixel;
- Grad-CAM: uniform numbers on the Grad-CAM layer's grid, upsampled bilinearly like Grad-CAM;
- occlusion: a uniform number per window, averaged over the windows covering each pixel like
  occlusion's drops.

>>> maps = random_maps(net, x, 'gradcam', {}, torch.Generator().manual_seed(0))   # (N, 1, H, W)
"""

from __future__ import annotations

from typing import Any, Mapping

import torch

from ..attribute.registry import DEFAULT_REFERENCE, method_info
from ..models import Network
from ..targets import Target
from .faithfulness import KINDS, Faithfulness, faithfulness_runs


def map_kind(method: str) -> str:
    """The kind of random map ``method``'s maps are held against: ``"pixels"``, ``"Grad-CAM
    grid"`` or ``"occlusion windows"``. Methods of one kind, with the same options, targets,
    steps and seed, share one ``random_reference`` (pass it to ``trust_score(reference=...)``)."""
    return method_info(method).reference


def random_maps(net: Network, x: torch.Tensor, method: str, options: Mapping[str, Any],
                generator: torch.Generator) -> torch.Tensor:
    """One random map (N, 1, H, W) of the kind ``method`` draws (see the module docstring;
    ``Method.random_map`` in the method registry)."""
    return method_info(method).random_map(net, x, options, generator)


def random_draws(net: Network, x: torch.Tensor, method: str,
                 options: Mapping[str, Any] | None = None, maps: int = 3, seed: int = 0
                 ) -> list[torch.Tensor]:
    """The ``maps`` random maps of ``random_reference`` (drawn in turn from one generator)."""
    gen = torch.Generator().manual_seed(seed)
    return [random_maps(net, x, method, options or {}, gen) for _ in range(maps)]


def curves_by_kind(net: Network, x: torch.Tensor, maps: list[torch.Tensor], targets: list[Target],
                   steps: int, batch_size: int | None = None, region: Any = None,
                   progress: Any = False) -> dict[str, list[Faithfulness]]:
    """Deletion and insertion curves of every map of ``maps``, in order, per kind: all of them
    in shared forward passes (``faithfulness_runs``)."""
    done = faithfulness_runs(net, x, [(k, m) for k in KINDS for m in maps], targets, steps,
                             batch_size=batch_size, region=region, progress=progress)
    return {k: done[j * len(maps):(j + 1) * len(maps)] for j, k in enumerate(KINDS)}


def reference_of(runs: Mapping[str, list[Faithfulness]]) -> dict[str, torch.Tensor]:
    """``random_reference``'s dict from the random maps' curves per kind."""
    out = {}
    for kind, done in runs.items():
        out[kind] = torch.stack([r.auc for r in done]).mean(0)
        out[f"{kind}_curve"] = torch.stack([r.curves for r in done]).mean(0)
    return out


def random_reference(net: Network, x: torch.Tensor, targets: list[Target], steps: int,
                     method: str = DEFAULT_REFERENCE, options: Mapping[str, Any] | None = None,
                     maps: int = 3, seed: int = 0, batch_size: int | None = None,
                     region: Any = None) -> dict[str, torch.Tensor]:
    """Deletion and insertion of ``maps`` random maps of ``method``'s kind per image: the mean
    AUC (N,) under ``"deletion"`` and ``"insertion"``, the mean curve (N, steps + 1) under
    ``"deletion_curve"`` and ``"insertion_curve"``. ``region``: as for ``faithfulness``."""
    draws = random_draws(net, x, method, options, maps, seed)
    return reference_of(curves_by_kind(net, x, draws, targets, steps, batch_size, region))
