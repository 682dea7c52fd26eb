"""The end of a mining run: every process' top-k merged (exactly, see ``distributed``), into an Atlas."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch

from ..atlas import Atlas, inside
from ..errors import ConvsightError
from ..models import Network
from .checkpoint import State
from .distributed import Group, gather_objects, merge_across
from .topk import EMPTY


def _version() -> str:
    from .. import __version__

    return __version__


def dataset_of(images: Any) -> Any:
    """The Dataset (or list) the images came from, for an atlas to read them back; None for a folder."""
    return None if isinstance(images, (str, Path)) else images


def image_folders(images: Any, paths: list[str]) -> list[str]:
    """The folders the images were read from, as the explorer may read them again (its rule
    for files outside them, ``AtlasAccess.image_folders``): a mined folder (resolved), plus the
    folders of files outside it (photos that were symbolic links to elsewhere); for a list or
    a Dataset, the folder that holds all its files."""
    files = [Path(p) for p in paths if Path(p).is_absolute()]
    if not isinstance(images, (str, Path)):
        return [os.path.commonpath([str(f.parent) for f in files])] if files else []
    folders = [Path(images).resolve()]
    for parent in sorted({f.parent for f in files}, key=lambda f: len(f.parts)):
        if not inside(parent, folders):
            folders.append(parent)
    return [str(f) for f in folders]


def merged_atlas(group: Group, state: State, device: torch.device, net: Network, images: Any,
                 paths: list[str], shapes: dict[str, tuple[int, ...]], k: int,
                 config: dict[str, Any]) -> Atlas:
    """Merge ``state`` across the processes of ``group`` (in place) and return the run's Atlas."""
    merge_across(group, state.tops, device)
    skipped = sorted(tuple(s) for part in gather_objects(group, state.skipped) for s in part)
    if len(skipped) == len(paths):
        raise ConvsightError(f"none of the {len(paths)} images could be read; the first: "
                             f"{paths[skipped[0][0]]}: {skipped[0][1]}")
    arrays = {}
    for name, top in state.tops.items():
        image = top.image.clone()
        image[image == EMPTY] = -1
        arrays[name] = {"value": top.value.numpy(), "image": image.numpy(),
                        "y": top.y.to(torch.int32).numpy(), "x": top.x.to(torch.int32).numpy()}
    weights_source = str(net.info.get("weights", ""))
    weights_file = (str(Path(weights_source).resolve())
                    if weights_source and Path(weights_source).is_file() else None)
    atlas = Atlas(arrays, shapes, k, paths, [(paths[i], reason) for i, reason in skipped],
                  model_name=net.name, weights=weights_file, weights_source=weights_source,
                  mean=net.mean, std=net.std, input_size=net.input_size,
                  resize_ratio=net.resize_ratio, source=dataset_of(images),
                  info={"convsight_version": _version(),
                        "source": str(images) if isinstance(images, (str, Path)) else type(images).__name__,
                        "image_folders": image_folders(images, paths)})
    atlas.info["config"] = config
    return atlas
