"""Gradient, guided backprop and deconvnet: d(target)/d(input) under a rectifier rule.

All three are one backward pass of the target w.r.t. the (normalised) input; they differ only in
what the rectifiers pass back (``rules.py``). ``"gradient"`` uses PyTorch's own autograd untouched.

>>> attr = input_gradient(net, x, "class:281", rule="guided")   # shaped like x
"""

from __future__ import annotations

import os
import sys
import warnings
from collections import Counter
from typing import Any, Sequence

import torch

from ..errors import ConvsightError
from ..models import Network
from ..targets import Target, evaluate, resolve_targets
from .rectifiers import backward_rule

TargetSpec = Any  # None | str | int | Target | Unit, or a list with one per image


def _outside_stacklevel() -> int:
    """``stacklevel`` for ``warnings.warn`` that points at the first caller outside this package."""
    here = os.path.dirname(os.path.abspath(__file__))
    frame, level = sys._getframe(1), 1
    while frame is not None and os.path.dirname(os.path.abspath(frame.f_code.co_filename)) == here:
        frame, level = frame.f_back, level + 1
    return level


def warn_other_activations(seen: Counter, method: str, others: str) -> None:
    """Name the non-rectifying activations a guided/deconv pass met, and the rule they got."""
    if not seen:
        return
    names = ", ".join(f"{name} ({n} call{'s' if n != 1 else ''})" for name, n in sorted(seen.items()))
    rule = ("the sign gate [R > 0] on top of their own derivative" if others == "gate"
            else "their ordinary gradient")
    title = {"guided": "guided backprop", "deconv": "deconvnet"}.get(method, method)
    warnings.warn(f"{title}: the model also uses activations that are not rectifiers: {names}. "
                  f"The {title} rule is defined for rectifiers; these backpropagate {rule} "
                  "(others='gate' or 'gradient', see docs/attribution.md).", UserWarning,
                  stacklevel=_outside_stacklevel())


def input_gradient(net: Network, x: torch.Tensor, targets: TargetSpec | Sequence[Target | None],
                   rule: str = "gradient", others: str = "gate", seen: Counter | None = None
                   ) -> torch.Tensor:
    """d(target)/d(x) for a normalised batch ``x``, with rectifiers following ``rule``.

    Non-rectifying activations met on the way are named in a warning, or, when ``seen`` is given,
    counted into it (calls per forward pass, from the first pass) for the caller to warn once.
    """
    if not (isinstance(targets, list) and all(t is None or isinstance(t, Target) for t in targets)
            and len(targets) == x.shape[0]):
        targets = resolve_targets(targets, x.shape[0])
    x = x.detach().clone().requires_grad_(True)
    with torch.enable_grad():
        with backward_rule(rule, others) as mode:
            values, _ = evaluate(net, x, targets)
        if values.requires_grad:
            (grad,) = torch.autograd.grad(values.sum(), x, allow_unused=True)
        else:
            grad = None
    grad = torch.zeros_like(x) if grad is None else grad  # the target does not depend on x
    if mode is not None:
        if seen is not None:
            if not seen:
                seen.update(mode.others)
        else:
            warn_other_activations(mode.others, rule, others)
    return grad


def chunked(fn, x: torch.Tensor, targets: list, batch_size: int | None) -> torch.Tensor:
    """``fn(images, targets)`` over chunks of ``batch_size`` images (all at once: None)."""
    size = batch_size or x.shape[0]
    if size < 1:
        raise ConvsightError(f"batch_size must be at least 1, got {batch_size}")
    parts = [fn(x[i:i + size], targets[i:i + size]) for i in range(0, x.shape[0], size)]
    return parts[0] if len(parts) == 1 else torch.cat(parts)


def rule_attribution(net: Network, x: torch.Tensor, targets: list, rule: str,
                     batch_size: int | None = None, others: str = "gate") -> torch.Tensor:
    """d(target)/d(x) under ``rule`` in chunks of ``batch_size`` images, warning once about
    non-rectifying activations."""
    seen: Counter = Counter()
    out = chunked(lambda xs, ts: input_gradient(net, xs, ts, rule, others, seen), x, targets,
                  batch_size)
    warn_other_activations(seen, rule, others)
    return out


def plain_gradient(net: Network, x: torch.Tensor, targets: TargetSpec = None,
                   batch_size: int | None = None) -> torch.Tensor:
    """The gradient (Simonyan et al. 2014): plain backpropagation to the input."""
    return rule_attribution(net, x, resolve_targets(targets, x.shape[0]), "gradient", batch_size)


def guided_backprop(net: Network, x: torch.Tensor, targets: TargetSpec = None,
                    batch_size: int | None = None, others: str = "gate") -> torch.Tensor:
    """Guided backpropagation (Springenberg et al. 2015)."""
    return rule_attribution(net, x, resolve_targets(targets, x.shape[0]), "guided", batch_size,
                            others)


def deconvnet(net: Network, x: torch.Tensor, targets: TargetSpec = None,
              batch_size: int | None = None, others: str = "gate") -> torch.Tensor:
    """The deconvnet (Zeiler & Fergus 2014) as a backward rule."""
    return rule_attribution(net, x, resolve_targets(targets, x.shape[0]), "deconv", batch_size,
                            others)
