"""Demo section: class images synthesised by activation maximisation, and every preset on one class."""

from __future__ import annotations

import html
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from ..models import Network
from ..optimize import DEFAULT_PRESET, PRESETS, maximize
from ..pictures import image_grid, save_png

CLASSES = [130, 11, 323, 951, 963]  # flamingo, goldfinch, monarch, lemon, pizza


def _probabilities(net: Network, images: torch.Tensor, classes: list[int],
                   upsample: bool = False) -> list[float]:
    """Softmax p of each image's class, seen as the ascent saw it (enlarged to the network's
    input size when the preset upsamples)."""
    if upsample:
        images = F.interpolate(images, size=net.input_size, mode="bilinear", align_corners=False)
    with torch.no_grad():
        p = torch.softmax(net.module(net.normalize(images.to(net.device))), dim=1).cpu()
    return [float(p[i, c]) for i, c in enumerate(classes)]


def section(net: Network, out: Path, quick: bool) -> str:
    """A row of class visualisations (one batch) and every preset on one class."""
    classes = CLASSES if net.class_names and len(net.class_names) == 1000 else [0, 1, 2]
    compare = classes[0]
    steps, size = (20, 64) if quick else (200, 128)
    cmp_steps, cmp_size = (6, 48) if quick else (60, 112)
    start = time.time()
    row = maximize(net, [f"class:{c}" for c in classes], steps=steps, size=size, progress=False)
    probs = _probabilities(net, row.images, classes, row.settings.upsample)
    # small (quick) images are enlarged so that their captions fit
    names = [f"{net.class_name(c)[:16]} p={p:.2f}" for c, p in zip(classes, probs)]
    save_png(image_grid(row.images, names, stretch=True, ncols=len(classes), min_side=160),
             out / "maximize_classes.png")

    cmp_images, cmp_names = [], []
    for preset in PRESETS:
        res = maximize(net, f"class:{compare}", preset=preset, steps=cmp_steps, size=cmp_size,
                       progress=False)
        p = _probabilities(net, res.images, [compare], res.settings.upsample)[0]
        cmp_images.append(res.images[0])
        cmp_names.append(f"{preset} p={p:.2f}")
    save_png(image_grid(cmp_images, cmp_names, stretch=True, ncols=len(cmp_images), min_side=160),
             out / "maximize_presets.png")
    seconds = time.time() - start
    name = html.escape(net.class_name(compare))
    return (
        "<h2>What a class wants: activation maximisation</h2>"
        "<p>Each image was changed by gradient ascent until the network's score for its class was "
        f"high, starting from noise, with the default preset (<code>{DEFAULT_PRESET}</code>: a "
        "Fourier parameterisation with decorrelated colours, and random jitter, scale and "
        "rotation every step, Olah et al. 2017). All five were optimised together in one batch; "
        "p is the softmax probability the network gives the finished image.</p>"
        '<img src="maximize_classes.png" alt="class visualisations">'
        f"<h3>The same class ({name}) with every preset</h3>"
        "<p><code>none</code> is plain ascent: high-frequency patterns the network responds to but "
        "people do not read. Blur, pixel clipping, the L2 penalty and Lucid's Fourier "
        "parameterisation with random transforms each make the image smoother in their own way.</p>"
        '<img src="maximize_presets.png" alt="preset comparison">'
        f"<p class='note'>To fit the demo's time budget these use {steps} steps at {size} px (row) "
        f"and {cmp_steps} steps at {cmp_size} px (presets) instead of the presets' 500-1000 steps "
        "at the network's input size, so they are rougher than <code>convsight maximize</code> "
        "gives. Images are shown contrast-stretched (each image's own min..max mapped to black.."
        f"white), as Yosinski's toolbox shows them. Made in {seconds:.0f} s.</p>")
