"""Weight images: what the first layer's filters and a fully connected first layer look for.

- First conv layer (3 input channels): one RGB tile per filter. Values are scaled symmetrically
  around 0 (grey = 0), so colour means sign: a red tile is a filter that adds red.
- Later conv layers: one grayscale tile per (filter, input channel), a row per filter.
- A Linear layer fed by an image: each hidden unit's weights reshaped to the input image.

>>> tiles = weight_images(convsight.load_model())     # the stem's 32 filters, (3, 3, 3) each

``convsight.figures.filter_grid`` lays them out as one picture.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
from torch import nn

from .errors import UnitError
from .models import as_network
from .pictures import symmetric_scale
from .units import check_layer, format_ranges

def first_conv_layer(model) -> str:
    """Name of the first ``nn.Conv2d`` in module order."""
    for name, m in as_network(model).module.named_modules():
        if isinstance(m, nn.Conv2d):
            return name
    raise UnitError("the model has no nn.Conv2d layer; pass a Conv2d or Linear layer name")


def _weight_layers(model) -> list[str]:
    return [n for n, m in as_network(model).module.named_modules()
            if isinstance(m, (nn.Conv2d, nn.Linear))]


def weight_kind(model, layer: str, input_shape: Sequence[int] | None = None) -> str:
    """How a layer's units are drawn: "rgb" (3 inputs), "gray" (1 input) or "stack" (more)."""
    mod = as_network(model).module.get_submodule(layer)
    if isinstance(mod, nn.Linear):
        channels = _linear_shape(model, mod, input_shape)[0]
    else:
        channels = mod.in_channels // mod.groups
    return "rgb" if channels == 3 else "gray" if channels == 1 else "stack"


def _linear_shape(model, mod: nn.Linear, input_shape: Sequence[int] | None = None) -> tuple[int, ...]:
    net = as_network(model)
    shape = tuple(input_shape) if input_shape else (len(net.mean), *net.input_size)
    if int(np.prod(shape)) != mod.in_features and not input_shape:
        side = int(round(np.sqrt(mod.in_features)))
        if side * side == mod.in_features:  # e.g. a 25x25 grayscale face network
            shape = (1, side, side)
    return shape


def weight_images(model, layer: str | None = None, input_shape: Sequence[int] | None = None,
                  units: Sequence[int] | None = None, per_unit_scale: bool = True
                  ) -> list[np.ndarray]:
    """One float image in [0, 1] per unit of ``layer`` (default: the first conv layer).

    Conv2d with 3 inputs per group: (kh, kw, 3) RGB tiles; with 1 input (depthwise): (kh, kw)
    grayscale; otherwise (I, kh, kw) stacks, one grayscale tile per input channel. Linear: each
    unit's weights reshaped to ``input_shape`` (C, H, W), by default the network's input (or a
    square grayscale image when the input count is a square). ``units`` picks units (default
    all). Scaling is symmetric around 0 (grey = 0), per unit unless ``per_unit_scale=False``
    (then one scale for the whole layer, so tiles compare in magnitude).
    """
    net = as_network(model)
    layer = layer or first_conv_layer(net)
    check_layer(net, layer)
    mod = net.module.get_submodule(layer)
    if not isinstance(mod, (nn.Conv2d, nn.Linear)):
        options = ", ".join(_weight_layers(net)[:8])
        raise UnitError(f"layer {layer} is a {type(mod).__name__}; weight images need an nn.Conv2d "
                        f"or nn.Linear layer, such as {options}")
    w = mod.weight.detach().float().cpu()
    n_units = w.shape[0]
    units = list(range(n_units)) if units is None else list(units)
    bad = [u for u in units if not 0 <= u < n_units]
    if bad:
        raise UnitError(f"unit{'s' if len(bad) > 1 else ''} {format_ranges(bad)} out of range for "
                        f"layer {layer}: valid units are 0..{n_units - 1}")
    if isinstance(mod, nn.Linear):
        shape = _linear_shape(net, mod, input_shape)
        if int(np.prod(shape)) != w.shape[1]:
            raise UnitError(f"layer {layer} takes {w.shape[1]} inputs, which cannot be shown as "
                            f"an image of shape {shape}; pass input_shape=(C, H, W) "
                            f"(--input-shape C,H,W on the command line) with C*H*W = {w.shape[1]}")
        w = w.reshape(n_units, *shape)
    w = w[units].numpy()
    if not per_unit_scale:
        w = w / max(float(np.abs(w).max()), 1e-12)
    kind = weight_kind(net, layer, input_shape)
    images = []
    for wu in w:
        wu = symmetric_scale(wu) if per_unit_scale else 0.5 + 0.5 * wu
        images.append(np.transpose(wu, (1, 2, 0)) if kind == "rgb" else
                      wu[0] if kind == "gray" else wu)
    return images
