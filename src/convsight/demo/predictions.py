"""Demo section: the top-5 classes of each sample photo, with the photo as the network saw it."""

from __future__ import annotations

import html
from pathlib import Path

import torch

from ..capture import eval_mode
from ..images import sample_images
from ..models import Network
from ..progress import ProgressArg
from ..pictures import save_png


STEP = "top-5 predictions on the sample photos"


def section(net: Network, out: Path, quick: bool, progress: ProgressArg = False) -> str:
    """Top-5 classes for each sample photo, with the photo as the network saw it."""
    photos = sample_images()
    x = net.preprocess(list(photos.values())).to(net.device)
    with torch.no_grad(), eval_mode(net.module):  # a module left in train mode stays as it was
        probs = torch.softmax(net.module(x), dim=1).cpu()
    cards = []
    for (name, _), xi, p in zip(photos.items(), x, probs):
        save_png(net.denormalize(xi[None])[0].permute(1, 2, 0).cpu().numpy(), out / f"photo_{name}.png")
        values, idx = p.topk(min(5, p.shape[-1]))  # networks with fewer classes too
        rows = "".join(f"<tr><td>{html.escape(net.class_name(int(i)))}</td><td>{float(v):.3f}</td></tr>"
                       for v, i in zip(values, idx))
        cards.append(f'<div class="card"><img src="photo_{name}.png" alt="{name}">'
                     f"<b>{name}</b><table>{rows}</table></div>")
    return ("<h2>Top-5 predictions on the sample photos</h2>"
            "<p class='note'>Real photos shipped inside scikit-image, resized and centre-cropped "
            f"to {net.input_size[0]} px as the network sees them.</p>"
            f'<div class="cards">{"".join(cards)}</div>')
