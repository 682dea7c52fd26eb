"""Demo section: first-layer filters, a depthwise layer, and a face network's hidden units."""

from __future__ import annotations

import html
from pathlib import Path

import torch

from ..faces import train_face_network
from ..figures import filter_grid
from ..filters import first_conv_layer, weight_images
from ..models import Network
from ..pictures import grid, label, save_png, upscale
from ..progress import ProgressArg

STEP = "first-layer filters, and a small face network trained now"
HIDDEN = 32          # hidden units of the face network
SHOWN = 8            # at most this many of them are shown
SAME = 0.9           # |cosine| of two units' weights above which they count as copies
WEAK = 0.1           # units with less influence than this fraction of the strongest's are skipped


def distinct_units(net: Network, n: int = SHOWN) -> tuple[list[int], torch.Tensor, torch.Tensor]:
    """Hidden units of the face network that differ, picked greedily; also every unit's
    influence and the |cosine| matrix of their weights.

    A unit's influence is how much one unit of its activation moves the face-vs-non-face score
    (its two output weights' difference) times the norm of its weights. The first pick is the
    most influential unit; each next one is the unit least like those picked (smallest largest
    |cosine| of the mean-free weights), among units with at least ``WEAK`` of the top influence,
    until ``n`` are picked or every unit left is a copy (|cosine| > ``SAME``) of a picked one.
    """
    m = net.module
    w = m.hidden.weight.detach().float()
    w = w - w.mean(1, keepdim=True)
    w = w / w.norm(dim=1, keepdim=True).clamp_min(1e-12)
    cos = (w @ w.T).abs()
    out = m.out.weight.detach().float()
    influence = (out[1] - out[0]).abs() * m.hidden.weight.detach().float().norm(dim=1)
    candidates = [i for i in range(len(w)) if influence[i] >= WEAK * influence.max()]
    chosen = [int(influence.argmax())]
    while len(chosen) < n:
        rest = [i for i in candidates if i not in chosen]
        if not rest:
            break
        best = min(rest, key=lambda i: (float(cos[i, chosen].max()), i))
        if float(cos[best, chosen].max()) > SAME:
            break
        chosen.append(best)
    return chosen, influence, cos


def _face_units(out: Path, quick: bool) -> str:
    """Train the face network, draw its distinct hidden units, say how they were chosen."""
    faces = train_face_network(hidden=HIDDEN, epochs=150 if quick else 300)
    net = faces.network
    chosen, influence, cos = distinct_units(net)
    others = [i for i in range(HIDDEN) if i not in chosen]
    like = {u: [i for i in others if int(cos[i, chosen].argmax()) == k and
                float(cos[i, chosen].max()) > SAME] for k, u in enumerate(chosen)}
    weak = [i for i in others if influence[i] < WEAK * influence.max()
            and not any(i in v for v in like.values())]
    images = weight_images(net, "hidden", units=chosen)
    tiles = [label(upscale(img, 4), f"{u}" + (f" +{len(like[u])} alike" if like[u] else ""))
             for u, img in zip(chosen, images)]
    save_png(grid(tiles, ncols=len(tiles) if len(tiles) <= 6 else 4, pad=4, background=1.0),
             out / "face_units.png")
    copies = sum(len(v) for v in like.values())
    rest = len(others) - copies - len(weak)
    return ("<h3>Hidden units of a network trained on faces</h3>"
            f"<p class='note'>A 625-{HIDDEN}-2 fully connected network trained in "
            f"{faces.seconds:.1f} s on scikit-image's lfw_subset (faces vs non-faces, 25x25; "
            f"test accuracy {faces.test_accuracy:.2f}). Each tile is one hidden unit's weights "
            "reshaped to the image: mostly face-like templates. "
            f"The {len(chosen)} units shown were "
            "picked to differ: first the unit that moves the face-vs-non-face score most, then "
            "each time the unit least like those already picked (cosine of their mean-free "
            f"weights). Of the other {len(others)}, {copies} are near copies of a unit shown "
            f"(|cosine| above {SAME}; \"+k alike\" under it), {len(weak)} hardly move the score"
            + (f" and {rest} differ but did not fit" if rest else "") +
            ": with 150 training images the network needs only a few templates.</p>"
            '<img src="face_units.png" alt="face network hidden units">')


def section(net: Network, out: Path, quick: bool, progress: ProgressArg = False) -> str:
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
    parts.append(_face_units(out, quick))
    return "".join(parts)
