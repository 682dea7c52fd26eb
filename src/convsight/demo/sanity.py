"""Demo section: which picture to believe? The cat's explanations as the network is randomised."""

from __future__ import annotations

import html
from pathlib import Path

from ..images import sample_images
from ..models import Network
from ..pictures import save_png
from ..trust import randomization_steps, sanity_check, trust_score

QUICK_PARTS = 4  # quick demo: the blocks merged into this many steps


def _merged(net: Network, x, parts: int):
    """A grouping that merges the block-by-block steps into ``parts`` consecutive steps."""
    steps = randomization_steps(net, x, "block")
    size = -(-len(steps) // parts)
    where = {layer: f"{steps[i][0]}..{steps[min(i + size, len(steps)) - 1][0]}"
             for i in range(0, len(steps), size) for _, members in steps[i:i + size]
             for layer in members}
    return lambda name: where[name]


def section(net: Network, out: Path, quick: bool) -> str:
    """Adebayo et al.'s cascading randomisation on the cat, and (full demo) a score table."""
    x = net.preprocess(sample_images()["chelsea"]).to(net.device)
    methods = ("gradient", "guided") if quick else ("gradient", "guided", "deconv", "gradcam")
    group = _merged(net, x, QUICK_PARTS) if quick else "block"
    rep = sanity_check(net, x, methods=methods, group=group, progress=False)
    save_png(rep.figure(tile=104 if quick else 72), out / "sanity_cat.png")
    rows = "".join(f"<tr><td>{html.escape(m)}</td>"
                   f"<td>{float(rep.spearman_abs[m][1, 0]):.2f}</td>"
                   f"<td>{float(rep.spearman_abs[m][-1, 0]):.2f}</td></tr>" for m in methods)
    parts = ["<h2>Which picture to believe: randomising the network</h2>",
             "<p class='note'>Adebayo et al. (2018): re-initialise the weights from the output "
             "down, one step per column, and redraw each explanation of the top class (grey-scale "
             "|map|). A picture that survives random weights shows the image, not what the model "
             "learned. Guided backprop keeps its picture while the top half of the network is "
             "random; the gradient changes as soon as the classifier is.</p>",
             '<img src="sanity_cat.png" alt="cascading randomisation of the cat">',
             "<table><tr><th>method</th><th>rank correlation, top step random</th>"
             f"<th>all layers random</th></tr>{rows}</table>"]
    if not quick:
        scores = [trust_score(net, x, None, m, steps=25) for m in ("gradient", "guided", "gradcam")]
        cells = "".join(f"<tr><td>{s.method}</td><td>{float(s.deletion[0]):.3f} "
                        f"({float(s.random_deletion[0]):.3f})</td><td>{float(s.insertion[0]):.3f} "
                        f"({float(s.random_insertion[0]):.3f})</td>"
                        f"<td>{html.escape(s.verdict(0))}</td></tr>" for s in scores)
        parts += ["<p class='note'>Deletion (lower is better) and insertion (higher is better) "
                  "areas of the top class probability, beside random maps of the same kind "
                  "(Petsiuk et al. 2018); <code>convsight check IMAGE</code> makes this table for "
                  "any photo.</p>",
                  f"<table><tr><th>method</th><th>deletion (random)</th><th>insertion (random)"
                  f"</th><th>verdict</th></tr>{cells}</table>"]
    return "\n".join(parts)
