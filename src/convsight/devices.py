"""Which devices this machine has: one check, one clear line when the one asked for is missing."""

from __future__ import annotations

import torch

from .errors import ConvsightError


def check_device(device: str | torch.device, hint: str = "") -> torch.device:
    """``device`` as a ``torch.device``, or a one-line ``ConvsightError`` when it is not a device
    name or this machine has no such device (``cuda`` without a CUDA GPU, ``mps`` without Metal,
    ``cuda:3`` on a machine with 2 GPUs). ``hint`` is added to the message."""
    try:
        wanted = torch.device(device)
    except (RuntimeError, TypeError) as exc:
        raise ConvsightError(f"cannot use device {str(device)!r}: {exc}. Valid devices look like "
                             "cpu, cuda, cuda:1 or mps") from None
    problem = None
    if wanted.type == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if count == 0:
            problem = "this machine has no CUDA GPU"
        elif wanted.index is not None and wanted.index >= count:
            problem = f"this machine has {count} CUDA GPU{'s' if count > 1 else ''} (cuda:0.." \
                      f"cuda:{count - 1})"
    elif wanted.type == "mps" and not (getattr(torch.backends, "mps", None) and
                                       torch.backends.mps.is_available()):
        problem = "this machine has no Apple GPU (MPS)"
    if problem:
        raise ConvsightError(f"cannot use device {str(device)!r}: {problem}"
                             f"{hint or ' (leave out --device, or use cpu)'}")
    return wanted
