"""Fallback: measure receptive fields from gradient supports, for graphs the trace cannot follow.

A float64 copy of the model gets positive weights (scaled by 1/fan-in), zero biases and neutral
batch-norm statistics; rectifiers and other activations become identities and max pools become
sums, so that no gradient is zero by accident. The support of d(unit summed over channels)/d(input)
is then exactly the set of pixels the unit depends on. Four units (two at each corner) give size,
stride and padding per axis. The user's model is never touched: all of this runs on a deep copy.
"""

from __future__ import annotations

import copy
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.overrides import TorchFunctionMode

from .. import activations
from ..activations import with_inplace
from ..errors import ReceptiveFieldError
from ..hooks import forward_hooks
from .field import ReceptiveField
from .rules import ntuple

# Functions that become identities: every activation and clamp of convsight.activations except
# the smooth SQUASHING ones, which are left as they are.
IDENTITIES = with_inplace(activations.RECTIFIERS, activations.CLAMPS, activations.OTHERS,
                          activations.HARD_SQUASHING)


class Linearised(TorchFunctionMode):
    """Activations become identities and max pools become sums (for gradients that never vanish)."""

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        name = getattr(func, "__name__", "")
        if name in IDENTITIES and args and isinstance(args[0], torch.Tensor):
            return args[0] if name.endswith("_") or kwargs.get("inplace") else args[0] * 1
        if name.startswith("adaptive_max_pool") and args:
            pooled = getattr(F, name.replace("max", "avg"))(args[0], args[1] if len(args) > 1
                                                           else kwargs["output_size"])
            return (pooled, func(*args, **kwargs)[1]) if kwargs.get("return_indices") else pooled
        if name in ("max_pool1d", "max_pool2d", "max_pool3d") and args:
            return _sum_pool(func, args, kwargs)
        return func(*args, **kwargs)


def _sum_pool(func, args, kwargs) -> Any:
    """A max pool replaced by a window sum with the same geometry and output size."""
    real = func(*args, **kwargs)
    shape = (real[0] if isinstance(real, tuple) else real).shape
    names = ["input", "kernel_size", "stride", "padding", "dilation", "ceil_mode", "return_indices"]
    a = dict(zip(names, args), **kwargs)
    x = a["input"]
    n = x.dim() - 2 if len(shape) == x.dim() and x.dim() >= 3 else 1

    def nt(v, default):
        return ntuple(default if v is None or v == [] or v == () else v, n)
    kernel = nt(a["kernel_size"], 1)
    stride, padding, dilation = nt(a.get("stride"), kernel), nt(a.get("padding"), 0), nt(a.get("dilation"), 1)
    pads = []
    for i in reversed(range(n)):  # F.pad order: last dim first; extra on the right for ceil_mode
        size = x.shape[-n + i]
        need = (shape[-n + i] - 1) * stride[i] + dilation[i] * (kernel[i] - 1) + 1
        pads += [padding[i], max(need - size - padding[i], padding[i])]
    ones = torch.ones(x.shape[-n - 1], 1, *kernel, dtype=x.dtype, device=x.device)
    conv = getattr(F, f"conv{n}d")
    out = conv(F.pad(x, pads), ones, stride=stride, dilation=dilation, groups=x.shape[-n - 1])
    out = out[(...,) + tuple(slice(0, s) for s in shape[-n:])]
    return (out, real[1]) if isinstance(real, tuple) else out


def positive_copy(module: nn.Module) -> nn.Module:
    """A float64 eval-mode copy with positive weights, zero biases and neutral norm statistics."""
    clone = copy.deepcopy(module).double().eval()
    with torch.no_grad():
        for name, p in clone.named_parameters():
            if p.dim() >= 2:
                p.copy_((torch.rand_like(p) * 0.5 + 0.5) / max(1, p[0].numel()))
            elif name.endswith("bias"):
                p.zero_()
            else:
                p.fill_(1.0)
        for name, b in clone.named_buffers():
            if name.endswith("running_mean"):
                b.zero_()
            elif name.endswith("running_var"):
                b.fill_(1.0)
    return clone


