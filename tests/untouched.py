"""Check that a call leaves the user's model exactly as it was.

Same modules (identity and type), no hooks left, same train/eval mode per module, same
``requires_grad`` and values for every parameter and buffer. Used by ``test_untouched.py`` after
every public call of the package, including calls that fail.
"""

from __future__ import annotations

from contextlib import contextmanager

import torch
from torch import nn

HOOK_DICTS = ("_forward_hooks", "_forward_pre_hooks", "_backward_hooks", "_backward_pre_hooks",
              "_state_dict_hooks", "_load_state_dict_pre_hooks")


def snapshot(model: nn.Module) -> dict:
    return {
        "modules": [(name, id(m), type(m)) for name, m in model.named_modules()],
        "training": [m.training for m in model.modules()],
        "hooks": [sum(len(getattr(m, d, {}) or {}) for d in HOOK_DICTS) for m in model.modules()],
        "params": [(n, p.requires_grad, p.detach().clone(), p.grad is None)
                   for n, p in model.named_parameters()],
        "buffers": [(n, b.detach().clone()) for n, b in model.named_buffers()],
        "global_hooks": (len(nn.modules.module._global_forward_hooks),
                         len(nn.modules.module._global_forward_pre_hooks),
                         len(nn.modules.module._global_backward_hooks)),
    }


def assert_same(before: dict, after: dict) -> None:
    assert before["modules"] == after["modules"], "modules were added, removed or swapped"
    assert before["training"] == after["training"], "train/eval mode changed"
    assert before["hooks"] == after["hooks"], "hooks were left on the model"
    assert before["global_hooks"] == after["global_hooks"], "global module hooks were left behind"
    for (n, rg, v, nograd), (n2, rg2, v2, nograd2) in zip(before["params"], after["params"]):
        assert n == n2
        assert rg == rg2, f"requires_grad of {n} changed"
        assert torch.equal(v, v2), f"parameter {n} changed"
        assert nograd == nograd2, f".grad of {n} changed"
    for (n, b), (n2, b2) in zip(before["buffers"], after["buffers"]):
        assert n == n2 and torch.equal(b, b2), f"buffer {n} changed"


@contextmanager
def untouched(model: nn.Module):
    """``with untouched(model): call(model)`` fails the test if the call changed the model."""
    before = snapshot(model)
    try:
        yield
    finally:
        assert_same(before, snapshot(model))
