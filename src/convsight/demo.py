"""``convsight demo``: one folder with an ``index.html`` showing what convsight sees in a network.

Each capability contributes a *section*: a function ``(network, folder, quick) -> html`` that
writes its pictures into ``folder`` and returns an HTML fragment linking them. ``SECTIONS`` lists
them as ``"module:function"`` paths in page order.
"""

from __future__ import annotations

import html
import importlib
import time
from pathlib import Path

from .models import Network, as_network, load_model

SECTIONS = [
    "convsight.demo_sections:predictions",
    "convsight.demo_sections:layers",
    "convsight.demo_sections:filters",
    "convsight.mining.demo:layer_grids",
    "convsight.demo_sections:report",
    "convsight.attribute.demo_section:attributions",
    "convsight.optimize.demo_section:syntheses",
]

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
         sections: list[str] | None = None) -> Path:
    """Write the demo folder and return the path of its ``index.html``."""
    from tqdm.auto import tqdm

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    net = as_network(model) if model is not None else load_model()
    start = time.time()
    parts = []
    names = sections or SECTIONS
    for spec in tqdm(names, desc="demo", unit="section"):
        module_name, func_name = spec.split(":")
        func = getattr(importlib.import_module(module_name), func_name)
        parts.append(f"<section>{func(net, out, quick)}</section>")
    page = PAGE.format(name=html.escape(net.name), h=net.input_size[0], w=net.input_size[1],
                       weights=html.escape(str(net.info.get("weights", "?"))),
                       seconds=time.time() - start, body="\n".join(parts))
    index = out / "index.html"
    index.write_text(page, encoding="utf-8")
    return index
