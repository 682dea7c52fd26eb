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
from ..progress import ProgressArg
from .mining import informative_units, photo_count

LAYER = "blocks.5"
STEP = f"synthesising an image for units of {LAYER}"


def settings(quick: bool) -> tuple[int, int, int]:
    """Units, steps and size (px) of the demo's syntheses."""
    return (4, 32, 96) if quick else (6, 64, 128)


def _atlas(net: Network, out: Path, quick: bool) -> Atlas:
    """The mining section's atlas when it holds the layer, else a small one mined here."""
    folder = out / "atlas"
    if (folder / "atlas.json").is_file():
        atlas = Atlas.open(folder)
        if LAYER in atlas.layers and atlas.model_name == net.name:
            return atlas
    photo_folder(out / "mining_photos", n=photo_count(quick), seed=0)
    return mine(net, out / "mining_photos", [LAYER], k=9, out=out / "microscope_atlas",
                progress=False)


def section(net: Network, out: Path, quick: bool, progress: ProgressArg = False) -> str:
    """Synthesise informative units of ``LAYER`` into the atlas and draw them beside their
    patches."""
    if LAYER not in dict(net.module.named_modules()):
        return (f"<h2>Microscope</h2><p class='note'>skipped: {LAYER} is not a layer of "
                f"{html.escape(net.name)}</p>")
    atlas = _atlas(net, out, quick)
    n, steps, size = settings(quick)
    units = informative_units(atlas, LAYER, n)
    if not units:
        return f"<h2>Microscope</h2><p class='note'>skipped: no unit of {LAYER} has patches</p>"
    start = time.time()
    # the images go into the network at their own size (the preset enlarges them to the input
    # size first): at 128 px that takes a third of the time
    made = visualize_layer(net, LAYER, units, steps=steps, size=size, upsample=False, atlas=atlas,
                           overwrite=True, batch_size=len(units), progress=progress)
    seconds = time.time() - start
    save_png(atlas.layer_grid(LAYER, units, net=net), out / "microscope.png")
    return (
        f"<h2>Microscope: what each unit of {LAYER} wants, beside what it found</h2>"
        "<p>For each unit, left: the image synthesised for it (gradient ascent on its mean "
        f"activation, preset <code>{DEFAULT_PRESET}</code>: Fourier parameterisation with "
        "decorrelated colours and random jitter, scale and rotation, Olah et al. 2017); right: "
        "its top 9 dataset patches. The units are those of the mining section's grid whose "
        "patches come from the most different photos. The syntheses are stored in the atlas "
        f"(<code>{html.escape(str(atlas.path.name))}/syntheses/</code>) and shown by "
        "<code>convsight report</code> and <code>convsight serve</code> too.</p>"
        '<img src="microscope.png" alt="units: synthesis beside top patches">'
        f"<p class='note'>Units {', '.join(map(str, made.channels))}: {steps} steps at {size} px "
        f"(the preset's default is 512 steps), fed to the network at {size} px, all in one "
        f"batch, in {seconds:.1f} s (<code>convsight maximize --layer {LAYER} --atlas ATLAS"
        "</code> does every unit).</p>")
