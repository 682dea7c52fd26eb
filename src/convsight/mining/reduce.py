"""One forward pass -> each listed layer's per-channel maximum and its position, for a batch.

The reduction runs inside the forward hook, before any later in-place operation
(``ReLU(inplace=True)``) can overwrite the layer's output, and without copying it. The forward
pass ends as soon as the deepest listed layer has run (``hooks.StopForward``).
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Callable, Iterator

import torch
from torch import nn

from ..hooks import LayerOutputs, forward_hooks, run_until_stopped
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
    outputs = LayerOutputs(layers, channel_maxima, stop=stop)

    def run(x: torch.Tensor) -> Maxima:
        outputs.reset()
        run_until_stopped(module, x)
        if outputs.missing:
            raise RuntimeError(f"layers {', '.join(sorted(outputs.missing))} did not run during "
                               "the forward pass")
        return dict(outputs.found)

    with forward_hooks(module, outputs.hooks()):
        yield run
