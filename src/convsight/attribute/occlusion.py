"""Occlusion (Zeiler & Fergus 2014, §4.2): slide a patch of ``baseline`` over the image.

Each pixel's value is the mean, over the windows that cover it, of the target's drop
``value(image) - value(image with the window replaced by baseline)``. This is Captum's
``Occlusion`` definition: windows start at 0, stride, 2 stride, ... up to the first start at or
past ``size - window``; a last window that sticks out of the image is cut at the border. The window
covers every channel. The occluded copies run through the network in batches of ``batch_size``,
without gradients (default: 1 per pass on the CPU, 32 on other devices), for any ``Target`` (class, probability, channel, neuron, sums).

``baseline`` lives in the space of the images passed in (the normalised model input): ``0.0`` is
the mean colour, a tensor broadcastable to the images gives any other fill, and ``"blur"`` a
Gaussian-blurred copy of each image (kernel 11, sigma 5, as RISE).

>>> attr = occlusion(net, x, "class:281", window=16, stride=8)    # shaped like x
"""

from __future__ import annotations

import math
import numbers
from typing import Any

import torch

from ..capture import eval_mode
from ..errors import ConvsightError
from ..images import gaussian_blur
from ..models import Network
from ..progress import ProgressArg, progress_bar
from ..targets import evaluate, resolve_targets, with_top_class
from .gradients import TargetSpec



def default_batch_size(device: torch.device) -> int:
    """Images per forward pass for the no-gradient loops (occlusion, deletion, insertion): 1 on
    the CPU, 32 elsewhere. On the CPU a batch's activations are large blocks of fresh memory that
    the C library takes from the system and gives back on every pass (page faults): with glibc's
    default allocator one image per pass measured fastest (bench/trust.py: occlusion of a 224 px
    image on EfficientNet-Lite0, 169 windows, 3.0 s at 1 per pass, 4.3 s at 2, 6.0 s at 8)."""
    return 1 if torch.device(device).type == "cpu" else 32


def fill_like(x: torch.Tensor, baseline: Any, what: str = "baseline") -> torch.Tensor:
    """The images ``x`` (N, C, H, W) would become where fully replaced by ``baseline``: a number (in
    the space of ``x``), ``"blur"`` (Gaussian kernel 11, sigma 5) or a tensor broadcastable to x."""
    if isinstance(baseline, str):
        if baseline != "blur":
            raise ConvsightError(f"unknown {what} {baseline!r}: give a number in the space of the "
                                 "images (0 = the mean colour), 'blur' or a tensor")
        return gaussian_blur(x)
    if isinstance(baseline, numbers.Real) and not isinstance(baseline, bool):
        if not math.isfinite(float(baseline)):
            raise ConvsightError(f"{what} must be finite, got {baseline!r}")
        return torch.full_like(x, float(baseline))
    if isinstance(baseline, torch.Tensor):
        try:
            return baseline.to(x.device, x.dtype).expand_as(x).clone()
        except RuntimeError:
            raise ConvsightError(f"{what} of shape {tuple(baseline.shape)} does not broadcast to "
                                 f"the images {tuple(x.shape)}") from None
    raise ConvsightError(f"{what} must be a number, 'blur' or a tensor, got "
                         f"{type(baseline).__name__}")


def _pair(value: Any, name: str) -> tuple[int, int]:
    pair = (value, value) if not isinstance(value, (tuple, list)) else tuple(value)
    if len(pair) != 2 or not all(isinstance(v, numbers.Integral) and not isinstance(v, bool)
                                 for v in pair):
        raise ConvsightError(f"occlusion {name} must be a whole number of pixels or a pair "
                             f"(height, width), got {value!r}")
    if min(pair) < 1:
        raise ConvsightError(f"occlusion {name} must be at least 1 pixel, got {value!r}")
    return int(pair[0]), int(pair[1])


def window_starts(size: int, window: int, stride: int) -> list[int]:
    """Captum's window positions along one axis: 0, stride, ... while the previous window ends
    before the border; the last window may stick out (it is cut there)."""
    return [k * stride for k in range(math.ceil((size - window) / stride) + 1)]


