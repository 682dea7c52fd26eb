"""Receptive fields, exact, for the graph a PyTorch model really executes.

>>> import convsight
>>> net = convsight.load_model()
>>> rf = convsight.receptive_field(net, "blocks.5")
>>> rf.size, rf.stride, rf.box(0, 0)
((83, 83), (16, 16), (-26, -26, 56, 56))

One forward pass is traced op by op (convolutions, pools, ``F.pad``, ``torch.cat``, ``+``, views,
norms...), so residual adds, concatenations, dilation, ``ceil_mode``, depthwise and TF-style
asymmetric "same" padding are all seen as they run. Where the trace meets an op it does not know,
the answer comes from a gradient probe instead (``method="probe"``). See docs/receptive_fields.md.
"""

from __future__ import annotations

from contextlib import nullcontext
from typing import Iterable

import torch
from torch import nn

from ..errors import ReceptiveFieldError
from ..hooks import StopForward, forward_hooks, run_until_stopped, running_modules
from ..models import MAX_INPUT_SIDE, Network, as_network
from ..units import check_layer, layer_names
from .effective import DEFAULT_Q
from .effective_many import effective_boxes
from .field import ReceptiveField
from .geometry import Broken, State, Tracked
from .probe import probe_fields
from .trace import Tracer

__all__ = ["ReceptiveField", "ReceptiveFieldError", "receptive_field", "receptive_fields",
           "effective_boxes", "CONTEXTS", "DEFAULT_Q"]


def receptive_field(model: Network | nn.Module, layer: str,
                    input_size: tuple[int, int] | int | None = None, *,
                    allow_misaligned: bool = False, context: str = "exact") -> ReceptiveField:
    """The receptive field of the units of ``layer`` at ``input_size`` (default: the network's).

    >>> rf = receptive_field(net, "blocks.5")
    >>> top, left, bottom, right = rf.box(3, 4)     # input pixels seen by unit (3, 4)

    Raises ``UnknownLayerError`` for a layer that does not exist and ``ReceptiveFieldError`` when
    there is no single box per unit: after upsampling, or where paths with different centres meet
    (``allow_misaligned=True`` then returns the box covering both).

    ``context="local"`` holds global-context gates fixed (squeeze-and-excitation, ECA, global
    context, selective-kernel and split attention: any factor or addend computed from a reduction
    over every position and broadcast back): the box is the support of the unit's gradient with
    every gate detached, and ``rf.gates`` names the modules where gates were held.
    """
    return receptive_fields(model, [layer], input_size, allow_misaligned=allow_misaligned,
                            context=context)[layer]


def receptive_fields(model: Network | nn.Module, layers: Iterable[str] | None = None,
                     input_size: tuple[int, int] | int | None = None, *,
                     allow_misaligned: bool = False, context: str = "exact",
                     stop_early: bool = False) -> dict[str, ReceptiveField]:
    """Receptive fields of many layers from one analysis (all layers when ``layers`` is None).

    With ``layers=None`` layers without a receptive field (no tensor output, never run, after
    upsampling...) are left out; named layers raise instead. ``stop_early`` ends the traced pass
    once every named layer has run (a module called twice then gives its first call's field, as
    mining records its first call's output); by default it runs to the end (the last call's).

    >>> fields = receptive_fields(net, ["blocks.3", "conv_head"])
    >>> fields["conv_head"].size
    (851, 851)
    """
    check_context(context)
    net = as_network(model)
    size = _check_size(net.input_size if input_size is None else input_size)
    explicit = layers is not None
    known = layer_names(net)
    names = list(dict.fromkeys(layers)) if explicit else known  # type: ignore[arg-type]
    known_set = set(known)
    for name in names:
        if name not in known_set:
            check_layer(net, name)  # raises with suggestions
    try:
        states = trace_states(net, names, size, local=context == "local", stop_early=stop_early)
    except ReceptiveFieldError:
        raise
    except Exception:  # the forward does not run under the tracer: measure everything instead
        states = {name: Broken("the traced forward pass failed") for name in names}
    fields: dict[str, ReceptiveField] = {}
    to_probe: list[str] = []
    for name in names:
        state = states.get(name)
        try:
            if state is None:
                raise ReceptiveFieldError(f"layer {name} does not output a tensor that depends on "
                                          "the input (or never runs in the forward pass)")
            if isinstance(state, Broken):
                if state.refused:
                    raise ReceptiveFieldError(f"layer {name}: {state.reason}")
                to_probe.append(name)
                continue
            fields[name] = _field(name, state, size, allow_misaligned, context)
        except ReceptiveFieldError:
            if explicit:
                raise
    if to_probe:
        probed = probe_fields(net.module, to_probe, size, len(net.mean)) if explicit else \
            _probe_quietly(net, to_probe, size)
        fields.update(probed)
    return {name: fields[name] for name in names if name in fields}


