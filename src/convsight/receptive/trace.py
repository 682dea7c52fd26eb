"""Record the ops a model really runs and carry receptive fields along them.

One forward pass runs under a ``TorchDispatchMode`` that sees every tensor operation (module or
functional: ``F.pad`` inside a forward, ``torch.cat``, ``+``...) with its actual arguments. Each
tensor derived from the input gets a state (``geometry.Tracked``): its layout and, per input axis,
the receptive field size, stride and padding of its units. Forward hooks read the state of each
layer's output at the moment the layer returns (later in-place ops may change that tensor).
Ops it does not know mark their outputs ``Broken``, and the caller falls back to the probe.
"""

from __future__ import annotations

import re
import weakref
from typing import Any, Callable, Sequence

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten, tree_map

from .geometry import (LABELS, Axis, Broken, Dims, MisalignedError, State, Tracked, regroup,
                       union_axes)

UPSAMPLING = re.compile(r"^_?(upsample|grid_sampler|col2im|conv_transpose|max_unpool|pixel_shuffle"
                        r"|cudnn_grid_sampler|_upsample)")
CHANNELWISE = {  # ops that act on each position separately (besides those tagged pointwise)
    "batch_norm", "native_batch_norm", "_native_batch_norm_legit",
    "_native_batch_norm_legit_no_training", "_batch_norm_impl_index", "cudnn_batch_norm",
    "miopen_batch_norm", "dropout", "dropout_", "native_dropout", "feature_dropout",
    "feature_dropout_", "alpha_dropout", "alpha_dropout_", "feature_alpha_dropout", "clone",
    "contiguous", "_to_copy", "to", "detach", "alias", "lift_fresh", "lift_fresh_copy", "type_as",
    "prelu", "_prelu_kernel", "resolve_conj", "resolve_neg", "expand", "expand_as", "_conj",
    "relu", "relu_", "hardtanh", "hardtanh_", "gelu", "silu", "silu_", "hardswish", "hardswish_",
    "hardsigmoid", "hardsigmoid_", "mish", "leaky_relu", "leaky_relu_", "elu", "elu_", "selu",
    "celu", "softplus", "rrelu", "threshold", "glu_pointwise",
}
CONSTANT = re.compile(r"^(zeros_like|ones_like|empty_like|full_like|rand_like|randn_like|"
                      r"randint_like|new_zeros|new_ones|new_empty|new_full|new_empty_strided|"
                      r"fill_|zero_|scalar_tensor|empty_strided)$")
SAME_SHAPE = {  # single-output ops whose output has their first input's shape (meta kernels are slow)
    "batch_norm", "instance_norm", "group_norm", "layer_norm", "dropout", "dropout_",
    "feature_dropout", "alpha_dropout", "hardtanh", "hardtanh_", "relu", "relu_", "relu6", "gelu",
    "silu", "silu_", "sigmoid", "sigmoid_", "hardswish", "hardswish_", "hardsigmoid", "clone",
    "contiguous", "leaky_relu", "leaky_relu_", "elu", "mish", "tanh"}
REDUCTIONS = {"mean", "sum", "nansum", "amax", "amin", "max", "min", "var", "std", "var_mean",
              "std_mean", "logsumexp", "prod", "norm", "linalg_vector_norm", "argmax", "argmin",
              "median", "nanmedian", "all", "any", "count_nonzero"}


def bind(func, args: Sequence[Any], kwargs: dict[str, Any]) -> dict[str, Any]:
    """The op's arguments by schema name, defaults filled in."""
    bound: dict[str, Any] = {}
    positional = 0
    for arg in func._schema.arguments:
        if not arg.kwarg_only and positional < len(args):
            bound[arg.name] = args[positional]
            positional += 1
        elif arg.name in kwargs:
            bound[arg.name] = kwargs[arg.name]
        elif arg.has_default_value():
            bound[arg.name] = arg.default_value
        else:
            bound[arg.name] = None
    return bound


def ntuple(value: Any, n: int) -> list[int]:
    if value is None:
        return []
    if isinstance(value, int):
        return [int(value)] * n
    values = [int(v) for v in value]
    return values * n if len(values) == 1 else values


