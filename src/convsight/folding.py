"""BatchNorm folded into the convolution before it: the same function in fewer passes over memory.

In eval mode a ``BatchNorm2d`` is an affine map per channel, ``y = s * (z - mean) + beta`` with
``s = gamma / sqrt(var + eps)``. When it reads a convolution's output directly, scaling that
convolution's filters by ``s`` and giving it the bias ``beta - s * mean (+ s * bias)`` computes the
same values (up to floating-point rounding, about 1e-6 relative), and the normalisation's own
forward and backward passes over the activations disappear (Jacob et al. 2018, "Quantization and
Training of Neural Networks for Efficient Integer-Arithmetic-Only Inference", section 3.2, folds
it the same way). On EfficientNet-Lite0 at 224 px this makes a forward and backward pass to
``blocks.2`` about 1.3x faster on the CPU.

``folded_copy`` folds a *copy* (the model given is never changed), keeps the module names, so
hooks by name find the same layers (a folded normalisation becomes ``nn.Identity``, whose output
equals the normalisation's), and leaves unfolded every convolution named in ``keep``, whose own
output a caller reads. ``Network.fast`` checks the copy against the model on a probe input and
keeps it only when they agree.

>>> import torch
>>> net = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.BatchNorm2d(4)).eval()
>>> copy, folded = folded_copy(net)
>>> folded, type(copy[1]).__name__
(['0'], 'Identity')
"""

from __future__ import annotations

import copy
import threading
from itertools import chain
from typing import Iterable

import torch
from torch import nn


class _AfterNorm(nn.Module):
    """What is left of a normalisation that also applies dropout and an activation (timm's
    ``BatchNormAct2d``) once its affine part is folded: the same children, run in its order."""

    def __init__(self, drop: nn.Module, act: nn.Module) -> None:
        super().__init__()
        self.drop, self.act = drop, act

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.drop(x))


def _foldable(conv: nn.Module, norm: nn.Module) -> bool:
    if not isinstance(conv, nn.Conv2d):  # subclasses too (TF "same" padding); Network.fast checks
        return False
    if not isinstance(norm, nn.BatchNorm2d) or not norm.track_running_stats or \
            norm.running_mean is None or norm.num_features != conv.out_channels:
        return False
    if type(norm) is nn.BatchNorm2d:
        return True
    children = dict(norm.named_children())  # timm's BatchNormAct2d: drop, then act
    return set(children) == {"drop", "act"}


def _fold(conv: nn.Conv2d, norm: nn.BatchNorm2d) -> None:
    with torch.no_grad():
        scale = norm.running_var.add(norm.eps).rsqrt()
        if norm.affine:
            scale = scale * norm.weight
        shift = -norm.running_mean * scale
        if norm.affine:
            shift = shift + norm.bias
        if conv.bias is not None:
            shift = shift + conv.bias * scale
        conv.weight.mul_(scale.view(-1, *([1] * (conv.weight.dim() - 1))))
        conv.bias = nn.Parameter(shift.to(conv.weight.dtype), requires_grad=False)


def folded_copy(module: nn.Module, keep: Iterable[str] = ()) -> tuple[nn.Module, list[str]]:
    """(a copy of ``module`` in eval mode with every convolution that a ``BatchNorm2d`` reads next
    folded, the names of the convolutions folded). "Reads next": the two are consecutive children
    of one parent (how sequential blocks are written); ``Network.fast`` checks the result. The
    copy's parameters do not require gradients (gradients still reach the input)."""
    keep = set(keep)
    out = copy.deepcopy(module).eval()
    for p in out.parameters():
        p.requires_grad_(False)
    folded = []
    for parent_name, parent in list(out.named_modules()):
        children = list(parent.named_children())
        for (name, conv), (norm_name, norm) in zip(children, children[1:]):
            full = f"{parent_name}.{name}" if parent_name else name
            if full in keep or not _foldable(conv, norm):
                continue
            _fold(conv, norm)  # type: ignore[arg-type]
            rest = nn.Identity() if type(norm) is nn.BatchNorm2d else \
                _AfterNorm(norm.drop, norm.act)  # type: ignore[arg-type]
            setattr(parent, norm_name, rest)
            folded.append(full)
    return out, folded


def foldable_names(module: nn.Module) -> set[str]:
    """Names of the convolutions ``folded_copy`` would fold (those a ``keep`` can spare)."""
    names = set()
    for parent_name, parent in module.named_modules():
        children = list(parent.named_children())
        for (name, conv), (_, norm) in zip(children, children[1:]):
            if _foldable(conv, norm):
                names.add(f"{parent_name}.{name}" if parent_name else name)
    return names


def weights_state(module: nn.Module) -> tuple:
    """Where each parameter and buffer lives and how often it was changed in place: equal as
    long as nobody trained, loaded or moved the model (cheap: no values are read)."""
    return tuple((t.data_ptr(), t._version, t.dtype, t.device)
                 for t in chain(module.parameters(), module.buffers()))


def normalising(module: nn.Module) -> bool:
    """True while any BatchNorm of ``module`` is in training mode (batch statistics: no folding)."""
    return any(m.training for m in module.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm))


def _agrees(module: nn.Module, folded: nn.Module, probe: torch.Tensor) -> bool:
    """Both give the same output on ``probe`` (in eval mode; the model's modes are restored)."""
    modes = [(m, m.training) for m in module.modules()]
    try:
        module.eval()
        with torch.no_grad():
            a, b = module(probe), folded(probe)
    except Exception:  # noqa: BLE001 - a model that cannot run the probe is simply not folded
        return False
    finally:
        for m, training in modes:
            m.training = training
    if not (isinstance(a, torch.Tensor) and isinstance(b, torch.Tensor) and a.shape == b.shape):
        return False
    scale = float(a.abs().max()) if a.numel() else 0.0
    return bool(torch.isfinite(b).all()) and float((a - b).abs().max()) <= 1e-4 * max(1.0, scale)


class FoldedCopies:
    """The folded copies of one model (one per ``keep``), checked on a probe input when made and
    dropped when the model's weights change (``weights_state``). Safe across threads."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._state: tuple | None = None
        self._names: set[str] = set()
        self._copies: dict[frozenset, nn.Module | None] = {}

    def __getstate__(self) -> dict:  # pickled empty: copies are remade where they are needed
        return {}

    def __setstate__(self, state: dict) -> None:
        self.__init__()  # type: ignore[misc]

    def get(self, module: nn.Module, keep: Iterable[str], probe_shape: tuple[int, ...]
            ) -> nn.Module | None:
        """The folded copy sparing ``keep``, or None when folding changes nothing or the copy
        does not agree with the model."""
        state = weights_state(module)
        with self._lock:
            if state != self._state:
                self._state, self._copies = state, {}
                self._names = foldable_names(module)
            spared = frozenset(keep) & self._names
            if spared not in self._copies:
                self._copies[spared] = self._make(module, spared, probe_shape)
            return self._copies[spared]

    @staticmethod
    def _make(module: nn.Module, keep: frozenset, probe_shape: tuple[int, ...]) -> nn.Module | None:
        folded, names = folded_copy(module, keep)
        if not names:
            return None
        like = next(chain(module.parameters(), module.buffers()), torch.empty(0))
        probe = torch.randn(probe_shape, generator=torch.Generator().manual_seed(0))
        probe = probe.to(like.device, like.dtype if like.is_floating_point() else torch.float32)
        return folded if _agrees(module, folded, probe) else None