def _probe_quietly(net: Network, names: list[str], size: tuple[int, int]) -> dict[str, ReceptiveField]:
    result = {}
    try:
        result.update(probe_fields(net.module, names, size, len(net.mean)))
    except ReceptiveFieldError:  # one bad layer: measure the others one by one
        for name in names:
            try:
                result.update(probe_fields(net.module, [name], size, len(net.mean)))
            except ReceptiveFieldError:
                pass
    return result


def _check_size(size: tuple[int, int] | int) -> tuple[int, int]:
    if isinstance(size, int):
        size = (size, size)
    try:
        h, w = (int(v) for v in size)
    except (TypeError, ValueError):
        raise ReceptiveFieldError(f"input_size must be (height, width) in pixels, got {size!r}") from None
    if h < 1 or w < 1:
        raise ReceptiveFieldError(f"input_size must be positive, got {size!r}")
    if max(h, w) > MAX_INPUT_SIDE:  # a trace at 100000 px would ask for terabytes
        raise ReceptiveFieldError(f"input_size {h}x{w} is too large: use 1 to {MAX_INPUT_SIDE} "
                                  "pixels per side")
    return h, w


CONTEXTS = ("exact", "local")


def check_context(context: str) -> None:
    if context not in CONTEXTS:
        raise ReceptiveFieldError(f"unknown receptive-field context {context!r}: use one of "
                                  f"{', '.join(CONTEXTS)}")


def _field(name: str, state: Tracked, size: tuple[int, int], allow_misaligned: bool,
           context: str) -> ReceptiveField:
    ay, ax = state.axes
    whole = ay.whole or ax.whole
    if state.note and not whole and not allow_misaligned:
        raise ReceptiveFieldError(f"layer {name}: {state.note}. Its units have no single aligned "
                                  "receptive field; pass allow_misaligned=True for the box "
                                  "covering all paths")
    return ReceptiveField(
        layer=name,
        size=size if whole else (ay.size, ax.size),
        stride=(ay.stride, ax.stride),
        padding=(0, 0) if whole else (ay.padding, ax.padding),
        is_global=whole,
        input_size=size,
        method="trace",
        grid=(state.grid("y"), state.grid("x")),
        context=context,
        gates=state.gates if context == "local" else (),
    )


def trace_states(net: Network, names: list[str], size: tuple[int, int],
                 local: bool = False, stop_early: bool = False) -> dict[str, State | None]:
    """Run one forward pass under the tracer; the state of each layer's output as it returns.

    ``local``: hold global-context gates fixed (the module running at each one names it).

    Runs in inference mode on a random input; buffers (batch-norm statistics of modules left in
    train mode) are restored afterwards and the global random state is left as it was.
    """
    module = net.module
    tracer = Tracer(size, local)
    states: dict[str, State | None] = {}

    waiting = set(names)

    def make_hook(name: str):
        def hook(_mod, _inp, out) -> None:
            states[name] = tracer.state(out) if isinstance(out, torch.Tensor) else None
            waiting.discard(name)
            if stop_early and not waiting:  # every layer asked for has run: skip the rest
                raise StopForward
        return hook

    param = next(module.parameters(), None)
    dtype = param.dtype if param is not None and param.is_floating_point() else torch.float32
    saved = {name: b.detach().clone() for name, b in module.named_buffers()}
    try:
        with forward_hooks(module, {name: make_hook(name) for name in names}), \
                (running_modules(module) if local else nullcontext([])) as running, \
                torch.random.fork_rng(devices=[]):
            tracer.running = running
            x = torch.rand(1, len(net.mean), *size, dtype=dtype).to(net.device)
            with torch.inference_mode(), tracer:
                tracer.start(x)
                run_until_stopped(module, x)  # if it fails, the caller falls back to the probe
    finally:
        with torch.no_grad():
            for name, b in module.named_buffers():
                if name in saved and not torch.equal(b, saved[name]):
                    b.copy_(saved[name])
    return states
