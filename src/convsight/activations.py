"""Activation functions by name: the one list that attribution and receptive fields share.

A name is the function's name wherever PyTorch defines it (``torch.nn.functional``, ``torch``,
``torch.Tensor``, ``torch._C._nn``) and the name of the ATen op that a dispatch mode sees
(``aten.relu``). The in-place variant adds "_" (``relu_``): :func:`with_inplace` lists both.
Every name is in exactly one group.

Who reads which group:

- guided backprop and deconvnet (``attribute/rectifiers.py``) give ``RECTIFIERS`` and the
  ``CLAMPS`` that rectify their rule, gate ``OTHERS`` (and a rectifier called with arguments that
  do not rectify) with the sign of the signal, and leave the squashing functions to autograd;
- the receptive-field trace (``receptive/ops.py``) knows that every one of them acts on each
  position separately;
- the gradient probe (``receptive/probe.py``) replaces all but the smooth ``SQUASHING`` functions by
  identities, so that no gradient is zero by accident.
"""

from __future__ import annotations

from typing import Iterable

RECTIFIERS: dict[str, str] = {"relu": "ReLU", "relu6": "ReLU6", "hardtanh": "Hardtanh",
                              "threshold": "Threshold"}
"""Rectifiers, ``max(0, x)``, capped above by ``relu6`` and ``hardtanh(x, 0, b)`` (Nair & Hinton
2010; Krizhevsky 2010 for ReLU6), with the name of their ``torch.nn`` module. ``hardtanh`` is a
rectifier only with ``min_val=0``, ``threshold`` only with threshold and value 0; called otherwise
they are ordinary activations."""

CLAMPS: tuple[str, ...] = ("clamp", "clip", "clamp_min", "clamp_max")
"""Clip values to bounds, which may be tensors (the output then broadcasts). Not activations, but a
clamp bounded below by 0 (``clamp(min=0)``, ``clamp_min(x, 0)``) is a rectifier; ``clamp_max``,
which has no lower bound, never is."""

OTHERS: dict[str, str] = {
    "silu": "SiLU", "gelu": "GELU", "hardswish": "Hardswish", "leaky_relu": "LeakyReLU",
    "elu": "ELU", "selu": "SELU", "celu": "CELU", "mish": "Mish", "softplus": "Softplus",
    "prelu": "PReLU", "rrelu": "RReLU"}
"""Activations that are not rectifiers (smooth or leaky), with the name of their ``torch.nn``
module: the guided backprop and deconvnet rules are not defined for them."""

HARD_SQUASHING: tuple[str, ...] = ("hardsigmoid",)
"""Piecewise-linear squashing, flat outside [-3, 3]; the gate of MobileNetV3's
squeeze-and-excitation (Howard et al. 2019). An ordinary operation for attribution."""

SQUASHING: tuple[str, ...] = ("sigmoid", "tanh")
"""Smooth squashing functions, often gates (squeeze-and-excitation): ordinary operations for
attribution, and left as they are by the probe (their gradient is never zero)."""

ALL: tuple[str, ...] = (*RECTIFIERS, *CLAMPS, *OTHERS, *HARD_SQUASHING, *SQUASHING)
"""Every activation-like function above: all act on each value separately."""


def with_inplace(*groups: Iterable[str]) -> frozenset[str]:
    """The names of ``groups`` and their in-place variants: ``with_inplace(["relu"])`` is
    ``{"relu", "relu_"}``."""
    return frozenset(n for group in groups for name in group for n in (name, name + "_"))
