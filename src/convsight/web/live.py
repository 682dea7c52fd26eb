"""The Live page's work on one frame: Yosinski et al.'s Deep Visualization Toolbox in the browser.

Yosinski, Clune, Nguyen, Fuchs and Lipson (2015), "Understanding Neural Networks Through Deep
Visualization", show a layer's activations live while a camera looks at the world, and for a
chosen unit its activation map and a backward pass (deconvnet) of it on the frame. ``LiveEngine``
does that work for the explorer's Live page (``routes/live.py`` carries frames over a WebSocket):

- it runs on its **own copy** of the explorer's network (made once, under ``model_lock``), so the
  other pages never wait for the frames and the frames never wait for them;
- a frame is decoded from the bytes the page sent (JPEG or PNG, bounded in bytes and pixels
  before decoding) and is never written anywhere;
- **one forward pass** per frame, stopped after the layer shown (``capture(stop=True)``) unless
  the top classes are asked for, which need the whole pass;
- **no gradients** unless a backward view (gradient, guided backprop, deconvnet) is on: the pass
  then runs with autograd, rectifiers following the view's rule (``rectifier_rule``), and one
  backward pass from the chosen unit (``LAYER:C``, the channel's mean over positions) to the
  input.

The activations go back as one byte per value, scaled as ``pictures.activation_montage`` scales
a layer (``norm="layer"``: one scale for the layer, so weak channels look weak) or per channel
(``norm="tile"``: each tile stretched to its own peak); layers with negative values are drawn
grey at zero. The chosen unit's map also goes back as float32, the backward view as a JPEG.
"""

from __future__ import annotations

import copy
import io
import json
import struct
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from typing import Any

import torch
from PIL import Image

import convsight
from convsight.attribute.rectifiers import backward_rule
from convsight.attribute.rules import RULES
from convsight.capture import capture
from convsight.cpu import govern
from convsight.images import to_tensor
from convsight.pictures import jpeg_bytes, montage_columns, render_attribution

from .explorer import Explorer
from .workbench import NotFound

VIEWS = ("off", *RULES)  # the backward view of the chosen unit: none or a rectifier rule
NORMS = ("layer", "tile")
MAX_FRAME_BYTES = 4 * 2**20  # a 224 px JPEG is about 15 kB; a camera frame as PNG a few MB
MAX_FRAME_SIDE = 4096
MAX_FRAME_PIXELS = 12_000_000
TOP = 5


class BadFrame(convsight.ConvsightError):
    """A frame that is not a picture the page could have sent (too large, not JPEG/PNG)."""


@dataclass(frozen=True)
class LiveSettings:
    """What the page shows: a layer, a unit of it, the backward view, tile scaling, classes."""

    layer: str
    unit: int = 0
    view: str = "off"
    norm: str = "layer"
    classes: bool = True

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class Frame:
    """What one frame gives: a JSON header and the binary parts it lists (name, bytes)."""

    header: dict[str, Any]
    parts: list[tuple[str, bytes]]

    def pack(self) -> bytes:
        """One WebSocket message: a 4-byte big-endian header length, the header as JSON (with
        each part's offset and length after it), then the parts."""
        offsets, at = {}, 0
        for name, data in self.parts:
            offsets[name] = [at, len(data)]
            at += len(data)
        head = json.dumps({**self.header, "parts": offsets}).encode("utf-8")
        return struct.pack(">I", len(head)) + head + b"".join(d for _, d in self.parts)