def check_windows(shape: tuple[int, int], window: Any, stride: Any
                  ) -> tuple[tuple[int, int], tuple[int, int]]:
    """Validated (window, stride) pairs for images of ``shape`` (H, W)."""
    win, step = _pair(window, "window"), _pair(stride, "stride")
    for axis, size, w, s in zip(("height", "width"), shape, win, step):
        if w > size:
            raise ConvsightError(f"occlusion window {win[0]}x{win[1]} is larger than the image "
                                 f"{shape[0]}x{shape[1]}: give a window of at most the image size")
        if s > w and w < size:
            raise ConvsightError(f"occlusion stride {s} is larger than the window {w} ({axis}): "
                                 "pixels between windows would never be occluded; use a stride "
                                 "of at most the window")
    return win, step


def occlusion(net: Network, x: torch.Tensor, target: TargetSpec = None, window: Any = 16,
              stride: Any = 8, baseline: Any = 0.0, batch_size: int | None = None,
              progress: ProgressArg = False) -> torch.Tensor:
    """Occlusion map of ``target`` for a normalised batch ``x`` (N, C, H, W), shaped like ``x``
    (the same value in every channel of a pixel). See the module docstring."""
    batch_size = default_batch_size(x.device) if batch_size is None else batch_size
    if not isinstance(batch_size, int) or isinstance(batch_size, bool) or batch_size < 1:
        raise ConvsightError(f"batch_size must be a positive integer, got {batch_size!r}")
    n, _, h, w = x.shape
    (wh, ww), (sh, sw) = check_windows((h, w), window, stride)
    fill = fill_like(x, baseline)
    targets = resolve_targets(target, n)
    with torch.no_grad(), eval_mode(net.module):
        intact, out = evaluate(net, x, targets, detach=True, stop=True)
        if any(t is None for t in targets):
            targets = with_top_class(targets, out)
        windows = [(y, xx) for y in window_starts(h, wh, sh) for xx in window_starts(w, ww, sw)]
        rows = [(i, j) for i in range(n) for j in range(len(windows))]
        drops = torch.empty(n * len(windows), dtype=x.dtype, device=x.device)
        buffer = torch.empty((min(batch_size, len(rows)),) + tuple(x.shape[1:]), dtype=x.dtype,
                             device=x.device)
        with progress_bar(len(rows), "occlusion", "window", progress) as report:
            for start in range(0, len(rows), batch_size):
                chunk = rows[start:start + batch_size]
                idx = [i for i, _ in chunk]
                xs = buffer[:len(chunk)]
                torch.index_select(x, 0, torch.tensor(idx, device=x.device), out=xs)
                for r, (i, j) in enumerate(chunk):
                    y0, x0 = windows[j]
                    xs[r, :, y0:y0 + wh, x0:x0 + ww] = fill[i, :, y0:y0 + wh, x0:x0 + ww]
                values, _ = evaluate(net, xs, [targets[i] for i in idx], detach=True)
                drops[start:start + len(chunk)] = intact[idx] - values
                report(len(chunk))
    per_pixel = window_mean(drops.view(n, len(windows)), windows, (wh, ww), (h, w))
    return per_pixel.unsqueeze(1).expand_as(x).clone()


def window_mean(values: torch.Tensor, windows: list[tuple[int, int]], window: tuple[int, int],
                shape: tuple[int, int]) -> torch.Tensor:
    """Per pixel, the mean of ``values`` (N, windows) over the windows (top, left) covering it ->
    (N, H, W). Every pixel must be covered (``check_windows`` ensures it)."""
    (wh, ww), (h, w) = window, shape
    total = values.new_zeros(values.shape[0], h, w)
    count = values.new_zeros(h, w)
    for j, (y0, x0) in enumerate(windows):
        total[:, y0:y0 + wh, x0:x0 + ww] += values[:, j, None, None]
        count[y0:y0 + wh, x0:x0 + ww] += 1
    return total / count


def random_window_map(net: Network, x: torch.Tensor, options: dict, generator: torch.Generator
                      ) -> torch.Tensor:
    """A random map made like occlusion's (convsight.trust): a uniform number per window,
    averaged over the windows covering each pixel -> (N, 1, H, W)."""
    n, _, h, w = x.shape
    (wh, ww), (sh, sw) = check_windows((h, w), options.get("window", 16), options.get("stride", 8))
    windows = [(y, xx) for y in window_starts(h, wh, sh) for xx in window_starts(w, ww, sw)]
    values = torch.rand((n, len(windows)), generator=generator).to(x.device)
    return window_mean(values, windows, (wh, ww), (h, w)).unsqueeze(1)
