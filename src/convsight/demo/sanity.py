"""Demo section: which picture to believe? The cat's explanations as the network is randomised."""

from __future__ import annotations

import html
from pathlib import Path

from ..attribute.registry import GRADCAM, GRADIENT, GUIDED
from ..images import sample_images
from ..models import Network
from ..pictures import save_png
from ..progress import ProgressArg
from ..trust import SanityReport, randomization_steps, sanity_check

STEP = "randomising the network step by step: which explanation survives"
PARTS = (4, 8)           # (quick, full): the blocks merged into this many randomisation steps


def _merged(net: Network, x, parts: int):
    """A grouping that merges the block-by-block steps into ``parts`` consecutive steps, named
    short enough for the figure's columns (``blocks.15..13``), and each merged step's deepest
    block-by-block step (``blocks.13``)."""
    steps = randomization_steps(net, x, "block")
    size = -(-len(steps) // parts)
    where, deepest = {}, {}
    for i in range(0, len(steps), size):
        last = steps[min(i + size, len(steps)) - 1][0]
        name = _span(steps[i][0], last)
        deepest[name] = last
        where.update({layer: name for _, members in steps[i:i + size] for layer in members})
    return (lambda name: where[name]), deepest


def _span(first: str, last: str) -> str:
    """``blocks.15``, ``blocks.13`` -> ``blocks.15..13``; ``fc``, ``conv_head`` ->
    ``fc..conv_head``."""
    if first == last:
        return first
    a = first.rsplit(".", 1)[0] if "." in first else ""
    c, d = last.rsplit(".", 1) if "." in last else ("", last)
    return f"{first}..{d}" if a and a == c else f"{first}..{last}"


def _table(rep: SanityReport, deepest: dict[str, str]) -> str:
    """Rank correlation with the trained map after the first step, half way and at the end."""
    last = len(rep.layers)
    cols = sorted({1, (last + 1) // 2, last})
    head = "".join(f"<th>down to {html.escape(deepest.get(rep.layers[s - 1], rep.layers[s - 1]))}"
                   "</th>" for s in cols)
    rows = "".join(f"<tr><td>{html.escape(m)}</td>" + "".join(
        f"<td>{float(rep.spearman_abs[m][s, 0]):.2f}</td>" for s in cols) + "</tr>"
        for m in rep.methods)
    return (f"<table><tr><th>method: rank correlation with the trained map, layers random from "
            f"the output</th>{head}</tr>{rows}</table>")


COMPARED = (GUIDED, GRADIENT)  # the finding: guided backprop's map against the gradient's


def _finding(rep: SanityReport, deepest: dict[str, str]) -> str:
    """What the run showed, in its own numbers: guided backprop against the gradient, half way."""
    if not set(COMPARED) <= set(rep.methods) or not rep.layers:
        return ""
    half = (len(rep.layers) + 1) // 2
    down_to = html.escape(deepest.get(rep.layers[half - 1], rep.layers[half - 1]))
    g, d = (float(rep.spearman_abs[m][half, 0]) for m in COMPARED)
    first_g, first_d = (float(rep.spearman_abs[m][1, 0]) for m in COMPARED)
    return (f"In this run, with the top step random guided backprop's map still correlates "
            f"{first_g:.2f} with the trained one (the gradient's: {first_d:.2f}); with every "
            f"layer down to {down_to} random, {g:.2f} (the gradient's: {d:.2f}).")


def section(net: Network, out: Path, quick: bool, progress: ProgressArg = False) -> str:
    """Adebayo et al.'s cascading randomisation on the cat."""
    x = net.preprocess(sample_images()["chelsea"]).to(net.device)
    methods = (GRADIENT, GUIDED) if quick else (GRADIENT, GUIDED, GRADCAM)
    group, deepest = _merged(net, x, PARTS[0] if quick else PARTS[1])
    rep = sanity_check(net, x, methods=methods, group=group, progress=progress)
    save_png(rep.figure(tile=104 if quick else 96), out / "sanity_cat.png")
    parts = ["<h2>Which picture to believe: randomising the network</h2>",
             "<p class='note'>Adebayo et al. (2018): re-initialise the weights from the output "
             "down, one step per column (each step a few blocks), and redraw each explanation of "
             "the top class (grey-scale |map|). A picture that survives random weights shows the "
             f"image, not what the model learned. {_finding(rep, deepest)}</p>",
             '<img src="sanity_cat.png" alt="cascading randomisation of the cat">',
             _table(rep, deepest),
             "<p class='note'>A second test, left out here for time: delete the pixels a map "
             "ranks first and watch the class probability fall, beside random maps (deletion and "
             "insertion, Petsiuk et al. 2018). <code>convsight check IMAGE</code> makes that "
             "table for any photo, and the explorer shows it under a class attribution.</p>"]
    return "\n".join(parts)
