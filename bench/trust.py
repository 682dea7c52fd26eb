"""Occlusion against Captum's Occlusion, and what a sanity check costs per randomisation step.

1. Occlusion time, convsight vs Captum 0.9 ``Occlusion`` at equal settings (window, stride,
   baseline 0, the same number of occluded copies per forward pass), on the default
   EfficientNet-Lite0, one photo, interleaved runs, medians; the results are checked equal.
2. ``sanity_check`` (cascading, block by block) against computing the same maps alone: the time
   per map (each method once per step, plus the trained model's) divided by the time of one
   ``attribute`` call of that method. The rest is re-initialising layers and the similarity
   measures (Spearman, SSIM, HOG).

    .venv/bin/python bench/trust.py [--repeats 5] [--window 32] [--stride 16] [--size 224]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

import convsight
from convsight.trust import randomization_steps, sanity_check


def _timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def occlusion_vs_captum(net, x, args) -> None:
    from captum.attr import Occlusion

    with torch.no_grad():
        target = int(net.module(x).argmax())
    captum = Occlusion(net.module)
    c = x.shape[1]

    def ours():
        return convsight.attribute(net, x, target, method="occlusion", window=args.window,
                                   stride=args.stride, batch_size=args.batch)

    def theirs():
        with torch.no_grad():
            return captum.attribute(x, sliding_window_shapes=(c, args.window, args.window),
                                    strides=(c, args.stride, args.stride), baselines=0.0,
                                    target=target, perturbations_per_eval=args.batch)

    a, b = ours(), theirs()  # warm-up, and the results to compare
    err, scale = float((a - b).abs().max()), float(b.abs().max())
    assert err <= 1e-5 * scale, f"occlusion differs from Captum's: {err:.3g} vs {scale:.3g}"
    times: dict[str, list[float]] = {"convsight": [], "captum": []}
    for _ in range(args.repeats):
        times["convsight"].append(_timed(ours))
        times["captum"].append(_timed(theirs))
    windows = ((args.size - args.window + args.stride - 1) // args.stride + 1) ** 2
    print(f"occlusion, window {args.window}, stride {args.stride}, {windows} windows, "
          f"{args.batch} copies per forward pass, median of {args.repeats} interleaved runs")
    for name, t in times.items():
        print(f"  {name:10s} {statistics.median(t):7.2f} s   (runs: "
              + ", ".join(f"{v:.2f}" for v in t) + ")")
    ratio = statistics.median(o / c for o, c in zip(times["convsight"], times["captum"]))
    print(f"  convsight / Captum = {ratio:.3f}   (target <= 1.0); results equal to Captum: "
          f"max |difference| {err:.2e} (max |value| {scale:.2e})")


def sanity_cost(net, x, args) -> None:
    methods = tuple(args.methods.split(","))
    steps = len(randomization_steps(net, x, "block"))
    alone: dict[str, list[float]] = {m: [] for m in methods}
    runs: list[float] = []
    for _ in range(args.repeats):
        for m in methods:
            alone[m].append(_timed(lambda: convsight.attribute(net, x, method=m)))
        runs.append(_timed(lambda: sanity_check(net, x, methods=methods, group="block",
                                                progress=False)))
    one = {m: statistics.median(t) for m, t in alone.items()}
    total = statistics.median(runs)
    maps = (steps + 1) * sum(one.values())
    print(f"\nsanity_check, cascading block by block: {steps} steps x {len(methods)} methods "
          f"({', '.join(methods)}), median of {args.repeats} runs")
    for m in methods:
        print(f"  one attribution, {m:9s} {one[m] * 1000:8.0f} ms")
    print(f"  sanity_check          {total:8.2f} s  = {total / steps:.2f} s per step")
    print(f"  per map, relative to computing the map alone: {total / maps:.2f}x "
          f"(target: close to 1; the rest is randomising layers and Spearman/SSIM/HOG)")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--window", type=int, default=32)
    p.add_argument("--stride", type=int, default=16)
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--size", type=int, default=224)
    p.add_argument("--methods", default="gradient,guided,gradcam")
    p.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    p.add_argument("--skip", default="", help="comma-separated parts to skip: occlusion,sanity")
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    lite0 = convsight.load_model()
    net = convsight.Network(lite0.module, mean=lite0.mean, std=lite0.std,
                            input_size=(args.size, args.size), class_names=lite0.class_names)
    x = net.preprocess(convsight.sample_images()["chelsea"])
    print(f"EfficientNet-Lite0, {args.size} px, CPU ({torch.get_num_threads()} threads)")
    skip = set(args.skip.split(","))
    if "occlusion" not in skip:
        occlusion_vs_captum(net, x, args)
    if "sanity" not in skip:
        sanity_cost(net, x, args)


if __name__ == "__main__":
    main()
