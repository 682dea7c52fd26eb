"""Activation maps of one layer as one picture: a tile per channel, on one shared scale."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .canvas import grid


@dataclass
class MapGrid:
    """Where each channel's tile sits in an activation montage (the page maps clicks with it)."""

    channels: int
    ncols: int
    tile_h: int
    tile_w: int
    pad: int
    width: int
    height: int


def montage_columns(channels: int, height: int, width: int) -> int:
    """Tiles per row of a layer's montage: a bit wider than tall (the Live page uses it too)."""
    ncols = int(np.ceil(np.sqrt(channels * width / max(height, 1) * 1.6)))
    return max(1, min(ncols, channels))


def activation_montage(acts: np.ndarray, scale: int = 1, pad: int = 1
                       ) -> tuple[np.ndarray, MapGrid]:
    """(C, H, W) activations -> one picture with a tile per channel, and its layout.

    All tiles share one scale (the layer's largest magnitude), so a weak channel looks weak, as in
    Yosinski's toolbox. Non-negative layers are drawn black to white; signed ones grey at 0,
    brighter for positive and darker for negative.
    """
    acts = np.asarray(acts, dtype=np.float32)
    c, h, w = acts.shape
    peak = float(np.abs(acts).max()) or 1.0
    if float(acts.min()) >= 0:
        tiles = acts / peak
    else:
        tiles = 0.5 + 0.5 * acts / peak
    if scale > 1:
        tiles = np.repeat(np.repeat(tiles, scale, axis=1), scale, axis=2)
    ncols = montage_columns(c, h, w)
    picture = grid(list(tiles), ncols=ncols, pad=pad, background=0.35)
    layout = MapGrid(channels=c, ncols=ncols, tile_h=h * scale, tile_w=w * scale, pad=pad,
                     width=picture.shape[1], height=picture.shape[0])
    return picture, layout
