"""Local and effective receptive fields, measured (the tables of docs/receptive_fields.md).

    python bench/effective_fields.py [--images 400] [--channels 64] [--qs 0.25,0.5,0.75,0.9]

1. Exact and local receptive fields (size, stride, gates held) of timm models with random
   weights (geometry does not depend on the weights): efficientnet_b0 blocks.1..6,
   mobilenetv3_large_100 blocks.3/5, regnety_002 s1..s3, at 224 px.
2. The default model (EfficientNet-Lite0, ImageNet weights) mined over a folder of real photo
   crops (``photo_folder(n=--images, seed=0)``): for blocks.5, blocks.10 and conv_head, the side
   of the exact box (clipped to the image) against the median side of the hits' effective boxes,
   for several q, over the top-9 hits of the first ``--channels`` channels (``all``: every one).
   The side of a box is its longer side.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import torch

import convsight
from convsight.mining import photo_folder
from convsight.mining.data import ImageSource, resolve_images
from convsight.receptive.effective import gradient_mass, smallest_box

TIMM = {"efficientnet_b0": [f"blocks.{i}" for i in range(1, 7)],
        "mobilenetv3_large_100": ["blocks.3", "blocks.5"], "regnety_002": ["s1", "s2", "s3"]}
DEFAULT_LAYERS = ["blocks.5", "blocks.10", "conv_head"]


def local_table() -> None:
    import timm

    print("model | layer | exact | local (gates held)")
    for name, layers in TIMM.items():
        torch.manual_seed(0)
        module = timm.create_model(name, pretrained=False).eval()
        exact = convsight.receptive_fields(module, layers, (224, 224))
        local = convsight.receptive_fields(module, layers, (224, 224), context="local")
        for layer in layers:
            print(f"{name} | {layer} | {exact[layer].caption()} | {local[layer].caption()} "
                  f"({len(local[layer].gates)} gates)")


def side(box) -> int:
    return max(box[2] - box[0], box[3] - box[1]) + 1


def effective_table(images: int, channels: str, qs: list[float], batch: int) -> None:
    net = convsight.load_model()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "photos"
        photo_folder(folder, n=images, seed=0)
        start = time.perf_counter()
        atlas = convsight.mine(net, folder, DEFAULT_LAYERS, k=9, progress=False)
        print(f"\nmined {images} photos in {time.perf_counter() - start:.1f} s; "
              f"{torch.get_num_threads()} threads")
        items, paths = resolve_images(folder)
        source = ImageSource(items, paths, net.input_size, net.resize_ratio, net.mean, net.std)
        print("layer | exact size | exact side in the image (median) | "
              + " | ".join(f"effective q={q} (median side)" for q in qs) + " | hits | s/hit")
        for layer in DEFAULT_LAYERS:
            rf = convsight.receptive_field(net, layer, context="local")
            n = atlas.channels(layer) if channels == "all" else min(int(channels), atlas.channels(layer))
            hits = [(c, h) for c in range(n) for h in atlas.top(layer, c)]
            start = time.perf_counter()
            sides: dict[float, list[int]] = {q: [] for q in qs}
            exact_sides = []
            for i in range(0, len(hits), batch):
                part = hits[i:i + batch]
                x = torch.stack([source[h.image][1] for _, h in part])
                mass = gradient_mass(net, layer, x, [(c, h.y, h.x) for c, h in part])
                for j, (_, h) in enumerate(part):
                    top, left, bottom, right = rf.clipped_box(h.y, h.x)
                    exact_sides.append(side((top, left, bottom, right)))
                    for q in qs:
                        sides[q].append(side(smallest_box(mass[j, top:bottom + 1, left:right + 1], q)))
            per_hit = (time.perf_counter() - start) / len(hits)
            print(f"{layer} | {rf.caption()} | {statistics.median(exact_sides):.0f} | "
                  + " | ".join(f"{statistics.median(sides[q]):.0f}" for q in qs)
                  + f" | {len(hits)} | {per_hit:.3f}")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--images", type=int, default=400)
    p.add_argument("--channels", default="64", help="channels per layer, or 'all'")
    p.add_argument("--qs", default="0.25,0.5,0.75,0.9")
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--skip-timm", action="store_true")
    args = p.parse_args()
    if not args.skip_timm:
        local_table()
    effective_table(args.images, args.channels, [float(q) for q in args.qs.split(",")], args.batch)


if __name__ == "__main__":
    main()
