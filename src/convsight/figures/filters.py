"""Weight images laid out as one picture: a layer's filters, or a fully connected layer's units.

>>> img = filter_grid(convsight.load_model())          # the stem's 32 filters, 3x3, upscaled
>>> convsight.pictures.save_png(img, "filters.png")
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from ..filters import first_conv_layer, weight_images, weight_kind
from ..models import as_network
from ..pictures import grid, upscale

MIN_TILE = 48  # upscale small kernels until a tile is at least this many pixels wide


def filter_grid(model, layer: str | None = None, input_shape: Sequence[int] | None = None,
                units: Sequence[int] | None = None, max_units: int = 64, max_inputs: int = 32,
                ncols: int | None = None, scale: int | None = None,
                per_unit_scale: bool = True) -> np.ndarray:
    """All of ``weight_images`` laid out as one picture (float (H, W[, 3]) in [0, 1]).

    RGB and grayscale tiles form a square-ish grid; stacks form one row per unit with a tile per
    input channel (at most ``max_units`` rows and ``max_inputs`` columns). Small kernels are
    upscaled with nearest neighbour (``scale``, default: to at least 48 px).
    """
    net = as_network(model)
    layer = layer or first_conv_layer(net)
    images = weight_images(net, layer, input_shape, units, per_unit_scale)
    if weight_kind(net, layer, input_shape) == "stack":
        images = images if units is not None else images[:max_units]
        h, w = images[0].shape[1:]
        factor = scale or max(1, -(-MIN_TILE // 2 // max(h, w)))
        rows = [grid([upscale(t, factor) for t in stack[:max_inputs]],
                     ncols=min(len(stack), max_inputs), pad=1, background=1.0) for stack in images]
        return grid(rows, ncols=1, pad=3, background=1.0)
    h, w = images[0].shape[:2]
    factor = scale or max(1, -(-MIN_TILE // max(h, w)))
    tiles = [upscale(t, factor) for t in images]
    return grid(tiles, ncols=ncols, pad=max(2, factor // 3), background=1.0)
