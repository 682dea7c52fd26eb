"""``convsight demo``: one folder with an ``index.html`` showing what convsight sees in a network.

Each module of this package is one *section*: its ``section(network, folder, quick) -> html``
writes its pictures into ``folder`` and returns an HTML fragment linking them. ``SECTIONS`` lists
them in page order.
"""

from __future__ import annotations

import html
import time
from pathlib import Path
from typing import Callable

from ..models import Network, as_network, load_model
from ..progress import ProgressArg, progress_bar
from . import (attribution, filters, layers, microscope, mining, predictions, report, sanity,
               synthesis)

Section = Callable[[Network, Path, bool], str]
SECTIONS: list[Section] = [predictions.section, layers.section, filters.section, mining.section,
                           microscope.section, report.section, attribution.section, sanity.section,
                           synthesis.section]

PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>convsight demo: {name}</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1100px; color: #222; }}
h1 {{ margin-bottom: 0; }} .sub {{ color: #666; margin-top: .2em; }}
section {{ margin: 2.5em 0; }} img {{ max-width: 100%; image-rendering: pixelated; }}
table {{ border-collapse: collapse; font-size: 13px; }}
td, th {{ border-bottom: 1px solid #ddd; padding: 2px 8px; text-align: left; }}
.cards {{ display: flex; flex-wrap: wrap; gap: 1em; }} .card {{ width: 200px; }}
.card img {{ width: 200px; image-rendering: auto; }} .note {{ color: #666; font-size: 90%; }}
</style></head><body>
<h1>convsight: how {name} sees</h1>
<p class="sub">input {h}x{w}, weights: {weights}; made in {seconds:.0f} s</p>
{body}
</body></html>
"""


def demo(out: str | Path = "demo", model: Network | None = None, quick: bool = False,
         sections: list[Section] | None = None, progress: ProgressArg = True) -> Path:
    """Write the demo folder and return the path of its ``index.html``."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    net = as_network(model) if model is not None else load_model()
    start = time.time()
    parts = []
    chosen = sections or SECTIONS
    with progress_bar(len(chosen), "demo", "section", progress) as report_done:
        for section in chosen:
            parts.append(f"<section>{section(net, out, quick)}</section>")
            report_done(1)
    page = PAGE.format(name=html.escape(net.name), h=net.input_size[0], w=net.input_size[1],
                       weights=html.escape(str(net.info.get("weights", "?"))),
                       seconds=time.time() - start, body="\n".join(parts))
    index = out / "index.html"
    index.write_text(page, encoding="utf-8")
    return index
