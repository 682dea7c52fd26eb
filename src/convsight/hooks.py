"""The one place convsight registers forward hooks: for the length of a block, removed in ``finally``.

Every hook convsight puts on a model (capturing activations, reducing them while they are fresh,
tracing receptive fields, Grad-CAM) goes through ``forward_hooks``, so that no error, interrupt or
``StopForward`` can leave one behind (the habit of Captum's ``attr`` package).

>>> def keep(name):
...     return lambda module, inputs, output: seen.setdefault(name, output.shape)
>>> with forward_hooks(net.module, {"blocks.3": keep("blocks.3")}):
...     net.module(x)
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Any, Callable, Iterator, Mapping

import torch
from torch import nn

Hook = Callable[[nn.Module, Any, Any], Any]


class StopForward(Exception):
    """Raised by a hook to end a forward pass early, once every wanted layer has run."""


@contextmanager
def forward_hooks(module: nn.Module, hooks: Mapping[str, Hook]) -> Iterator[None]:
    """Register ``hooks[name]`` as a forward hook of submodule ``name`` of ``module`` for the block.

    A hook may return a replacement output, as PyTorch's forward hooks may. Every hook is removed
    when the block ends, also on errors; names must be valid module paths (callers check them
    first, with a helpful message).
    """
    handles = []
    try:
        for name, hook in hooks.items():
            handles.append(module.get_submodule(name).register_forward_hook(hook))
        yield
    finally:
        for handle in handles:
            handle.remove()


def run_until_stopped(module: nn.Module, x: torch.Tensor) -> Any:
    """``module(x)``, treating a hook's ``StopForward`` as a normal end (the output is then None)."""
    try:
        return module(x)
    except StopForward:
        return None
