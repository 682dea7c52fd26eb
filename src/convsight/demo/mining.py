"""Demo section: three layer grids of top-9 dataset patches (Zeiler & Fergus)."""

from __future__ import annotations

import html
import time
from pathlib import Path

from ..mining import mine, photo_folder
from ..models import Network
from ..pictures import save_png

DEMO_LAYERS = ("blocks.1", "blocks.5", "blocks.10")


def section(net: Network, out: Path, quick: bool) -> str:
    """Mine a folder of real photo crops, then draw the top-9 patches of the first units."""
    photo_folder(out / "mining_photos", n=27 if quick else 160, seed=0)
    layers = [name for name in DEMO_LAYERS if name in dict(net.module.named_modules())]
    if not layers:
        return "<h2>Top-9 dataset patches</h2><p class='note'>skipped: the demo layers " \
               f"{', '.join(DEMO_LAYERS)} are not in {html.escape(net.name)}</p>"
    start = time.time()
    atlas = mine(net, out / "mining_photos", layers, k=9, batch_size=32, out=out / "atlas",
                 progress=False)
    seconds = time.time() - start
    parts = []
    for layer in layers:
        file = f"mining_{layer}.png"
        save_png(atlas.layer_grid(layer, max_units=9 if quick else 16, net=net), out / file)
        rf = atlas.receptive_field(layer, net)
        parts.append(f"<h3>{html.escape(layer)} (receptive field {rf.size[0]} px)</h3>"
                     f'<img src="{file}" alt="top-9 patches of {html.escape(layer)}">')
    return ("<h2>Top-9 dataset patches</h2>"
            f"<p class='note'>For each unit, the 9 of {atlas.image_count} photo crops "
            "(scikit-image photos, cut at random) where its strongest activation is highest, "
            "cropped to the unit's receptive field around that position (clipped to the image). "
            f"Mined in {seconds:.0f} s; the atlas is in <code>atlas/</code> (open it with "
            "<code>convsight.Atlas.open</code> or <code>convsight serve atlas</code>).</p>"
            + "".join(parts))
