"""One explanation, three questions: deletion AUC, insertion AUC, and does it need the weights?

``trust_score(model, images, target, method)`` is the one call behind the ``check`` command, the
explorer and the report. For each image it measures

- deletion and insertion AUC of the method's map (``faithfulness``), beside the same areas for
  random maps of the same kind (``reference.py``: pixel noise for gradient-like maps, noise on
  the Grad-CAM grid, noise per occlusion window; the mean of 3 draws): a map worth reading
  deletes faster and inserts faster than they do;
- the rank correlation (``spearman_abs``) of the map with the map of two randomised copies of the
  network: with the **top layer** re-initialised (for a class target: the model's last layer,
  which holds that class's own weights; for a unit: its own layer, since the layers above it
  cannot change it: ``scope.py``) and with **every layer** re-initialised (the end of Adebayo et
  al.'s cascade).

Gradient-like maps (gradient, guided, deconv, SmoothGrad, guided Grad-CAM) are ranked by their
magnitude (absolute values summed over colours, as the saliency picture shows them); Grad-CAM and
occlusion by their value.

>>> s = trust_score(net, x, "class:281", 'guided')
>>> s.deletion, s.insertion, s.random_deletion, s.top_layer_correlation, s.verdicts()
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Mapping

import torch

from ..attribute import attribute, image_batch
from ..attribute.registry import DEFAULT_TRUST, method_info
from ..models import as_network
from ..progress import ProgressArg
from ..targets import Target, fixed_targets
from .faithfulness import DEFAULT_STEPS, Faithfulness
from .randomize import parameterised_layers, randomized_copy
from .reference import curves_by_kind, random_draws, reference_of
from .sanity import check_methods, method_options
from .scope import map_correlation, neuron_boxes, top_step

SAME_AS_TRAINED = 0.9   # top layer random, rank correlation at least this: the map ignores it
STILL_ALIKE = 0.5       # every layer random, rank correlation at least this: the map is the image's


def ranking_map(method: str, attr: torch.Tensor) -> torch.Tensor:
    """The map whose order deletion and insertion follow (see the module docstring)."""
    return attr if method_info(method).signed else attr.abs()  # Method.signed: by value


@dataclass
class TrustScore:
    """Deletion, insertion and randomisation results of one method on N images."""

    method: str
    targets: list[Target]
    deletion: torch.Tensor                 # (N,) AUC, lower is better
    insertion: torch.Tensor                # (N,) AUC, higher is better
    random_deletion: torch.Tensor          # (N,) the same for random maps
    random_insertion: torch.Tensor
    top_layer_correlation: torch.Tensor    # (N,) spearman_abs with the top layer re-initialised
    randomized_correlation: torch.Tensor   # (N,) spearman_abs with every layer re-initialised
    top_layer: str = ""
    curves: dict[str, Faithfulness] = field(default_factory=dict, repr=False)
    random_curves: dict[str, torch.Tensor] = field(default_factory=dict, repr=False)

    @property
    def beats_random(self) -> torch.Tensor:
        """(N,) whether the map deletes and inserts faster than random maps."""
        return (self.deletion < self.random_deletion) & (self.insertion > self.random_insertion)

    @property
    def needs_weights(self) -> torch.Tensor:
        """(N,) whether the map changes with the top layer and with the whole network random."""
        top, full = self.top_layer_correlation, self.randomized_correlation
        return ~(top >= SAME_AS_TRAINED) & ~(full >= STILL_ALIKE)

    def verdict(self, i: int = 0) -> str:
        """Plain words for image ``i``."""
        good_del = bool(self.deletion[i] < self.random_deletion[i])
        good_ins = bool(self.insertion[i] > self.random_insertion[i])
        if good_del and good_ins:
            faith = "beats random maps at deletion and insertion"
        elif good_del or good_ins:
            faith = f"beats random maps only at {'deletion' if good_del else 'insertion'}"
        else:
            faith = "no better than random maps at deletion or insertion"
        top, full = float(self.top_layer_correlation[i]), float(self.randomized_correlation[i])
        if top >= SAME_AS_TRAINED:
            rand = (f"barely changes when the {self.top_layer} weights are random (rho {top:.2f}): "
                    "it ignores what the model learned there")
        elif full >= STILL_ALIKE:
            rand = (f"a fully random network draws a similar map (rho {full:.2f}): much of it "
                    "comes from the image or the architecture, not from learned weights")
        else:
            rand = "changes when the weights are randomised" + (
                " (it vanishes in a random network)" if math.isnan(full) else "")
        return f"{faith}; {rand}"

    def line(self, i: int = 0) -> str:
        """Image ``i``'s numbers in one line, as the explorer and the report show them under a
        picture: "deletion AUC 0.152 (random 0.109) · insertion AUC 0.194 (random 0.212) ·
        randomisation: fails". The check passes when the map changes with the top layer and
        with the whole network random (``needs_weights``)."""
        return (f"deletion AUC {_number(self.deletion[i])} (random "
                f"{_number(self.random_deletion[i])}) · insertion AUC "
                f"{_number(self.insertion[i])} (random {_number(self.random_insertion[i])}) · "
                f"randomisation: {'passes' if bool(self.needs_weights[i]) else 'fails'}")

    def summary(self, i: int = 0) -> dict[str, Any]:
        """Image ``i``'s numbers and verdict as plain JSON-ready values (for pages and caches)."""
        return {"method": self.method, "target": str(self.targets[i]),
                "deletion": float(self.deletion[i]), "insertion": float(self.insertion[i]),
                "random_deletion": float(self.random_deletion[i]),
                "random_insertion": float(self.random_insertion[i]),
                "top_layer": self.top_layer,
                "top_layer_correlation": float(self.top_layer_correlation[i]),
                "randomized_correlation": float(self.randomized_correlation[i]),
                "beats_random": bool(self.beats_random[i]),
                "needs_weights": bool(self.needs_weights[i]), "verdict": self.verdict(i)}

    def verdicts(self) -> list[str]:
        return [self.verdict(i) for i in range(len(self.deletion))]


