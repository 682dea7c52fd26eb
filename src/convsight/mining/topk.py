"""Streaming top-k per channel: the k strongest images of every channel, in O(channels * k) memory.

Every image gives each channel one score, its strongest spatial activation, and the position of
that maximum (the first one in row-major order when several positions tie). ``TopK`` keeps, per
channel, the k best (score, image id, y, x) seen so far. Ranking is by score, descending; equal
scores rank the lower image id first. That total order makes the result independent of the order
in which images arrive: for the same scores, batch size, workers, resume points and process count
cannot change it. (The scores themselves can differ in the last bits between batch sizes or
devices, as any floating-point computation can.)

>>> top = TopK(channels=4, k=2)
>>> top.update(torch.tensor([0, 1]), torch.rand(2, 4), torch.zeros(2, 4, dtype=torch.long),
...            torch.zeros(2, 4, dtype=torch.long))
>>> top.image.shape
torch.Size([4, 2])
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

# Image id of an empty slot: larger than any real id, so empty slots sort after real hits.
EMPTY = torch.iinfo(torch.int64).max


def channel_maxima(act: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per image and channel: the strongest activation and its (y, x), as (N, C) tensors.

    ``act`` is (N, C, H, W), (N, C, L) (treated as H = 1) or (N, C) (position 0, 0). NaN counts as
    -inf so that it never wins. Ties go to the first position in row-major order (``torch.max``
    returns the first maximal index).
    """
    if act.dim() < 2:
        raise ValueError(f"cannot mine a layer output of shape {tuple(act.shape)}: it has no channels")
    n, c = act.shape[:2]
    width = act.shape[-1] if act.dim() >= 3 else 1
    flat = act.detach().reshape(n, c, -1).float()
    if torch.isnan(flat).any():
        flat = torch.nan_to_num(flat, nan=float("-inf"))
    values, index = flat.max(dim=2)
    return values, torch.div(index, width, rounding_mode="floor"), index % width


def rank_order(value: torch.Tensor, image: torch.Tensor) -> torch.Tensor:
    """Column order per row: score descending, then image id ascending (two stable sorts)."""
    by_image = torch.argsort(image, dim=1, stable=True)
    by_value = torch.argsort(torch.gather(value, 1, by_image), dim=1, descending=True, stable=True)
    return torch.gather(by_image, 1, by_value)


@dataclass
class TopK:
    """The k best hits of each of ``channels`` channels. Arrays are (channels, k) CPU tensors."""

    channels: int
    k: int
    value: torch.Tensor | None = None
    image: torch.Tensor | None = None
    y: torch.Tensor | None = None
    x: torch.Tensor | None = None

    def __post_init__(self) -> None:
        shape = (self.channels, self.k)
        if self.value is None:
            self.value = torch.full(shape, float("-inf"), dtype=torch.float32)
            self.image = torch.full(shape, EMPTY, dtype=torch.int64)
            self.y = torch.zeros(shape, dtype=torch.int64)
            self.x = torch.zeros(shape, dtype=torch.int64)

    def update(self, ids: torch.Tensor, value: torch.Tensor, y: torch.Tensor, x: torch.Tensor) -> None:
        """Add a batch: ``ids`` (N,) image ids, ``value``/``y``/``x`` (N, C) from ``channel_maxima``."""
        n = len(ids)
        if n == 0:
            return
        ids = ids.to("cpu", torch.int64).view(1, n).expand(self.channels, n)
        self._merge(value.to("cpu", torch.float32).T, ids, y.to("cpu", torch.int64).T,
                    x.to("cpu", torch.int64).T)

    def merge(self, other: "TopK") -> None:
        """Fold in another ``TopK`` of the same shape (another shard, or another process)."""
        if (other.channels, other.k) != (self.channels, self.k):
            raise ValueError(f"cannot merge top-k of shape {(other.channels, other.k)} into "
                             f"{(self.channels, self.k)}")
        self._merge(other.value, other.image, other.y, other.x)

    def _merge(self, value: torch.Tensor, image: torch.Tensor, y: torch.Tensor, x: torch.Tensor) -> None:
        value = torch.cat([self.value, value], dim=1)
        image = torch.cat([self.image, image], dim=1)
        keep = rank_order(value, image)[:, : self.k]
        self.value = torch.gather(value, 1, keep).contiguous()
        self.image = torch.gather(image, 1, keep).contiguous()
        self.y = torch.gather(torch.cat([self.y, y], dim=1), 1, keep).contiguous()
        self.x = torch.gather(torch.cat([self.x, x], dim=1), 1, keep).contiguous()

    def arrays(self) -> dict[str, torch.Tensor]:
        return {"value": self.value, "image": self.image, "y": self.y, "x": self.x}

    @classmethod
    def from_arrays(cls, arrays: dict) -> "TopK":
        value = torch.as_tensor(arrays["value"], dtype=torch.float32)
        return cls(value.shape[0], value.shape[1], value,
                   torch.as_tensor(arrays["image"], dtype=torch.int64),
                   torch.as_tensor(arrays["y"], dtype=torch.int64),
                   torch.as_tensor(arrays["x"], dtype=torch.int64))
