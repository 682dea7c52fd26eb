"""Give every rectifier a forward pass executes a chosen backward rule, without touching the model.

A ``torch.overrides.TorchFunctionMode`` is active only while the forward pass runs. It sees each
call of a torch function, whether it comes from an ``nn.ReLU`` module (in place or not, reused or
not: modules call ``F.relu``), ``F.relu``, ``torch.relu``, ``Tensor.relu``/``relu_``, ``nn.ReLU6``
(which calls ``F.hardtanh(x, 0, 6)``), ``F.relu6`` or ``clamp(min=0)``, and routes rectifiers
through :class:`~convsight.attribute.rules.Rectify`. No module is swapped and no hook is added, so
nothing can be left behind, even when the forward pass fails.

Other activations (SiLU, GELU, Hardswish, LeakyReLU, ELU, ...) are counted by name. With
``others="gate"`` (default) their output gets the sign gate ``[R > 0]`` of guided backprop and
deconvnet on top of their own derivative; with ``others="gradient"`` they backpropagate as usual.

Not seen: code below Python (TorchScript, ``torch.compile``, C++ extensions) and rectifiers
written as other operations (``torch.where(x > 0, x, 0)``, ``torch.maximum(x, 0)``).

>>> with rectifier_rule("guided") as seen:
...     y = model(x)
>>> seen.rectifiers, seen.others          # Counters by function name
"""

from __future__ import annotations

import numbers
from collections import Counter
from contextlib import contextmanager
from typing import Any, Callable, Iterator, Optional, Tuple

import torch
import torch.nn.functional as F
from torch.overrides import TorchFunctionMode

from ..errors import ConvsightError
from .rules import RULES, PositiveSignal, Rectify

# A parser takes (args, kwargs) of a call and returns (input, upper bound or None, in place),
# or None when this call is not a rectifier (e.g. clamp(min=-1) or hardtanh(-1, 1)).
Parsed = Optional[Tuple[torch.Tensor, Optional[float], bool]]


def _arg(args: tuple, kwargs: dict, pos: int, name: str, default: Any) -> Any:
    if name in kwargs:
        return kwargs[name]
    return args[pos] if len(args) > pos else default


def _is_zero(v: Any) -> bool:
    return isinstance(v, numbers.Real) and not isinstance(v, bool) and float(v) == 0.0


def _upper(v: Any) -> tuple[bool, float | None]:
    """(valid, bound): None is no bound; a positive number is a bound; anything else is invalid."""
    if v is None:
        return True, None
    if isinstance(v, numbers.Real) and not isinstance(v, bool) and float(v) > 0:
        return True, float(v)
    return False, None


def _relu(inplace: bool | None) -> Callable[[tuple, dict], Parsed]:
    """relu-like call: ``inplace`` fixed (True/False) or read from an ``inplace`` argument (None)."""
    def parse(args: tuple, kwargs: dict):
        flag = bool(_arg(args, kwargs, 1, "inplace", False)) if inplace is None else inplace
        return args[0], None, flag
    return parse


def _relu6(args: tuple, kwargs: dict):
    return args[0], 6.0, bool(_arg(args, kwargs, 1, "inplace", False))


def _hardtanh(inplace: bool | None) -> Callable[[tuple, dict], Parsed]:
    def parse(args: tuple, kwargs: dict):
        low = _arg(args, kwargs, 1, "min_val", -1.0)
        ok, high = _upper(_arg(args, kwargs, 2, "max_val", 1.0))
        if not (_is_zero(low) and ok and high is not None):
            return None
        flag = bool(_arg(args, kwargs, 3, "inplace", False)) if inplace is None else inplace
        return args[0], high, flag
    return parse


def _clamp(inplace: bool) -> Callable[[tuple, dict], Parsed]:
    def parse(args: tuple, kwargs: dict):
        ok, high = _upper(_arg(args, kwargs, 2, "max", None))
        return (args[0], high, inplace) if _is_zero(_arg(args, kwargs, 1, "min", None)) and ok else None
    return parse


def _clamp_min(inplace: bool) -> Callable[[tuple, dict], Parsed]:
    def parse(args: tuple, kwargs: dict):
        return (args[0], None, inplace) if _is_zero(_arg(args, kwargs, 1, "min", None)) else None
    return parse


def _threshold(inplace: bool | None) -> Callable[[tuple, dict], Parsed]:
    def parse(args: tuple, kwargs: dict):
        if not (_is_zero(_arg(args, kwargs, 1, "threshold", None))
                and _is_zero(_arg(args, kwargs, 2, "value", None))):
            return None
        flag = bool(_arg(args, kwargs, 3, "inplace", False)) if inplace is None else inplace
        return args[0], None, flag
    return parse


def _table(entries: list[tuple[object, str, Any]]) -> dict[Any, Any]:
    """{function object: value} for the (namespace, attribute name, value) entries that exist."""
    out = {}
    for space, name, value in entries:
        func = getattr(space, name, None)
        if func is not None:
            out[func] = value
    return out


