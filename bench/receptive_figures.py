"""The pictures of docs/receptive_fields.md: one hit with its three boxes, and a unit page.

    python bench/receptive_figures.py [--images 60] [--out docs]

Mines timm's efficientnet_b0 (random weights, saved as a state dict and loaded by name, as a
user's own weights would be) over real photo crops with ``crop="effective"``, then writes

- ``three_fields.png``: one hit of blocks.3 with its exact (whole image: squeeze-and-excitation),
  local and effective boxes drawn on the image the network saw;
- ``unit_page_effective.png``: the explorer's unit page of that unit, the first patch hovered
  (its box drawn on its whole image), screenshot by headless Chromium (playwright).
"""

from __future__ import annotations

import argparse
import tempfile
import warnings
from pathlib import Path

import numpy as np
import torch

import convsight
from convsight.mining import photo_folder
from convsight.pictures import as_pil, label, save_png

LAYER, UNIT = "blocks.3", 5
COLOURS = {"exact": (40, 90, 230), "local": (20, 170, 60), "effective": (230, 30, 30)}


def three_boxes(atlas: convsight.Atlas, net: convsight.Network, out: Path, scale: int = 2) -> Path:
    from PIL import ImageDraw

    hit = atlas.top(LAYER, UNIT)[0]
    image = as_pil(atlas.image(hit.image)).convert("RGB")
    image = image.resize((image.width * scale, image.height * scale))
    draw = ImageDraw.Draw(image)
    h, w = atlas.input_size
    words = []
    for i, (rule, colour) in enumerate(COLOURS.items()):
        top, left, bottom, right = atlas.hit_box(LAYER, hit, rule, net)
        top, left, bottom, right = max(top, 0), max(left, 0), min(bottom, h - 1), min(right, w - 1)
        inset = 2 * i  # nested outlines stay visible where boxes share an edge
        draw.rectangle((left * scale + inset, top * scale + inset, (right + 1) * scale - 1 - inset,
                        (bottom + 1) * scale - 1 - inset), outline=colour, width=2)
        words.append(f"{rule} {bottom - top + 1}x{right - left + 1}")
    picture = np.asarray(image, dtype=np.float32) / 255
    picture = label(picture, ", ".join(f"{w} ({c})" for w, c in zip(words, ("blue", "green", "red"))),
                    height=18, size=12)
    picture = label(picture, f"timm efficientnet_b0 (random weights) {LAYER}:{UNIT}, its best hit "
                             f"at ({hit.y}, {hit.x})", height=18, size=12)
    return save_png(picture, out / "three_fields.png")


def screenshot(atlas_dir: Path, net: convsight.Network, out: Path, chromium: str) -> Path:
    from playwright.sync_api import sync_playwright

    from convsight.web import create_app
    from convsight.web.server import BackgroundServer

    with tempfile.TemporaryDirectory() as cache:
        server = BackgroundServer(create_app(atlas_dir, net, cache_dir=cache)).start()
        try:
            with sync_playwright() as p:
                browser = p.chromium.launch(executable_path=chromium, headless=True,
                                            args=["--no-sandbox", "--disable-gpu"])
                page = browser.new_page(viewport={"width": 1180, "height": 900})
                page.goto(f"{server.url}/unit/{LAYER}/{UNIT}", wait_until="networkidle")
                page.wait_for_function("() => [...document.querySelectorAll('.hit img')]"
                                       ".every(i => i.complete && i.naturalWidth > 0)", timeout=120_000)
                page.hover(".hit .patch-box")
                page.wait_for_timeout(500)
                path = out / "unit_page_effective.png"
                page.screenshot(path=str(path), full_page=False)
                browser.close()
        finally:
            server.stop()
    return path


def main() -> None:
    import timm

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--images", type=int, default=60)
    p.add_argument("--out", default="docs")
    p.add_argument("--chromium", default="/usr/bin/chromium")
    args = p.parse_args()
    out = Path(args.out)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        torch.manual_seed(0)
        torch.save(timm.create_model("efficientnet_b0", pretrained=False).state_dict(), root / "b0.pth")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            net = convsight.load_model("timm:efficientnet_b0", weights=root / "b0.pth")
        photo_folder(root / "photos", n=args.images, seed=0)
        atlas = convsight.mine(net, root / "photos", [LAYER], k=9, crop="effective",
                               out=root / "atlas", progress=False)
        print(three_boxes(atlas, net, out))
        print(screenshot(root / "atlas", net, out, args.chromium))


if __name__ == "__main__":
    main()
