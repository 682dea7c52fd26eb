"""Receptive field arithmetic along one axis, and the per-tensor state the tracer propagates.

An ``Axis`` says which input pixels unit ``u`` of a tensor sees along one spatial axis:
``[u * stride - padding, u * stride - padding + size - 1]`` (Araujo et al. 2019), or the whole
input when ``whole`` is set. A ``Tracked`` state adds the tensor's layout: for each tensor
dimension, the factors it is made of (``("y", 56)``, ``("x", 56)`` or ``(None, channels)``), so that
views, permutes and flattens keep track of where the spatial positions went.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

Factor = tuple[str | None, int]  # (axis label "y"/"x" or None, size)
Dims = tuple[tuple[Factor, ...], ...]  # factors of each tensor dimension, outermost first
LABELS = ("y", "x")


@dataclass(frozen=True)
class Axis:
    size: int
    stride: int
    padding: int
    whole: bool = False

    def window(self, kernel: int, stride: int, left: int, dilation: int = 1) -> "Axis":
        """After a sliding window (conv, pool) with this kernel, stride and left padding."""
        if self.whole:
            return replace(self, stride=self.stride * stride)
        span = dilation * (kernel - 1) + 1
        return Axis(self.size + (span - 1) * self.stride, self.stride * stride,
                    self.padding + left * self.stride)

    def sliced(self, start: int, step: int = 1) -> "Axis":
        """Output position ``u`` is input position ``start + u * step`` (slices, negative pads)."""
        if self.whole:
            return replace(self, stride=self.stride * step)
        return Axis(self.size, self.stride * step, self.padding - start * self.stride)

    def span(self, u: int) -> tuple[int, int]:
        lo = u * self.stride - self.padding
        return lo, lo + self.size - 1

    def covers(self, positions: int, extent: int) -> bool:
        """Do ``positions`` consecutive units together see every one of ``extent`` input pixels?"""
        if self.whole:
            return True
        return (self.stride <= self.size and self.span(0)[0] <= 0
                and self.span(positions - 1)[1] >= extent - 1)

    def as_whole(self) -> "Axis":
        return Axis(0, self.stride, 0, True)

    @property
    def twice_centre_shift(self) -> int:
        """2 * ((size - 1) / 2 - padding): where the centre of unit 0 lies, doubled (an integer)."""
        return self.size - 1 - 2 * self.padding


class MisalignedError(Exception):
    """Two paths that are merged see input boxes on different grids (different strides)."""


def union_axes(a: Axis, b: Axis) -> tuple[Axis, bool]:
    """The smallest axis that contains both (the receptive field over several paths).

    Returns ``(axis, aligned)``: aligned when both share stride and centre (Araujo et al.), then
    the union is simply the larger one. With equal strides but different centres the union is
    their hull; with different strides there is no common description and MisalignedError rises.
    """
    if a.whole or b.whole:
        return (a if a.whole else b), True
    if a.stride != b.stride:
        raise MisalignedError(f"strides {a.stride} and {b.stride} differ")
    if a.twice_centre_shift == b.twice_centre_shift:
        return (a if a.size >= b.size else b), True
    padding = max(a.padding, b.padding)
    last = max(a.size - 1 - a.padding, b.size - 1 - b.padding)
    return Axis(last + padding + 1, a.stride, padding), False


@dataclass(frozen=True)
class Tracked:
    """A tensor that depends on the input: its layout and the receptive field of its units."""

    dims: Dims
    axes: tuple[Axis, Axis]  # (y, x)
    note: str | None = None  # set when merged paths were misaligned (same stride, other centres)
    gates: tuple[str, ...] = ()  # global-context gates held fixed on the way (context="local")

    def axis(self, label: str) -> Axis:
        return self.axes[LABELS.index(label)]

    def with_axis(self, label: str, axis: Axis) -> "Tracked":
        axes = list(self.axes)
        axes[LABELS.index(label)] = axis
        return replace(self, axes=(axes[0], axes[1]))

    @property
    def is_gate(self) -> bool:
        """Computed from a reduction over every position and holding none: a global-context gate
        once it multiplies or is added to a map (squeeze-and-excitation, ECA, global context)."""
        return all(a.whole for a in self.axes) and self.grid("y") == 1 and self.grid("x") == 1

    def grid(self, label: str) -> int:
        """How many positions the tensor has along this input axis (1 if it has none)."""
        n = 1
        for dim in self.dims:
            for lab, size in dim:
                if lab == label:
                    n *= size
        return n


@dataclass(frozen=True)
class Broken:
    """A tensor whose receptive field the trace cannot describe.

    ``refused``: nothing can (upsampling, misaligned paths); otherwise the probe can take over.
    """

    reason: str
    refused: bool = False


State = Tracked | Broken


def flat_factors(dims: Dims) -> list[Factor]:
    return [f for dim in dims for f in dim]


def regroup(dims: Dims, shape: tuple[int, ...]) -> Dims | None:
    """The layout after a reshape to ``shape``, or None when it would split a spatial axis."""
    factors = [f for f in flat_factors(dims) if not (f[0] is None and f[1] == 1)]
    out: list[tuple[Factor, ...]] = []
    i = 0
    for size in shape:
        group: list[Factor] = []
        need = size
        if size == 1 and i < len(factors) and factors[i][1] == 1:
            group.append(factors[i])
            i += 1
        while need > 1:
            if i >= len(factors):
                return None
            label, n = factors[i]
            if n == 1 or need % n == 0:
                group.append(factors[i])
                need //= n
                i += 1
            elif label is None and n % need == 0:
                group.append((None, need))
                factors[i] = (None, n // need)
                need = 1
            else:
                return None
        out.append(tuple(group) or ((None, 1),))
    rest = factors[i:]
    if any(n != 1 for _, n in rest):
        return None
    if rest and out:
        out[-1] = out[-1] + tuple(rest)
    return tuple(out)