class Tracer(TorchDispatchMode):
    """Propagates ``State`` from tensor to tensor for every op run inside it."""

    def __init__(self, extent: tuple[int, int]) -> None:
        super().__init__()
        self.extent = extent
        self._table: dict[int, tuple[weakref.ref, State]] = {}

    # --- the state table: keyed by tensor identity, entries die with their tensors
    def state(self, t: Any) -> State | None:
        if not isinstance(t, torch.Tensor):
            return None
        entry = self._table.get(id(t))
        if entry is None or entry[0]() is not t:
            return None
        return entry[1]

    def set_state(self, t: torch.Tensor, state: State | None) -> None:
        if state is None:
            self._table.pop(id(t), None)
        else:
            self._table[id(t)] = (weakref.ref(t), state)

    def start(self, x: torch.Tensor) -> None:
        n, c, h, w = x.shape
        dims: Dims = (((None, n),), ((None, c),), (("y", h),), (("x", w),))
        self.set_state(x, Tracked(dims, (Axis(1, 1, 0), Axis(1, 1, 0))))

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        out = self.run(func, args, kwargs)
        outputs = [t for t in tree_flatten(out)[0] if isinstance(t, torch.Tensor)]
        if not outputs:
            return out
        inputs = [t for t in tree_flatten((args, kwargs))[0] if isinstance(t, torch.Tensor)]
        if not any(self.state(t) is not None for t in inputs):
            for t in outputs:  # new constants, or a tracked tensor overwritten in place
                self.set_state(t, None)
            return out
        name = func.overloadpacket.__name__
        try:
            states = self.rule(func, name, bind(func, args, kwargs), inputs, outputs)
        except MisalignedError as exc:
            states = [Broken(f"paths merged by {name} are misaligned: {exc}", refused=True)]
        except Exception as exc:  # an op we model wrongly must never break the user's forward
            states = [Broken(f"{name}: {type(exc).__name__}: {exc}")]
        for i, t in enumerate(outputs):
            self.set_state(t, states[i] if i < len(states) else
                           Broken(f"extra output {i} of {name}"))
        return out

    def run(self, func, args, kwargs):
        """Run an op for its output shape only: on the meta device, giving zeros.

        Values do not matter for receptive fields, so the analysis costs far less than a forward
        pass. Ops that need real values (``.item()`` in data-dependent control flow) or have no
        meta kernel run for real, on those zeros. In-place ops just return their tensor.
        """
        tensors = [t for t in tree_flatten((args, kwargs))[0] if isinstance(t, torch.Tensor)]
        if not tensors:
            return func(*args, **kwargs)
        name = func.overloadpacket.__name__
        if name in SAME_SHAPE and isinstance(args[0], torch.Tensor) and len(func._schema.returns) == 1:
            return args[0] if name.endswith("_") else torch.zeros_like(args[0])
        try:
            meta = tree_map(lambda t: t.to("meta") if isinstance(t, torch.Tensor) else t,
                            (args, kwargs))
            shapes = func(*meta[0], **meta[1])
        except Exception:  # data-dependent (needs values) or no meta kernel
            return func(*args, **kwargs)
        if func._schema.is_mutable:
            if func.overloadpacket.__name__.endswith("_") and isinstance(shapes, torch.Tensor):
                return args[0]
            return func(*args, **kwargs)
        device = tensors[0].device
        return tree_map(lambda t: torch.zeros(t.shape, dtype=t.dtype, device=device)
                        if isinstance(t, torch.Tensor) else t, shapes)

    # --- rules
    def rule(self, func, name: str, a: dict[str, Any], inputs: list[torch.Tensor],
             outputs: list[torch.Tensor]) -> list[State | None]:
        out = outputs[0]
        first = next(t for t in inputs if self.state(t) is not None)
        broken = [s for s in map(self.state, inputs) if isinstance(s, Broken)]
        if CONSTANT.match(name):
            return [None] * len(outputs)
        if broken:
            return [min(broken, key=lambda b: not b.refused)] * len(outputs)
        if UPSAMPLING.match(name) or (name in ("convolution", "_convolution") and a.get("transposed")):
            return [Broken(f"upsampling ({name}): its units do not share one receptive field size "
                           "and stride, so convsight refuses to describe them", refused=True)]
        handler: Callable | None = getattr(self, f"op_{name.lstrip('_')}", None)
        if handler is not None:
            return handler(a, inputs, outputs)
        if name in CHANNELWISE or torch.Tag.pointwise in func.tags:
            return [self.merge(inputs, tuple(out.shape))] + [Broken(f"side output of {name}")] * (
                len(outputs) - 1)
        if re.match(r"^_?(conv\dd|convolution|convolution_mode|mkldnn_convolution)$", name):
            return [self.convolution(a, out)]
        if re.match(r"^(max|avg)_pool\dd(_with_indices)?$", name):
            return [self.pool(name, a, out)] + [Broken("pooling indices")] * (len(outputs) - 1)
        if re.match(r"^_?adaptive_(avg|max)_pool\dd$", name):
            return [self.adaptive(name, a, out)] * len(outputs)
        if name in REDUCTIONS:
            return [self.reduction(a, first, out)] * len(outputs)
        return [Broken(f"the trace does not know op {name}")] * len(outputs)

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
        return Tracked(layout, (axes[0], axes[1]), note)  # type: ignore[arg-type]

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
        return Tracked(tuple(layout), s.axes, s.note)

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
            return Tracked(layout, s.axes, s.note)
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
        return Tracked(tuple(layout), s.axes, s.note)

    # ops with a rule of their own, looked up by name as op_NAME (leading "_" dropped)
    def op_pad(self, a, inputs, outputs):
        mode = a.get("mode", "constant")
        if isinstance(mode, int):  # _pad_enum
            mode = ["constant", "reflect", "replicate", "circular"][mode]
        if mode == "circular":
            raise ValueError("circular padding wraps the image around")
        return [self.padded(a["self"] if "self" in a else a["input"], a["pad"], outputs[0])]

    op_pad_enum = op_pad

    def op_constant_pad_nd(self, a, inputs, outputs):
        return [self.padded(a["self"], a["pad"], outputs[0])]

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
        return Tracked(tuple(layout), s.axes, s.note)

    def op_reflection_pad1d(self, a, inputs, outputs):
        return [self.padded(a["self"], a["padding"], outputs[0])]

    op_reflection_pad2d = op_reflection_pad3d = op_replication_pad1d = op_reflection_pad1d
    op_replication_pad2d = op_replication_pad3d = op_reflection_pad1d

    def op_cat(self, a, inputs, outputs):
        out = outputs[0]
        dim = int(a["dim"]) % out.dim()
        tensors = [t for t in a["tensors"] if isinstance(self.state(t), Tracked)]
        if any(lab for t in tensors for lab, n in self.tracked(t).dims[dim] if n > 1):
            raise ValueError("concatenation along a spatial axis")
        return [self.merge(tensors, tuple(out.shape), skip=dim)]

    op_concat = op_concatenate = op_cat

    def op_stack(self, a, inputs, outputs):
        out = outputs[0]
        return [self.stacked(a["tensors"], int(a["dim"]) % out.dim(), out)]

    def stacked(self, tensors, dim: int, out: torch.Tensor) -> State:
        merged = self.merge(tensors, tuple(out.shape[:dim]) + tuple(out.shape[dim + 1:]))
        assert isinstance(merged, Tracked)
        layout = merged.dims[:dim] + (((None, int(out.shape[dim])),),) + merged.dims[dim:]
        return Tracked(layout, merged.axes, merged.note)

    def reshaped(self, x: torch.Tensor, out: torch.Tensor) -> State:
        s = self.tracked(x)
        layout = regroup(s.dims, tuple(int(v) for v in out.shape))
        if layout is None:
            raise ValueError(f"reshape {tuple(x.shape)} -> {tuple(out.shape)} splits a spatial axis")
        return Tracked(layout, s.axes, s.note)

    def op_view(self, a, inputs, outputs):
        return [self.reshaped(a["self"], outputs[0])]

    op_unsafe_view = op_reshape = op_reshape_alias = op_flatten = op_unflatten = op_view
    op_squeeze = op_unsqueeze = op_view_as = op_reshape_as = op_squeeze_ = op_unsqueeze_ = op_view

    def permuted(self, x: torch.Tensor, order: Sequence[int]) -> State:
        s = self.tracked(x)
        return Tracked(tuple(s.dims[int(d) % x.dim()] for d in order), s.axes, s.note)

    def op_permute(self, a, inputs, outputs):
        return [self.permuted(a["self"], a["dims"])]

    def op_transpose(self, a, inputs, outputs):
        x = a["self"]
        order = list(range(x.dim()))
        d0, d1 = int(a["dim0"]) % x.dim(), int(a["dim1"]) % x.dim()
        order[d0], order[d1] = order[d1], order[d0]
        return [self.permuted(x, order)]

    op_swapaxes = op_swapdims = op_transpose

    def op_t(self, a, inputs, outputs):
        x = a["self"]
        return [self.permuted(x, list(range(x.dim()))[::-1])]

    def op_movedim(self, a, inputs, outputs):
        x = a["self"]
        src = [int(d) % x.dim() for d in ntuple(a["source"], 1)]
        dst = [int(d) % x.dim() for d in ntuple(a["destination"], 1)]
        rest = [d for d in range(x.dim()) if d not in src]
        order: list[int] = [-1] * x.dim()
        for s_, d_ in zip(src, dst):
            order[d_] = s_
        it = iter(rest)
        order = [o if o >= 0 else next(it) for o in order]
        return [self.permuted(x, order)]

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
        return Tracked(tuple(layout), s.axes, s.note)

    def op_slice(self, a, inputs, outputs):
        x = a["self"]
        dim = int(a["dim"]) % x.dim()
        start = a.get("start") or 0
        start = max(0, int(start) + x.shape[dim] if int(start) < 0 else int(start))
        return [self.sliced(x, dim, min(start, x.shape[dim]), int(a.get("step") or 1), outputs[0])]

    def op_select(self, a, inputs, outputs):
        x = a["self"]
        dim = int(a["dim"]) % x.dim()
        index = int(a["index"]) % x.shape[dim]
        return [self.sliced(x, dim, index, 1, outputs[0], keep=False)]

    def op_split(self, a, inputs, outputs):
        x = a["self"]
        dim = int(a.get("dim") or 0) % x.dim()
        states, start = [], 0
        for out in outputs:
            states.append(self.sliced(x, dim, start, 1, out))
            start += int(out.shape[dim])
        return states

    op_split_with_sizes = op_unsafe_split = op_unsafe_split_with_sizes = op_chunk = op_split

    def op_unbind(self, a, inputs, outputs):
        x = a["self"]
        dim = int(a.get("dim") or 0) % x.dim()
        return [self.sliced(x, dim, i, 1, out, keep=False) for i, out in enumerate(outputs)]

    def op_index_select(self, a, inputs, outputs):
        x = a["self"]
        dim = int(a["dim"]) % x.dim()
        s = self.tracked(x)
        if any(lab for lab, _ in s.dims[dim]):
            raise ValueError("index_select along a spatial axis")
        layout = list(s.dims)
        layout[dim] = ((None, int(outputs[0].shape[dim])),)
        return [Tracked(tuple(layout), s.axes, s.note)]

    def op_pixel_unshuffle(self, a, inputs, outputs):
        x, r = a["self"], int(a["downscale_factor"])
        s = self.mix(self.tracked(x), [x.dim() - 3], x.dim(), "pixel unshuffle")
        return [self.window(s, outputs[0], 2, [r, r], [r, r], [0, 0], [1, 1])]

    def normalised(self, x: torch.Tensor, dims: Sequence[int], outputs, why: str):
        s = self.mix(self.tracked(x), dims, x.dim(), why)
        return [s] + [Broken(f"statistics of {why}")] * (len(outputs) - 1)

    def op_layer_norm(self, a, inputs, outputs):
        x = a["input"]
        m = len(a["normalized_shape"])
        return self.normalised(x, range(x.dim() - m, x.dim()), outputs, "a layer norm")

    op_native_layer_norm = op_layer_norm

    def op_group_norm(self, a, inputs, outputs):
        x = a["input"]
        return self.normalised(x, range(1, x.dim()), outputs, "a group norm")

    op_native_group_norm = op_instance_norm = op_group_norm

    def op_softmax(self, a, inputs, outputs):
        x = a["self"]
        return self.normalised(x, [int(a["dim"])], outputs, "a softmax")

    op_log_softmax = op_softmax

    def op_copy_(self, a, inputs, outputs):
        if self.state(a["src"]) is None:
            return [None]
        return [self.merge([a["src"]], tuple(outputs[0].shape))]

    def op_linear(self, a, inputs, outputs):
        x, out = a["input"], outputs[0]
        if self.state(a["weight"]) is not None or self.state(a.get("bias")) is not None:
            raise ValueError("linear weights that depend on the input")
        s = self.mix(self.tracked(x), [x.dim() - 1], x.dim(), "a linear layer")
        return [Tracked(s.dims[:-1] + (((None, int(out.shape[-1])),),), s.axes, s.note)]

    def op_matmul(self, a, inputs, outputs):
        return [self.matmul(a["self"], a["other"], outputs[0])]

    def op_mm(self, a, inputs, outputs):
        return [self.matmul(a["self"], a["mat2"], outputs[0])]

    op_bmm = op_mm

    def op_addmm(self, a, inputs, outputs):
        key1, key2 = ("mat1", "mat2") if "mat1" in a else ("batch1", "batch2")
        state = self.matmul(a[key1], a[key2], outputs[0])
        if self.state(a["self"]) is not None:
            state = self.union_states(state, self.merge([a["self"]], tuple(outputs[0].shape)))
        return [state]

    op_baddbmm = op_addbmm = op_addmm

    def union_states(self, s1: State, s2: State) -> State:
        if isinstance(s1, Broken) or isinstance(s2, Broken):
            return s1 if isinstance(s1, Broken) else s2
        (ay, aligned_y), (ax, aligned_x) = (union_axes(s1.axes[0], s2.axes[0]),
                                            union_axes(s1.axes[1], s2.axes[1]))
        note = s1.note or s2.note or (None if aligned_y and aligned_x else "misaligned paths")
        return Tracked(s1.dims, (ay, ax), note)

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
            return Tracked(tuple(((None, int(n)),) for n in out.shape), union.axes, union.note)
        return Tracked(tuple(layout), parts[0].axes, parts[0].note)


def _prod(values) -> int:
    p = 1
    for v in values:
        p *= int(v)
    return p


def _describe(axis: Axis) -> str:
    return "whole input" if axis.whole else f"size {axis.size}, stride {axis.stride}, padding {axis.padding}"
