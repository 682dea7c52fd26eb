"""Which receptive-field rule each op of a traced forward pass gets, by its ATen name.

``OpRules.rule`` picks one for every op that reads a tracked tensor: constants start fresh,
upsampling is refused, ops with a rule of their own (``op_NAME``, leading "_" dropped: padding,
concatenation, views, permutes, slices, norms, products) come next, then the channel-wise ops
(activations from ``convsight.activations``, batch norm, dropout, anything PyTorch tags
pointwise), convolutions, pools and reductions. Any other op breaks the trace, and the caller falls
back to the probe.
"""

from __future__ import annotations

import re
from typing import Any, Callable

import torch

from .. import activations
from ..activations import with_inplace
from .geometry import Broken, State, Tracked
from .rules import Rules, ntuple

UPSAMPLING = re.compile(r"^_?(upsample|grid_sampler|col2im|conv_transpose|max_unpool|pixel_shuffle"
                        r"|cudnn_grid_sampler|_upsample)")
CHANNELWISE = {  # ops that act on each position separately (besides those tagged pointwise)
    "batch_norm", "native_batch_norm", "_native_batch_norm_legit",
    "_native_batch_norm_legit_no_training", "_batch_norm_impl_index", "cudnn_batch_norm",
    "miopen_batch_norm", "dropout", "dropout_", "native_dropout", "feature_dropout",
    "feature_dropout_", "alpha_dropout", "alpha_dropout_", "feature_alpha_dropout", "clone",
    "contiguous", "_to_copy", "to", "detach", "alias", "lift_fresh", "lift_fresh_copy", "type_as",
    "_prelu_kernel", "resolve_conj", "resolve_neg", "expand", "expand_as", "_conj",
} | with_inplace(activations.ALL)
CONSTANT = re.compile(r"^(zeros_like|ones_like|empty_like|full_like|rand_like|randn_like|"
                      r"randint_like|new_zeros|new_ones|new_empty|new_full|new_empty_strided|"
                      r"fill_|zero_|scalar_tensor|empty_strided)$")
REDUCTIONS = {"mean", "sum", "nansum", "amax", "amin", "max", "min", "var", "std", "var_mean",
              "std_mean", "logsumexp", "prod", "norm", "linalg_vector_norm", "argmax", "argmin",
              "median", "nanmedian", "all", "any", "count_nonzero"}


class OpRules(Rules):
    """``rule`` for any op; ``op_NAME`` for the ops with a rule of their own."""

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

    def op_view(self, a, inputs, outputs):
        return [self.reshaped(a["self"], outputs[0])]

    op_unsafe_view = op_reshape = op_reshape_alias = op_flatten = op_unflatten = op_view
    op_squeeze = op_unsqueeze = op_view_as = op_reshape_as = op_squeeze_ = op_unsqueeze_ = op_view

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
        return [Tracked(tuple(layout), s.axes, s.note, s.gates)]

    def op_pixel_unshuffle(self, a, inputs, outputs):
        x, r = a["self"], int(a["downscale_factor"])
        s = self.mix(self.tracked(x), [x.dim() - 3], x.dim(), "pixel unshuffle")
        return [self.window(s, outputs[0], 2, [r, r], [r, r], [0, 0], [1, 1])]

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
        return [Tracked(s.dims[:-1] + (((None, int(out.shape[-1])),),), s.axes, s.note, s.gates)]

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
