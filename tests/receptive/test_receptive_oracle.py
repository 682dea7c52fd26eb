"""Independent receptive-field oracle (helpers only): the gradient-support probe
(positive weights, identity activations: the support of d(unit)/d(input) is the field).

Written for the tests only and shares no code with ``convsight.receptive``: a float64 copy of the
model with positive weights (1/fan-in), zero biases, neutral batch norm, activations swapped for
identities and max pools for average pools. The support of d(unit mixed over channels)/d(input)
is the set of input pixels the unit depends on; its bounding box must equal the traced box clipped
to the image.
"""

from __future__ import annotations

import copy
from contextlib import contextmanager

import torch
import torch.nn.functional as F
from torch import nn

ACTIVATIONS = (nn.ReLU, nn.ReLU6, nn.Hardtanh, nn.SiLU, nn.GELU, nn.Hardswish, nn.LeakyReLU,
               nn.Hardsigmoid)


def linear_positive_copy(module: nn.Module, dtype: torch.dtype = torch.float64) -> nn.Module:
    """float64 by default. float32 only for depthwise models at small inputs (PyTorch's float64
    depthwise backward is ~20x slower): an underflowed gradient could only shrink a support and
    make a test fail, never pass."""
    model = copy.deepcopy(module).to(dtype).eval()
    for name, child in list(model.named_modules()):
        if not name:
            continue
        parent = model.get_submodule(name.rpartition(".")[0]) if "." in name else model
        leaf = name.rpartition(".")[2]
        if isinstance(child, ACTIVATIONS):
            setattr(parent, leaf, nn.Identity())
        elif isinstance(child, nn.MaxPool2d):
            assert child.dilation in (1, (1, 1))
            setattr(parent, leaf, nn.AvgPool2d(child.kernel_size, child.stride, child.padding,
                                               ceil_mode=child.ceil_mode))
    torch.manual_seed(0)
    with torch.no_grad():
        for pname, p in model.named_parameters():
            if p.dim() >= 2:
                p.copy_((torch.rand_like(p) + 0.5) / p[0].numel())
            elif pname.endswith("bias"):
                p.zero_()
            else:
                p.fill_(1.0)
        for bname, b in model.named_buffers():
            if bname.endswith("running_mean"):
                b.zero_()
            elif bname.endswith("running_var"):
                b.fill_(1.0)
    return model


@contextmanager
def functional_max_pool_as_average():
    """Functional max pools (inception's F.max_pool2d) average instead, for this block only."""
    original = F.max_pool2d

    def average(x, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False,
                return_indices=False):
        return F.avg_pool2d(x, kernel_size, stride, padding, ceil_mode)
    F.max_pool2d = average
    try:
        yield
    finally:
        F.max_pool2d = original


def probe_boxes(model: nn.Module, layers: list[str], size: tuple[int, int],
                channels_last: frozenset[str] = frozenset()) -> dict[str, list[tuple[tuple[int, int], tuple[int, int, int, int] | None]]]:
    """For each layer: [((y, x), support box or None)] for its top-left, centre and bottom-right
    units. Outputs are (N, C, H, W), (N, H, W, C) for ``channels_last`` layers, or (N, F): one
    "unit" (0, 0)."""
    acts: dict[str, torch.Tensor] = {}
    hooks = [model.get_submodule(n).register_forward_hook(
        lambda _m, _i, out, n=n: acts.__setitem__(n, out.clone())) for n in layers]
    dtype = next(model.parameters()).dtype
    x = (torch.rand(3, 3, *size, dtype=dtype) + 0.5).requires_grad_(True)
    try:
        with functional_max_pool_as_average():
            model(x)
    finally:
        for h in hooks:
            h.remove()
    result = {}
    for name in layers:
        out = acts[name]
        if name in channels_last:
            out = out.permute(0, 3, 1, 2)
        # a random positive mix of the channels, not a plain sum: the channel sum of a layer
        # norm's output is constant, so its gradient would vanish
        mix = torch.rand(out.shape[1], dtype=out.dtype) + 0.5
        if out.dim() == 4:
            h, w = out.shape[-2:]
            units = [(0, 0), (h // 2, w // 2), (h - 1, w - 1)]
            target = sum((out[b, :, y, x_] * mix).sum() for b, (y, x_) in enumerate(units))
        else:
            units = [(0, 0)] * 3
            target = (out * mix).sum()
        (grad,) = torch.autograd.grad(target, x, retain_graph=True)
        boxes = []
        for b, unit in enumerate(units):
            hit = grad[b].abs().sum(0) > 0
            rows, cols = torch.nonzero(hit.any(1)).flatten(), torch.nonzero(hit.any(0)).flatten()
            box = None if not len(rows) else (int(rows[0]), int(cols[0]), int(rows[-1]), int(cols[-1]))
            boxes.append((unit, box))
        result[name] = boxes
    return result


def clip(box: tuple[int, int, int, int], size: tuple[int, int]) -> tuple[int, int, int, int]:
    top, left, bottom, right = box
    return (max(top, 0), max(left, 0), min(bottom, size[0] - 1), min(right, size[1] - 1))
