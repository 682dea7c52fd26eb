"""Layer and unit addressing: PyTorch's dotted module paths, units as ``LAYER:C`` or ``LAYER:C@Y,X``.

>>> parse_unit("blocks.5:12@3,4")
Unit(layer='blocks.5', channel=12, y=3, x=4)
"""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass

import torch
from torch import nn

from .errors import UnitError, UnknownLayerError

_UNIT_RE = re.compile(r"^\s*(?P<layer>[^:@\s]+)\s*:\s*(?P<channel>-?\d+)"
                      r"(?:\s*@\s*(?P<y>-?\d+)\s*,\s*(?P<x>-?\d+))?\s*$")


@dataclass(frozen=True)
class Unit:
    """A channel of a layer, or one neuron of it when ``y`` and ``x`` are given."""

    layer: str
    channel: int
    y: int | None = None
    x: int | None = None

    def __str__(self) -> str:
        pos = f"@{self.y},{self.x}" if self.y is not None else ""
        return f"{self.layer}:{self.channel}{pos}"

    @property
    def is_neuron(self) -> bool:
        return self.y is not None


def parse_unit(text: str) -> Unit:
    """Parse ``LAYER:CHANNEL`` or ``LAYER:CHANNEL@Y,X`` (layer names are dotted module paths)."""
    m = _UNIT_RE.match(text or "")
    if not m:
        raise UnitError(f"cannot read unit {text!r}: write LAYER:CHANNEL or LAYER:CHANNEL@Y,X, "
                        "for example blocks.5:12 or blocks.5:12@3,4")
    y, x = m.group("y"), m.group("x")
    return Unit(m.group("layer"), int(m.group("channel")),
                None if y is None else int(y), None if x is None else int(x))


def _module(model) -> nn.Module:
    from .models import as_network

    return as_network(model).module


def layer_names(model) -> list[str]:
    """Every addressable layer: the dotted path of each submodule, in definition order."""
    return [name for name, _ in _module(model).named_modules() if name]


def check_layer(model, name: str) -> str:
    """Return ``name`` if it is a layer of ``model``; else raise with the closest names suggested."""
    names = layer_names(model)
    if name in names:
        return name
    close = difflib.get_close_matches(name, names, n=5, cutoff=0.5)
    if not close:  # also try matching on the last component ("conv1" -> "layer1.0.conv1")
        close = [n for n in names if n.split(".")[-1] == name.split(".")[-1]][:5]
    hint = f" Did you mean: {', '.join(close)}?" if close else ""
    raise UnknownLayerError(f"unknown layer {name!r}.{hint} "
                            "Run `convsight layers` to list them all.")


def get_layer(model, name: str) -> nn.Module:
    """The submodule at dotted path ``name`` (with a helpful error if there is none)."""
    check_layer(model, name)
    return _module(model).get_submodule(name)


def check_unit(unit: Unit, shape: tuple[int, ...]) -> None:
    """Raise ``UnitError`` if ``unit`` does not fit a layer output of ``shape`` (without batch)."""
    if len(shape) == 0:
        raise UnitError(f"layer {unit.layer} outputs a scalar per image; it has no channels")
    channels = shape[0]
    if not 0 <= unit.channel < channels:
        raise UnitError(f"channel {unit.channel} is out of range for layer {unit.layer}: "
                        f"valid channels are 0..{channels - 1}")
    if unit.y is None:
        return
    if len(shape) != 3:
        raise UnitError(f"layer {unit.layer} has output shape {tuple(shape)}: no spatial positions, "
                        f"so write {unit.layer}:{unit.channel} without @Y,X")
    h, w = shape[1], shape[2]
    if not (0 <= unit.y < h and 0 <= unit.x < w):
        raise UnitError(f"position ({unit.y}, {unit.x}) is out of range for layer {unit.layer}: "
                        f"y must be in 0..{h - 1} and x in 0..{w - 1}")


@dataclass
class LayerInfo:
    name: str
    type: str
    shape: tuple[int, ...] | None  # output shape without the batch dimension
    channels: int | None


def layer_table(model, input_size: tuple[int, int] | None = None) -> list[LayerInfo]:
    """Each layer with its type and output shape, from one forward pass at the input size."""
    from .capture import capture
    from .models import as_network

    net = as_network(model)
    size = input_size or net.input_size
    names = layer_names(net)
    x = torch.zeros(1, len(net.mean), *size, device=net.device)
    with capture(net.module, names, clone=False, strict=False) as acts, torch.no_grad():
        net.module(x)
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
