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


@contextmanager
def running_modules(module: nn.Module) -> Iterator[list[str]]:
    """For the block, a list that holds the names of the modules running now, innermost last
    ("" is ``module`` itself): which module an op runs in. Hooks removed when the block ends."""
    stack: list[str] = []
    handles = []

    def enter(name: str) -> Callable[..., None]:
        return lambda _m, _i: stack.append(name)

    def leave(_m: nn.Module, _i: Any, _o: Any) -> None:
        if stack:
            stack.pop()
    try:
        for name, sub in module.named_modules():
            handles.append(sub.register_forward_pre_hook(enter(name)))
            handles.append(sub.register_forward_hook(leave))
        yield stack
    finally:
        for handle in handles:
            handle.remove()


class LayerOutputs:
    """Hooks that hand each named layer's output to ``keep`` and store what it returns in
    ``found[name]``; with ``stop``, the pass ends (``StopForward``) once every layer has run.

    ``keep`` runs inside the hook, before any later in-place op (``ReLU(inplace=True)``) can change
    the output. Outputs that are not tensors raise ``TypeError`` (``strict``) or are skipped.

    >>> outputs = LayerOutputs(["blocks.3"], lambda out: out.amax())
    >>> with forward_hooks(module, outputs.hooks()):
    ...     run_until_stopped(module, x)
    >>> outputs.found["blocks.3"]
    """

    def __init__(self, names: list[str], keep: Callable[[torch.Tensor], Any], *,
                 stop: bool = False, strict: bool = True) -> None:
        self.names, self.keep, self.stop, self.strict = list(names), keep, stop, strict
        self.found: dict[str, Any] = {}
        self.missing: set[str] = set(self.names)

    def reset(self) -> None:
        """Forget what an earlier forward pass found."""
        self.found.clear()
        self.missing = set(self.names)

    def hooks(self) -> dict[str, Hook]:
        return {name: self._hook(name) for name in self.names}

    def _hook(self, name: str) -> Hook:
        def hook(_module: nn.Module, _inputs: Any, out: Any) -> None:
            if not isinstance(out, torch.Tensor):
                if self.strict:
                    raise TypeError(f"layer {name} returns {type(out).__name__}, not a tensor; "
                                    "pick one of its submodules")
                return
            self.found[name] = self.keep(out)
            self.missing.discard(name)
            if self.stop and not self.missing:
                raise StopForward
        return hook


def run_until_stopped(module: nn.Module, x: torch.Tensor) -> Any:
    """``module(x)``, treating a hook's ``StopForward`` as a normal end (the output is then None)."""
    try:
        return module(x)
    except StopForward:
        return None
