"""Demo section: three layer grids of top-9 dataset patches (Zeiler & Fergus)."""

from __future__ import annotations

import html
import time
from pathlib import Path

from ..atlas import Atlas
from ..errors import ConvsightError
from ..mining import mine, photo_folder
from ..models import Network
from ..pictures import save_png
from ..progress import ProgressArg
from ..receptive import receptive_field

# receptive fields 11, 35 and 83 px on Lite0's 224 px input; deeper ones outgrow the input (see
# _deeper), so a deeper layer's "patches" are whole photos
DEMO_LAYERS = ("blocks.1", "blocks.3", "blocks.5")
DEEPER = "blocks.10"
STEP = f"mining the top-9 patches of {', '.join(DEMO_LAYERS)} over photo crops"


def photo_count(quick: bool) -> int:
    """How many photo crops the demo mines."""
    return 27 if quick else 128


def informative_units(atlas: Atlas, layer: str, n: int) -> list[int]:
    """Up to ``n`` units of ``layer``, in channel order, chosen to show what units find.

    Units whose top patches come from the most different photos go first (the photos of the
    demo's folder are crops of 9 photos, one folder each: a unit whose 9 patches come from one
    photo says more about that photo than about the unit); a unit is skipped when half or more of
    its top images are top images of a unit already chosen (the same few crops again). Ties go to
    the lower channel.
    """
    a = atlas.arrays(layer)
    images = [{int(i) for i in row if i >= 0} for row in a["image"]]
    sources = [len({Path(atlas.image_paths[i]).parent.name for i in hits}) for hits in images]
    chosen: list[int] = []
    for c in sorted(range(len(images)), key=lambda c: (-sources[c], c)):
        if len(chosen) == n:
            break
        if images[c] and all(2 * len(images[c] & images[o]) < max(len(images[c]), 1)
                             for o in chosen):
            chosen.append(c)
    return sorted(chosen)


def _deeper(net: Network) -> str:
    """Why no deeper layer is shown: how far ``DEEPER``'s receptive field outgrows the input."""
    if DEEPER not in dict(net.module.named_modules()):
        return ""
    try:
        rf = receptive_field(net, DEEPER, net.input_size)
    except ConvsightError:
        return ""
    if not (rf.is_global or rf.size[0] >= net.input_size[0]):
        return ""
    size = "the whole input" if rf.is_global else f"{rf.size[0]} px"
    return (f"Deeper layers are left out: the receptive field of {DEEPER} is {size} on the "
            f"{net.input_size[0]} px input, so its patches would be whole photos. ")


def section(net: Network, out: Path, quick: bool, progress: ProgressArg = False) -> str:
    """Mine a folder of real photo crops, then draw the top-9 patches of informative units."""
    n_photos = photo_count(quick)
    photo_folder(out / "mining_photos", n=n_photos, seed=0)
    layers = [name for name in DEMO_LAYERS if name in dict(net.module.named_modules())]
    if not layers:
        return "<h2>Top-9 dataset patches</h2><p class='note'>skipped: the demo layers " \
               f"{', '.join(DEMO_LAYERS)} are not in {html.escape(net.name)}</p>"
    start = time.time()
    # batches of 8 took a third less processor time than 32 (160 crops, one thread: 6.3-8.4 s
    # against 9.9-11.9 s), and results do not depend on the batch size
    atlas = mine(net, out / "mining_photos", layers, k=9, batch_size=8, out=out / "atlas",
                 progress=progress)
    seconds = time.time() - start
    parts = []
    for layer in layers:
        file = f"mining_{layer}.png"
        units = informative_units(atlas, layer, 8 if quick else 12)
        save_png(atlas.layer_grid(layer, units, net=net), out / file)
        rf = atlas.access.receptive_field(layer, net)
        parts.append(f"<h3>{html.escape(layer)} (receptive field {rf.size[0]} px; units "
                     f"{', '.join(map(str, units))} of {atlas.channels(layer)})</h3>"
                     f'<img src="{file}" alt="top-9 patches of {html.escape(layer)}">')
    return ("<h2>Top-9 dataset patches</h2>"
            f"<p class='note'>For each unit, the 9 of {atlas.image_count} photo crops "
            "(random crops of 9 scikit-image photos) where its strongest activation is highest, "
            "cut to the unit's receptive field around that position (clipped to the image), as "
            "Zeiler &amp; Fergus (2014) show units. Shown: the units whose patches come from the "
            "most different photos, skipping units that share half their top crops with one "
            "already shown (a unit that fires on one photo only tells you about that photo). "
            + _deeper(net) +
            f"Mined in {seconds:.1f} s; the atlas is in <code>atlas/</code> (open it with "
            "<code>convsight.Atlas.open</code> or <code>convsight serve</code>).</p>"
            + "".join(parts))
