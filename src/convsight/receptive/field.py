"""``ReceptiveField``: which input pixels a unit of a layer sees, and cropping them out of an image."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np
import torch

from ..errors import ImageError


@dataclass(frozen=True)
class ReceptiveField:
    """Receptive field of the units of one layer, per axis (rows, columns), in input pixels.

    Unit (y, x) sees rows ``y * stride[0] - padding[0]`` to that plus ``size[0] - 1`` (and the
    same for columns); boxes may extend past the image. ``is_global``: some op mixed all positions
    (global pooling, squeeze-and-excitation, attention, flatten + Linear), so every unit sees the
    whole input. ``method`` tells how it was found: ``"trace"`` (the executed graph) or ``"probe"``
    (gradients of a linearised copy, when the trace could not follow an op). ``grid`` is the
    layer's number of positions (rows, columns). ``context`` is ``"exact"`` (every pixel the unit
    depends on) or ``"local"`` (global-context gates held fixed; ``gates`` names the modules where
    they were held). A probed field is always exact: the probe cannot hold gates.

    >>> rf = ReceptiveField("conv", (3, 3), (1, 1), (1, 1), False, (32, 32), "trace")
    >>> rf.box(0, 0)
    (-1, -1, 1, 1)
    """

    layer: str
    size: tuple[int, int]
    stride: tuple[int, int]
    padding: tuple[int, int]
    is_global: bool
    input_size: tuple[int, int]
    method: str = "trace"
    grid: tuple[int, int] | None = None
    context: str = "exact"
    gates: tuple[str, ...] = ()

    def box(self, y: int, x: int) -> tuple[int, int, int, int]:
        """(top, left, bottom, right) of unit (y, x), inclusive and not clipped to the image."""
        if self.is_global:
            return (0, 0, self.input_size[0] - 1, self.input_size[1] - 1)
        top = int(y) * self.stride[0] - self.padding[0]
        left = int(x) * self.stride[1] - self.padding[1]
        return (top, left, top + self.size[0] - 1, left + self.size[1] - 1)

    def clipped_box(self, y: int, x: int) -> tuple[int, int, int, int]:
        """The part of unit (y, x)'s box inside the input image (the whole image when global)."""
        top, left, bottom, right = self.box(y, x)
        h, w = self.input_size
        return max(top, 0), max(left, 0), min(bottom, h - 1), min(right, w - 1)

    def caption(self) -> str:
        """The field in a few words: "83 px, stride 16", "5x3 px, stride 2x1" or "global"."""
        tail = " (local)" if self.context == "local" else ""
        if self.is_global:
            return "global" + tail
        (h, w), (sy, sx) = self.size, self.stride
        size = f"{h}" if h == w else f"{h}x{w}"
        stride = f"{sy}" if sy == sx else f"{sy}x{sx}"
        return f"{size} px, stride {stride}{tail}"

    def centre(self, y: int, x: int) -> tuple[float, float]:
        """Centre of unit (y, x)'s box in input pixels (may be a half pixel)."""
        top, left, bottom, right = self.box(y, x)
        return ((top + bottom) / 2, (left + right) / 2)

    def draw(self, image: Any, y: int, x: int) -> Any:
        """``image`` (at the input resolution) with unit (y, x)'s box outlined and captioned: a
        ``convsight.pictures.Picture``, which a notebook displays. The canvas grows to show the
        part of the box outside the image; a global field outlines the whole image.

        >>> rf.draw(net.denormalize(x)[0], 3, 4)
        """
        from ..pictures import draw_box

        return draw_box(image, self.box(y, x), f"{self.layer} ({y}, {x}): {self.caption()}")

    def crop(self, image: Any, y: int, x: int, fill: float | Sequence[float] | None = None) -> Any:
        """The part of ``image`` that unit (y, x) sees, padded where the box leaves the image.

        ``image`` is a tensor (C, H, W) in [0, 1] or a PIL image, at the network's input resolution
        (``input_size``): box coordinates are input pixels. Outside the image the crop is filled
        with ``fill`` (a value or one per channel) or else the image's mean colour. The result has
        the box's size and the input's type.
        """
        return crop_box(image, self.box(y, x), fill)


def crop_box(image: Any, box: tuple[int, int, int, int], fill: float | Sequence[float] | None = None
             ) -> Any:
    """The (top, left, bottom, right) box (inclusive) of ``image``, a tensor (C, H, W) or a PIL
    image, padded with ``fill`` (default: the image's mean colour) where it leaves the image."""
    from PIL import Image

    top, left, bottom, right = (int(v) for v in box)
    if isinstance(image, Image.Image):
        array = np.asarray(image)
        chw = array[None] if array.ndim == 2 else array.transpose(2, 0, 1)
        out = _crop_array(chw.astype(np.float64), top, left, bottom, right, fill)
        out = np.clip(np.round(out), 0, 255).astype(array.dtype)
        return Image.fromarray(out[0] if array.ndim == 2 else out.transpose(1, 2, 0), image.mode)
    if isinstance(image, torch.Tensor):
        if image.dim() != 3:
            raise ImageError(f"crop needs an image tensor (C, H, W), got shape {tuple(image.shape)}")
        return _crop_tensor(image, top, left, bottom, right, fill)
    raise ImageError(f"crop needs a tensor (C, H, W) or a PIL image, got {type(image).__name__}")


def _fill_values(channels: int, mean: Sequence[float], fill: Any) -> list[float]:
    if fill is None:
        return [float(m) for m in mean]
    if isinstance(fill, (int, float)):
        return [float(fill)] * channels
    values = [float(f) for f in fill]
    if len(values) != channels:
        raise ImageError(f"fill has {len(values)} values but the image has {channels} channels")
    return values


def _paste(out: Any, image: Any, top: int, left: int, bottom: int, right: int) -> Any:
    """Copy the part of ``image`` (C, H, W) inside the box into the crop ``out`` (array or tensor)."""
    h, w = image.shape[-2:]
    y0, y1 = max(top, 0), min(bottom, h - 1)
    x0, x1 = max(left, 0), min(right, w - 1)
    if y0 <= y1 and x0 <= x1:
        out[:, y0 - top:y1 - top + 1, x0 - left:x1 - left + 1] = image[:, y0:y1 + 1, x0:x1 + 1]
    return out


def _crop_array(chw: np.ndarray, top: int, left: int, bottom: int, right: int, fill) -> np.ndarray:
    c = chw.shape[0]
    values = _fill_values(c, chw.reshape(c, -1).mean(axis=1), fill)
    out = np.empty((c, bottom - top + 1, right - left + 1), dtype=np.float64)
    out[:] = np.asarray(values).reshape(c, 1, 1)
    return _paste(out, chw, top, left, bottom, right)


def _crop_tensor(image: torch.Tensor, top: int, left: int, bottom: int, right: int, fill) -> torch.Tensor:
    c = image.shape[0]
    values = _fill_values(c, image.detach().reshape(c, -1).double().mean(dim=1).tolist(), fill)
    out = torch.tensor(values, dtype=image.dtype, device=image.device).view(c, 1, 1)
    out = out.expand(c, bottom - top + 1, right - left + 1).clone()
    return _paste(out, image, top, left, bottom, right)
