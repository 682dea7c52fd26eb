"""Give every rectifier a forward pass executes a chosen backward rule, without touching the model.

A ``torch.overrides.TorchFunctionMode`` is active only while the forward pass runs. It sees each
call of a torch function, whether it comes from an ``nn.ReLU`` module (in place or not, reused or
not: modules call ``F.relu``), ``F.relu``, ``torch.relu``, ``Tensor.relu``/``relu_``, ``nn.ReLU6``
(which calls ``F.hardtanh(x, 0, 6)``), ``F.relu6`` or ``clamp(min=0)``, and routes rectifiers
through :class:`~convsight.attribute.rules.Rectify`. No module is swapped and no hook is added, so
nothing can be left behind, even when the forward pass fails.

Which functions are rectifiers and which are other activations is said once, in
``convsight.activations``; this module knows how to read their arguments and finds every function
object of those names (``torch.nn.functional``, ``torch``, ``torch.Tensor``, ``torch._C._nn``).
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
from contextlib import contextmanager, nullcontext
from typing import Any, Callable, Iterator, Optional, Tuple

import torch
import torch.nn.functional as F
from torch.overrides import TorchFunctionMode

from .. import activations
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


def _flag(inplace: bool | None, args: tuple, kwargs: dict, pos: int) -> bool:
    """In place: fixed by the function (True/False), or read from its ``inplace`` argument (None)."""
    return bool(_arg(args, kwargs, pos, "inplace", False)) if inplace is None else inplace


def _relu(inplace: bool | None, upper: float | None = None) -> Callable[[tuple, dict], Parsed]:
    def parse(args: tuple, kwargs: dict):
        return args[0], upper, _flag(inplace, args, kwargs, 1)
    return parse


def _relu6(inplace: bool | None) -> Callable[[tuple, dict], Parsed]:
    return _relu(inplace, 6.0)


def _hardtanh(inplace: bool | None) -> Callable[[tuple, dict], Parsed]:
    def parse(args: tuple, kwargs: dict):
        low = _arg(args, kwargs, 1, "min_val", -1.0)
        ok, high = _upper(_arg(args, kwargs, 2, "max_val", 1.0))
        if not (_is_zero(low) and ok and high is not None):
            return None
        return args[0], high, _flag(inplace, args, kwargs, 3)
    return parse


def _clamp(inplace: bool | None) -> Callable[[tuple, dict], Parsed]:
    def parse(args: tuple, kwargs: dict):
        ok, high = _upper(_arg(args, kwargs, 2, "max", None))
        return (args[0], high, bool(inplace)) if _is_zero(_arg(args, kwargs, 1, "min", None)) and ok \
            else None
    return parse


def _clamp_min(inplace: bool | None) -> Callable[[tuple, dict], Parsed]:
    def parse(args: tuple, kwargs: dict):
        return (args[0], None, bool(inplace)) if _is_zero(_arg(args, kwargs, 1, "min", None)) else None
    return parse


def _threshold(inplace: bool | None) -> Callable[[tuple, dict], Parsed]:
    def parse(args: tuple, kwargs: dict):
        if not (_is_zero(_arg(args, kwargs, 1, "threshold", None))
                and _is_zero(_arg(args, kwargs, 2, "value", None))):
            return None
        return args[0], None, _flag(inplace, args, kwargs, 3)
    return parse


# How to read the arguments of each rectifier and clamp of convsight.activations (None: never one).
PARSERS: dict[str, Callable[[bool | None], Callable[[tuple, dict], Parsed]] | None] = {
    "relu": _relu, "relu6": _relu6, "hardtanh": _hardtanh, "threshold": _threshold,
    "clamp": _clamp, "clip": _clamp, "clamp_min": _clamp_min, "clamp_max": None}

# Where the functions live, and whether a function there without "_" works in place: False, or
# None when it has an ``inplace`` argument (torch.nn.functional). Names ending in "_" always do.
SPACES = ((F, None), (torch, False), (torch.Tensor, False), (torch._C._nn, False))


def _functions(name: str) -> Iterator[tuple[Any, bool | None]]:
    """Every function object called ``name`` or ``name_`` in SPACES, with its in-place flag."""
    for space, flag in SPACES:
        for variant, inplace in ((name, flag), (name + "_", True)):
            func = getattr(space, variant, None)
            if func is not None:
                yield func, inplace


def _rectifier_table() -> dict[Any, Callable[[tuple, dict], Parsed]]:
    table: dict[Any, Callable[[tuple, dict], Parsed]] = {}
    for name in (*activations.RECTIFIERS, *activations.CLAMPS):
        make = PARSERS[name]  # a KeyError: a new rectifier in convsight.activations needs a parser
        for func, inplace in _functions(name) if make is not None else ():
            table.setdefault(func, make(inplace))
    return table


RECTIFIERS = _rectifier_table()
# Activations counted (and gated) when they do not rectify, by the name the warning uses; a
# rectifier called with arguments that do not rectify (hardtanh(x, -1, 1)) counts as one of them.
OTHERS: dict[Any, str] = {func: module
                          for name, module in {**activations.RECTIFIERS, **activations.OTHERS}.items()
                          for func, _ in _functions(name)}
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


def backward_rule(rule: str, others: str = "gate") -> Any:
    """``rectifier_rule(rule)``, or for ``"gradient"`` nothing at all (PyTorch's own autograd,
    untouched; the block yields None)."""
    check_rule(rule, others)
    return nullcontext() if rule == "gradient" else rectifier_rule(rule, others)
