"""One forward pass -> each listed layer's per-channel maximum and its position, for a batch.

The reduction runs inside the forward hook, before any later in-place operation
(``ReLU(inplace=True)``) can overwrite the layer's output, and without copying it. The forward
pass ends as soon as the deepest listed layer has run (``capture``'s ``StopForward``).
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Callable, Iterator

import torch
from torch import nn

from ..hooks import StopForward, forward_hooks, run_until_stopped
from ..units import check_layer
from .topk import channel_maxima

Maxima = dict[str, tuple[torch.Tensor, torch.Tensor, torch.Tensor]]


@contextmanager
def layer_maxima(module: nn.Module, layers: list[str], stop: bool = True
                 ) -> Iterator[Callable[[torch.Tensor], Maxima]]:
    """Yield ``run(x) -> {layer: (values, y, x)}``, each (N, C), from one forward pass of ``x``.

    Hooks are removed on exit, also after errors.
    """
    for name in layers:
        check_layer(module, name)
    found: Maxima = {}
    remaining: set[str] = set()

    def make_hook(name: str):
        def hook(_mod: nn.Module, _inp, out) -> None:
            if not isinstance(out, torch.Tensor):
                raise TypeError(f"layer {name} returns {type(out).__name__}, not a tensor; "
                                "pick one of its submodules")
            found[name] = channel_maxima(out)
            remaining.discard(name)
            if stop and not remaining:
                raise StopForward
        return hook

    def run(x: torch.Tensor) -> Maxima:
        found.clear()
        remaining.update(layers)
        run_until_stopped(module, x)
        if remaining:
            raise RuntimeError(f"layers {', '.join(sorted(remaining))} did not run during the "
                               "forward pass")
        return dict(found)

    with forward_hooks(module, {name: make_hook(name) for name in layers}):
        yield run
