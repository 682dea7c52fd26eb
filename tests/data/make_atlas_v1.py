"""Write ``tests/data/atlas_v1``: an atlas saved by convsight before the Atlas split (issue 19),
and the pictures that code drew from it, for ``tests/test_atlas_split.py``.

Run once with the *old* code (commit 101cd62):
``PYTHONPATH=OLD_CHECKOUT/src python tests/data/make_atlas_v1.py``. Image paths are rewritten to be
relative to the atlas folder (the photos are kept inside it), so the folder can move.
"""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import convsight
from convsight import mining
from convsight.pictures import save_png

OUT = Path(__file__).resolve().parent / "atlas_v1"
LAYERS = ["conv_stem", "blocks.2", "blocks.5"]  # exact, exact and local (SE gates) crop rules


def main() -> None:
    shutil.rmtree(OUT, ignore_errors=True)
    mining.photo_folder(OUT / "photos", n=6, seed=3, min_side=64, max_side=96)
    net = convsight.load_model()
    net.input_size = (64, 64)
    atlas = mining.mine(net, OUT / "photos", LAYERS, k=3, batch_size=6, out=OUT, progress=False)
    atlas.image_paths = [str(Path(p).relative_to(OUT)) for p in atlas.image_paths]
    atlas.info["image_folders"], atlas.info["source"] = [], "photos"
    atlas.save(OUT)
    atlas = convsight.Atlas.open(OUT)
    expected = {"version": convsight.__version__, "layers": {}}
    drawn = OUT.parent / "atlas_v1_drawn"
    shutil.rmtree(drawn, ignore_errors=True)
    drawn.mkdir()
    for layer in LAYERS:
        hit = atlas.hit(layer, 1, 0)
        expected["layers"][layer] = {
            "crop_rule": atlas.crop_rule(layer), "top": [list(map(float, (h.image, h.y, h.x, h.value)))
                                                         for h in atlas.top(layer, 1)],
            "box": list(atlas.box(layer, 1, 0)),
            "effective": list(atlas.box(layer, 1, 0, crop="effective")),
            "hit": [hit.image, hit.y, hit.x]}
        atlas.patch(layer, 1, 0).save(drawn / f"patch-{layer}.png")
        save_png(atlas.layer_grid(layer, max_units=4), drawn / f"grid-{layer}.png")
    save_png(atlas.unit_figure("blocks.2", 1, method="guided"), drawn / "unit-blocks.2.png")
    (drawn / "expected.json").write_text(json.dumps(expected, indent=1))
    print("written", OUT, drawn, file=sys.stderr)


if __name__ == "__main__":
    main()
