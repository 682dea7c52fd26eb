"""Demo section: class images synthesised by activation maximisation, and plain ascent beside
them (the known failure the presets exist to avoid)."""

from __future__ import annotations

import html
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from ..capture import eval_mode
from ..models import Network
from ..optimize import DEFAULT_PRESET, maximize
from ..pictures import image_grid, save_png
from ..progress import ProgressArg
from ..targets import Target

CLASSES = [130, 11, 323, 951, 963]  # flamingo, goldfinch, monarch, lemon, pizza
STEP = "synthesising what 5 classes want (activation maximisation)"
PIXEL_PRESETS = ("none",)  # beside the default preset, on the first class


def settings(quick: bool) -> tuple[int, int]:
    """Steps and size (px) of the demo's class images."""
    return (40, 80) if quick else (64, 128)


def _probabilities(net: Network, images: torch.Tensor, classes: list[int],
                   upsample: bool = False) -> list[float]:
    """Softmax p of each image's class, seen as the ascent saw it (enlarged to the network's
    input size when the preset upsamples)."""
    if upsample:
        images = F.interpolate(images, size=net.input_size, mode="bilinear", align_corners=False)
    with torch.no_grad(), eval_mode(net.module):
        p = torch.softmax(net.module(net.normalize(images.to(net.device))), dim=1).cpu()
    return [float(p[i, c]) for i, c in enumerate(classes)]


def _compare(net: Network, compare: int, steps: int, size: int, progress: ProgressArg
             ) -> tuple[list[torch.Tensor], list[float]]:
    """The class by each of ``PIXEL_PRESETS`` at the same steps and size: images and p."""
    images, probs = [], []
    for preset in PIXEL_PRESETS:
        res = maximize(net, Target.class_score(compare), preset=preset, steps=steps, size=size,
                       progress=progress)
        probs += _probabilities(net, res.images, [compare], res.settings.upsample)
        images.append(res.images[0])
    return images, probs


def _plain_note(name: str, p_none: float) -> str:
    """What plain ascent shows, with the probability it reached in this run."""
    sure = (f"the network gives it p={p_none:.2f}, yet it is high-frequency noise" if p_none >= 0.5
            else f"it reached p={p_none:.2f} in these few steps, and it is high-frequency noise")
    return (f"<h3>Why a preset: the same class ({name}) by plain gradient ascent</h3>"
            f"<p><code>none</code> is plain ascent on the pixels: {sure}, because a network can "
            "be driven to a high score by tiny patterns people cannot see (Szegedy et al. 2014; "
            "Nguyen, Yosinski &amp; Clune 2015). The default preset's random transforms make "
            "patterns that only work at one exact pixel position useless (Olah et al. 2017). The "
            "other presets (Simonyan et al.'s 2013 L2 penalty and Yosinski et al.'s 2015 four "
            "regularisers) work on the pixels and need their 500-1000 steps; after the demo's "
            "few steps they are mostly still grey, so they are left out here (<code>convsight "
            "maximize --preset yosinski-3</code> runs one).</p>")


def section(net: Network, out: Path, quick: bool, progress: ProgressArg = False) -> str:
    """A row of class visualisations (one batch), and plain ascent beside the default preset."""
    classes = CLASSES if net.class_names and len(net.class_names) == 1000 else [0, 1, 2]
    steps, size = settings(quick)
    start = time.time()
    # the images go into the network at their own size (the preset enlarges them to the input
    # size first): a third of the time, and the objects come out larger
    row = maximize(net, [Target.class_score(c) for c in classes], steps=steps, size=size, upsample=False,
                   progress=progress)
    probs = _probabilities(net, row.images, classes, row.settings.upsample)
    # small (quick) images are enlarged so that their captions fit
    names = [f"{net.class_name(c)[:16]} p={p:.2f}" for c, p in zip(classes, probs)]
    save_png(image_grid(row.images, names, stretch=True, ncols=len(classes), min_side=160),
             out / "maximize_classes.png")
    plain = ""
    if not quick:  # plain ascent needs about 64 steps at 128 px to reach a high p
        cmp_images, cmp_probs = _compare(net, classes[0], steps, size, progress)
        cmp_names = [f"{preset} p={p:.2f}" for preset, p in zip(PIXEL_PRESETS, cmp_probs)]
        cmp_names.append(f"{DEFAULT_PRESET} p={probs[0]:.2f}")
        save_png(image_grid(cmp_images + [row.images[0]], cmp_names, stretch=True,
                            ncols=len(cmp_images) + 1, min_side=160),
                 out / "maximize_presets.png")
        plain = (_plain_note(html.escape(net.class_name(classes[0])), cmp_probs[0]) +
                 '<img src="maximize_presets.png" alt="plain ascent beside the default preset">')
    short = [f"{html.escape(net.class_name(c))} (p={p:.2f})" for c, p in zip(classes, probs)
             if p < 0.5]
    stalled = "" if not short else (
        f"<p class='note'>In these {steps} steps the ascent did not get there for "
        f"{', '.join(short)}: from noise, a short run sometimes stalls on one class of a batch; "
        "more steps or another seed get it there (<code>convsight maximize --steps 256</code>)."
        "</p>")
    seconds = time.time() - start
    return (
        "<h2>What a class wants: activation maximisation</h2>"
        "<p>Each image was changed by gradient ascent until the network's score for its class was "
        f"high, starting from noise, with the default preset (<code>{DEFAULT_PRESET}</code>: a "
        "Fourier parameterisation with decorrelated colours, and random jitter, scale and "
        f"rotation every step, Olah et al. 2017). All {len(classes)} were optimised together in "
        "one batch; p is the softmax probability the network gives the finished image.</p>"
        '<img src="maximize_classes.png" alt="class visualisations">'
        + stalled + plain +
        f"<p class='note'>To fit the demo's time budget these use {steps} steps at {size} px, "
        "fed to the network at that size, instead of the presets' 500-1000 steps (the default "
        "preset enlarges its 128 px images to the network's input size), so they are rougher "
        "than <code>convsight maximize</code> gives. Images are shown contrast-stretched (each "
        "image's own min..max mapped to black..white), as Yosinski's toolbox shows them. Made in "
        f"{seconds:.1f} s.</p>")