def _axis(layer: str, units: list[int], spans: list[tuple[int, int]], n: int, extent: int):
    """(size, stride, padding, whole) along one axis from the clipped spans of the probed units."""
    if all(s == (0, extent - 1) for s in spans):
        return extent, 1, 0, True
    stride = None
    for i in range(len(units)):
        for j in range(i + 1, len(units)):
            du = units[j] - units[i]
            if du and spans[i][1] < extent - 1 and spans[j][1] < extent - 1:
                stride = (spans[j][1] - spans[i][1]) // du
            elif du and spans[i][0] > 0 and spans[j][0] > 0:
                stride = (spans[j][0] - spans[i][0]) // du
    if stride is None and n == 1:
        stride = 1
    padding = next((u * stride - s[0] for u, s in zip(units, spans) if s[0] > 0), None) \
        if stride is not None else None
    size = None
    if padding is not None:
        size = next((s[1] - (u * stride - padding) + 1 for u, s in zip(units, spans)
                     if s[1] < extent - 1), None)
    if stride is None or padding is None or size is None:
        raise ReceptiveFieldError(
            f"the probe cannot pin down the receptive field of layer {layer}: its boxes are cut by "
            f"the image border at a {extent}-pixel input; pass a larger input_size")
    return size, stride, padding, False


def probe_fields(module: nn.Module, layers: list[str], input_size: tuple[int, int],
                 channels: int) -> dict[str, ReceptiveField]:
    """Receptive fields of ``layers`` measured with gradients on a linearised float64 copy."""
    h, w = input_size
    device = next((p.device for p in module.parameters()), torch.device("cpu"))
    acts: dict[str, torch.Tensor] = {}

    def hook(name):
        def save(_m, _i, out):
            if isinstance(out, torch.Tensor):
                acts[name] = out.clone()
        return save
    # Random weights and input come from a forked generator: the user's random state is kept.
    cuda_devices = [device.index or 0] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=cuda_devices):
        torch.manual_seed(0)
        clone = positive_copy(module)
        x = (torch.rand(4, channels, h, w, dtype=torch.float64, device=device) * 0.5 + 0.5)
        x.requires_grad_(True)
        try:
            with forward_hooks(clone, {name: hook(name) for name in layers}), torch.enable_grad(), \
                    Linearised():
                clone(x)
        except Exception as exc:
            raise ReceptiveFieldError(f"the model does not run on a {h}x{w} input with {channels} "
                                      f"channels: {exc}") from None
    fields = {}
    for name in layers:
        out = acts.get(name)
        if out is None or not out.requires_grad:
            raise ReceptiveFieldError(f"layer {name} gives no tensor that depends on the input")
        grid = (int(out.shape[-2]), int(out.shape[-1])) if out.dim() >= 4 else (1, 1)
        units = [(0, 0), (1, 1), (grid[0] - 2, grid[1] - 2), (grid[0] - 1, grid[1] - 1)]
        units = [(min(max(u, 0), grid[0] - 1), min(max(v, 0), grid[1] - 1)) for u, v in units]
        target = sum(out[b, :, u, v].sum() if out.dim() >= 4 else out[b].sum()
                     for b, (u, v) in enumerate(units))
        (grad,) = torch.autograd.grad(target, x, retain_graph=True)
        spans = [[], []]
        for b in range(4):
            g = grad[b].abs().sum(0)
            rows, cols = torch.nonzero(g.sum(1)).flatten(), torch.nonzero(g.sum(0)).flatten()
            if not len(rows):
                raise ReceptiveFieldError(f"layer {name}: unit {units[b]} does not depend on the input")
            spans[0].append((int(rows[0]), int(rows[-1])))
            spans[1].append((int(cols[0]), int(cols[-1])))
        ay = _axis(name, [u for u, _ in units], spans[0], grid[0], h)
        ax = _axis(name, [v for _, v in units], spans[1], grid[1], w)
        whole = ay[3] or ax[3]
        fields[name] = ReceptiveField(name, (h, w) if whole else (ay[0], ax[0]), (ay[1], ax[1]),
                                      (0, 0) if whole else (ay[2], ax[2]), whole, (h, w), "probe",
                                      grid)
    return fields
