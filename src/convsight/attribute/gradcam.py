"""Grad-CAM (Selvaraju et al. 2017): where in the image a layer's evidence for the target lies.

With ``A`` the layer's output (N, K, h, w) and ``g = d(target)/dA``: per-channel weights
``alpha_k = mean_ij g_kij``, map ``relu(sum_k alpha_k A_k)``, upsampled bilinearly to the input.
Guided Grad-CAM multiplies guided backprop by that map.

>>> cam = gradcam(net, x, "class:281")            # (N, 1, H, W), layer picked automatically
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..capture import capture, eval_mode
from ..errors import UnitError
from ..hooks import forward_hooks
from ..models import Network
from ..targets import evaluate, resolve_targets
from ..units import check_layer
from .gradients import TargetSpec, guided_backprop


def default_gradcam_layer(net: Network, x: torch.Tensor) -> str:
    """The last feature map with a spatial extent: the last ``Conv2d`` that runs with an output
    larger than 1x1, followed along the layers after it that keep its shape (BatchNorm,
    activation). EfficientNet-Lite0: ``act1``; resnet18: ``layer4.1.relu``; vgg: the last ReLU
    before the last max pool."""
    order: list[tuple[str, nn.Module, tuple[int, ...]]] = []

    def make_hook(name: str):
        def hook(mod: nn.Module, _inp, out) -> None:
            if isinstance(out, torch.Tensor):
                order.append((name, mod, tuple(out.shape)))
        return hook

    leaves = {name: make_hook(name) for name, mod in net.module.named_modules()
              if name and not any(True for _ in mod.children())}
    with forward_hooks(net.module, leaves), eval_mode(net.module), torch.no_grad():
        net.module(x[:1])
    last = None
    for i, (_, mod, shape) in enumerate(order):
        if isinstance(mod, nn.Conv2d) and len(shape) == 4 and shape[2] * shape[3] > 1:
            last = i
    if last is None:
        raise UnitError("Grad-CAM needs a convolutional layer with a spatial output, and this "
                        "model has none at this input size; pass layer=NAME")
    shape = order[last][2]
    while last + 1 < len(order) and order[last + 1][2] == shape:
        last += 1
    return order[last][0]


def gradcam(net: Network, x: torch.Tensor, target: TargetSpec = None, layer: str | None = None
            ) -> torch.Tensor:
    """Grad-CAM maps (N, 1, H, W) for a normalised batch ``x`` (not normalised to [0, 1])."""
    targets = resolve_targets(target, x.shape[0])
    layer = layer or default_gradcam_layer(net, x)
    check_layer(net, layer)
    held: dict[str, torch.Tensor] = {}

    def hook(_mod: nn.Module, _inp, out):
        if not isinstance(out, torch.Tensor) or out.dim() != 4:
            shape = tuple(out.shape[1:]) if isinstance(out, torch.Tensor) else type(out).__name__
            raise UnitError(f"Grad-CAM needs a layer with a spatial map (N, C, H, W); layer "
                            f"{layer} outputs {shape}")
        # The copy goes on down the network; ``out`` itself stays untouched by later in-place ops,
        # so d(target)/d(out) is well defined. A module run several times keeps its last output.
        held["a"] = out
        return out.clone()

    x = x.detach().clone().requires_grad_(True)  # builds the graph even if every weight is frozen
    with forward_hooks(net.module, {layer: hook}), torch.enable_grad():
        values, _ = evaluate(net, x, targets, stop=False)
        if "a" not in held:
            raise UnitError(f"layer {layer} did not run in the forward pass; pick one that does")
        a = held["a"]
        grad = None
        if values.requires_grad and a.requires_grad:
            (grad,) = torch.autograd.grad(values.sum(), a, allow_unused=True)
    a = a.detach()
    if grad is None:  # the target does not depend on this layer
        return torch.zeros(x.shape[0], 1, *x.shape[-2:], dtype=x.dtype, device=x.device)
    weights = grad.mean(dim=(2, 3), keepdim=True)
    cam = F.relu((weights * a).sum(dim=1, keepdim=True))
    return F.interpolate(cam, size=x.shape[-2:], mode="bilinear", align_corners=False)


def guided_gradcam(net: Network, x: torch.Tensor, target: TargetSpec = None,
                   layer: str | None = None, batch_size: int | None = None, others: str = "gate"
                   ) -> torch.Tensor:
    """Guided Grad-CAM: guided backprop (N, C, H, W) times the Grad-CAM map."""
    targets = resolve_targets(target, x.shape[0])
    return guided_backprop(net, x, targets, batch_size, others) * gradcam(net, x, targets, layer)


def random_grid_map(net: Network, x: torch.Tensor, options: dict, generator: torch.Generator
                    ) -> torch.Tensor:
    """A random map made like Grad-CAM's (convsight.trust): uniform numbers on the Grad-CAM
    layer's grid, upsampled bilinearly -> (N, 1, H, W)."""
    n, _, h, w = x.shape
    layer = options.get("layer") or default_gradcam_layer(net, x)
    with capture(net.module, [layer], stop=True) as acts, torch.no_grad():
        net.module(x[:1])
    gh, gw = acts[layer].shape[-2:]
    low = torch.rand((n, 1, gh, gw), generator=generator).to(x.device)
    return F.interpolate(low, size=(h, w), mode="bilinear", align_corners=False)
