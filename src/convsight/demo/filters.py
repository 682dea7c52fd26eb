"""Demo section: first-layer filters, a depthwise layer, and a face network's hidden units."""

from __future__ import annotations

import html
from pathlib import Path

import torch

from ..faces import train_face_network
from ..figures import filter_grid
from ..filters import first_conv_layer
from ..models import Network
from ..pictures import save_png


def section(net: Network, out: Path, quick: bool) -> str:
    """First-layer filters as RGB, a depthwise layer in grayscale, and a face network's units."""
    first = first_conv_layer(net)
    save_png(filter_grid(net, first), out / "filters.png")
    parts = [f"<h2>First-layer filters ({html.escape(first)})</h2>"
             "<p class='note'>Grey is 0; colour means sign (a red tile adds red). Each filter is "
             "scaled on its own and upscaled with nearest neighbour.</p>"
             '<img src="filters.png" alt="first-layer filters">']
    depthwise = [n for n, m in net.module.named_modules()
                 if isinstance(m, torch.nn.Conv2d) and m.groups > 1 and m.groups == m.in_channels]
    if depthwise:
        save_png(filter_grid(net, depthwise[0]), out / "filters_depthwise.png")
        parts.append(f"<h3>A depthwise layer ({html.escape(depthwise[0])})</h3>"
                     '<img src="filters_depthwise.png" alt="depthwise filters">')
    faces = train_face_network(hidden=16, epochs=150 if quick else 300)
    save_png(filter_grid(faces.network, "hidden", scale=4), out / "face_units.png")
    parts.append("<h3>Hidden units of a network trained on faces</h3>"
                 "<p class='note'>A 625-16-2 fully connected network trained in "
                 f"{faces.seconds:.1f} s on scikit-image's lfw_subset (faces vs non-faces, 25x25; "
                 f"test accuracy {faces.test_accuracy:.2f}). Each tile is one hidden unit's "
                 "weights reshaped to the image: face templates.</p>"
                 '<img src="face_units.png" alt="face network hidden units">')
    return "".join(parts)
