"""Shared set-up for the web, report and browser tests (no tests of its own).

A tiny atlas, mined once per test session: 24 real photo crops, the default model at a 112 px
input, three layers (the RGB stem, a 24-unit layer and a 112-unit layer, wide enough to check
the layer view of 100+ units). Servers run in a thread on a free localhost port.
"""

from __future__ import annotations

import atexit
import functools
import os
import shutil
import tempfile
from pathlib import Path

import numpy as np

import convsight

LAYERS = ["conv_stem", "blocks.2", "blocks.9"]
WIDE = "blocks.9"  # 112 units
INPUT = (112, 112)
# Screenshots are also copied here when set, to look at them after a run.
SCREENS = Path(os.environ["CONVSIGHT_SCREENS"]) if os.environ.get("CONVSIGHT_SCREENS") else None


@functools.lru_cache(maxsize=None)
def tiny_atlas_dir() -> Path:
    """Mine the tiny atlas once (about 10 s on 2 cores); removed when the session ends."""
    from convsight import mining

    root = Path(tempfile.mkdtemp(prefix="cs-web-"))
    atexit.register(shutil.rmtree, root, ignore_errors=True)
    mining.photo_folder(root / "photos", n=24, seed=0)
    net = convsight.load_model()
    net.input_size = INPUT
    mining.mine(net, root / "photos", LAYERS, k=9, batch_size=12, out=root / "atlas",
                progress=False)
    return root / "atlas"


def synthesis_settings():
    from convsight.web import SynthesisSettings

    return SynthesisSettings(preset="lucid", steps=6, size=64)


def start_server(cache_dir: Path, atlas=None, model=None, **limits):
    from convsight.web import create_app
    from convsight.web.server import BackgroundServer

    app = create_app(atlas, model, cache_dir=cache_dir, synthesis=synthesis_settings(), **limits)
    return BackgroundServer(app).start()


def start_tiny_server(cache_dir: Path, **options):
    """A server over ``tinynets.tiny_net`` at 64 px (no atlas): quick pages for tests of the
    web layer itself."""
    from ..tinynets import tiny_net

    net = convsight.as_network(tiny_net())
    net.input_size = (64, 64)
    return start_server(cache_dir, model=net, **options)


def save_screen(page, folder: Path, name: str, full_page: bool = True) -> Path:
    """Screenshot into the test's folder, and a copy into $CONVSIGHT_SCREENS (if set) to look at."""
    path = folder / f"{name}.png"
    page.screenshot(path=str(path), full_page=full_page)
    if SCREENS is not None:
        SCREENS.mkdir(parents=True, exist_ok=True)
        shutil.copy(path, SCREENS / path.name)
    return path


def atlas_patch_clipped(atlas, layer: str, channel: int, rank: int, net, side: int) -> np.ndarray:
    """``atlas.patch`` (padded with the mean colour) with the padding cut off, fitted to a tile."""
    from convsight.pictures import fit_square as square

    top, left, bottom, right = atlas.box(layer, channel, rank, net=net)
    h, w = atlas.input_size
    patch = atlas.patch(layer, channel, rank, net=net)
    assert patch.size == (right - left + 1, bottom - top + 1)
    inside = (max(left, 0) - left, max(top, 0) - top, min(right, w - 1) - left + 1,
              min(bottom, h - 1) - top + 1)
    return np.asarray(square(patch.crop(inside), side), dtype=np.float32)
