"""Demo section: the cat, explained for its top class and a few units."""

from __future__ import annotations

import html
from pathlib import Path

import torch

from ..attribute import attribute
from ..capture import capture
from ..figures import attribution_figure
from ..images import sample_images
from ..models import Network
from ..pictures import grid, label, render_attribution, save_png
from ..units import layer_names


def _strong_units(net: Network, x: torch.Tensor, n_channels: int) -> list[str]:
    """The most active channels of a middle and a late layer, and one neuron at its peak."""
    names = layer_names(net)
    blocks = [n for n in names if n.startswith("blocks.") and n.count(".") == 1]
    if not blocks:
        return []
    mid, late = blocks[len(blocks) // 3], blocks[(2 * len(blocks)) // 3]
    with capture(net.module, [mid, late]) as acts, torch.no_grad():
        net.module(x)
    units = []
    late_act = acts[late][0]
    for c in late_act.flatten(1).mean(1).topk(n_channels).indices.tolist():
        units.append(f"{late}:{c}")
    mid_act = acts[mid][0]
    c = int(mid_act.flatten(1).amax(1).argmax())
    y, xx = divmod(int(mid_act[c].argmax()), mid_act.shape[-1])
    units.append(f"{mid}:{c}@{y},{xx}")
    return units


def section(net: Network, out: Path, quick: bool) -> str:
    """Image | gradient | guided backprop | deconvnet for the cat's top class and a few units."""
    photo = sample_images()["chelsea"]
    x = net.preprocess(photo).to(net.device)
    targets = [None] + _strong_units(net, x, 1 if quick else 2)
    if quick:
        targets = targets[:2]
    fig = attribution_figure(net, x[0], targets, methods=["gradient", "guided", "deconv"])
    save_png(fig, out / "attribution_cat.png")
    parts = ["<h2>What the network looks at: gradient, guided backprop, deconvnet</h2>",
             "<p class='note'>Each row explains one target on the cat photo: its top class, then "
             "units (LAYER:C is a channel's mean, LAYER:C@Y,X one neuron). Gradient: plain "
             "backpropagation; guided backprop also zeroes negative signals at every ReLU6; "
             "deconvnet ignores the forward pass at rectifiers. Grey is zero; each picture is "
             "scaled on its own (99.5th percentile).</p>",
             '<img src="attribution_cat.png" alt="attribution figure for the cat">']
    if not quick:
        cam = attribute(net, x, method="gradcam")[0]
        rgb01 = net.denormalize(x)[0].clamp(0, 1)
        tiles = [label(rgb01.permute(1, 2, 0).cpu().numpy(), "image"),
                 label(render_attribution(cam, "heatmap", image=rgb01), "Grad-CAM"),
                 label(render_attribution(attribute(net, x, method="guided-gradcam")[0], "rgb"),
                       "guided Grad-CAM"),
                 label(render_attribution(attribute(net, x, method="smoothgrad", samples=10,
                                                    seed=0)[0], "saliency"), "SmoothGrad |max|"),
                 label(render_attribution(attribute(net, x)[0], "saliency"), "gradient |max|")]
        save_png(grid(tiles, ncols=len(tiles), pad=4), out / "attribution_cat_more.png")
        parts += ["<p class='note'>Top class again: Grad-CAM over the photo, guided Grad-CAM, and "
                  "Simonyan's saliency (max |gradient| over colours) with and without SmoothGrad "
                  "(10 noisy copies).</p>",
                  '<img src="attribution_cat_more.png" alt="Grad-CAM and saliency for the cat">']
    parts.append("<p class='note'>Targets: " + ", ".join(
        html.escape("top class" if t is None else str(t)) for t in targets) + "</p>")
    return "\n".join(parts)
