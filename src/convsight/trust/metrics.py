"""One number per image for one metric of given attributions: ``metric(name, model, images, attr)``.

Names (``METRICS``), each with its paper and direction (``HIGHER_IS_BETTER``); docs/sanity.md
has the table:

- faithfulness: ``deletion``, ``insertion`` (``faithfulness.py``), ``road`` (``road.py``),
  ``infidelity`` (``robustness.py``)
- robustness: ``max_sensitivity``; randomisation: ``random_logit``, ``randomisation``
- complexity: ``sparseness``, ``complexity``; localisation (a box or mask is needed):
  ``pointing_game``, ``relevance_mass`` (``maps.py``)

Attributions are (N, C or 1, H, W) for normalised images (N, C, H, W). Metrics that explain
again (max-sensitivity, random logit, randomisation) need ``method=`` (and its ``options=``):
the attribution method that made the map. Perturbed copies run in batches of ``batch_size``
(default ``points_per_pass``: 16 on the CPU while convsight keeps freed memory, else 1; 32
elsewhere), without gradients where none are needed.

>>> cam = convsight.attribute(net, x, method='gradcam')
>>> convsight.metric("road", net, x, cam)                                 # (N,)
>>> convsight.metric("max_sensitivity", net, x, cam, method='gradcam')
>>> convsight.metric("pointing_game", net, x, cam, box=(40, 60, 180, 200))
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from ..attribute import METHODS, image_batch
from ..errors import ConvsightError
from ..models import as_network
from ..targets import Target, evaluate
from ..units import did_you_mean
from .maps import complexity, pointing_game, region_mask, relevance_mass, sparseness
from .robustness import infidelity, max_sensitivity, random_logit, randomisation
from .faithfulness import faithfulness, pixel_scores, points_per_pass
from .road import DEFAULT_PERCENTAGES, MEASURES, ORDERS, check_percentages, imputed_batches, \
    removal_sets
from .sanity import fixed_targets

SETTINGS = {
    "deletion": {"steps": 50, "baseline": None, "batch_size": None, "region": None},
    "insertion": {"steps": 50, "baseline": None, "batch_size": None, "region": None},
    "road": {"percentages": DEFAULT_PERCENTAGES, "order": "combined", "measure": "probability",
             "noise": 0.01, "seed": 0, "batch_size": None},
    "infidelity": {"samples": 10, "noise_std": 0.1, "normalize": True, "noise": None, "seed": 0,
                   "batch_size": None},
    "max_sensitivity": {"method": None, "options": None, "samples": 10, "radius": 0.02,
                        "noise": None, "seed": 0, "batch_size": None},
    "random_logit": {"method": None, "options": None, "classes": None, "seed": 42},
    "randomisation": {"method": None, "options": None, "seed": 0},
    "sparseness": {},
    "complexity": {},
    "pointing_game": {"box": None, "mask": None, "absolute": False},
    "relevance_mass": {"box": None, "mask": None, "absolute": False},
}
METRICS = tuple(SETTINGS)
HIGHER_IS_BETTER = {"deletion": False, "insertion": True, "road": True, "infidelity": False,
                    "max_sensitivity": False, "random_logit": False, "randomisation": False,
                    "sparseness": True, "complexity": False, "pointing_game": True,
                    "relevance_mass": True}
PAPERS = {
    "deletion": "Petsiuk et al. 2018 (RISE)", "insertion": "Petsiuk et al. 2018 (RISE)",
    "road": "Rong et al. 2022 (ROAD)", "infidelity": "Yeh et al. 2019",
    "max_sensitivity": "Yeh et al. 2019", "random_logit": "Sixt et al. 2020",
    "randomisation": "Adebayo et al. 2018", "sparseness": "Chalasani et al. 2020",
    "complexity": "Bhatt et al. 2020", "pointing_game": "Zhang et al. 2018",
    "relevance_mass": "Arras et al. 2022",
}
NEEDS_METHOD = ("max_sensitivity", "random_logit", "randomisation")
NEEDS_REGION = ("pointing_game", "relevance_mass")


def check_name(name: Any) -> str:
    if name not in SETTINGS:
        raise ConvsightError(f"unknown metric {name!r}: valid metrics are {', '.join(METRICS)}."
                             f"{did_you_mean(str(name), list(METRICS))}")
    return name


def metric_settings(name: str, settings: dict[str, Any]) -> dict[str, Any]:
    """``settings`` checked against what metric ``name`` takes, with its defaults filled in."""
    allowed = SETTINGS[check_name(name)]
    unknown = sorted(set(settings) - set(allowed))
    if unknown:
        raise ConvsightError(f"metric {name} takes no setting {', '.join(unknown)}; its settings "
                             f"are {', '.join(allowed) or 'none'}")
    out = dict(allowed, **settings)
    if name in NEEDS_METHOD and out["method"] not in METHODS:
        raise ConvsightError(f"metric {name} explains again: give method= one of "
                             f"{', '.join(METHODS)} (the method that made the map), got "
                             f"{out['method']!r}")
    for key in ("samples", "steps"):
        v = out.get(key)
        if key in out and (not isinstance(v, int) or isinstance(v, bool) or v < 1):
            raise ConvsightError(f"{key} must be a positive integer, got {v!r}")
    if out.get("batch_size") is not None and (not isinstance(out["batch_size"], int)
                                              or out["batch_size"] < 1):
        raise ConvsightError(f"batch_size must be a positive integer, got {out['batch_size']!r}")
    if name == "road":
        if out["order"] not in ORDERS:
            raise ConvsightError(f"unknown ROAD order {out['order']!r}: valid are "
                                 f"{', '.join(ORDERS)}")
        if out["measure"] not in MEASURES:
            raise ConvsightError(f"unknown ROAD measure {out['measure']!r}: valid are "
                                 f"{', '.join(MEASURES)}")
        out["percentages"] = check_percentages(out["percentages"])
    return out


def class_targets(targets: list[Target], who: str) -> list[int]:
    classes = [t.class_index for t in targets]
    if any(c is None for c in classes):
        raise ConvsightError(f"{who} reads the class the model predicts: it needs class targets "
                             "(class:N, prob:N or the top class), not units")
    return classes  # type: ignore[return-value]


def road_curves(model: Any, images: torch.Tensor, attributions: Any, target: Any = None,
                percentages: Any = DEFAULT_PERCENTAGES, order: str = "morf",
                measure: str = "probability", noise: float = 0.01, seed: int = 0,
                batch_size: int | None = None) -> torch.Tensor:
    """ROAD curves (N, len(percentages)): the class probability (or 1.0 where the model still
    predicts the class, ``measure="accuracy"``) after removing each percentage of the pixels,
    most relevant first (``order="morf"``) or least relevant first (``"lerf"``)."""
    s = metric_settings("road", dict(percentages=percentages, order=order, measure=measure,
                                     noise=noise, seed=seed, batch_size=batch_size))
    if s["order"] == "combined":
        raise ConvsightError("road_curves draws one order: morf or lerf")
    net = as_network(model)
    x, _ = image_batch(images, net, "road")
    x = x.detach().to(net.device)
    targets = fixed_targets(net, x, target)
    rng = np.random.RandomState(seed)
    return _road(net, x, pixel_scores(attributions, x), targets, s, s["order"], rng)


def _road(net: Any, x: torch.Tensor, scores: torch.Tensor, targets: list[Target],
          s: dict[str, Any], order: str, rng: np.random.RandomState) -> torch.Tensor:
    classes = class_targets(targets, "ROAD")
    probs = [Target.probability(c) for c in classes]
    size = s["batch_size"] or points_per_pass(net.device)
    removed = removal_sets(scores, s["percentages"], order)
    out = torch.empty(x.shape[0], len(s["percentages"]), dtype=torch.float64)
    with torch.no_grad():
        for j, xs in imputed_batches(x, removed, float(s["noise"]), rng):
            for start in range(0, x.shape[0], size):
                part = slice(start, start + size)
                v, logits = evaluate(net, xs[part], probs[part], detach=True, fast=True)
                if s["measure"] == "accuracy":
                    v = (logits.argmax(1).cpu() == torch.tensor(classes[part])).double()
                out[part, j] = v.double().cpu()
    return out


def metric(name: str, model: Any, images: torch.Tensor, attributions: Any, target: Any = None,
           **settings: Any) -> torch.Tensor:
    """The metric ``name`` of ``attributions`` per image, a tensor (N,) (see the module
    docstring; docs/sanity.md lists every setting)."""
    s = metric_settings(check_name(name), settings)
    net = as_network(model)
    x, _ = image_batch(images, net, f"metric {name}")
    x = x.detach().to(net.device)
    pixel_scores(attributions, x)  # checks the shape
    attr = attributions[None] if attributions.dim() == 3 else attributions
    attr = attr.detach().to(x.device)
    n, _, h, w = x.shape
    if name in ("sparseness", "complexity"):
        return (sparseness if name == "sparseness" else complexity)(attr).float().cpu()
    if name in NEEDS_REGION:
        inside = region_mask(n, h, w, s["box"], s["mask"])
        score = pointing_game if name == "pointing_game" else relevance_mass
        return score(attr, inside, bool(s["absolute"])).float().cpu()
    if name in ("deletion", "insertion"):
        return faithfulness(net, x, attr, target, kind=name, **s)
    targets = fixed_targets(net, x, target)
    size = s.get("batch_size") or points_per_pass(net.device)
    opts = dict(s.get("options") or {})
    if name == "road":
        rng = np.random.RandomState(s["seed"])
        scores = pixel_scores(attr, x)
        curves = {o: _road(net, x, scores, targets, s, o, rng)
                  for o in (("morf", "lerf") if s["order"] == "combined" else (s["order"],))}
        if s["order"] == "combined":
            return (curves["lerf"] - curves["morf"]).mean(1).float()
        return curves[s["order"]].mean(1).float()
    if name == "infidelity":
        return infidelity(net, x, attr, targets, s["samples"], float(s["noise_std"]),
                                     bool(s["normalize"]), s["noise"], s["seed"], size)
    if name == "max_sensitivity":
        return max_sensitivity(net, x, attr, targets, s["method"], opts, s["samples"],
                                          float(s["radius"]), s["noise"], s["seed"], size)
    if name == "random_logit":
        return random_logit(net, x, attr, targets, s["method"], opts, s["classes"],
                                       s["seed"])
    return randomisation(net, x, attr, targets, s["method"], opts, s["seed"])
