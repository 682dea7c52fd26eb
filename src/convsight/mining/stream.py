"""The streaming pass of a mining run: batches in, each layer's running top-k updated, nothing kept.

Each batch is one forward pass that stops after the deepest mined layer (``reduce.layer_maxima``);
its per-channel maxima go into the top-k of ``State``. Checkpoints are written between batches, never
while a batch is half added, so a Ctrl-C leaves a consistent checkpoint that ``resume`` continues.
"""

from __future__ import annotations

from typing import Callable, Iterable, Optional

import torch
from torch import nn

from .checkpoint import Checkpoints, State
from .reduce import layer_maxima

Batch = tuple[torch.Tensor, Optional[torch.Tensor], list[tuple[int, str]]]  # ids, images, skipped


def mine_batches(module: nn.Module, layers: list[str], batches: Iterable[Batch], device: torch.device,
                 state: State, checkpoints: Checkpoints, report: Callable[..., None]) -> None:
    """Add every ``(ids, images or None, [(id, reason) skipped])`` batch to ``state``, in place.

    ``report(n, skipped=...)`` is called after each batch with the number of images it covered.
    """
    consistent = True  # False while a batch is half added: no checkpoint may be taken then
    try:
        with layer_maxima(module, layers, stop=True) as run, torch.no_grad():
            for ids, batch, bad in batches:
                found = run(batch.to(device, non_blocking=True)) if batch is not None else {}
                consistent = False
                for name in found:
                    state.tops[name].update(ids, *found[name])
                state.skipped.extend(bad)
                state.done += len(ids) + len(bad)
                consistent = True
                report(len(ids) + len(bad), **({"skipped": len(state.skipped)} if bad else {}))
                checkpoints.tick(state)
    except KeyboardInterrupt:
        if consistent:  # else the last periodic checkpoint stands
            checkpoints.save(state)  # the batches finished so far are kept; resume=True continues
        raise
