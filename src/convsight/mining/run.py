"""``mine``: the top-k images of every channel of some layers over a dataset, in one streaming pass."""

from __future__ import annotations

import copy
import time
from pathlib import Path
from typing import Any, Sequence

import torch

from ..atlas import Atlas
from ..capture import capture, eval_mode
from ..errors import ConvsightError
from ..models import Network, as_network, weights_fingerprint
from ..units import check_layer
from .checkpoint import checkpoint_path, config_mismatch, load_checkpoint, save_checkpoint
from .data import ImageSource, fingerprint, make_loader, resolve_images
from .distributed import gather_objects, join, merge_across
from .reduce import layer_maxima
from .topk import EMPTY, TopK

ATLAS_FILES = ("atlas.json", "top.npz", "images.json")


def _version() -> str:
    from .. import __version__

    return __version__


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


def _layer_shapes(module: torch.nn.Module, layers: list[str], size: tuple[int, int],
                  channels: int, device: torch.device) -> dict[str, tuple[int, ...]]:
    with capture(module, layers, clone=False, stop=True) as acts, torch.no_grad():
        module(torch.zeros(1, channels, *size, device=device))
    for name in layers:
        if acts[name].dim() < 2:
            raise ConvsightError(f"layer {name} outputs shape {tuple(acts[name].shape)}: no channels "
                                 "to mine")
    return {name: tuple(acts[name].shape[1:]) for name in layers}


