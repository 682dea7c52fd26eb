"""State-dict files: reading them (checkpoints and DataParallel prefixes included), loading them
with errors that list what does not fit, and the class count they imply.

>>> state = read_state_dict("r18.pth")
>>> load_weights(module, state, "r18.pth")
"""

from __future__ import annotations

import pickle
from pathlib import Path

import torch
from torch import nn

from .errors import WeightsError


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """Read a state dict from a ``.pth``/``.pt`` file (also inside ``{"state_dict": ...}``)."""
    path = Path(path)
    if not path.is_file():
        raise WeightsError(f"weights file not found: {path}")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # pickle errors, zip errors, truncated files...
        raise WeightsError(f"cannot read weights file {path}: {_what_is_wrong(path, exc)}. "
                           "Expected a file written by torch.save(model.state_dict(), path)") from None
    for key in ("state_dict", "model", "model_state_dict"):
        if isinstance(obj, dict) and isinstance(obj.get(key), dict):
            obj = obj[key]
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise WeightsError(f"{path} does not hold a state dict (a dict of tensor names to tensors)")
    if obj and all(k.startswith("module.") for k in obj):  # saved from DataParallel
        obj = {k[len("module."):]: v for k, v in obj.items()}
    return obj


def _what_is_wrong(path: Path, exc: Exception) -> str:
    """A reason in words for a file ``torch.load`` refused (its own messages can be "101")."""
    with open(path, "rb") as f:
        head = f.read(4)
    if not head:
        return "the file is empty"
    if isinstance(exc, pickle.UnpicklingError) and "Weights only load failed" in str(exc):
        return ("it holds Python objects besides tensors (a whole pickled model?); for safety "
                "convsight loads only tensors: save model.state_dict() instead")
    if head.startswith(b"PK") or head[:1] == b"\x80":  # a torch.save zip archive or legacy pickle
        return "the file is truncated or damaged (it starts like a PyTorch file but cannot be read)"
    return "it is not a PyTorch weights file"


def load_weights(module: nn.Module, state: dict[str, torch.Tensor], source: str) -> None:
    """``load_state_dict`` with an error that lists missing, unexpected and misshapen tensors."""
    own = module.state_dict()
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    misshapen = [f"{k}: file {tuple(state[k].shape)} vs model {tuple(own[k].shape)}"
                 for k in own if k in state and state[k].shape != own[k].shape]
    if missing or unexpected or misshapen:
        def show(items: list[str]) -> str:
            return ", ".join(items[:8]) + (f" ... ({len(items)} in all)" if len(items) > 8 else "")
        parts = [f"weights {source} do not fit {type(module).__name__}:"]
        if missing:
            parts.append(f"missing keys: {show(missing)}")
        if unexpected:
            parts.append(f"unexpected keys: {show(unexpected)}")
        if misshapen:
            parts.append(f"shape mismatches: {show(misshapen)}")
        raise WeightsError("\n  ".join(parts))
    module.load_state_dict(state)


def infer_num_classes(state: dict[str, torch.Tensor] | None) -> int | None:
    """The class count of a state dict: the rows of its last 2-D weight (the classifier)."""
    if not state:
        return None
    weights = [v for k, v in state.items() if k.endswith("weight") and v.dim() == 2]
    if not weights:
        weights = [v for k, v in state.items() if k.endswith("weight") and v.dim() == 4]
    return int(weights[-1].shape[0]) if weights else None
