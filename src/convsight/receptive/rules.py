"""What ops do to receptive fields: the building blocks of the trace's per-op rules.

Each rule takes the states (``geometry.Tracked``) of an op's inputs and returns those of its
outputs: a sliding window (convolution, pool) grows the field and its stride, ``mix`` makes the
units see all positions along the dimensions an op mixes (global pooling, a linear layer over a
flattened map), ``merge`` takes the union over the paths an op joins (``+``, ``torch.cat``), and
reshapes, permutes, slices and pads move the spatial axes around. A rule raises ``ValueError`` for
what it cannot describe; the tracer then marks the output ``Broken``. ``ops.py`` says which op
uses which rule.
"""

from __future__ import annotations

import re
from typing import Any, Callable, Sequence

import torch

from .geometry import LABELS, Axis, Broken, State, Tracked, regroup, union_axes


def ntuple(value: Any, n: int) -> list[int]:
    """An op's int or list argument (kernel size, stride...) as ``n`` ints; None gives []."""
    if value is None:
        return []
    if isinstance(value, int):
        return [int(value)] * n
    values = [int(v) for v in value]
    return values * n if len(values) == 1 else values


class Rules:
    """The rules, reading the state of a tensor through ``state`` (the tracer's table).

    ``extent`` is the input's (height, width): an op may mix positions only when they cover it.
    """

    def __init__(self, state: Callable[[Any], State | None], extent: tuple[int, int],
                 local: bool = False, where: Callable[[], str] = lambda: "the model") -> None:
        self.state = state
        self.extent = extent
        self.local = local  # hold global-context gates fixed (``context="local"``)
        self.where = where  # the module running now, to name the gates held

    def held(self, ops: list) -> tuple[list, tuple[str, ...]]:
        """In local context: the operands left once gates are held fixed, and the gates' names.

        A gate is an operand computed from a reduction over every position that holds no
        position itself, merged into a map that has positions (``Tracked.is_gate``)."""
        if not self.local or all(s.is_gate for _, s in ops):
            return ops, ()
        gates = [s for _, s in ops if s.is_gate]
        if not gates:
            return ops, ()
        names = _joined(*(s.gates for s in gates), (self.where(),))
        return [(t, s) for t, s in ops if not s.is_gate], names

    def tracked(self, t: torch.Tensor) -> Tracked:
        s = self.state(t)
        assert isinstance(s, Tracked)
        if len(s.dims) != t.dim() or any(
                _prod(n for _, n in f) != size for f, size in zip(s.dims, t.shape)):
            raise ValueError("tensor layout lost")
        return s

    def mix(self, s: Tracked, dims: Sequence[int], ndim: int, why: str) -> Tracked:
        """The state after an op mixes all positions along tensor dims ``dims``."""
        dims = [d % ndim for d in dims]
        for label in LABELS:
            inside = [n for d in dims for lab, n in s.dims[d] if lab == label]
            outside = sum(n > 1 for d in range(ndim) if d not in dims
                          for lab, n in s.dims[d] if lab == label)
            if not inside:
                continue
            if outside and max(inside) > 1:
                raise ValueError(f"{why} mixes part of the {label} positions")
            axis = s.axis(label)
            if not axis.covers(s.grid(label), self.extent[LABELS.index(label)]):
                if max(inside) == 1:  # one position: nothing mixed, the box stays as it is
                    continue
                raise ValueError(f"{why} mixes positions that do not cover the whole input")
            s = s.with_axis(label, axis.as_whole())
        return s

    def merge(self, tensors: Sequence[Any], shape: tuple[int, ...], skip: int | None = None) -> State:
        """Union of the tracked operands broadcast to ``shape`` (``skip``: the cat dimension)."""
        nd = len(shape)
        ops = [(t, self.tracked(t)) for t in tensors if isinstance(self.state(t), Tracked)]
        ops, held = self.held(ops)
        dims: list[Any] = [None] * nd
        for t, s in ops:
            off = nd - t.dim()
            for jd, factors in enumerate(s.dims):
                j = jd + off
                if 0 <= j < nd and j != skip and t.shape[jd] == shape[j] and dims[j] is None:
                    dims[j] = factors
        layout = tuple(d if d is not None else ((None, shape[j]),) for j, d in enumerate(dims))
        varying = {lab for d in layout for lab, n in d if n > 1 and lab}
        axes: list[Axis | None] = [None, None]
        note = next((s.note for _, s in ops if s.note), None)
        for t, s in ops:
            for k, label in enumerate(LABELS):
                axis = s.axis(label)
                off = nd - t.dim()
                own = any(lab == label and n > 1 for jd, d in enumerate(s.dims) for lab, n in d
                          if t.shape[jd] == shape[jd + off])
                if label in varying and not own and not axis.whole:
                    if not axis.covers(s.grid(label), self.extent[k]):
                        raise ValueError("a map with fewer positions is broadcast over the positions")
                    axis = axis.as_whole()
                if axes[k] is None:
                    axes[k] = axis
                else:
                    before = axes[k]
                    axes[k], aligned = union_axes(before, axis)
                    if not aligned and note is None:
                        note = (f"paths merged there see input boxes with different centres "
                                f"(along {label}: {_describe(before)} vs {_describe(axis)})")
        gates = _joined(*(s.gates for _, s in ops), held)
        return Tracked(layout, (axes[0], axes[1]), note, gates)  # type: ignore[arg-type]

    def window(self, s: Tracked, out: torch.Tensor, n: int, kernel: list[int], stride: list[int],
               left: list[int], dilation: list[int]) -> Tracked:
        """Sliding windows over the last ``n`` dims (convolutions, pools, pixel unshuffle)."""
        nd = out.dim()
        layout = list(s.dims)
        for i in range(n):
            j = nd - n + i
            factors = s.dims[j]
            labels = [lab for lab, size in factors if lab and size > 1]
            if not labels and len(factors) > 1 or len(labels) > 1:
                raise ValueError("a window over a dimension that holds several axes")
            spatial = [lab for lab, _ in factors if lab]
            if len(factors) == 1 and spatial:
                label = spatial[0]
                s = s.with_axis(label, s.axis(label).window(kernel[i], stride[i], left[i],
                                                            dilation[i]))
                layout[j] = ((label, int(out.shape[j])),)
            else:
                layout[j] = ((None, int(out.shape[j])),)
        for j in range(nd - n):
            if _prod(size for _, size in layout[j]) != out.shape[j]:
                layout[j] = ((None, int(out.shape[j])),)
        return Tracked(tuple(layout), s.axes, s.note, s.gates)

    def convolution(self, a: dict[str, Any], out: torch.Tensor) -> State:
        x, weight = a["input"], a["weight"]
        s = self.tracked(x)
        n = weight.dim() - 2
        kernel = [int(k) for k in weight.shape[2:]]
        stride, dilation = ntuple(a.get("stride"), n), ntuple(a.get("dilation"), n)
        padding = a.get("padding")
        if isinstance(padding, str):
            left = [d * (k - 1) // 2 for k, d in zip(kernel, dilation)] if padding == "same" else [0] * n
        else:
            left = ntuple(padding, n)
        s = self.mix(s, [1], x.dim(), "a convolution over the channel dimension")
        return self.window(s, out, n, kernel, stride, left, dilation)

    def pool(self, name: str, a: dict[str, Any], out: torch.Tensor) -> State:
        n = int(re.search(r"(\d)d", name).group(1))  # type: ignore[union-attr]
        kernel = ntuple(a["kernel_size"], n)
        stride = ntuple(a.get("stride"), n) or kernel
        return self.window(self.tracked(a["self"]), out, n, kernel, stride,
                           ntuple(a.get("padding") or 0, n), ntuple(a.get("dilation") or 1, n))

    def adaptive(self, name: str, a: dict[str, Any], out: torch.Tensor) -> State:
        x = a["self"]
        s = self.tracked(x)
        n = int(re.search(r"(\d)d", name).group(1))  # type: ignore[union-attr]
        sizes_in = [int(v) for v in x.shape[-n:]]
        sizes_out = [int(v) for v in out.shape[-n:]]
        if all(o == 1 for o in sizes_out):
            s = self.mix(s, range(x.dim() - n, x.dim()), x.dim(), "adaptive pooling to one position")
            layout = s.dims[:x.dim() - n] + tuple(
                tuple((lab, 1) for lab, _ in f if lab) or ((None, 1),) for f in s.dims[x.dim() - n:])
            return Tracked(layout, s.axes, s.note, s.gates)
        if any(o > i for i, o in zip(sizes_in, sizes_out)):
            return Broken(f"adaptive pooling from {sizes_in} up to {sizes_out} repeats positions "
                          "(upsampling): convsight refuses to describe it; use a larger input_size",
                          refused=True)
        if any(i % o for i, o in zip(sizes_in, sizes_out)):
            raise ValueError(f"adaptive pooling from {sizes_in} to {sizes_out}: uneven bins")
        kernel = [i // o for i, o in zip(sizes_in, sizes_out)]
        return self.window(s, out, n, kernel, kernel, [0] * n, [1] * n)

    def reduction(self, a: dict[str, Any], x: torch.Tensor, out: torch.Tensor) -> State:
        s = self.tracked(x)
        dim = a.get("dim")
        dims = list(range(x.dim())) if dim is None or dim == [] else ntuple(dim, 1)
        dims = [d % x.dim() for d in dims]
        s = self.mix(s, dims, x.dim(), "a reduction")
        keep = bool(a.get("keepdim")) and out.dim() == x.dim()
        layout = []
        for j, factors in enumerate(s.dims):
            if j in dims:
                if keep:
                    layout.append(tuple((lab, 1) for lab, _ in factors if lab) or ((None, 1),))
            else:
                layout.append(factors)
        return Tracked(tuple(layout), s.axes, s.note, s.gates)


    def padded(self, x: torch.Tensor, pad: Sequence[int], out: torch.Tensor) -> State:
        """Reflect and replicate padding are treated like zeros: the box goes past the edge."""
        s = self.tracked(x)
        layout = list(s.dims)
        for i in range(len(pad) // 2):
            j = x.dim() - 1 - i
            spatial = [lab for lab, _ in s.dims[j] if lab]
            if spatial and len(s.dims[j]) == 1:
                s = s.with_axis(spatial[0], s.axis(spatial[0]).sliced(-int(pad[2 * i])))
                layout[j] = ((spatial[0], int(out.shape[j])),)
            elif any(lab for lab, n in s.dims[j] if n > 1):
                raise ValueError("padding a dimension that holds several axes")
            else:
                layout[j] = ((None, int(out.shape[j])),)
        return Tracked(tuple(layout), s.axes, s.note, s.gates)

    def stacked(self, tensors, dim: int, out: torch.Tensor) -> State:
        merged = self.merge(tensors, tuple(out.shape[:dim]) + tuple(out.shape[dim + 1:]))
        assert isinstance(merged, Tracked)
        layout = merged.dims[:dim] + (((None, int(out.shape[dim])),),) + merged.dims[dim:]
        return Tracked(layout, merged.axes, merged.note, merged.gates)

    def reshaped(self, x: torch.Tensor, out: torch.Tensor) -> State:
        s = self.tracked(x)
        layout = regroup(s.dims, tuple(int(v) for v in out.shape))
        if layout is None:
            raise ValueError(f"reshape {tuple(x.shape)} -> {tuple(out.shape)} splits a spatial axis")
        return Tracked(layout, s.axes, s.note, s.gates)

    def permuted(self, x: torch.Tensor, order: Sequence[int]) -> State:
        s = self.tracked(x)
        return Tracked(tuple(s.dims[int(d) % x.dim()] for d in order), s.axes, s.note, s.gates)

    def sliced(self, x: torch.Tensor, dim: int, start: int, step: int, out: torch.Tensor,
               keep: bool = True) -> State:
        s = self.tracked(x)
        dim %= x.dim()
        factors = s.dims[dim]
        spatial = [lab for lab, _ in factors if lab]
        layout = list(s.dims)
        if spatial and len(factors) == 1:
            s = s.with_axis(spatial[0], s.axis(spatial[0]).sliced(start, step))
            new: tuple = ((spatial[0], int(out.shape[dim])),) if keep else ()
        elif any(lab for lab, n in factors if n > 1):
            raise ValueError("slicing a dimension that holds several axes")
        else:
            new = ((None, int(out.shape[dim])),) if keep else ()
        if keep:
            layout[dim] = new
        else:
            del layout[dim]
        return Tracked(tuple(layout), s.axes, s.note, s.gates)

    def normalised(self, x: torch.Tensor, dims: Sequence[int], outputs, why: str):
        s = self.mix(self.tracked(x), dims, x.dim(), why)
        return [s] + [Broken(f"statistics of {why}")] * (len(outputs) - 1)

    def union_states(self, s1: State, s2: State) -> State:
        if isinstance(s1, Broken) or isinstance(s2, Broken):
            return s1 if isinstance(s1, Broken) else s2
        (ay, aligned_y), (ax, aligned_x) = (union_axes(s1.axes[0], s2.axes[0]),
                                            union_axes(s1.axes[1], s2.axes[1]))
        note = s1.note or s2.note or (None if aligned_y and aligned_x else "misaligned paths")
        return Tracked(s1.dims, (ay, ax), note, _joined(s1.gates, s2.gates))

    def matmul(self, x: torch.Tensor, y: torch.Tensor, out: torch.Tensor) -> State:
        if x.dim() < 2 or y.dim() < 2:
            raise ValueError("matrix-vector products")
        parts: list[Tracked] = []
        layout: list[Any] = [((None, int(n)),) for n in out.shape]
        for t, contracted, kept in ((x, -1, -2), (y, -2, -1)):
            if self.state(t) is None:
                continue
            s = self.mix(self.tracked(t), [t.dim() + contracted], t.dim(), "a matrix product")
            off = out.dim() - t.dim()
            for jd in range(t.dim() - 2):
                if t.shape[jd] == out.shape[jd + off]:
                    layout[jd + off] = s.dims[jd]
            layout[out.dim() + kept] = s.dims[t.dim() + kept]
            parts.append(s)
        if len(parts) == 2:  # both operands depend on the input (attention): mixes everything
            mixed = [self.mix(p, range(len(p.dims)), len(p.dims), "a product of two maps")
                     for p in parts]
            union = self.union_states(mixed[0], mixed[1])
            assert isinstance(union, Tracked)
            return Tracked(tuple(((None, int(n)),) for n in out.shape), union.axes, union.note,
                           union.gates)
        return Tracked(tuple(layout), parts[0].axes, parts[0].note, parts[0].gates)


def _joined(*names: tuple[str, ...]) -> tuple[str, ...]:
    """Gate names of several operands, each once, in the order met."""
    return tuple(dict.fromkeys(n for group in names for n in group))


def _prod(values) -> int:
    p = 1
    for v in values:
        p *= int(v)
    return p


def _describe(axis: Axis) -> str:
    return "whole input" if axis.whole else f"size {axis.size}, stride {axis.stride}, padding {axis.padding}"
