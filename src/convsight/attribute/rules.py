"""What a rectifier passes back in the backward pass (Springenberg et al. 2015, Fig. 1).

With forward input ``f`` and signal ``R`` arriving from above:

- ``"gradient"``: ``[f > 0] * R`` (plain backpropagation)
- ``"deconv"``:   ``[R > 0] * R`` (Zeiler & Fergus: ignores the forward input)
- ``"guided"``:   ``[f > 0] * [R > 0] * R``

For a rectifier with an upper bound (ReLU6, ``hardtanh(0, 6)``, ``clamp(0, 6)``) the forward mask is
``[0 < f < upper]``. The masks are read from the output ``y`` (``0 < y < upper`` exactly when
``0 < f < upper``), so in-place rectifiers, which overwrite ``f``, work too.

>>> y = Rectify.apply(x, None, "guided", False)   # relu(x) whose backward follows the guided rule
"""

from __future__ import annotations

from typing import Any

import torch

RULES = ("gradient", "guided", "deconv")


class Rectify(torch.autograd.Function):
    """``clamp(x, 0, upper)`` whose backward follows ``rule`` (see the module docstring)."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, upper: float | None, rule: str, inplace: bool
                ) -> torch.Tensor:
        if inplace:
            y = x.clamp_(0, upper)
            ctx.mark_dirty(x)
        else:
            y = x.clamp(0, upper)
        ctx.upper = upper
        ctx.rule = rule
        if rule != "deconv":
            ctx.save_for_backward(y)
        return y

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor | None, None, None, None]:
        if ctx.rule == "deconv":
            return grad.clamp(min=0), None, None, None
        (y,) = ctx.saved_tensors
        # The forward mask in one fused kernel, as in PyTorch's own backward of relu and hardtanh
        if ctx.upper is None:
            out = torch.ops.aten.threshold_backward(grad, y, 0)
        else:
            out = torch.ops.aten.hardtanh_backward(grad, y, 0, ctx.upper)
        if ctx.rule == "guided":
            out.clamp_(min=0)  # [R > 0], in place on our own fresh tensor
        return out, None, None, None


class PositiveSignal(torch.autograd.Function):
    """Identity forward; backward passes only the positive part ``[R > 0] * R`` of the signal.

    Put after a non-rectifying activation (SiLU, GELU, ...) it gives that activation the sign gate
    of guided backprop and deconvnet while keeping its own local derivative.
    """

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor) -> torch.Tensor:
        return x.view_as(x)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> torch.Tensor:
        return grad.clamp(min=0)