T, TB, NN = torch, torch.Tensor, torch._C._nn
RECTIFIERS: dict[Any, Callable[[tuple, dict], Parsed]] = _table([
    (F, "relu", _relu(None)), (T, "relu", _relu(False)), (T, "relu_", _relu(True)),
    (TB, "relu", _relu(False)), (TB, "relu_", _relu(True)),
    (F, "relu6", _relu6),
    (F, "hardtanh", _hardtanh(None)), (F, "hardtanh_", _hardtanh(True)),
    (NN, "hardtanh", _hardtanh(False)),
    (T, "clamp", _clamp(False)), (T, "clamp_", _clamp(True)), (T, "clip", _clamp(False)),
    (T, "clip_", _clamp(True)), (TB, "clamp", _clamp(False)), (TB, "clamp_", _clamp(True)),
    (TB, "clip", _clamp(False)), (TB, "clip_", _clamp(True)),
    (T, "clamp_min", _clamp_min(False)), (T, "clamp_min_", _clamp_min(True)),
    (TB, "clamp_min", _clamp_min(False)), (TB, "clamp_min_", _clamp_min(True)),
    (F, "threshold", _threshold(None)), (T, "threshold", _threshold(False)),
    (T, "threshold_", _threshold(True)), (F, "threshold_", _threshold(True)),
])
# NN.relu6 is torch's own relu6 kernel: clamp(0, 6), same as F.relu6.
RECTIFIERS[getattr(NN, "relu6", None)] = lambda a, k: (a[0], 6.0, False)
RECTIFIERS.pop(None, None)

# Activations that are not rectifiers, by the name the warning uses.
OTHERS: dict[Any, str] = _table([
    (F, "silu", "SiLU"), (F, "gelu", "GELU"), (F, "hardswish", "Hardswish"),
    (F, "leaky_relu", "LeakyReLU"), (F, "leaky_relu_", "LeakyReLU"), (F, "elu", "ELU"),
    (F, "elu_", "ELU"), (F, "selu", "SELU"), (T, "selu", "SELU"), (T, "selu_", "SELU"),
    (F, "celu", "CELU"), (T, "celu", "CELU"), (F, "mish", "Mish"), (F, "softplus", "Softplus"),
    (F, "prelu", "PReLU"), (F, "rrelu", "RReLU"), (F, "rrelu_", "RReLU"), (T, "rrelu", "RReLU"),
    (F, "hardtanh", "Hardtanh"), (F, "hardtanh_", "Hardtanh"), (F, "threshold", "Threshold"),
    (T, "threshold", "Threshold"),
])
OTHER_RULES = ("gate", "gradient")


class RectifierMode(TorchFunctionMode):
    """Routes rectifier calls through ``Rectify`` with ``rule``; counts what it routes."""

    def __init__(self, rule: str, others: str = "gate") -> None:
        super().__init__()
        self.rule = rule
        self.others_rule = others
        self.rectifiers: Counter[str] = Counter()
        self.others: Counter[str] = Counter()

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        try:
            parse = RECTIFIERS.get(func)
            other = OTHERS.get(func) if parse is None else None
        except TypeError:  # an unhashable callable: not one of ours
            parse = other = None
        if parse is not None:
            parsed = parse(args, kwargs)
            if parsed is not None and _float_tensor(parsed[0]):
                x, upper, inplace = parsed
                self.rectifiers[getattr(func, "__name__", str(func))] += 1
                return Rectify.apply(x, upper, self.rule, inplace)
            other = OTHERS.get(func)
        out = func(*args, **kwargs)
        if other is not None and args and _float_tensor(args[0]):
            self.others[other] += 1
            if self.others_rule == "gate" and self.rule != "gradient" and _float_tensor(out):
                return PositiveSignal.apply(out)
        return out


def _float_tensor(x: Any) -> bool:
    return isinstance(x, torch.Tensor) and x.is_floating_point()


def check_rule(rule: str, others: str = "gate") -> None:
    if rule not in RULES:
        raise ConvsightError(f"unknown rectifier rule {rule!r}: valid rules are {', '.join(RULES)}")
    if others not in OTHER_RULES:
        raise ConvsightError(f"unknown rule for other activations {others!r}: valid are "
                             f"{', '.join(OTHER_RULES)}")


@contextmanager
def rectifier_rule(rule: str, others: str = "gate") -> Iterator[RectifierMode]:
    """Inside the block, every rectifier a forward pass runs backpropagates by ``rule``.

    ``rule`` is ``"gradient"``, ``"guided"`` or ``"deconv"``. Yields the mode, whose ``rectifiers``
    and ``others`` Counters say what was seen. Only the forward pass needs to run inside.
    """
    check_rule(rule, others)
    mode = RectifierMode(rule, others)
    with mode:
        yield mode
