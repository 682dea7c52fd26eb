"""Mining cost against plain inference, and memory against dataset size.

    python bench/mining.py [--images 256] [--reps 3] [--sizes 128,512] [--device cpu]
                           [--effective-channels all]

1. Mining all channels of 4 layers of the default model over a folder of real photo crops, versus
   plain inference (the full forward pass) over the same images with the same loader, alternated
   in the same run; prints the median times and their ratio (target: at most 1.10).
2. Images/s and peak resident memory of a mining run for two dataset sizes, each in a fresh
   process (memory must not grow with the number of images).
3. The cost of effective boxes (``mine(..., crop="effective")``) for all hits of the 4 layers, as
   a fraction of the mining pass over the same images (target: at most 0.25). Effective boxes
   cost one backward pass per hit (channels x k of them, whatever the dataset size) while mining
   costs one forward pass per image, so the fraction falls as the dataset grows: the bench also
   prints the dataset size at which it would reach 0.25. ``--effective-channels N`` times only the
   first N channels of each layer and scales up linearly (said so in the output).
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

import torch

import convsight
import convsight.capture
from convsight.mining import photo_folder
from convsight.mining.boxes import attach_boxes
from convsight.mining.data import ImageSource, make_loader, resolve_images

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
                   channels: str) -> None:
    """Seconds (wall and this process' CPU) of the effective boxes of every hit against the
    mining pass that found them."""
    start, cpu = time.perf_counter(), time.process_time()
    atlas = convsight.mine(net, folder, LAYERS, k=9, batch_size=batch_size, workers=workers,
                           progress=False, crop="exact")
    mining_s = (time.perf_counter() - start, time.process_time() - cpu)
    hits = sum(int((atlas.arrays(name)["image"] >= 0).sum()) for name in LAYERS)
    if channels != "all":  # time a slice of each layer; the cost per hit is what scales
        n = int(channels)
        for name in LAYERS:
            a = atlas.arrays(name)
            for key in list(a):
                a[key] = a[key][:n]
    timed = sum(int((atlas.arrays(name)["image"] >= 0).sum()) for name in LAYERS)
    items, paths = resolve_images(folder)
    source = ImageSource(items, paths, net.input_size, net.resize_ratio, net.mean, net.std)
    start, cpu = time.perf_counter(), time.process_time()
    attach_boxes(atlas, net, lambda i: source[i][1], "effective", convsight.receptive.DEFAULT_Q,
                 batch_size)
    effective_s = ((time.perf_counter() - start) * hits / timed,
                   (time.process_time() - cpu) * hits / timed)
    images = len(paths)
    note = "" if timed == hits else f"; timed {timed} of them and scaled up linearly"
    print(f"effective boxes of all {hits} hits of {', '.join(LAYERS)} (q = "
          f"{convsight.receptive.DEFAULT_Q}{note}), against mining {images} images:")
    for i, what in enumerate(["wall", "CPU"]):
        fraction = effective_s[i] / mining_s[i]
        print(f"  {what:4s} time: effective boxes {effective_s[i]:8.1f} s "
              f"({effective_s[i] / hits * 1000:.1f} ms per hit), mining {mining_s[i]:6.1f} s; "
              f"fraction {fraction:.2f} (target <= 0.25); 0.25 at about "
              f"{images * fraction / 0.25:.0f} images")


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
    p.add_argument("--child", type=int, default=None, help=argparse.SUPPRESS)
    p.add_argument("--root", default=None, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.child is not None:
        child(args.child, Path(args.root), args.device, args.batch_size, args.workers)
        return

    sizes = [int(s) for s in args.sizes.split(",")]
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        for n in {args.images, *sizes}:
            photo_folder(root / f"photos{n}", n=n, seed=0)
        net = convsight.load_model()
        net.module.to(args.device)
        folder = root / f"photos{args.images}"
        print(f"model {net.name} at {net.input_size[0]} px on {args.device}, "
              f"{torch.get_num_threads()} threads, batch {args.batch_size}, workers {args.workers}")
        print(f"layers {', '.join(LAYERS)} (all channels: "
              f"{sum(convsight.capture.layer_shape(net, name)[0] for name in LAYERS)}), k = 9")
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
        effective_cost(net, folder, args.batch_size, args.workers, args.effective_channels)
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
