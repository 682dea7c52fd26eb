"""Several processes (``torchrun --nproc_per_node=N``): shard the images, merge the top-k exactly.

Process ``rank`` of ``world`` mines images ``rank, rank + world, ...``. Because the top-k ranking
is a total order (score, then image id), merging every process' top-k gives exactly the
single-process result. Gloo is used on CPU, NCCL when the model runs on CUDA.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import timedelta

import torch
import torch.distributed as dist

from ..errors import ConvsightError
from .topk import TopK


@dataclass
class Group:
    rank: int = 0
    world: int = 1
    local_rank: int = 0
    owned: bool = False  # we initialised the process group, so we tear it down

    @property
    def active(self) -> bool:
        return self.world > 1

    def barrier(self) -> None:
        if self.active:
            dist.barrier()

    def close(self) -> None:
        if self.owned and dist.is_initialized():
            dist.destroy_process_group()


def join(device: torch.device) -> Group:
    """The process group of a torchrun launch (initialised here if needed); a one-process group otherwise."""
    if dist.is_available() and dist.is_initialized():
        return Group(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", 0)))
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return Group()
    if not dist.is_available():
        raise ConvsightError("WORLD_SIZE > 1 but this torch build has no torch.distributed")
    backend = "nccl" if device.type == "cuda" else "gloo"
    seconds = float(os.environ.get("CONVSIGHT_DIST_TIMEOUT", "1800"))
    dist.init_process_group(backend, timeout=timedelta(seconds=seconds))
    return Group(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", 0)),
                 owned=True)


def merge_across(group: Group, tops: dict[str, TopK], device: torch.device) -> None:
    """Replace every process' top-k by the merge of all of them (in place, on every process)."""
    if not group.active:
        return
    comm = device if dist.get_backend() == "nccl" else torch.device("cpu")
    for top in tops.values():
        gathered = {}
        for key, value in top.arrays().items():
            parts = [torch.empty_like(value, device=comm) for _ in range(group.world)]
            dist.all_gather(parts, value.to(comm))
            gathered[key] = [p.cpu() for p in parts]
        merged = TopK(top.channels, top.k)
        for r in range(group.world):
            merged.merge(TopK.from_arrays({key: gathered[key][r] for key in gathered}))
        top.value, top.image, top.y, top.x = merged.value, merged.image, merged.y, merged.x


def gather_objects(group: Group, obj: object) -> list:
    if not group.active:
        return [obj]
    out: list = [None] * group.world
    dist.all_gather_object(out, obj)
    return out
