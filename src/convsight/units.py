"""Layer and unit addressing: PyTorch's dotted module paths, units as ``LAYER:C`` or ``LAYER:C@Y,X``.

>>> parse_unit("blocks.5:12@3,4")
Unit(layer='blocks.5', channel=12, y=3, x=4)
"""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass

from torch import nn

from .errors import UnitError, UnknownLayerError

_CHANNEL_RE = re.compile(r"^\s*(?P<channel>-?\d+)(?:\s*@\s*(?P<y>-?\d+)\s*,\s*(?P<x>-?\d+))?\s*$")
_UNIT_RE = re.compile(r"^\s*(?P<layer>[^:@\s]+)\s*:" + _CHANNEL_RE.pattern[1:])


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


def parse_unit(text: str, layer: str | None = None) -> Unit:
    """Parse ``LAYER:CHANNEL`` or ``LAYER:CHANNEL@Y,X`` (layer names are dotted module paths);
    with ``layer``, ``text`` is ``CHANNEL`` or ``CHANNEL@Y,X`` of that layer."""
    if layer is not None:
        m = _CHANNEL_RE.match(text or "")
        if not m:
            raise UnitError(f"cannot read unit {text!r} of layer {layer}: write CHANNEL or "
                            "CHANNEL@Y,X, for example 12 or 12@3,4")
        y, x = m.group("y"), m.group("x")
        return Unit(layer, int(m.group("channel")), None if y is None else int(y),
                    None if x is None else int(x))
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
    raise UnknownLayerError(f"unknown layer {name!r}.{did_you_mean(name, names)} "
                            "Run `convsight layers` to list them all.")


def close_names(name: str, names: list[str], n: int = 5) -> list[str]:
    """Names like ``name``: by spelling, else by the last dotted part ("conv1" -> "layer1.0.conv1")."""
    close = difflib.get_close_matches(name, names, n=n, cutoff=0.5)
    return close or [c for c in names if c.split(".")[-1] == name.split(".")[-1]][:n]


def format_ranges(numbers) -> str:
    """``[80, 81, ..., 90, 95]`` -> ``"80-90, 95"``: every number, runs written as ranges."""
    runs: list[list[int]] = []
    for n in sorted(set(int(v) for v in numbers)):
        if runs and n == runs[-1][1] + 1:
            runs[-1][1] = n
        else:
            runs.append([n, n])
    return ", ".join(str(a) if a == b else f"{a}-{b}" for a, b in runs)


def did_you_mean(name: str, names: list[str]) -> str:
    """" Did you mean: a, b?" for the names closest to ``name`` ("" when none is close)."""
    close = close_names(name, names)
    return f" Did you mean: {', '.join(close)}?" if close else ""


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
