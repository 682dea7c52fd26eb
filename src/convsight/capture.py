"""Capture the outputs of named layers during a forward pass; hooks are always removed.

>>> with capture(net.module, ["blocks.3", "conv_head"]) as acts:
...     net(x)
>>> acts["blocks.3"].shape
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from typing import Iterable, Iterator

import torch
from torch import nn

from .cpu import keep_freed_memory
from .errors import UnitError
from .hooks import LayerOutputs, StopForward, forward_hooks
from .units import check_layer, layer_names


@contextmanager
def eval_mode(module: nn.Module) -> Iterator[nn.Module]:
    """Run a block with every submodule in eval mode, then restore each one's own mode.

    Forward passes in train mode would update BatchNorm statistics (changing the user's model)
    and make dropout random; convsight never wants either.
    """
    modes = [(m, m.training) for m in module.modules()]
    if not any(training for _, training in modes):  # already in eval mode: nothing to change
        yield module
        return
    try:
        module.eval()
        yield module
    finally:
        for m, training in modes:
            m.training = training


@contextmanager
def capture(model: nn.Module, layers: Iterable[str], *, detach: bool = True, clone: bool = True,
            strict: bool = True, stop: bool = False, eval: bool = True
            ) -> Iterator[dict[str, torch.Tensor]]:
    """Yield a dict filled with each layer's output during forward passes inside the block.

    ``detach=False`` keeps the autograd graph (for gradients w.r.t. the input). ``clone`` copies
    outputs so that later in-place operations (``ReLU(inplace=True)``) cannot change them; the copy
    stays differentiable. A module run several times keeps its last output. ``stop=True`` ends the
    forward pass (silently) once every listed layer has produced its output, saving the rest.
    ``strict=False`` skips outputs that are not tensors instead of failing. With ``eval=True``
    (default) the model runs in eval mode inside the block (see ``eval_mode``); each module's own
    train/eval mode is restored afterwards.
    """
    from .models import as_network

    keep_freed_memory()  # no page faults for every batch (convsight.cpu)
    module = as_network(model).module
    layers = list(dict.fromkeys(layers))
    for name in layers:
        check_layer(module, name)
    def keep(out: torch.Tensor) -> torch.Tensor:
        out = out.detach() if detach else out
        return out.clone() if clone else out

    outputs = LayerOutputs(layers, keep, stop=stop, strict=strict)
    acts = outputs.found
    with forward_hooks(module, outputs.hooks()), \
            (eval_mode(module) if eval else nullcontext()):
        try:
            yield acts
        except StopForward:
            pass


@dataclass
class LayerInfo:
    name: str
    type: str
    shape: tuple[int, ...] | None  # output shape without the batch dimension
    channels: int | None


def layer_table(model, input_size: tuple[int, int] | None = None) -> list[LayerInfo]:
    """Each layer with its type and output shape, from one forward pass at the input size."""
    from .models import as_network, undeclared_size_error

    net = as_network(model)
    size = input_size or net.input_size
    names = layer_names(net)
    x = torch.zeros(1, len(net.mean), *size, device=net.device)
    with capture(net.module, names, clone=False, strict=False) as acts, torch.no_grad():
        try:
            net.module(x)
        except RuntimeError as exc:
            if not net.input_size_assumed:
                raise
            raise undeclared_size_error(net, size, exc) from None
    rows = []
    module = net.module
    for name in names:
        out = acts.get(name)
        shape = tuple(out.shape[1:]) if isinstance(out, torch.Tensor) else None
        rows.append(LayerInfo(name, type(module.get_submodule(name)).__name__, shape,
                              shape[0] if shape else None))
    return rows


def layer_shape(model, layer: str) -> tuple[int, ...]:
    """Output shape (without batch) of one layer at the model's input size."""
    check_layer(model, layer)
    for row in layer_table(model):
        if row.name == layer:
            if row.shape is None:
                raise UnitError(f"layer {layer} does not output a tensor (or never runs)")
            return row.shape
    raise AssertionError(layer)


# Modules whose output has, by definition, as many channels (dim 1) as an attribute says: a
# target's channel is checked against it without running the model. Linear is not among them:
# on (N, T, F) inputs its dim 1 is T, not out_features.
_DECLARED = ((nn.modules.conv._ConvNd, "out_channels"),
             (nn.modules.batchnorm._NormBase, "num_features"), (nn.GroupNorm, "num_channels"))
_PROBED: "OrderedDict[tuple, dict]" = OrderedDict()  # architecture -> layer shapes (8 kept)
_PROBED_GUARD = threading.Lock()


def declared_channels(module: nn.Module) -> int | None:
    """The output channel count a convolution or normalisation layer declares, else None."""
    for kind, attr in _DECLARED:
        if isinstance(module, kind) and isinstance(getattr(module, attr, None), int):
            return int(getattr(module, attr))
    return None


def layer_channels(model, layer: str, measure: bool = False) -> int:
    """The number of channels (output dim 1) of ``layer``, known before any forward pass of the
    caller: from the layer's own declaration (``declared_channels``) when it has one, else from
    ``layer_table`` (one pass of one zero image at the model's input size), cached by
    architecture (names, types and hyperparameters of the modules, input size), so a model and
    its copies (randomised weights, another device) are probed once. ``measure``: from the probe
    even when the layer declares its channels (it also tells whether the model runs at all)."""
    from .models import as_network

    net = as_network(model)
    check_layer(net.module, layer)
    declared = None if measure else declared_channels(net.module.get_submodule(layer))
    if declared is not None:
        return declared
    shape = _probed_shapes(net).get(layer)
    if shape is None:
        raise UnitError(f"layer {layer} does not output a tensor (or never runs)")
    if len(shape) == 0:
        raise UnitError(f"layer {layer} outputs a scalar per image; it has no channels")
    return int(shape[0])


def _probed_shapes(net) -> dict[str, tuple[int, ...] | None]:
    """Every layer's output shape at the network's input size (``layer_table``), cached."""
    key = (tuple(net.input_size), len(net.mean),
           tuple((name, type(m), m.extra_repr()) for name, m in net.module.named_modules()))
    with _PROBED_GUARD:
        shapes = _PROBED.get(key)
        if shapes is not None:
            _PROBED.move_to_end(key)
            return shapes
    shapes = {row.name: row.shape for row in layer_table(net)}
    with _PROBED_GUARD:
        _PROBED[key] = shapes
        while len(_PROBED) > 8:
            _PROBED.popitem(last=False)
    return shapes
