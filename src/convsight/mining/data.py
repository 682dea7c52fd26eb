"""Image sources for mining: a folder, a list of paths or a torch ``Dataset``, read in batches.

Each image gets an id, its position in the source (``image_paths[id]``). Preprocessing is
``Network.preprocess``'s: ``load_image`` + ``to_tensor(size, ratio)`` + normalisation. An image that
cannot be read is dropped from its batch and reported as ``(id, reason)``; it never stops the run.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any, Sequence

import torch
from torch.utils.data import DataLoader, Dataset

from ..errors import ConvsightError, ImageError
from ..images import list_images, load_image, to_tensor


class ImageSource(Dataset):
    """Item ``i`` -> ``(i, normalised (3, H, W) tensor or None, reason or None)``."""

    def __init__(self, items: Sequence[Any] | Dataset, paths: list[str], size: tuple[int, int],
                 ratio: float, mean: Sequence[float], std: Sequence[float]) -> None:
        self.items = items
        self.paths = paths
        self.size = size
        self.ratio = ratio
        self.mean = torch.tensor(mean, dtype=torch.float32).view(-1, 1, 1)
        self.std = torch.tensor(std, dtype=torch.float32).view(-1, 1, 1)

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int) -> tuple[int, torch.Tensor | None, str | None]:
        try:
            item = self.items[i]
            if isinstance(item, (tuple, list)) and len(item) >= 1 and not isinstance(item[0], (int, float)):
                item = item[0]  # (image, label) pairs
            x = to_tensor(load_image(item), self.size, self.ratio, self.mean.shape[0])
            return i, (x - self.mean) / self.std, None
        except ImageError as exc:
            return i, None, str(exc)
        except Exception as exc:  # a broken file or dataset item must not end a long run
            return i, None, f"{type(exc).__name__}: {exc}"


def collate(items: list) -> tuple[torch.Tensor, torch.Tensor | None, list[tuple[int, str]]]:
    """Keep the readable images of a batch: (ids, images or None, [(id, reason) of the others])."""
    good = [(i, x) for i, x, _ in items if x is not None]
    bad = [(i, reason) for i, x, reason in items if x is None]
    ids = torch.tensor([i for i, _ in good], dtype=torch.int64)
    batch = torch.stack([x for _, x in good]) if good else None
    return ids, batch, bad


def resolve_images(images: Any) -> tuple[Sequence[Any] | Dataset, list[str]]:
    """A folder, a list of paths/images or a ``Dataset`` -> (items, a display path per item)."""
    if isinstance(images, (str, Path)):
        folder = Path(images)
        if not folder.exists():
            raise ConvsightError(f"image folder not found: {folder}")
        if folder.is_file():
            raise ConvsightError(f"{folder} is a file; pass a folder of images, a list of paths "
                                 "or a torch Dataset")
        paths = [str(p.resolve()) for p in list_images(folder)]
        if not paths:
            raise ConvsightError(f"no images found under {folder} (looked for files ending in "
                                 ".jpg, .png, .bmp, .gif, .tif, .webp ...)")
        return paths, paths
    if isinstance(images, Dataset) or (hasattr(images, "__getitem__") and hasattr(images, "__len__")
                                       and not isinstance(images, (list, tuple))):
        n = len(images)
        if n == 0:
            raise ConvsightError("the dataset is empty")
        samples = getattr(images, "samples", None) or getattr(images, "imgs", None)
        if isinstance(samples, list) and len(samples) == n and all(
                isinstance(s, (tuple, list)) and isinstance(s[0], (str, Path)) for s in samples[:1]):
            return images, [str(s[0]) for s in samples]  # torchvision ImageFolder and friends
        return images, [f"dataset[{i}]" for i in range(n)]
    if isinstance(images, (list, tuple)):
        if not images:
            raise ConvsightError("the list of images is empty")
        paths = [str(Path(p).resolve()) if isinstance(p, (str, Path)) else f"images[{i}]"
                 for i, p in enumerate(images)]
        return list(images), paths
    raise ConvsightError(f"cannot mine images from a {type(images).__name__}: pass a folder, a list "
                         "of image paths or a torch Dataset")


def fingerprint(paths: list[str]) -> str:
    """A short hash of the image list, so a resume can tell it is reading the same dataset."""
    h = hashlib.sha256()
    for p in paths:
        h.update(p.encode("utf-8", "surrogateescape") + b"\0")
    return h.hexdigest()[:16]


def make_loader(source: ImageSource, indices: Sequence[int], batch_size: int, workers: int,
                pin_memory: bool = False) -> DataLoader:
    """Batches of ``source`` restricted to ``indices``, in that order."""
    subset = torch.utils.data.Subset(source, list(indices))
    return DataLoader(subset, batch_size=batch_size, shuffle=False, num_workers=workers,
                      collate_fn=collate, pin_memory=pin_memory,
                      persistent_workers=False, prefetch_factor=4 if workers > 0 else None)
