"""What a target can depend on: the layers that run below it and the pixels its neurons see.

A class score depends on every layer and every pixel. A unit of an inner layer does not: the
layers that run after it cannot change it, and a neuron (``LAYER:C@Y,X``) sees only its receptive
field, so its maps are zero elsewhere. Scoring a neuron's map over the whole image would measure
those zeros (two maps that agree on where the receptive field is would look alike whatever they
show inside it) and would delete its few pixels in the first step of a curve; so ``trust_score``
scores a neuron's map within its receptive field, and randomises the unit's own layer as its
"top layer".

>>> top_step(net, x, [parse_target("blocks.2:3@5,5")])   # ('blocks.2', ['blocks.2.expand_conv', ...])
>>> neuron_boxes(net, x, targets)                       # [(top, left, bottom, right) or None]
"""

from __future__ import annotations

from typing import Any, Sequence

import torch

from ..errors import ConvsightError
from ..receptive import receptive_field
from ..targets import Target
from .faithfulness import Box
from .randomize import layers_feeding, randomization_steps
from .similarity import absolute_map, spearman


def top_step(net: Any, x: torch.Tensor, targets: Sequence[Target],
             layers: Sequence[str] | None = None) -> tuple[str, list[str]]:
    """The top layer to randomise for these targets, as ``(name, [layer, ...])``: the model's
    last parameterised layer for targets that read the class scores; for units, the layer they
    read with every parameterised layer inside it (the first step of Adebayo et al.'s cascade by
    blocks: a lone batch norm at the end of a block would only rescale the unit's channel and
    leave the map's ranks as they were); for a unit of a layer without parameters (an
    activation), the last parameterised layer that runs before it. ``layers``:
    ``parameterised_layers(net, x)`` when the caller has it already."""
    steps = randomization_steps(net, x, "layer", layers)
    if any(t.reads_output for t in targets):
        return steps[0]
    reads = list(dict.fromkeys(name for t in targets for name in t.layers))
    own = [m for _, members in reversed(steps) for m in members
           if any(m == r or m.startswith(r + ".") for r in reads)]
    if own:
        return ", ".join(reads), own
    below = set(layers_feeding(net, x, reads, layers))
    for name, members in steps:
        if set(members) <= below:
            return name, members
    raise ConvsightError(f"no layer with parameters runs before {', '.join(map(str, targets))}: "
                         "there is nothing to randomise")


def neuron_boxes(net: Any, x: torch.Tensor, targets: Sequence[Target]) -> list[Box | None]:
    """Per target: the box of input pixels its neurons see (the union of their receptive fields,
    clipped to the image), or None when it may depend on every pixel (a class score, a channel's
    mean, a neuron whose receptive field is the whole image)."""
    fields: dict[str, Any] = {}
    out: list[Box | None] = []
    for t in targets:
        units = t.units
        if t.reads_output or not units or not all(u.is_neuron for u in units):
            out.append(None)
            continue
        boxes = []
        for u in units:
            if u.layer not in fields:
                try:
                    fields[u.layer] = receptive_field(net, u.layer, tuple(x.shape[-2:]))
                except ConvsightError as exc:
                    raise ConvsightError(f"scoring the map of neuron {u} needs its receptive "
                                         f"field, which convsight cannot find: {exc}") from exc
            rf = fields[u.layer]
            boxes.append(None if rf.is_global else rf.clipped_box(u.y, u.x))
        if any(b is None for b in boxes):
            out.append(None)
            continue
        out.append((min(b[0] for b in boxes), min(b[1] for b in boxes),
                    max(b[2] for b in boxes), max(b[3] for b in boxes)))
    return out


def map_correlation(a: torch.Tensor, b: torch.Tensor, boxes: Sequence[Box | None]
                    ) -> torch.Tensor:
    """Spearman rank correlation (N,) of the absolute maps ``a`` and ``b`` (N, C, H, W), each
    image within its box (the whole image where None): Adebayo et al.'s ``spearman_abs``."""
    out = []
    for i, box in enumerate(boxes):
        ai, bi = a[i:i + 1], b[i:i + 1]
        if box is not None:
            top, left, bottom, right = box
            ai = ai[..., top:bottom + 1, left:right + 1]
            bi = bi[..., top:bottom + 1, left:right + 1]
        out.append(spearman(absolute_map(ai).flatten(1), absolute_map(bi).flatten(1)))
    return torch.cat(out).float().cpu()
