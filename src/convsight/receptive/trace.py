"""Record the ops a model really runs and carry receptive fields along them.

One forward pass runs under a ``TorchDispatchMode`` that sees every tensor operation (module or
functional: ``F.pad`` inside a forward, ``torch.cat``, ``+``...) with its actual arguments. Each
tensor derived from the input gets a state (``geometry.Tracked``): its layout and, per input axis,
the receptive field size, stride and padding of its units. Forward hooks read the state of each
layer's output at the moment the layer returns (later in-place ops may change that tensor).
Ops it does not know mark their outputs ``Broken``, and the caller falls back to the probe.

This module is the engine: the state table, running each op for its output shape, and handing
the op to its rule (``ops.py``, built from the blocks in ``rules.py``).
"""

from __future__ import annotations

import weakref
from typing import Any, Sequence

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten, tree_map

from .. import activations
from ..activations import with_inplace
from .geometry import Axis, Broken, Dims, MisalignedError, State, Tracked
from .ops import OpRules

# Single-output ops whose output has their first input's shape, run without their meta kernels
# (which are slow); clamps are left out, as their bounds may be tensors that broadcast.
SAME_SHAPE = {"batch_norm", "instance_norm", "group_norm", "layer_norm", "dropout", "dropout_",
              "feature_dropout", "alpha_dropout", "clone", "contiguous"} | with_inplace(
    activations.RECTIFIERS, activations.OTHERS, activations.HARD_SQUASHING, activations.SQUASHING)


def bind(func, args: Sequence[Any], kwargs: dict[str, Any]) -> dict[str, Any]:
    """The op's arguments by schema name, defaults filled in."""
    bound: dict[str, Any] = {}
    positional = 0
    for arg in func._schema.arguments:
        if not arg.kwarg_only and positional < len(args):
            bound[arg.name] = args[positional]
            positional += 1
        elif arg.name in kwargs:
            bound[arg.name] = kwargs[arg.name]
        elif arg.has_default_value():
            bound[arg.name] = arg.default_value
        else:
            bound[arg.name] = None
    return bound


class Tracer(TorchDispatchMode):
    """Propagates ``State`` from tensor to tensor for every op run inside it."""

    def __init__(self, extent: tuple[int, int], local: bool = False) -> None:
        super().__init__()
        self.extent = extent
        self._table: dict[int, tuple[weakref.ref, State]] = {}
        self.running: list[str] = []  # module names running now (set by the caller), innermost last
        self.rules = OpRules(self.state, extent, local, self._where)

    def _where(self) -> str:
        return next((name for name in reversed(self.running) if name), "the model's forward")

    # --- the state table: keyed by tensor identity, entries die with their tensors
    def state(self, t: Any) -> State | None:
        if not isinstance(t, torch.Tensor):
            return None
        entry = self._table.get(id(t))
        if entry is None or entry[0]() is not t:
            return None
        return entry[1]

    def set_state(self, t: torch.Tensor, state: State | None) -> None:
        if state is None:
            self._table.pop(id(t), None)
        else:
            self._table[id(t)] = (weakref.ref(t), state)

    def start(self, x: torch.Tensor) -> None:
        n, c, h, w = x.shape
        dims: Dims = (((None, n),), ((None, c),), (("y", h),), (("x", w),))
        self.set_state(x, Tracked(dims, (Axis(1, 1, 0), Axis(1, 1, 0))))

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        out = self.run(func, args, kwargs)
        outputs = [t for t in tree_flatten(out)[0] if isinstance(t, torch.Tensor)]
        if not outputs:
            return out
        inputs = [t for t in tree_flatten((args, kwargs))[0] if isinstance(t, torch.Tensor)]
        if not any(self.state(t) is not None for t in inputs):
            for t in outputs:  # new constants, or a tracked tensor overwritten in place
                self.set_state(t, None)
            return out
        name = func.overloadpacket.__name__
        try:
            states = self.rules.rule(func, name, bind(func, args, kwargs), inputs, outputs)
        except MisalignedError as exc:
            states = [Broken(f"paths merged by {name} are misaligned: {exc}", refused=True)]
        except Exception as exc:  # an op we model wrongly must never break the user's forward
            states = [Broken(f"{name}: {type(exc).__name__}: {exc}")]
        for i, t in enumerate(outputs):
            self.set_state(t, states[i] if i < len(states) else
                           Broken(f"extra output {i} of {name}"))
        return out

    def run(self, func, args, kwargs):
        """Run an op for its output shape only: on the meta device, giving zeros.

        Values do not matter for receptive fields, so the analysis costs far less than a forward
        pass. Ops that need real values (``.item()`` in data-dependent control flow) or have no
        meta kernel run for real, on those zeros. In-place ops just return their tensor.
        """
        tensors = [t for t in tree_flatten((args, kwargs))[0] if isinstance(t, torch.Tensor)]
        if not tensors:
            return func(*args, **kwargs)
        name = func.overloadpacket.__name__
        if name in SAME_SHAPE and isinstance(args[0], torch.Tensor) and len(func._schema.returns) == 1:
            return args[0] if name.endswith("_") else torch.zeros_like(args[0])
        try:
            meta = tree_map(lambda t: t.to("meta") if isinstance(t, torch.Tensor) else t,
                            (args, kwargs))
            shapes = func(*meta[0], **meta[1])
        except Exception:  # data-dependent (needs values) or no meta kernel
            return func(*args, **kwargs)
        if func._schema.is_mutable:
            if func.overloadpacket.__name__.endswith("_") and isinstance(shapes, torch.Tensor):
                return args[0]
            return func(*args, **kwargs)
        device = tensors[0].device
        return tree_map(lambda t: torch.zeros(t.shape, dtype=t.dtype, device=device)
                        if isinstance(t, torch.Tensor) else t, shapes)
