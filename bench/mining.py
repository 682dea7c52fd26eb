"""Mining cost against plain inference, and memory against dataset size.

    python bench/mining.py [--images 256] [--reps 3] [--sizes 128,512] [--device cpu]
                           [--effective-images 64,256] [--effective-channels all] [--only-effective]

1. Mining all channels of 4 layers of the default model over a folder of real photo crops, versus
   plain inference (the full forward pass) over the same images with the same loader, alternated
   in the same run; prints the median times and their ratio (target: at most 1.10).
2. Images/s and peak resident memory of a mining run for two dataset sizes, each in a fresh
   process (memory must not grow with the number of images).
3. The cost of effective boxes (``mine(..., crop="effective")``) for all hits of the 4 layers, as
   a fraction of the mining pass over the same images (target: at most 0.25), layer by layer and
   for each dataset size of ``--effective-images``. Beside it, in the same run: the way before (one
   image copy, forward and backward pass per hit; timed on ``--effective-sample`` hits per layer
   and scaled up) and the floor: one backward pass per hit whose field is not cropped (any exact
   effective box needs the gradient of its unit, so at least that pass), the forward passes and
   the box searches counted as free. Effective boxes cost at least one backward pass per hit
   (channels x k of them, whatever the dataset size) while mining costs one forward pass per
   image, so the fraction falls as 1 / images: the bench prints the dataset size at which it
   would reach 0.25. ``--effective-channels N`` times only the first N channels of each layer and
   scales up linearly (said so in the output; fewer hits per image share each forward pass, so
   it overestimates). docs/receptive_fields.md, "What effective boxes cost", has the numbers.
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

import convsight
import convsight.capture
from convsight.mining import photo_folder
from convsight.hooks import LayerOutputs, forward_hooks, run_until_stopped
from convsight.mining.data import ImageSource, make_loader, resolve_images
from convsight.receptive.effective import gradient_mass, smallest_box
from convsight.receptive.effective_many import _Crops, hit_boxes

LAYERS = ["blocks.2", "blocks.6", "blocks.12", "conv_head"]


def plain_inference(net: convsight.Network, folder: Path, batch_size: int, workers: int
                    ) -> tuple[float, float]:
    """(wall seconds, CPU seconds of this process) for the full forward pass over the folder."""
    start, cpu = time.perf_counter(), time.process_time()
    items, paths = resolve_images(folder)
    source = ImageSource(items, paths, net.input_size, net.resize_ratio, net.mean, net.std)
    with torch.no_grad():
        for _ids, batch, _bad in make_loader(source, range(len(paths)), batch_size, workers):
            out = net.module(batch.to(net.device))
    if net.device.type == "cuda":
        torch.cuda.synchronize()
    del out
    return time.perf_counter() - start, time.process_time() - cpu


def mining(net: convsight.Network, folder: Path, batch_size: int, workers: int) -> tuple[float, float]:
    start, cpu = time.perf_counter(), time.process_time()
    convsight.mine(net, folder, LAYERS, k=9, batch_size=batch_size, workers=workers, progress=False)
    return time.perf_counter() - start, time.process_time() - cpu


def effective_cost(net: convsight.Network, folder: Path, batch_size: int, workers: int,
                   channels: str, sample: int) -> None:
    """Seconds (wall and this process' CPU) of the effective boxes of every hit, layer by layer,
    against the mining pass that found them; beside them the way before (one image copy, forward
    and backward per hit, on a sample of ``sample`` hits per layer, scaled up) and the floor for a
    hit whose field covers the image: one backward pass of one image to the input."""
    start, cpu = time.perf_counter(), time.process_time()
    atlas = convsight.mine(net, folder, LAYERS, k=9, batch_size=batch_size, workers=workers,
                           progress=False, crop="exact")
    mining_s = (time.perf_counter() - start, time.process_time() - cpu)
    items, paths = resolve_images(folder)
    source = ImageSource(items, paths, net.input_size, net.resize_ratio, net.mean, net.std)
    fields = convsight.receptive_fields(net, LAYERS, net.input_size, stop_early=True)
    images = len(paths)
    print("(before: one image copy, forward and backward pass per hit, timed on a sample; floor: "
          "one backward pass per hit not on a crop, the forward passes and box searches free)")
    print(f"effective boxes (q = {convsight.receptive.DEFAULT_Q}) against mining {images} images "
          f"({mining_s[0]:.1f} s wall, {mining_s[1]:.1f} s CPU; "
          f"{mining_s[1] / images * 1000:.0f} ms "
          f"CPU per image):")
    total = [0.0, 0.0, 0.0, 0.0]
    counts = {name: int((atlas.arrays(name)["image"] >= 0).sum()) for name in LAYERS}
    for name in LAYERS:
        a = atlas.arrays(name)
        if channels != "all":  # a slice of each layer, scaled up (said so below)
            for key in list(a):
                a[key] = a[key][:int(channels)]
        slots = [(c, j) for c, j in zip(*np.nonzero(a["image"] >= 0))]
        hits = [(int(a["image"][c, j]), int(c), int(a["y"][c, j]), int(a["x"][c, j]))
                for c, j in slots]
        everything = counts[name]
        scale = everything / max(1, len(hits))
        crops = _Crops(net, name, fields[name], net.input_size)
        cropped = sum(crops.window(h) is not None for h in hits)
        start, cpu = time.perf_counter(), time.process_time()
        hit_boxes(net, name, lambda i: source[i][1], hits, convsight.receptive.DEFAULT_Q,
                  fields[name], batch_size)
        new = ((time.perf_counter() - start) * scale, (time.process_time() - cpu) * scale)
        before = per_hit_passes(net, name, source, hits[:sample], batch_size) * everything
        floor = backward_floor(net, name, source, batch_size) * (len(hits) - cropped) * scale
        for n, v in enumerate((*new, before, floor)):
            total[n] += v
        floor_x = f"{floor / mining_s[1]:7.2f} x" if cropped < len(hits) else "   (all on crops)"
        print(f"  {name:9s} {everything:5d} hits, {cropped * scale:5.0f} on crops: {new[1]:7.1f} s "
              f"CPU ({new[1] / everything * 1000:5.1f} ms/hit; wall {new[0]:7.1f} s) = "
              f"{new[1] / mining_s[1]:7.2f} x mining | before {before / mining_s[1]:7.2f} x | "
              f"floor {floor_x}")
    note = "" if channels == "all" else \
        f" (first {channels} channels of each layer timed, scaled up)"
    print(f"  all       {sum(counts.values()):5d} hits: "
          f"{total[1]:7.1f} s CPU = {total[1] / mining_s[1]:.2f} x mining (target <= 0.25; "
          f"wall {total[0] / mining_s[0]:.2f} x); before {total[2] / mining_s[1]:.2f} x "
          f"({total[2] / total[1]:.1f}x slower); floor {total[3] / mining_s[1]:.2f} x; 0.25 at "
          f"about {images * total[1] / mining_s[1] / 0.25:.0f} images{note}")


def per_hit_passes(net: convsight.Network, layer: str, source: ImageSource, hits: list,
                   batch_size: int) -> float:
    """CPU seconds per hit the way before: one image copy per hit in a batch, forward to the layer
    and backward, the box searched in the field."""
    field = convsight.receptive_field(net, layer)
    start = time.process_time()
    for b in range(0, len(hits), batch_size):
        chunk = hits[b:b + batch_size]
        x = torch.stack([source[i][1] for i, *_ in chunk])
        mass = gradient_mass(net, layer, x, [h[1:] for h in chunk])
        for n, (_i, _c, y, xx) in enumerate(chunk):
            top, left, bottom, right = field.clipped_box(y, xx)
            smallest_box(mass[n, top:bottom + 1, left:right + 1], convsight.receptive.DEFAULT_Q)
    return (time.process_time() - start) / max(1, len(hits))


def backward_floor(net: convsight.Network, layer: str, source: ImageSource, batch_size: int,
                   rounds: int = 3) -> float:
    """CPU seconds of one backward pass of one image from one unit of ``layer`` to the input (the
    forward pass, done once, not counted): what any exact effective box of a hit whose field
    covers the whole image costs at least."""
    x = torch.stack([source[i][1] for i in range(min(batch_size, len(source)))])
    outputs = LayerOutputs([layer], lambda out: out, stop=True)
    xin = net.layout(x).requires_grad_(True)
    with torch.enable_grad(), forward_hooks(net.module, outputs.hooks()):
        run_until_stopped(net.module, xin)
    out = outputs.found[layer]
    start = time.process_time()
    for r in range(rounds):
        torch.autograd.grad(out[:, r, 0, 0].sum(), xin, retain_graph=r < rounds - 1)
    return (time.process_time() - start) / rounds / len(x)


def child(n: int, root: Path, device: str, batch_size: int, workers: int) -> None:
    """Mine ``n`` images in this fresh process; print images/s and peak memory as JSON."""
    net = convsight.load_model()
    net.module.to(device)
    folder = root / f"photos{n}"
    seconds, _cpu = mining(net, folder, batch_size, workers)
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    gpu_mb = torch.cuda.max_memory_allocated() / 2**20 if device.startswith("cuda") else 0.0
    print(json.dumps({"images": n, "seconds": seconds, "images_per_s": n / seconds,
                      "peak_rss_mb": peak_mb, "peak_gpu_mb": gpu_mb}))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--images", type=int, default=256)
    p.add_argument("--reps", type=int, default=3)
    p.add_argument("--sizes", default="128,512")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--workers", type=int, default=0)
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    p.add_argument("--effective-channels", default="all",
                   help="channels per layer whose effective boxes are timed (default all)")
    p.add_argument("--effective-sample", type=int, default=64,
                   help="hits per layer timed the way before (one pass per hit), scaled up")
    p.add_argument("--effective-images", default=None,
                   help="dataset sizes for part 3, comma-separated (default: --images)")
    p.add_argument("--only-effective", action="store_true", help="run part 3 only")
    p.add_argument("--child", type=int, default=None, help=argparse.SUPPRESS)
    p.add_argument("--root", default=None, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.child is not None:
        child(args.child, Path(args.root), args.device, args.batch_size, args.workers)
        return

    sizes = [int(s) for s in args.sizes.split(",")]
    effective = [int(s) for s in (args.effective_images or str(args.images)).split(",")]
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        for n in {*effective} if args.only_effective else {args.images, *sizes, *effective}:
            photo_folder(root / f"photos{n}", n=n, seed=0)
        net = convsight.load_model()
        net.module.to(args.device)
        folder = root / f"photos{args.images}"
        print(f"model {net.name} at {net.input_size[0]} px on {args.device}, "
              f"{torch.get_num_threads()} threads, batch {args.batch_size}, workers {args.workers}")
        print(f"layers {', '.join(LAYERS)} (all channels: "
              f"{sum(convsight.capture.layer_shape(net, name)[0] for name in LAYERS)}), k = 9")
        if args.only_effective:
            for n in effective:
                effective_cost(net, root / f"photos{n}", args.batch_size, args.workers,
                               args.effective_channels, args.effective_sample)
            return
        plain_inference(net, folder, args.batch_size, args.workers)  # warm-up
        plain, mined = [], []
        for _ in range(args.reps):  # alternated, so that load changes hit both alike
            plain.append(plain_inference(net, folder, args.batch_size, args.workers))
            mined.append(mining(net, folder, args.batch_size, args.workers))
        print(f"{args.images} images, {args.reps} repetitions (medians):")
        for i, what in enumerate(["wall", "CPU"]):
            p_s = [t[i] for t in plain]
            m_s = [t[i] for t in mined]
            ratios = [m / p for m, p in zip(m_s, p_s)]
            print(f"  {what:4s} time: inference {statistics.median(p_s):7.2f} s "
                  f"({args.images / statistics.median(p_s):6.1f} images/s), mining "
                  f"{statistics.median(m_s):7.2f} s ({args.images / statistics.median(m_s):6.1f} "
                  f"images/s); ratio median {statistics.median(ratios):.3f} "
                  f"(each: {', '.join(f'{r:.3f}' for r in ratios)}; target <= 1.10)")
        print("  (CPU time is this process' own, so it resists load from other processes; with "
              "--workers > 0 it leaves out the loader processes)")
        for n in effective:
            effective_cost(net, root / f"photos{n}", args.batch_size, args.workers,
                           args.effective_channels, args.effective_sample)
        print("dataset size vs memory (each in a fresh process):")
        for n in sizes:
            out = subprocess.run([sys.executable, __file__, "--child", str(n), "--root", str(root),
                                  "--device", args.device, "--batch-size", str(args.batch_size),
                                  "--threads", str(torch.get_num_threads()),
                                  "--workers", str(args.workers)],
                                 capture_output=True, text=True, check=True)
            r = json.loads(out.stdout.strip().splitlines()[-1])
            gpu = f", peak GPU {r['peak_gpu_mb']:.0f} MB" if r["peak_gpu_mb"] else ""
            print(f"  {n:6d} images: {r['images_per_s']:6.1f} images/s, peak RSS "
                  f"{r['peak_rss_mb']:.0f} MB{gpu}")


if __name__ == "__main__":
    main()