def mine(model: Network | torch.nn.Module, images: Any, layers: str | Sequence[str], k: int = 9,
         batch_size: int = 32, workers: int = 0, device: str | torch.device | None = None,
         out: str | Path | None = None, resume: bool = False, progress: bool = True,
         checkpoint_every: float = 60.0) -> Atlas:
    """Find the top-k images of every channel of ``layers`` over ``images``; return an ``Atlas``.

    ``images`` is a folder (recursive), a list of paths or a torch ``Dataset`` (items: PIL images,
    arrays, tensors or ``(image, label)``). A channel's score in an image is its strongest spatial
    activation; ties go to the lower image id, so results do not depend on batch size, workers,
    resume points or process count. With ``out`` the atlas is saved there and a checkpoint is
    written atomically every ``checkpoint_every`` seconds (0: after every batch) and on Ctrl-C;
    ``resume=True`` continues from it. Under ``torchrun`` the images are sharded across processes.

    >>> atlas = mine(convsight.load_model(), "photos/", ["blocks.3", "blocks.10"], out="atlas")
    >>> atlas.top("blocks.3", 5)[0]
    Hit(image=17, path='photos/cat/017.jpg', y=12, x=3, value=9.81)
    """
    net = as_network(model)
    layers = _layer_list(net, layers)
    _check_counts(k, batch_size, workers)
    if resume and out is None:
        raise ConvsightError("resume=True needs out=FOLDER, where the checkpoint was written")
    items, paths = resolve_images(images)

    device = torch.device(device) if device is not None else net.device
    group = join(device)
    if device.type == "cuda" and device.index is None:
        device = torch.device("cuda", group.local_rank if group.active else torch.cuda.current_device())
    module = net.module
    if device != net.device:  # never move the user's model: mine with a copy on that device
        try:
            module = copy.deepcopy(net.module).to(device)
        except (RuntimeError, AssertionError) as exc:
            raise ConvsightError(f"cannot use device {device}: {exc}") from None

    weights_source = str(net.info.get("weights", ""))
    weights_file = str(Path(weights_source).resolve()) if weights_source and Path(weights_source).is_file() else None
    config = {"layers": layers, "k": k, "images": fingerprint(paths), "image_count": len(paths),
              "model": net.name, "weights": weights_source, "checksum": weights_fingerprint(net.module),
              "input_size": list(net.input_size), "resize_ratio": net.resize_ratio,
              "mean": list(net.mean), "std": list(net.std), "processes": group.world}
    out = Path(out) if out is not None else None
    ckpt = checkpoint_path(out, group.rank, group.world) if out is not None else None

    def make_atlas(tops: dict[str, TopK], skipped: list[tuple[int, str]], shapes) -> Atlas:
        arrays = {}
        for name, top in tops.items():
            image = top.image.clone()
            image[image == EMPTY] = -1
            arrays[name] = {"value": top.value.numpy(), "image": image.numpy(),
                            "y": top.y.to(torch.int32).numpy(), "x": top.x.to(torch.int32).numpy()}
        return Atlas(arrays, shapes, k, paths, [(paths[i], reason) for i, reason in sorted(skipped)],
                     model_name=net.name, weights=weights_file, weights_source=weights_source,
                     mean=net.mean, std=net.std, input_size=net.input_size,
                     resize_ratio=net.resize_ratio,
                     source=None if isinstance(images, (str, Path)) else images,
                     info={"convsight_version": _version(),
                           "source": str(images) if isinstance(images, (str, Path)) else type(images).__name__})

    try:
        with eval_mode(module):  # batch norm in train mode would rewrite its running statistics
            shapes = _layer_shapes(module, layers, net.input_size, len(net.mean), device)
            tops = {name: TopK(shapes[name][0], k) for name in layers}
            done, skipped = 0, []
            if resume and ckpt is not None and ckpt.is_file():
                tops, meta = load_checkpoint(ckpt, layers)
                problem = config_mismatch(meta["config"], config)
                if problem:
                    raise ConvsightError(f"the checkpoint in {out} is from a different run ({problem}); "
                                         "run without resume to start again")
                done, skipped = int(meta["done"]), [tuple(s) for s in meta["skipped"]]
            elif resume and out is not None and (out / "atlas.json").is_file():
                finished = Atlas.open(out)
                problem = config_mismatch(finished.info.get("config", {}), config)
                if problem:
                    raise ConvsightError(f"the atlas in {out} is from a different run ({problem}); "
                                         "run without resume to start again")
                finished.source = None if isinstance(images, (str, Path)) else images
                return finished
            elif out is not None and group.rank == 0:
                out.mkdir(parents=True, exist_ok=True)
                for name in ATLAS_FILES:  # a stale atlas must not pass for this run's result
                    (out / name).unlink(missing_ok=True)
            if out is not None:
                out.mkdir(parents=True, exist_ok=True)

            shard = list(range(group.rank, len(paths), group.world))
            source = ImageSource(items, paths, net.input_size, net.resize_ratio, net.mean, net.std)
            loader = make_loader(source, shard[done:], batch_size, workers,
                                 pin_memory=device.type == "cuda")

            def checkpoint() -> None:
                if ckpt is not None:
                    save_checkpoint(ckpt, tops, {"config": config, "done": done,
                                                 "skipped": [list(s) for s in skipped]})

            from tqdm.auto import tqdm

            desc = "mining" + (f" (process {group.rank} of {group.world})" if group.active else "")
            bar = tqdm(total=len(shard), initial=done, unit="img", desc=desc, smoothing=0.1,
                       disable=not progress or group.rank != 0)
            last = time.monotonic()
            consistent = True  # False while a batch is half added: no checkpoint may be taken then
            try:
                with layer_maxima(module, layers, stop=True) as run, torch.no_grad():
                    for ids, batch, bad in loader:
                        found = run(batch.to(device, non_blocking=True)) if batch is not None else {}
                        consistent = False
                        for name in found:
                            tops[name].update(ids, *found[name])
                        skipped.extend(bad)
                        done += len(ids) + len(bad)
                        consistent = True
                        bar.update(len(ids) + len(bad))
                        if bad:
                            bar.set_postfix(skipped=len(skipped))
                        if ckpt is not None and time.monotonic() - last >= checkpoint_every:
                            checkpoint()
                            last = time.monotonic()
            except KeyboardInterrupt:
                if consistent:  # else the last periodic checkpoint stands
                    checkpoint()  # the batches finished so far are kept; resume=True continues
                raise
            finally:
                bar.close()

            merge_across(group, tops, device)
            skipped = sorted(tuple(s) for part in gather_objects(group, skipped) for s in part)
            if len(skipped) == len(paths):
                raise ConvsightError(f"none of the {len(paths)} images could be read; the first: "
                                     f"{paths[skipped[0][0]]}: {skipped[0][1]}")
            atlas = make_atlas(tops, skipped, shapes)
            atlas.info["config"] = config
            if out is not None:
                if group.rank == 0:
                    atlas.save(out)
                group.barrier()
                ckpt.unlink(missing_ok=True)
            return atlas
    finally:
        group.close()
