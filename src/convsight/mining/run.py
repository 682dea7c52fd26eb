"""``mine``: the top-k images of every channel of some layers over a dataset, in one streaming pass.

``mine`` checks its arguments and joins the pieces: the process group and device (``distributed``,
``models.on_device``), where to start (``checkpoint.starting_point``), the pass over this process'
shard (``stream.mine_batches``) and the merge into an Atlas (``merge.merged_atlas``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import torch

from ..atlas import Atlas
from ..capture import capture, eval_mode
from ..errors import ConvsightError
from ..models import (Network, as_network, check_device, check_input_size, on_device,
                      weights_fingerprint)
from ..progress import ProgressArg, progress_bar
from ..units import check_layer
from .checkpoint import Checkpoints, State, starting_point
from .data import ImageSource, fingerprint, make_loader, resolve_images
from .distributed import Group, join
from ..receptive import DEFAULT_Q
from ..receptive.effective import check_q
from .boxes import attach_boxes, check_mining_crop
from .merge import dataset_of, merged_atlas
from .stream import mine_batches
from .topk import TopK


def _layer_list(net: Network, layers: str | Sequence[str]) -> list[str]:
    if isinstance(layers, str):
        layers = [name.strip() for name in layers.split(",") if name.strip()]
    layers = list(dict.fromkeys(layers))
    if not layers:
        raise ConvsightError("no layers to mine: pass layer names such as ['blocks.3', 'blocks.10'] "
                             "(`convsight layers` lists them)")
    for name in layers:
        check_layer(net, name)
    return layers


def _check_counts(k: int, batch_size: int, workers: int) -> None:
    for name, value, low in (("k", k, 1), ("batch_size", batch_size, 1), ("workers", workers, 0)):
        if not isinstance(value, int) or isinstance(value, bool) or value < low:
            raise ConvsightError(f"{name} must be an integer >= {low}, got {value!r}")


def _requested_device(net: Network, device: str | torch.device | None) -> torch.device:
    if device is None:
        return net.device
    # checked before torchrun picks NCCL
    return check_device(device, " (leave out --device to mine on the CPU; under torchrun the "
                                "processes then talk over gloo)")


def _placed(net: Network, device: torch.device, group: Group) -> tuple[Network, torch.device]:
    """The network on the device this process mines on, and that device: a bare ``cuda`` means
    this process' own GPU under torchrun (``LOCAL_RANK``), else the current one. The user's model
    never moves (``on_device`` copies it)."""
    if device.type == "cuda" and device.index is None and torch.cuda.is_available():
        device = torch.device("cuda", group.local_rank if group.active else torch.cuda.current_device())
    return on_device(net, device), device


def _layer_shapes(module: torch.nn.Module, layers: list[str], size: tuple[int, int],
                  channels: int, device: torch.device) -> dict[str, tuple[int, ...]]:
    with capture(module, layers, clone=False, stop=True) as acts, torch.no_grad():
        module(torch.zeros(1, channels, *size, device=device))
    for name in layers:
        if acts[name].dim() < 2:
            raise ConvsightError(f"layer {name} outputs shape {tuple(acts[name].shape)}: no channels "
                                 "to mine")
    return {name: tuple(acts[name].shape[1:]) for name in layers}


def _with_boxes(atlas: Atlas, runner: Network, source: ImageSource, crop: str, q: float,
                batch_size: int, progress: ProgressArg) -> bool:
    """Store every hit's crop box by rule ``crop``; True when some were (re)computed."""
    before = {name: dict(c) for name, c in atlas.crops.items()}
    hits = sum(int((atlas.arrays(name)["image"] >= 0).sum()) for name in atlas.layers)
    effective = crop == "effective"
    shown = progress if effective and isinstance(progress, bool) else False  # a callback counts images
    with progress_bar(hits if effective else 0, "effective boxes", "hit", shown) as report:
        attach_boxes(atlas, runner, lambda i: source[i][1], crop, q, batch_size, report)
    return atlas.crops != before


def _config(net: Network, layers: list[str], k: int, paths: list[str], world: int) -> dict[str, Any]:
    """What makes a run this run: a checkpoint or atlas with another config is not resumed."""
    return {"layers": layers, "k": k, "images": fingerprint(paths), "image_count": len(paths),
            "model": net.name, "weights": str(net.info.get("weights", "")),
            "checksum": weights_fingerprint(net.module), "input_size": list(net.input_size),
            "resize_ratio": net.resize_ratio, "mean": list(net.mean), "std": list(net.std),
            "processes": world}