class LiveEngine:
    """Frames in, activations, top classes and a unit's backward view out (one at a time)."""

    def __init__(self, explorer: Explorer) -> None:
        self.explorer = explorer
        self.source = explorer.net
        self._lock = threading.Lock()  # one frame at a time on the copy
        self._net: convsight.Network | None = None
        # Frames run on one thread of their own: the pages' thread pool stays free, and the
        # memory a pass allocates is reused frame after frame (one malloc arena, not one per
        # pool thread).
        self.worker = ThreadPoolExecutor(1, thread_name_prefix="convsight-live")

    # ----- settings ---------------------------------------------------------------------------
    def layers(self) -> list[str]:
        """The layers one can watch: those with (channels, height, width) outputs."""
        return [r.name for r in self.explorer.layers.layers() if r.spatial]

    def default_settings(self) -> LiveSettings:
        """The first mined layer, else the middle one of the outer spatial layers (a block of a
        network rather than one of its parts: ``blocks.9``, not ``blocks.9.bn1``)."""
        layers = self.layers()
        if not layers:
            raise NotFound("this network has no layer with spatial activation maps")
        mined = [n for n in self.explorer.bench.mined_layers if n in layers]
        outer = [n for n in layers if n.count(".") <= 1] or layers
        return LiveSettings(layer=mined[0] if mined else outer[len(outer) // 2])

    def settings(self, data: Any, current: LiveSettings | None = None) -> LiveSettings:
        """Settings from the page's JSON (fields left out keep ``current``), checked: a 404-style
        ``NotFound`` names the bad value and what is valid."""
        if not isinstance(data, dict):
            raise NotFound("settings must be a JSON object such as {\"layer\": \"blocks.5\"}")
        base = (current or self.default_settings()).as_dict()
        unknown = sorted(set(data) - set(base))
        if unknown:
            raise NotFound(f"unknown setting {unknown[0][:40]!r}; settings are "
                           f"{', '.join(base)}")
        merged = {**base, **data}
        layer = merged["layer"]
        if not isinstance(layer, str) or layer not in self.layers():
            self.explorer.layers.layer(str(layer)[:80])  # unknown: "did you mean"
            raise NotFound(f"layer {str(layer)[:80]} has no spatial activation maps; pick one "
                           "with channels x height x width")
        if "layer" in data and data["layer"] != base["layer"] and "unit" not in data:
            merged["unit"] = 0  # a new layer starts at its first unit
        channels = self.explorer.layers.layer(layer).channels
        unit = merged["unit"]
        if isinstance(unit, bool) or not isinstance(unit, int) or not 0 <= unit < channels:
            raise NotFound(f"unit {str(unit)[:20]} does not exist in {layer}: valid units are "
                           f"0..{channels - 1}")
        for name, allowed in (("view", VIEWS), ("norm", NORMS)):
            if merged[name] not in allowed:
                raise NotFound(f"{name} must be one of {', '.join(allowed)}, got "
                               f"{str(merged[name])[:40]!r}")
        if not isinstance(merged["classes"], bool):
            raise NotFound("classes must be true or false")
        return LiveSettings(**merged)

    # ----- one frame --------------------------------------------------------------------------
    def decode(self, data: bytes) -> torch.Tensor:
        """The frame as the network's normalised input (1, C, H, W), from JPEG or PNG bytes; a
        frame of another size than the input is resized and centre-cropped as photos are."""
        net = self.source
        if len(data) > MAX_FRAME_BYTES:
            raise BadFrame(f"a frame has {len(data):,} bytes; the limit is {MAX_FRAME_BYTES:,}")
        try:
            im = Image.open(io.BytesIO(data), formats=("JPEG", "PNG"))
            w, h = im.size
            if w > MAX_FRAME_SIDE or h > MAX_FRAME_SIDE or w * h > MAX_FRAME_PIXELS:
                raise BadFrame(f"a frame of {w}x{h} pixels is too large: send at most "
                               f"{MAX_FRAME_SIDE} px a side and {MAX_FRAME_PIXELS:,} pixels")
            if im.format == "JPEG":
                im.draft("RGB", (net.input_size[1], net.input_size[0]))
            im = im.convert("RGB")
        except BadFrame:
            raise
        except (OSError, ValueError, Image.DecompressionBombError) as exc:
            raise BadFrame(f"a frame must be a JPEG or PNG picture ({type(exc).__name__})")
        exact = (im.height, im.width) == tuple(net.input_size)
        t = to_tensor(im, None if exact else tuple(net.input_size), net.resize_ratio,
                      net.channels)
        return net.normalize(t[None]).to(net.device)

    def process(self, data: bytes, settings: LiveSettings) -> Frame:
        """Decode one frame and compute what the page draws (see the module's docstring)."""
        start, cpu = time.perf_counter(), time.thread_time()
        govern()  # threads for the cores the browser and others leave free (convsight.cpu)
        x = self.decode(data)
        decoded = time.perf_counter()
        with self._lock:
            net = self._network()
            acts, logits, grad, stopped = self._run(net, x, settings)
        ran = time.perf_counter()
        frame = self._encode(net, acts, logits, grad, settings)
        frame.header.update(stopped=stopped, times={
            "decode": _ms(decoded - start), "model": _ms(ran - decoded),
            "encode": _ms(time.perf_counter() - ran), "cpu": _ms(time.thread_time() - cpu)})
        return frame

    def _network(self) -> convsight.Network:
        """The engine's own copy of the network, in eval mode, with no parameter gradients."""
        if self._net is None:
            with self.explorer.bench.model_lock:  # no other call's hooks on the module while copying
                net = copy.deepcopy(self.source)
            net.module.eval()
            net.module.requires_grad_(False)
            self._net = net
        return self._net

    @staticmethod
    def _run(net: convsight.Network, x: torch.Tensor, s: LiveSettings
             ) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None, bool]:
        """(activations (C, H, W), logits or None, input gradient or None, pass stopped early)."""
        stop = not s.classes
        out = None
        if s.view == "off":
            with torch.inference_mode(), capture(net, [s.layer], stop=stop, eval=False) as found:
                out = net.module(x)
            return found[s.layer][0].float(), _logits(out), None, out is None
        x = x.detach().clone().requires_grad_(True)
        rule = backward_rule(s.view)
        with torch.enable_grad(), rule, \
                capture(net, [s.layer], detach=False, stop=stop, eval=False) as found:
            out = net.module(x)
        a = found[s.layer]
        (grad,) = torch.autograd.grad(a[0, s.unit].mean(), x)
        return a[0].detach().float(), _logits(out), grad[0].detach(), out is None

    def _encode(self, net: convsight.Network, acts: torch.Tensor, logits: torch.Tensor | None,
                grad: torch.Tensor | None, s: LiveSettings) -> Frame:
        acts = acts.cpu()
        c, h, w = acts.shape
        signed = bool(acts.min() < 0)
        magnitude = acts.abs()
        layer_peak = float(magnitude.max())
        if s.norm == "tile":
            peak = magnitude.amax(dim=(1, 2), keepdim=True).clamp_min(1e-12)
        else:
            peak = torch.tensor(max(layer_peak, 1e-12))
        v = acts / peak
        if signed:
            v = 0.5 + 0.5 * v
        tiles = (v.clamp(0, 1) * 255).round().to(torch.uint8)
        unit_map = acts[s.unit].contiguous()
        at = int(unit_map.argmax())
        header: dict[str, Any] = {
            "settings": s.as_dict(), "shape": [c, h, w], "ncols": montage_columns(c, h, w),
            "signed": signed, "peak": layer_peak, "unit_peak": float(unit_map.max()),
            "unit_min": float(unit_map.min()), "unit_at": [at // w, at % w],
            "classes": _top(net, logits)}
        parts = [("tiles", tiles.numpy().tobytes()), ("unit", unit_map.numpy().tobytes())]
        if grad is not None:
            picture = render_attribution(grad.float().cpu(), "rgb")
            parts.append(("backward", jpeg_bytes(picture, quality=90)))
        return Frame(header, parts)


def _logits(out: Any) -> torch.Tensor | None:
    if isinstance(out, torch.Tensor) and out.dim() == 2:
        return out.detach()
    return None


def _top(net: convsight.Network, logits: torch.Tensor | None) -> list[list[Any]] | None:
    """[[class, name, probability], ...] for the top classes, or None without class scores."""
    if logits is None:
        return None
    p = torch.softmax(logits[0].float(), dim=0)
    values, index = p.topk(min(TOP, p.numel()))
    return [[int(i), net.class_name(int(i)), round(float(v), 4)]
            for v, i in zip(values.tolist(), index.tolist())]


def _ms(seconds: float) -> float:
    return round(seconds * 1000, 2)
