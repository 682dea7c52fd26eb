"""Occlusion against Captum's Occlusion, and what a sanity check costs per randomisation step.

1. Occlusion time, convsight vs Captum 0.9 ``Occlusion`` at equal settings (window, stride,
   baseline 0, the same number of occluded copies per forward pass), on the default
   EfficientNet-Lite0, one photo, interleaved runs, medians; the results are checked equal.
2. ``sanity_check`` (cascading, block by block) against computing the same maps alone: the time
   per map (each method once per step, plus the trained model's) divided by the time of one
   ``attribute`` call of that method. The rest is re-initialising layers and the similarity
   measures (Spearman, SSIM, HOG).
3. One ``trust_score`` call per method (what the explorer, the report and ``convsight check``
   compute per picture) at 20 and 50 points per curve, against one attribution of the method,
   and against the same call with one curve point per forward pass (``batch_size=1``, how it
   ran before its curves shared batches: 176 batch-1 passes at 20 points; the shared endpoints
   stay shared there). Target (issue 18): one method, 20 points, 224 px, at most 1.5 s.

Captum is timed in a fresh child process (``peer.py``) where convsight's allocator setting is
not in force, as Captum's users run it: convsight keeps freed memory for reuse
(``convsight.cpu.keep_freed_memory``, glibc's ``mallopt``, process-wide), which spares its
batches the page faults (system time) of fresh memory on every pass; a Captum timed in the same
process would get that too. Both sides print wall, user and system seconds.

    .venv/bin/python bench/trust.py [--repeats 5] [--window 32] [--stride 16] [--size 224]
    .venv/bin/python bench/trust.py --skip occlusion,sanity --threads 1 --repeats 3
    .venv/bin/python bench/trust.py --skip sanity,score --batches 8,32 --repeats 5   # part 1
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
import time

import torch

import convsight
from convsight.trust import randomization_steps, sanity_check


def _timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


_PEER_STATE: dict = {}


def _network(size: int):
    """The default model as ``load_model`` gives it (channels-last batches, BatchNorm folded for
    convsight's own passes), at ``size`` px."""
    return dataclasses.replace(convsight.load_model(), input_size=(size, size))


def captum_occlusion(size: int, window: int, stride: int, batch: int | None, target: int,
                     threads: int) -> tuple[tuple[float, float, float], torch.Tensor]:
    """Captum's ``Occlusion`` on the bench's photo, timed (wall, user, system); meant for the
    peer process (peer.py), where convsight's allocator setting is not in force."""
    from captum.attr import Occlusion

    from peer import timed

    if threads:
        torch.set_num_threads(threads)
    if _PEER_STATE.get("size") != size:
        net = _network(size)
        _PEER_STATE.update(size=size, captum=Occlusion(net.module),
                           x=net.preprocess(convsight.sample_images()["chelsea"]))
    captum, x = _PEER_STATE["captum"], _PEER_STATE["x"]
    c = x.shape[1]

    def run():
        with torch.no_grad():
            return captum.attribute(x, sliding_window_shapes=(c, window, window),
                                    strides=(c, stride, stride), baselines=0.0, target=target,
                                    perturbations_per_eval=batch or 1)
    return timed(run)


def occlusion_vs_captum(net, x, args, batch: int | None, peer) -> None:
    """``batch`` copies per forward pass in both; None: each library's default (1 and 1 on the
    CPU). Captum runs in ``peer``, a fresh process (peer.py)."""
    from peer import timed

    with torch.no_grad():
        target = int(net.module(x).argmax())

    def ours():
        return convsight.attribute(net, x, target, method="occlusion", window=args.window,
                                   stride=args.stride, batch_size=batch)

    def theirs():
        return peer.call("trust.captum_occlusion", args.size, args.window, args.stride, batch,
                         target, args.threads)

    a, (_, b) = ours(), theirs()  # warm-up, and the results to compare
    err, scale = float((a - b).abs().max()), float(b.abs().max())
    assert err <= 1e-5 * scale, f"occlusion differs from Captum's: {err:.3g} vs {scale:.3g}"
    runs: dict[str, list[tuple[float, float, float]]] = {"convsight": [], "captum": []}
    for _ in range(args.repeats):  # interleaved, so load changes hit both alike
        runs["convsight"].append(timed(ours)[0])
        runs["captum"].append(theirs()[0])
    windows = ((args.size - args.window + args.stride - 1) // args.stride + 1) ** 2
    per_pass = (f"{batch} copies per forward pass (Captum: perturbations_per_eval)" if batch
                else "each library's default copies per forward pass (convsight: 1 on the CPU, "
                     "Captum: 1)")
    print(f"occlusion, window {args.window}, stride {args.stride}, {windows} windows, {per_pass}, "
          f"median of {args.repeats} interleaved runs")
    for name, t in runs.items():
        wall, user, system = (statistics.median(v[k] for v in t) for k in range(3))
        print(f"  {name:10s} wall {wall:7.2f} s, CPU {user + system:7.2f} s (user {user:.2f}, "
              f"system {system:.2f})")
    for k, what in ((0, "wall"), (None, "CPU")):
        def get(v):
            return v[0] if k == 0 else v[1] + v[2]
        ratio = statistics.median(get(o) / get(c) for o, c in zip(runs["convsight"],
                                                                  runs["captum"]))
        print(f"  convsight / Captum, {what:4s} = {ratio:.3f}   (target <= 1.0)")
    print(f"  results equal to Captum: max |difference| {err:.2e} (max |value| {scale:.2e})")


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


def score_cost(net, x, args) -> None:
    """``trust_score`` per method and points per curve, beside one ``attribute`` call of the
    method (the baseline, timed in the same loop)."""
    from convsight.trust import trust_score

    methods = (("gradient", {}), ("guided", {}), ("gradcam", {}), ("guided-gradcam", {}),
               ("occlusion", {"window": 32, "stride": 16}))
    for steps in (int(v) for v in args.score_steps.split(",")):
        print(f"\ntrust_score (one image, {steps} steps per curve, 3 random maps), median of "
              f"{args.repeats} runs; the explorer and the report use 20, check 50")
        for method, options in methods:
            times, alone, single = [], [], []
            for _ in range(args.repeats):
                alone.append(_timed(lambda: convsight.attribute(net, x, method=method,
                                                                **options)))
                times.append(_timed(lambda: trust_score(net, x, None, method, steps=steps,
                                                        options=options)))
                single.append(_timed(lambda: trust_score(net, x, None, method, steps=steps,
                                                         options=options, batch_size=1)))
            t, a, b1 = (statistics.median(v) for v in (times, alone, single))
            print(f"  {method:14s} {t:7.2f} s = {t / a:6.1f} x one attribution ({a:.3f} s); "
                  f"one point per pass {b1:.2f} s ({b1 / t:.1f}x slower)")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--window", type=int, default=32)
    p.add_argument("--stride", type=int, default=16)
    p.add_argument("--batches", default="1,8,32",
                   help="occluded copies per forward pass, each timed ('default': each library's)")
    p.add_argument("--size", type=int, default=224)
    p.add_argument("--methods", default="gradient,guided,gradcam")
    p.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    p.add_argument("--score-steps", default="20,50",
                   help="points per deletion/insertion curve for the trust_score timings")
    p.add_argument("--skip", default="", help="comma-separated parts to skip: occlusion,sanity,score")
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    net = _network(args.size)
    x = net.preprocess(convsight.sample_images()["chelsea"])
    print(f"EfficientNet-Lite0, {args.size} px, CPU ({torch.get_num_threads()} threads)")
    skip = set(args.skip.split(","))
    if "occlusion" not in skip:
        from peer import NOTE, Peer

        print(f"(Captum: {NOTE})")
        with Peer() as peer:
            for batch in (None if b == "default" else int(b) for b in args.batches.split(",")):
                occlusion_vs_captum(net, x, args, batch, peer)
        print(f"(convsight, in this process, keeps freed memory: "
              f"{convsight.thread_policy()['keeps_freed_memory']})")
    if "sanity" not in skip:
        sanity_cost(net, x, args)
    if "score" not in skip:
        score_cost(net, x, args)


if __name__ == "__main__":
    main()