def mine(model: Network | torch.nn.Module, images: Any, layers: str | Sequence[str], k: int = 9,
         batch_size: int = 32, workers: int = 0, device: str | torch.device | None = None,
         out: str | Path | None = None, resume: bool = False, progress: ProgressArg = True,
         checkpoint_every: float = 60.0, crop: str = "auto", q: float = DEFAULT_Q) -> Atlas:
    """Find the top-k images of every channel of ``layers`` over ``images``; return an ``Atlas``.

    ``images`` is a folder (recursive), a list of paths or a torch ``Dataset`` (items: PIL images,
    arrays, tensors or ``(image, label)``). A channel's score in an image is its strongest spatial
    activation; ties go to the lower image id, so results do not depend on batch size, workers,
    resume points or process count. With ``out`` the atlas is saved there and a checkpoint is
    written atomically every ``checkpoint_every`` seconds (0: after every batch) and on Ctrl-C;
    ``resume=True`` continues from it. Under ``torchrun`` the images are sharded across processes.
    ``device`` runs a copy of the model there (yours never moves; under torchrun a bare ``cuda`` is
    each process' own GPU). ``progress``: True draws a bar (on process 0 only), False nothing, and
    a callable ``fn(done, total)`` is called with the images of this process' shard done so far.
    ``crop`` is the rule each hit's stored box follows (docs/receptive_fields.md): ``"exact"``,
    ``"local"``, ``"effective"`` (the hit's effective box holding a fraction ``q`` of its input
    gradient, one batched backward pass per group of whole channels after the mining pass) or
    ``"auto"``: the exact box where the layer's exact receptive field is finite, else the local one.

    >>> atlas = mine(convsight.load_model(), "photos/", ["blocks.3", "blocks.10"], out="atlas")
    >>> atlas.top("blocks.3", 5)[0]
    Hit(image=17, path='photos/cat/017.jpg', y=12, x=3, value=9.81)
    """
    net = as_network(model)
    check_input_size(net.input_size)  # also when set on the Network after it was made
    layers = _layer_list(net, layers)
    _check_counts(k, batch_size, workers)
    check_mining_crop(crop)
    check_q(q)
    if resume and out is None:
        raise ConvsightError("resume=True needs out=FOLDER, where the checkpoint was written")
    items, paths = resolve_images(images)
    out = Path(out) if out is not None else None
    wanted = _requested_device(net, device)
    group = join(wanted)
    try:
        runner, device = _placed(net, wanted, group)
        config = _config(net, layers, k, paths, group.world)
        checkpoints = Checkpoints(out, group.rank, group.world, config, checkpoint_every)
        with eval_mode(runner.module):  # batch norm in train mode would rewrite its running statistics
            shapes = _layer_shapes(runner.module, layers, net.input_size, len(net.mean), device)
            state = starting_point(out, resume, checkpoints,
                                   State({name: TopK(shapes[name][0], k) for name in layers}), group.rank)
            source = ImageSource(items, paths, net.input_size, net.resize_ratio, net.mean, net.std)
            if isinstance(state, Atlas):  # resuming a run that had finished: its atlas
                state.source = dataset_of(images)
                if group.rank == 0 and _with_boxes(state, runner, source, crop, q, batch_size,
                                                   progress) and out is not None:
                    state.save(out)
                return state
            shard = list(range(group.rank, len(paths), group.world))
            loader = make_loader(source, shard[state.done:], batch_size, workers,
                                 pin_memory=device.type == "cuda")
            desc = "mining" + (f" (process {group.rank} of {group.world})" if group.active else "")
            with progress_bar(len(shard), desc, "img", progress if group.rank == 0 else False,
                              initial=state.done) as report:
                mine_batches(runner.module, layers, loader, device, state, checkpoints, report)
            atlas = merged_atlas(group, state, device, net, images, paths, shapes, k, config)
            if group.rank == 0:
                _with_boxes(atlas, runner, source, crop, q, batch_size, progress)
            if out is not None:
                if group.rank == 0:
                    atlas.save(out)
                group.barrier()
                checkpoints.remove()
            return atlas
    finally:
        group.close()