def _number(v: Any) -> str:
    v = float(v)
    return "n/a" if math.isnan(v) else f"{v:.3f}"


def trust_score(model: Any, images: torch.Tensor, target: Any = None, method: str = DEFAULT_TRUST,
                steps: int = DEFAULT_STEPS, seed: int = 0,
                options: Mapping[str, Any] | None = None, reference: Mapping | None = None,
                batch_size: int | None = None, progress: ProgressArg = False) -> TrustScore:
    """Deletion AUC, insertion AUC (with random maps beside them) and the rank correlation after
    randomising the top layer and the whole network, for one ``method`` on normalised ``images``.

    ``options``: the method's options for ``attribute`` (e.g. ``{"window": 32}`` for occlusion);
    ``reference``: the ``random_reference`` of this method for these images and targets, when
    already computed. A neuron's map is scored within its receptive field, and the top layer of a
    unit is its own layer (``scope.py``).
    """
    (method,) = check_methods([method])
    net = as_network(model)
    x, _ = image_batch(images, net, "trust_score")
    x = x.detach().to(net.device)
    targets = fixed_targets(net, x, target)
    opts = method_options(method, options, seed)
    boxes = neuron_boxes(net, x, targets)
    region = boxes if any(b is not None for b in boxes) else None
    attr = attribute(net, x, targets, method=method, **opts)
    # the map's curves and its random references' share forward passes (faithfulness_runs)
    maps = [ranking_map(method, attr)]
    if reference is None:
        maps += random_draws(net, x, method, opts, seed=seed)
    per_kind = curves_by_kind(net, x, maps, targets, steps, batch_size, region, progress)
    curves = {k: runs[0] for k, runs in per_kind.items()}
    if reference is None:
        reference = reference_of({k: runs[1:] for k, runs in per_kind.items()})
    every = parameterised_layers(net, x)
    top_name, top_members = top_step(net, x, targets, every)
    correlations = []
    for layers in (top_members, every):
        other = randomized_copy(net, x, layers, seed=seed)
        correlations.append(map_correlation(
            attr, attribute(other, x, targets, method=method, **opts), boxes))
    return TrustScore(method, targets, curves["deletion"].auc, curves["insertion"].auc,
                      reference["deletion"].cpu(), reference["insertion"].cpu(), correlations[0],
                      correlations[1], top_name, curves,
                      {k: reference[f"{k}_curve"].cpu() for k in ("deletion", "insertion")
                       if f"{k}_curve" in reference})
