"""An atlas's model and images: what its pictures and computed boxes need beyond its data.

``AtlasAccess(atlas)`` rebuilds the model an atlas was mined from (or takes the one given),
reads its images as the network saw them, keeps receptive fields and effective boxes once
computed, and gives the box each hit's patch is cut from under a crop rule. ``convsight.Atlas``
keeps one (``atlas.access``) behind its conveniences (``atlas.network()``, ``atlas.patch(...)``,
...); the explorer makes its own, ``confined`` to the atlas and image folders.

>>> access = AtlasAccess(convsight.Atlas.open("atlas"))
>>> access.hit_box("blocks.3", access.atlas.hit("blocks.3", 7, 0), crop="effective")
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import torch

from .atlas_data import AtlasData, Hit, check_crop
from .errors import ConvsightError, ImageError, ModelNameError
from .files import inside
from .images import load_image, to_tensor
from .models import Network, as_network, load_model
from .receptive import DEFAULT_Q, ReceptiveField, effective_boxes, receptive_field

__all__ = ["AtlasAccess"]


class AtlasAccess:
    """The model and images of ``atlas``. ``net``: the network to use (default: rebuilt by name
    when first needed); ``confined``: read image files only inside ``image_folders()`` (the
    explorer's rule, unless ``serve --allow-outside``). Threads may share one (the explorer's
    do): its caches only gain entries, each the same whichever thread computes it."""

    def __init__(self, atlas: AtlasData, net: Any = None, confined: bool = False) -> None:
        self.atlas = atlas
        self.confined = confined
        self._net: Network | None = as_network(net) if net is not None else None
        self._fields: dict[tuple[str, str], ReceptiveField] = {}
        self._folders: list[Path] | None = None
        self._effective: dict[tuple, tuple[int, int, int, int]] = {}

    @classmethod
    def of(cls, atlas: AtlasData | AtlasAccess) -> AtlasAccess:
        """``atlas`` itself when it is an ``AtlasAccess``, else a new one for that atlas."""
        return atlas if isinstance(atlas, AtlasAccess) else cls(atlas)

    def network(self, allow_random: bool = False, net: Any = None) -> Network:
        """The atlas's model: ``net`` when given (as a ``Network``), else the one this access was
        made with, else rebuilt by name (``convsight.load_model(model_name, weights)``, once)."""
        if net is not None:
            return as_network(net)
        if self._net is not None:
            return self._net
        atlas = self.atlas
        if atlas.model_name == "custom":
            raise ConvsightError("this atlas was mined from a custom model that convsight cannot "
                                 "rebuild by name; pass net=YOUR_NETWORK")
        if atlas.weights_source == "random initialisation" and not allow_random:
            raise ConvsightError(f"this atlas was mined from {atlas.model_name} with random weights, "
                                 "which cannot be rebuilt; pass net=THAT_NETWORK")
        if atlas.weights is not None and not Path(atlas.weights).is_file():
            raise ConvsightError(f"the weights file of this atlas is gone: {atlas.weights}; pass "
                                 "net=YOUR_NETWORK")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            try:
                net = load_model(atlas.model_name, weights=atlas.weights)
            except ModelNameError as exc:
                raise ConvsightError(f"cannot rebuild the model of this atlas by name ({exc}); "
                                     "pass net=YOUR_NETWORK") from None
        net.input_size = atlas.input_size
        net.resize_ratio = atlas.resize_ratio
        self._net = net
        return net

    def image(self, image_id: int) -> torch.Tensor:
        """Image ``image_id`` as mined: resized and centre-cropped, a (C, H, W) tensor in [0, 1]
        (C = 3 for RGB networks, 1 for gray ones)."""
        atlas = self.atlas
        if atlas.source is not None:
            if not 0 <= int(image_id) < len(atlas.image_paths):
                raise ConvsightError(f"image id {image_id} is out of range: this atlas lists "
                                     f"{len(atlas.image_paths)} images")
            item = atlas.source[int(image_id)]
            if isinstance(item, (tuple, list)) and not isinstance(item[0], (int, float)):
                item = item[0]
            image = load_image(item)
        else:
            path = self.image_file(image_id)
            try:
                image = load_image(path)
            except ImageError as exc:  # named as the atlas lists it, not where it lives
                raise ImageError(str(exc).replace(str(path), self.shown_name(path))) from None
        return to_tensor(image, atlas.input_size, atlas.resize_ratio, len(atlas.mean))

    def image_file(self, image_id: int) -> Path:
        """The file of image ``image_id``: a relative path is taken from the atlas folder. With
        ``confined`` set (the explorer does, unless ``--allow-outside``), the file, symbolic
        links followed, must lie inside ``image_folders()``, else ``ConvsightError``."""
        atlas = self.atlas
        if not 0 <= int(image_id) < len(atlas.image_paths):
            raise ConvsightError(f"image id {image_id} is out of range: this atlas lists "
                                 f"{len(atlas.image_paths)} images")
        item = Path(atlas.image_paths[int(image_id)])
        if str(item).startswith(("dataset[", "images[")):
            raise ConvsightError("this atlas was mined from a Dataset or in-memory images, "
                                 "which are not saved with it; set atlas.source = THAT_DATASET")
        if not item.is_absolute() and atlas.path is not None and (self.confined
                                                                 or not item.exists()):
            item = atlas.path / item
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
        atlas = self.atlas
        if self._folders is None:
            recorded = atlas.info.get("image_folders")
            if not (isinstance(recorded, list) and all(isinstance(f, str) for f in recorded)):
                recorded = sorted({str(Path(p).parent) for p in atlas.image_paths
                                   if Path(p).is_absolute()})
            home = Path.home().resolve()
            folders = [Path(f).resolve() for f in recorded if Path(f).is_absolute()]
            folders = [f for f in folders if not inside(home, [f])]
            self._folders = ([atlas.path.resolve()] if atlas.path is not None else []) + folders
        return self._folders

    def shown_name(self, path: Path) -> str:
        """A file's name as errors show it: relative to the atlas folder or an image folder, or
        just its name (never where the user keeps their files)."""
        atlas = self.atlas
        for folder in ([atlas.path] if atlas.path is not None else []) + self.image_folders():
            try:
                return str(Path(path).relative_to(folder))
            except ValueError:
                continue
        return Path(path).name

    def receptive_field(self, layer: str, net: Any = None, context: str = "exact") -> ReceptiveField:
        """The layer's receptive field at the atlas' input size (cached); ``context="local"``
        holds global-context gates fixed."""
        if (layer, context) not in self._fields:
            self.atlas.channels(layer)  # a layer of the atlas, else UnknownLayerError
            model = self.network(allow_random=True, net=net)
            self._fields[layer, context] = receptive_field(model, layer, context=context,
                                                           input_size=self.atlas.input_size)
        return self._fields[layer, context]

    def crop_rule(self, layer: str, net: Any = None) -> str:
        """The rule that cut the layer's stored boxes; for a layer without stored boxes (mined
        before they were), the default: the exact box when it is finite, else the local one."""
        stored = self.atlas.crops.get(layer, {}).get("crop")
        if stored is not None:
            return stored
        return "local" if self.receptive_field(layer, net).is_global else "exact"

    def hit_box(self, layer: str, hit: Hit, crop: str | None = None, net: Any = None
                ) -> tuple[int, int, int, int]:
        """The (top, left, bottom, right) box a hit's patch is cut from under rule ``crop`` (default:
        the layer's ``crop_rule``): stored when the layer was mined with that rule, else computed
        (exact and local boxes are not clipped to the image; effective ones lie inside it)."""
        rule = check_crop(crop) if crop is not None else self.crop_rule(layer, net)
        if hit.box is not None and rule == self.atlas.crops.get(layer, {}).get("crop"):
            return hit.box
        if rule != "effective":
            return tuple(int(v) for v in self.receptive_field(layer, net, rule).box(hit.y, hit.x))
        key = (layer, hit.channel, hit.image, hit.y, hit.x)
        if key not in self._effective:
            self._effective[key] = self._effective_box(layer, hit, net)
        return self._effective[key]

    def _effective_box(self, layer: str, hit: Hit, net: Any) -> tuple[int, int, int, int]:
        try:
            model = self.network(net=net)
            x = model.normalize(self.image(hit.image)[None])
        except ConvsightError as exc:
            stored = self.atlas.crops.get(layer, {}).get("crop", "no")
            raise ConvsightError(f"this atlas cannot give crop 'effective' for layer {layer}: it "
                                 f"stores {stored} boxes, and computing effective ones needs its "
                                 f"model and images ({exc})") from None
        field = self.receptive_field(layer, net, "local")
        return effective_boxes(model, layer, x, [(hit.channel, hit.y, hit.x)], DEFAULT_Q,
                               field=field)[0]

    def box(self, layer: str, channel: int, rank: int, net: Any = None, crop: str | None = None
            ) -> tuple[int, int, int, int]:
        """The (top, left, bottom, right) input box, inclusive, a hit's patch is cut from (see
        ``hit_box``; ``crop``: "exact", "local" or "effective", default the layer's rule)."""
        return self.hit_box(layer, self.atlas.hit(layer, channel, rank), crop, net)

