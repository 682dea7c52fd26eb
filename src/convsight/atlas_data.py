"""The data of a mining result: the top-k images of every channel of some layers.

``AtlasData`` keeps the hits, the model and preprocessing that produced them, the crop rule of
each layer's stored boxes and the syntheses stored beside it; it answers queries and is saved
and opened (``convsight.atlas_store`` reads and writes the folder). It runs no model and reads
no image: ``convsight.atlas_access.AtlasAccess`` does (rebuilding the model, loading images,
receptive fields, boxes computed on demand), and ``convsight.figures`` draws an atlas.
``convsight.Atlas`` is this class with those as one-line conveniences.

On disk an atlas is a folder (see docs/mining.md): ``atlas.json`` (model, preprocessing, layers,
counts, skipped files), ``images.json`` (path of every image id) and ``top.npz`` (per layer the
(channels, k) arrays ``value``, ``image``, ``y``, ``x``, and since crop rules, ``box``: the
(channels, k, 4) box each hit's patch is cut from, made by the layer's crop rule). Empty slots
(fewer than k readable images) have image id -1 and are left out of ``top``.

Crop rules (docs/receptive_fields.md): ``"exact"`` the receptive field, ``"local"`` the local
receptive field (global-context gates held fixed), ``"effective"`` the effective box of the hit
(Luo et al. 2016). Atlases mined before boxes were stored open as before; their default rule is
the exact box when it is finite, else the local one, computed on demand.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from .atlas_store import FORMAT, VERSION, layer_arrays, layer_boxes, read_folder, save_folder
from .errors import ConvsightError, UnitError, UnknownLayerError
from .syntheses import SynthesisStore, stored_value

__all__ = ["AtlasData", "Hit", "CROPS", "check_crop", "FORMAT", "VERSION"]

CROPS = ("exact", "local", "effective")  # how a hit's patch is cut: see the module docstring


def check_crop(crop: str) -> str:
    if crop not in CROPS:
        raise ConvsightError(f"unknown crop rule {crop!r}: use one of {', '.join(CROPS)}")
    return crop


@dataclass(frozen=True)
class Hit:
    """One of a channel's top images: image id, its path, the argmax position and the value;
    ``channel``, and ``box``: the stored (top, left, bottom, right) its patch is cut from, if any."""

    image: int
    path: str
    y: int
    x: int
    value: float
    channel: int = -1
    box: tuple[int, int, int, int] | None = field(default=None, repr=False, compare=False)


class AtlasData:
    """Top-k hits per channel and layer, with the model and preprocessing that produced them."""

    def __init__(self, arrays: dict[str, dict[str, np.ndarray]], shapes: dict[str, tuple[int, ...]],
                 k: int, image_paths: list[str], skipped: list[tuple[str, str]], *,
                 model_name: str = "custom", weights: str | None = None,
                 weights_source: str = "", mean: Sequence[float] = (0.485, 0.456, 0.406),
                 std: Sequence[float] = (0.229, 0.224, 0.225),
                 input_size: tuple[int, int] = (224, 224), resize_ratio: float = 256 / 224,
                 path: Path | None = None, source: Any = None, info: dict | None = None,
                 crops: dict[str, dict] | None = None) -> None:
        self._arrays = arrays
        self.shapes = dict(shapes)
        self.layers = list(arrays)
        self.k = int(k)
        self.image_paths = list(image_paths)
        self.skipped = [(str(p), str(r)) for p, r in skipped]
        self.model_name = model_name
        self.weights = weights
        self.weights_source = weights_source
        self.mean = tuple(float(m) for m in mean)
        self.std = tuple(float(s) for s in std)
        self.input_size = (int(input_size[0]), int(input_size[1]))
        self.resize_ratio = float(resize_ratio)
        self.path = path
        self.source = source  # the Dataset the images came from (kept in memory only)
        self.info = dict(info or {})
        # per layer the rule that made its stored "box" array: {"crop": rule, "q": q if effective}
        self.crops = {name: dict(c) for name, c in (crops or {}).items()}

    def __repr__(self) -> str:
        return (f"Atlas({self.model_name}, layers={self.layers}, k={self.k}, "
                f"images={self.image_count}, skipped={len(self.skipped)})")

    # ---- queries -------------------------------------------------------------------------------
    @property
    def image_count(self) -> int:
        """Images that were mined (listed images minus skipped ones)."""
        return len(self.image_paths) - len(self.skipped)

    def _layer(self, layer: str) -> dict[str, np.ndarray]:
        if layer not in self._arrays:
            raise UnknownLayerError(f"layer {layer!r} is not in this atlas; it has: "
                                    f"{', '.join(self.layers)}")
        return self._arrays[layer]

    def channels(self, layer: str) -> int:
        return int(self._layer(layer)["value"].shape[0])

    def arrays(self, layer: str) -> dict[str, np.ndarray]:
        """The raw (channels, k) arrays ``value``, ``image`` (-1 = empty), ``y``, ``x`` of a layer."""
        return self._layer(layer)

    def top(self, layer: str, channel: int) -> list[Hit]:
        """The channel's hits, strongest first (ties: lower image id first)."""
        a = self._layer(layer)
        n = a["value"].shape[0]
        if not 0 <= int(channel) < n:
            raise UnitError(f"channel {channel} is out of range for layer {layer}: valid channels "
                            f"are 0..{n - 1}")
        c = int(channel)
        boxes = a["box"][c] if "box" in a else [None] * len(a["value"][c])
        return [Hit(int(i), self.image_paths[int(i)], int(y), int(x), float(v), c,
                    None if b is None else tuple(int(t) for t in b))
                for v, i, y, x, b in zip(a["value"][c], a["image"][c], a["y"][c], a["x"][c], boxes)
                if i >= 0]

    def hit(self, layer: str, channel: int, rank: int) -> Hit:
        hits = self.top(layer, channel)
        if not 0 <= rank < len(hits):
            raise UnitError(f"rank {rank} is out of range for {layer}:{channel}: it has "
                            f"{len(hits)} hits (ranks 0..{len(hits) - 1})")
        return hits[rank]

    # ---- syntheses (stored by convsight.visualize_layer(..., atlas=...)) ----------------------
    def _syntheses(self) -> SynthesisStore | None:
        # only those made by this atlas's model count (a folder re-mined with another model
        # may still hold the old model's syntheses)
        return SynthesisStore(self.path, self.model_name) if self.path is not None else None

    def synthesis(self, layer: str, channel: int, copy: int = 0):
        """The image synthesised for a unit, as a PIL image, or None when it has none.

        ``copy``: which of the unit's facets (``visualize_layer(..., copies=K)``).
        """
        store = self._syntheses()
        return store.read(layer, channel, copy) if store else None

    def synthesis_value(self, layer: str, channel: int, copy: int = 0) -> float | None:
        """The unit's value (mean activation) on its stored synthesis, or None."""
        image = self.synthesis(layer, channel, copy)
        return stored_value(image) if image is not None else None

    def synthesis_info(self, layer: str) -> dict | None:
        """How a layer's syntheses were made (model, preset, settings, seed, copies), or None."""
        store = self._syntheses()
        return store.info(layer) if store else None

    def synthesized_layers(self) -> list[str]:
        """Layers with stored syntheses (any layer of the model, mined or not)."""
        store = self._syntheses()
        return store.layers() if store else []

    # ---- files ---------------------------------------------------------------------------------
    def metadata(self) -> dict[str, Any]:
        return {
            "format": FORMAT, "version": VERSION, "k": self.k,
            "model_name": self.model_name, "weights": self.weights,
            "weights_source": self.weights_source, "mean": list(self.mean), "std": list(self.std),
            "input_size": list(self.input_size), "resize_ratio": self.resize_ratio,
            "layers": [dict({"name": n, "shape": list(self.shapes[n])}, **self.crops.get(n, {}))
                       for n in self.layers],
            "images_listed": len(self.image_paths), "image_count": self.image_count,
            "skipped": [list(s) for s in self.skipped], "info": self.info,
        }

    def save(self, path: str | Path) -> Path:
        """Write the atlas folder as a unit: a kill at any moment leaves the old atlas or the new
        one (see ``convsight.atlas_store``)."""
        path = Path(path)
        # a layer's boxes are kept with the rule that made them (without it they mean nothing)
        flat = {f"layer{i}_{key}": np.asarray(self._arrays[name][key])
                for i, name in enumerate(self.layers) for key in ("value", "image", "y", "x", "box")
                if key in self._arrays[name] and (key != "box" or name in self.crops)}
        save_folder(path, self.metadata(), flat, self.image_paths)
        self.path = path
        return path

    @classmethod
    def open(cls, path: str | Path) -> "AtlasData":
        """Read an atlas folder written by ``mine(..., out=PATH)`` or ``Atlas.save``.

        A damaged, torn or foreign folder raises ``ConvsightError`` naming the file and the problem.
        """
        path = Path(path)
        meta, paths, flat = read_folder(path)
        arrays, shapes = layer_arrays(meta, paths, flat, path)
        crops = layer_boxes(meta, flat, arrays, path)
        try:
            return cls(arrays, shapes, meta["k"], paths, [tuple(s) for s in meta["skipped"]],
                       model_name=meta["model_name"], weights=meta.get("weights"),
                       weights_source=meta.get("weights_source", ""), mean=meta["mean"],
                       std=meta["std"], input_size=tuple(meta["input_size"]),
                       resize_ratio=meta["resize_ratio"], path=path, info=meta.get("info"),
                       crops=crops)
        except (TypeError, ValueError) as exc:
            raise ConvsightError(f"cannot read the atlas at {path}: atlas.json has a value of the "
                                 f"wrong kind ({exc})") from None
