"""Explain one image: gradient, guided backprop, deconvnet, SmoothGrad, Grad-CAM, guided Grad-CAM,
occlusion.

>>> import convsight
>>> net = convsight.load_model()
>>> x = net.preprocess(convsight.sample_images()["chelsea"])      # normalised (1, 3, 224, 224)
>>> g = convsight.attribute(net, x, "class:281", method="guided")  # (1, 3, 224, 224)
>>> cam = convsight.attribute(net, x, method="gradcam")            # (1, 1, 224, 224), top class
>>> occ = convsight.attribute(net, x, method="occlusion", window=16, stride=8)
>>> from convsight.pictures import render_attribution
>>> picture = render_attribution(g[0], kind="rgb")                  # (224, 224, 3) in [0, 1]

This package computes; it draws nothing (pictures: ``convsight.pictures``; the classic
"image | gradient | guided | deconvnet" figure: ``convsight.figures.attribution_figure``).

The guided and deconvnet rules reach every rectifier the forward pass runs (``nn.ReLU`` in place
or reused, ``F.relu``, ``torch.relu``, ``Tensor.relu_``, ReLU6, ``hardtanh(0, 6)``,
``clamp(min=0)``) without modifying the model; see ``rectifiers.py`` and docs/attribution.md.
"""

from __future__ import annotations

import inspect
import sys
import types
from typing import Any

import torch

from ..errors import ConvsightError, ImageError
from ..models import Network, as_network
from ..targets import resolve_targets
from .gradcam import default_gradcam_layer, gradcam
from .gradients import input_gradient
from .occlusion import occlusion
from .rectifiers import check_rule, rectifier_rule
from .registry import (Method, MethodNames, method_info, methods, random_pixels, register_method,
                       unregister_method)
from .smoothgrad import smoothgrad

METHODS = MethodNames()  # every registered method's name, read from the registry at each use


def image_batch(images: Any, net: Network, who: str = "attribute") -> tuple[torch.Tensor, bool]:
    """(batch (N, C, H, W), whether one image (C, H, W) was given); clear errors otherwise."""
    if not isinstance(images, torch.Tensor):
        raise ImageError(f"{who} needs a normalised image tensor (N, C, H, W) or (C, H, W) as "
                         f"made by Network.preprocess, got {type(images).__name__}")
    single = images.dim() == 3
    x = images[None] if single else images
    if x.dim() != 4 or x.shape[0] == 0 or not x.is_floating_point():
        raise ImageError(f"{who} needs a float tensor (N, C, H, W) or (C, H, W) with N >= 1, "
                         f"got {images.dtype} of shape {tuple(images.shape)}")
    if x.shape[1] != net.channels:
        raise ImageError(f"images have {x.shape[1]} channels but the network takes "
                         f"{net.channels}; shape {tuple(images.shape)}")
    return x, single


def attribute(model: Any, images: torch.Tensor, target: Any = None, method: str = "gradient",
              **kw: Any) -> torch.Tensor:
    """Attribution of ``target`` w.r.t. the normalised input ``images``, shaped like the images.

    ``target``: None (each image's top class score), ``"class:281"``, ``"prob:281"``,
    ``"LAYER:C"``, ``"LAYER:C@Y,X"``, an int class, a ``Target``, or a list with one per image.
    ``method``: gradient, guided, deconv, smoothgrad (``samples=25, noise=0.15, base="gradient",
    seed=None``), gradcam (``layer=``; returns (N, 1, H, W)), guided-gradcam (``layer=``),
    occlusion (``window=16, stride=8, baseline=0.0`` (a value of the normalised input, 0 = the mean
    colour, or "blur"), ``progress=False``; see ``occlusion.py``), or any method added with
    ``register_method`` (``registry.py``).
    ``batch_size`` bounds the images per backward pass (occlusion: occluded copies per forward); ``others="gate"|"gradient"`` sets the rule
    for non-rectifying activations in guided/deconv (see docs/attribution.md).

    >>> convsight.attribute(net, x, "blocks.5:12@3,4", method="deconv").shape
    torch.Size([1, 3, 224, 224])
    """
    net = as_network(model)
    record = method_info(method)
    unknown = sorted(set(kw) - record.options)
    if unknown:
        raise ConvsightError(f"method {method} takes no option {', '.join(unknown)}; its options "
                             f"are {', '.join(sorted(record.options)) or 'none'}")
    x, single = image_batch(images, net)
    device = x.device
    x = x.to(net.device)
    targets = resolve_targets(target, x.shape[0], net)
    check_rule("gradient", kw.get("others", "gate"))
    out = record.compute(net, x, targets, **kw)
    out = out.detach().to(device)
    return out[0] if single else out


class _CallablePackage(types.ModuleType):
    """``convsight.attribute(...)`` calls :func:`attribute`, while ``convsight.attribute`` stays this
    package, so ``convsight.attribute.smoothgrad`` and submodule imports work as usual."""

    def __call__(self, *args: Any, **kwargs: Any) -> torch.Tensor:
        return attribute(*args, **kwargs)


sys.modules[__name__].__class__ = _CallablePackage
__signature__ = inspect.signature(attribute)

__all__ = ["attribute", "METHODS", "Method", "MethodNames", "register_method", "unregister_method", "method_info",
           "methods", "random_pixels", "image_batch", "input_gradient", "gradcam", "default_gradcam_layer", "occlusion",
           "smoothgrad", "rectifier_rule"]
