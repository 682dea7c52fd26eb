"""Demo section: a layer's units as OpenAI Microscope shows them, each unit's synthesis beside its
top dataset patches (the syntheses are stored in the atlas the mining section wrote)."""

from __future__ import annotations

import html
import time
from pathlib import Path

from ..atlas import Atlas
from ..microscope import visualize_layer
from ..mining import mine, photo_folder
from ..models import Network
from ..optimize import DEFAULT_PRESET
from ..pictures import save_png

LAYER = "blocks.5"


def _atlas(net: Network, out: Path, quick: bool) -> Atlas:
    """The mining section's atlas when it holds the layer, else a small one mined here."""
    folder = out / "atlas"
    if (folder / "atlas.json").is_file():
        atlas = Atlas.open(folder)
        if LAYER in atlas.layers and atlas.model_name == net.name:
            return atlas
    photo_folder(out / "mining_photos", n=27 if quick else 160, seed=0)
    return mine(net, out / "mining_photos", [LAYER], k=9, out=out / "microscope_atlas",
                progress=False)


def section(net: Network, out: Path, quick: bool) -> str:
    """Synthesise the first units of ``LAYER`` into the atlas and draw them beside their patches."""
    if LAYER not in dict(net.module.named_modules()):
        return (f"<h2>Microscope</h2><p class='note'>skipped: {LAYER} is not a layer of "
                f"{html.escape(net.name)}</p>")
    atlas = _atlas(net, out, quick)
    # 8 units at 160 steps: about a minute on two CPU cores (the default preset uses 512)
    units, steps, size = (range(4), 8, 48) if quick else (range(8), 160, 128)
    start = time.time()
    made = visualize_layer(net, LAYER, units, steps=steps, size=size, atlas=atlas, progress=False)
    seconds = time.time() - start
    save_png(atlas.layer_grid(LAYER, list(units), net=net), out / "microscope.png")
    return (
        f"<h2>Microscope: what each unit of {LAYER} wants, beside what it found</h2>"
        "<p>For each unit, left: the image synthesised for it (gradient ascent on its mean "
        f"activation, preset <code>{DEFAULT_PRESET}</code>: Fourier parameterisation with "
        "decorrelated colours and random jitter, scale and rotation, Olah et al. 2017); right: "
        "its top 9 dataset patches. The syntheses are stored in the atlas "
        f"(<code>{html.escape(str(atlas.path.name))}/syntheses/</code>) and shown by "
        "<code>convsight report</code> and <code>convsight serve</code> too.</p>"
        '<img src="microscope.png" alt="units: synthesis beside top patches">'
        f"<p class='note'>{len(made.channels)} units, {steps} steps at {size} px, all in one batch, "
        f"in {seconds:.0f} s (<code>convsight maximize --layer {LAYER} --atlas ATLAS</code> does "
        "every unit).</p>")
