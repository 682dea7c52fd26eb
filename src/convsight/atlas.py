"""The saved result of a mining run: the top-k images of every channel of some layers.

>>> atlas = convsight.mine(net, "photos/", ["blocks.3", "blocks.10"], out="atlas")
>>> atlas = convsight.Atlas.open("atlas")
>>> best = atlas.top("blocks.3", 7)[0]            # Hit(image, path, y, x, value)
>>> atlas.patch("blocks.3", 7, 0).save("p.png")   # the receptive-field crop of that hit

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
from .errors import ConvsightError, ImageError, ModelNameError, UnitError, UnknownLayerError
from .figures.atlas import PatchCutter, atlas_html, layer_grid, unit_figure
from .files import inside, npz_bytes, write_atomic
from .syntheses import SynthesisStore, stored_value

__all__ = ["Atlas", "Hit", "CROPS", "FORMAT", "VERSION", "npz_bytes", "write_atomic", "inside"]

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


class Atlas:
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
        self._net = None
        self._fields: dict[tuple[str, str], Any] = {}
        self.confined = False  # image_file: only inside image_folders() (the explorer's rule)
        self._folders: list[Path] | None = None
        # per layer the rule that made its stored "box" array: {"crop": rule, "q": q if effective}
        self.crops = {name: dict(c) for name, c in (crops or {}).items()}
        self._effective: dict[tuple, tuple[int, int, int, int]] = {}

    def __repr__(self) -> str:
        return (f"Atlas({self.model_name}, layers={self.layers}, k={self.k}, "
                f"images={self.image_count}, skipped={len(self.skipped)})")

    def _repr_html_(self) -> str:
        """A notebook shows an atlas as its layers with the top patches of a few units each."""
        return atlas_html(self)

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

    # ---- images and pictures (drawn by convsight.figures) -------------------------------------------------------------------
    def network(self, allow_random: bool = False, net=None):
        """The atlas's model: ``net`` when given (as a ``Network``), else rebuilt by name
        (``convsight.load_model(model_name, weights)``)."""
        import warnings

        from .models import as_network, load_model

        if net is not None:
            return as_network(net)
        if self._net is not None:
            return self._net
        if self.model_name == "custom":
            raise ConvsightError("this atlas was mined from a custom model that convsight cannot "
                                 "rebuild by name; pass net=YOUR_NETWORK")
        if self.weights_source == "random initialisation" and not allow_random:
            raise ConvsightError(f"this atlas was mined from {self.model_name} with random weights, "
                                 "which cannot be rebuilt; pass net=THAT_NETWORK")
        if self.weights is not None and not Path(self.weights).is_file():
            raise ConvsightError(f"the weights file of this atlas is gone: {self.weights}; pass "
                                 "net=YOUR_NETWORK")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            try:
                net = load_model(self.model_name, weights=self.weights)
            except ModelNameError as exc:
                raise ConvsightError(f"cannot rebuild the model of this atlas by name ({exc}); "
                                     "pass net=YOUR_NETWORK") from None
        net.input_size = self.input_size
        net.resize_ratio = self.resize_ratio
        self._net = net
        return net

    def image(self, image_id: int):
        """Image ``image_id`` as mined: resized and centre-cropped, a (C, H, W) tensor in [0, 1]
        (C = 3 for RGB networks, 1 for gray ones)."""
        from .images import load_image, to_tensor

        if self.source is not None:
            if not 0 <= int(image_id) < len(self.image_paths):
                raise ConvsightError(f"image id {image_id} is out of range: this atlas lists "
                                     f"{len(self.image_paths)} images")
            item = self.source[int(image_id)]
            if isinstance(item, (tuple, list)) and not isinstance(item[0], (int, float)):
                item = item[0]
            image = load_image(item)
        else:
            path = self.image_file(image_id)
            try:
                image = load_image(path)
            except ImageError as exc:  # named as the atlas lists it, not where it lives
                raise ImageError(str(exc).replace(str(path), self.shown_name(path))) from None
        return to_tensor(image, self.input_size, self.resize_ratio, len(self.mean))

    def image_file(self, image_id: int) -> Path:
        """The file of image ``image_id``: a relative path is taken from the atlas folder. With
        ``confined`` set (the explorer does, unless ``--allow-outside``), the file, symbolic
        links followed, must lie inside ``image_folders()``, else ``ConvsightError``."""
        if not 0 <= int(image_id) < len(self.image_paths):
            raise ConvsightError(f"image id {image_id} is out of range: this atlas lists "
                                 f"{len(self.image_paths)} images")
        item = Path(self.image_paths[int(image_id)])
        if str(item).startswith(("dataset[", "images[")):
            raise ConvsightError("this atlas was mined from a Dataset or in-memory images, "
                                 "which are not saved with it; set atlas.source = THAT_DATASET")
        if not item.is_absolute() and self.path is not None and (self.confined
                                                                 or not item.exists()):
            item = self.path / item
        if self.confined and not inside(item.resolve(), self.image_folders()):
            raise ConvsightError(f"image {image_id} ({self.shown_name(item)}) is outside the "
                                 "atlas folder and the image folders recorded when it was mined; "
                                 "it is not read (serve --allow-outside reads it)")
        return item

    def image_folders(self) -> list[Path]:
        """Where the atlas's images may be read from when ``confined``: the atlas folder and the
        folders recorded at mining time (``info["image_folders"]``; for atlases mined before
        that record, the folders of the listed images), resolved; a folder that holds the
        user's home folder (``/``, ``/home``) or is it does not count (too broad)."""
        if self._folders is None:
            recorded = self.info.get("image_folders")
            if not (isinstance(recorded, list) and all(isinstance(f, str) for f in recorded)):
                recorded = sorted({str(Path(p).parent) for p in self.image_paths
                                   if Path(p).is_absolute()})
            home = Path.home().resolve()
            folders = [Path(f).resolve() for f in recorded if Path(f).is_absolute()]
            folders = [f for f in folders if not inside(home, [f])]
            self._folders = ([self.path.resolve()] if self.path is not None else []) + folders
        return self._folders

    def shown_name(self, path: Path) -> str:
        """A file's name as errors show it: relative to the atlas folder or an image folder, or
        just its name (never where the user keeps their files)."""
        for folder in ([self.path] if self.path is not None else []) + self.image_folders():
            try:
                return str(Path(path).relative_to(folder))
            except ValueError:
                continue
        return Path(path).name

    def receptive_field(self, layer: str, net=None, context: str = "exact"):
        """The layer's receptive field at the atlas' input size (cached); ``context="local"``
        holds global-context gates fixed."""
        from .receptive import receptive_field

        if (layer, context) not in self._fields:
            self._layer(layer)
            model = self.network(allow_random=True, net=net)
            self._fields[layer, context] = receptive_field(model, layer, input_size=self.input_size,
                                                           context=context)
        return self._fields[layer, context]

    def crop_rule(self, layer: str, net=None) -> str:
        """The rule that cut the layer's stored boxes; for a layer without stored boxes (mined
        before they were), the default: the exact box when it is finite, else the local one."""
        stored = self.crops.get(layer, {}).get("crop")
        if stored is not None:
            return stored
        return "local" if self.receptive_field(layer, net).is_global else "exact"

    def hit_box(self, layer: str, hit: Hit, crop: str | None = None, net=None
                ) -> tuple[int, int, int, int]:
        """The (top, left, bottom, right) box a hit's patch is cut from under rule ``crop`` (default:
        the layer's ``crop_rule``): stored when the layer was mined with that rule, else computed
        (exact and local boxes are not clipped to the image; effective ones lie inside it)."""
        rule = check_crop(crop) if crop is not None else self.crop_rule(layer, net)
        if hit.box is not None and rule == self.crops.get(layer, {}).get("crop"):
            return hit.box
        if rule != "effective":
            return tuple(int(v) for v in self.receptive_field(layer, net, rule).box(hit.y, hit.x))
        key = (layer, hit.channel, hit.image, hit.y, hit.x)
        if key not in self._effective:
            self._effective[key] = self._effective_box(layer, hit, net)
        return self._effective[key]

    def _effective_box(self, layer: str, hit: Hit, net) -> tuple[int, int, int, int]:
        from .receptive import DEFAULT_Q, effective_boxes

        try:
            model = self.network(net=net)
            x = model.normalize(self.image(hit.image)[None])
        except ConvsightError as exc:
            stored = self.crops.get(layer, {}).get("crop", "no")
            raise ConvsightError(f"this atlas cannot give crop 'effective' for layer {layer}: it "
                                 f"stores {stored} boxes, and computing effective ones needs its "
                                 f"model and images ({exc})") from None
        field = self.receptive_field(layer, net, "local")
        return effective_boxes(model, layer, x, [(hit.channel, hit.y, hit.x)], DEFAULT_Q,
                               field=field)[0]

    def box(self, layer: str, channel: int, rank: int, net=None, crop: str | None = None
            ) -> tuple[int, int, int, int]:
        """The (top, left, bottom, right) input box, inclusive, a hit's patch is cut from (see
        ``hit_box``; ``crop``: "exact", "local" or "effective", default the layer's rule)."""
        return self.hit_box(layer, self.hit(layer, channel, rank), crop, net)

    def patch(self, layer: str, channel: int, rank: int, net=None, clip: bool = False,
              crop: str | None = None):
        """A hit's patch from its preprocessed image, as a PIL image, cut by rule ``crop``:
        ``"exact"`` (receptive field), ``"local"`` (gates held fixed) or ``"effective"`` (Luo et
        al.); default: the rule the layer was mined with (``crop_rule``).

        The box is padded with the image's mean colour where it leaves the image; ``clip=True``
        keeps only the part inside the image.
        """
        return PatchCutter(self, net, keep=1, crop=crop).cut(layer, self.hit(layer, channel, rank),
                                                             clip)

    def layer_grid(self, layer: str, channels: Sequence[int] | None = None, max_units: int = 64,
                   net=None, tile: int | None = None, clip: bool = True,
                   syntheses: bool = True, crop: str | None = None) -> np.ndarray:
        """One cell per unit holding its k patches (the Zeiler & Fergus figure), as an RGB array.

        Patches are clipped to the image (``clip=True``) so that deep layers, whose receptive
        fields outgrow the image, show what they see rather than padding. Units with a stored
        synthesis (``syntheses``) show it left of their patches; a layer that has syntheses but
        was not mined shows its syntheses alone (by default the units that have one).
        """
        return layer_grid(self, layer, channels, max_units, net, tile, clip=clip,
                          syntheses=syntheses, crop=crop)

    def unit_figure(self, layer: str, channel: int, net=None, method: str = "guided") -> np.ndarray:
        """Each hit's patch beside the projection (guided backprop/deconvnet) of its activation."""
        return unit_figure(self, layer, channel, net, method)

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
    def open(cls, path: str | Path) -> "Atlas":
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
