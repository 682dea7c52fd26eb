"""Benchmark activation maximisation on the default model (EfficientNet-Lite0, CPU).

1. The default preset drives the softmax probability of 5 classes above 0.99 from noise (all
   five optimised in one batch); prints the probabilities and saves the images.
2. High-frequency energy of the images of the blur presets relative to ``none`` (same steps, same
   classes, same seed).
3. Steps per second against Lucent's ``render_vis`` (PyPI ``torch-lucent``) with the same
   parameterisation (Fourier 128 px, decorrelated colour, upsampled to 224), the same transforms,
   the same batch and the same model, measured in this run, medians of several repetitions; also
   a multi-target batch (several channels in one batch vs Lucent running them one at a time and
   Lucent batching them with ``batch=i`` objectives).
4. Naturalness: class images of 20 ImageNet classes per preset and by Lucent's ``render_vis``,
   judged by an independent network (EfficientNet-Lite2): top-1 / top-5 hits (naturalness.py).
5. Images per second of ``visualize_layer`` on a whole layer against Lucent one unit at a time,
   each at its best thread count (1 or 2). Lucent runs in a fresh child process without
   convsight's allocator setting (``peer.py``: glibc's ``mallopt`` is process-wide), as its users
   run it; both sides print wall, CPU and system seconds.
6. A synthesis per unit of a middle layer against the best of 300 photo crops on the unit's mean
   activation.

Run:  .venv/bin/python bench/maximize.py [--quick] [--threads 1] [--out out/bench_maximize]
      .venv/bin/python bench/maximize.py --skip 1,2,3,5,6 --presets lucid,lucent --classes 20
      .venv/bin/python bench/maximize.py --skip 1,2,3,4,6 --batch-size 24       # part 5 (~10 min)
      .venv/bin/python bench/maximize.py --skip 1,2,3,4,6 --batch-size 24 --reps 1 --layer-units 8
Part 5 at full size (24 units of blocks.2, 20 steps, 3 repetitions at 1 and 2 threads) takes
about 10 minutes on a quiet 2-core machine; ``--reps``, ``--layer-units``, ``--layer-steps`` and
``--layer-threads 1`` make it shorter.
Parts 4-6 take hours of CPU at full size: ``--classes``, ``--steps``, ``--presets``,
``--dataset-steps`` ... make smaller runs (each prints the settings it used).
"""

from __future__ import annotations

import argparse
import copy
import statistics
import time
import warnings
from pathlib import Path

import torch

import convsight
import naturalness as nat
from convsight.pictures import grid, label, minmax_scale, save_png, to_numpy_image

CLASSES = [130, 11, 323, 951, 963]  # flamingo, goldfinch, monarch, lemon, pizza


def high_frequency_share(images: torch.Tensor, cutoff: float = 0.25) -> torch.Tensor:
    """Per image: share of the energy of (image - its mean) above ``cutoff`` cycles per pixel."""
    x = images.double() - images.double().mean(dim=(-2, -1), keepdim=True)
    f = torch.fft.fft2(x).abs() ** 2
    fy = torch.fft.fftfreq(x.shape[-2]).abs()[:, None]
    fx = torch.fft.fftfreq(x.shape[-1]).abs()[None, :]
    high = (torch.maximum(fy, fx) > cutoff)
    return (f * high).sum(dim=(1, 2, 3)) / f.sum(dim=(1, 2, 3)).clamp_min(1e-30)


def high_frequency_energy(images: torch.Tensor, cutoff: float = 0.25) -> torch.Tensor:
    """Per image: mean squared amplitude above ``cutoff`` (pixel values in 0..1 units)."""
    x = images.double() - images.double().mean(dim=(-2, -1), keepdim=True)
    f = torch.fft.fft2(x, norm="ortho").abs() ** 2
    fy = torch.fft.fftfreq(x.shape[-2]).abs()[:, None]
    fx = torch.fft.fftfreq(x.shape[-1]).abs()[None, :]
    high = (torch.maximum(fy, fx) > cutoff)
    return (f * high).sum(dim=(1, 2, 3)) / x[0].numel()


def probabilities(net, images: torch.Tensor) -> list[float]:
    with torch.no_grad():
        p = torch.softmax(net.module(net.normalize(images)), dim=1)
    return [float(p[i, c]) for i, c in enumerate(CLASSES)]


def save_row(net, images, probs, path: Path) -> None:
    """Top row: the optimised pixels; bottom row: each image contrast-stretched to min..max."""
    raw = [label(to_numpy_image(im), f"{net.class_name(c)} {p:.3f}")
           for im, c, p in zip(images, CLASSES, probs)]
    stretched = [label(minmax_scale(to_numpy_image(im)), "stretched") for im in images]
    save_png(grid(raw + stretched, ncols=len(raw)), path)


def part_probability(net, out: Path, steps: int | None, size: int | None) -> None:
    preset = convsight.optimize.DEFAULT_PRESET
    print(f"\n== 1. default preset ({preset}), 5 classes in one batch ==")
    if steps or size:
        print(f"  (steps {steps or 'default'}, size {size or 'default'}: NOT the preset's full "
              "1000 steps at the network's 224 px)")
    t = time.perf_counter()
    res = convsight.maximize(net, [f"class:{c}" for c in CLASSES], steps=steps, size=size,
                             progress=True)
    dt = time.perf_counter() - t
    probs = probabilities(net, res.images)
    for c, p, v in zip(CLASSES, probs, res.trace[-1]):
        print(f"  class {c:4d} {net.class_name(c):12s} softmax p = {p:.4f}   logit {float(v):7.2f}"
              f"   {'OK' if p > 0.99 else 'BELOW 0.99'}")
    print(f"  {res.trace.shape[0]} steps at {res.images.shape[-1]} px in {dt:.0f} s; "
          f"min p = {min(probs):.4f}")
    save_row(net, res.images, probs, out / f"{preset}_classes.png")


def part_frequencies(net, out: Path, steps: int, size: int) -> None:
    print(f"\n== 2. high-frequency energy (> 0.25 cycles/px) vs 'none', {steps} steps, {size} px ==")
    targets = [f"class:{c}" for c in CLASSES]
    results = {}
    for preset in ("none", "yosinski-1", "yosinski-3", "yosinski-4", "yosinski-2"):
        res = convsight.maximize(net, targets, preset=preset, steps=steps, size=size, progress=False)
        results[preset] = res
        save_row(net, res.images, probabilities(net, res.images), out / f"compare_{preset}.png")
    base_e = high_frequency_energy(results["none"].images)
    print(f"  {'preset':11s} {'HF energy':>10s} {'vs none':>8s} {'HF share':>9s} {'logit':>7s}")
    for preset, res in results.items():
        e = high_frequency_energy(res.images)
        share = high_frequency_share(res.images)
        ratio = float((e / base_e).median())
        blur = res.settings.blur_radius
        print(f"  {preset:11s} {float(e.median()):10.3g} {ratio:8.2g} {float(share.median()):9.3f}"
              f" {float(res.trace[-1].median()):7.2f}   blur sigma {blur}"
              + (f": removes {100 * (1 - ratio):.2f}% of the HF energy of 'none'" if blur else ""))


def _lucent_available() -> str | None:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            import lucent.optvis.render  # noqa: F401
        return None
    except Exception as exc:  # report exactly why
        return f"{type(exc).__name__}: {exc}"


def _time(fn, reps: int) -> list[float]:
    times = []
    for _ in range(reps):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return times


def part_speed(net, steps: int, reps: int) -> None:
    print(f"\n== 3. steps/s vs Lucent render_vis (CPU, {torch.get_num_threads()} threads, {steps} "
          f"steps per run, median of {reps}) ==")
    why = _lucent_available()
    if why is not None:
        print(f"  Lucent cannot be used here: {why}")
        return
    from lucent.optvis import objectives, param, render, transform

    lucent_model = copy.deepcopy(net.module).eval()  # Lucent leaves hooks on the model it gets
    norm = lambda x: (x - 0.5) / 0.5  # the default network's normalisation (mean = std = 0.5)
    tfs = transform.standard_transforms + [norm]

    def lucent_run(objective, batch: int) -> None:
        render.render_vis(lucent_model, objective,
                          param_f=lambda: param.image(128, batch=batch, fft=True, decorrelate=True),
                          transforms=list(tfs), thresholds=(steps,), preprocess=False,
                          progress=False, show_image=False)

    def ours(targets) -> None:
        convsight.maximize(net, targets, preset="lucid", steps=steps, progress=False)

    channels = [("blocks.6", c) for c in (1, 2, 3, 4)]
    cases = [
        ("class:130, batch 1", lambda: ours("class:130"),
         lambda: lucent_run(objectives.channel("fc", 130), 1), 1),
        ("blocks.6:1, batch 1", lambda: ours("blocks.6:1"),
         lambda: lucent_run(objectives.channel("blocks_6", 1), 1), 1),
        ("4 classes, one batch", lambda: ours([f"class:{c}" for c in CLASSES[:4]]),
         lambda: lucent_run(sum(objectives.channel("fc", c, batch=i)
                                for i, c in enumerate(CLASSES[:4])), 4), 4),
        ("4 channels of blocks.6, one batch", lambda: ours([f"{l}:{c}" for l, c in channels]),
         lambda: lucent_run(sum(objectives.channel("blocks_6", c, batch=i)
                                for i, (_, c) in enumerate(channels)), 4), 4),
        ("4 channels: Lucent one run each", lambda: ours([f"{l}:{c}" for l, c in channels]),
         lambda: [lucent_run(objectives.channel("blocks_6", c), 1) for _, c in channels], 4),
    ]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ours("class:1")            # warm-up both (first-call allocations)
        lucent_run(objectives.channel("fc", 1), 1)
        print(f"  {'case':36s} {'ours img-steps/s':>17s} {'Lucent':>8s} {'ratio':>6s}")
        for name, ours_fn, lucent_fn, n_images in cases:
            ours_t, lucent_t = [], []
            for _ in range(reps):  # interleaved, so load changes hit both alike
                ours_t += _time(ours_fn, 1)
                lucent_t += _time(lucent_fn, 1)
            a = n_images * steps / statistics.median(ours_t)
            b = n_images * steps / statistics.median(lucent_t)
            print(f"  {name:36s} {a:17.2f} {b:8.2f} {a / b:5.2f}x")
    grads = sum(p.grad is not None for p in lucent_model.parameters())
    print(f"  (Lucent's copy of the model now has {grads} parameters with .grad filled and hooks on "
          f"{sum(len(m._forward_hooks) > 0 for m in lucent_model.modules())} modules; ours: "
          f"{sum(p.grad is not None for p in net.module.parameters())} and "
          f"{sum(len(m._forward_hooks) > 0 for m in net.module.modules())})")


def _value(text: str):
    """A --set value: a number when it reads as one, else the text (e.g. lr_rule=constant)."""
    try:
        return float(text)
    except ValueError:
        return text


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="fewer steps everywhere (not the stated claims)")
    ap.add_argument("--out", default="out/bench_maximize")
    ap.add_argument("--skip", default="", help="comma-separated parts to skip: 1,2,3")
    ap.add_argument("--threads", type=int, default=None,
                    help="torch CPU threads (default: torch's; 1 is steadier on a busy machine)")
    ap.add_argument("--steps1", type=int, default=None, help="part 1 steps (default: the preset's)")
    ap.add_argument("--size1", type=int, default=None, help="part 1 image size (default: the net's)")
    ap.add_argument("--speed-steps", type=int, default=None, help="steps per timed run (default 20)")
    ap.add_argument("--presets", default=",".join(list(convsight.optimize.PRESETS) + [nat.LUCENT]),
                    help="part 4: presets to judge (and 'lucent'); default all")
    ap.add_argument("--classes", type=int, default=20, help="part 4: the first N of the 20 classes")
    ap.add_argument("--steps", type=int, default=None, help="part 4: steps (default: each preset's own)")
    ap.add_argument("--set", action="append", default=[], metavar="KNOB=VALUE",
                    help="part 4: override a knob of every preset run, e.g. lr=1e5 or lr_rule=constant")
    ap.add_argument("--layer", default="blocks.2", help="part 5: the layer to synthesise")
    ap.add_argument("--layer-steps", type=int, default=20, help="part 5: steps per image")
    ap.add_argument("--reps", type=int, default=3, help="part 5: repetitions")
    ap.add_argument("--layer-units", type=int, default=None,
                    help="part 5: the first N units of the layer (default: all)")
    ap.add_argument("--layer-threads", default="1,2",
                    help="part 5: thread counts to try, each side compared at its best")
    ap.add_argument("--dataset-layer", default="blocks.5", help="part 6: a middle layer")
    ap.add_argument("--photos", type=int, default=300, help="part 6: photo crops")
    ap.add_argument("--dataset-steps", type=int, default=None, help="part 6: steps (default: the preset's)")
    ap.add_argument("--dataset-units", type=int, default=None, help="part 6: the first N units")
    ap.add_argument("--batch-size", type=int, default=16, help="parts 5, 6: channels per batch")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    net = convsight.load_model()
    skip = set(args.skip.split(","))
    print(f"threads {torch.get_num_threads()}; options {vars(args)}")
    print(f"convsight {convsight.__version__}, torch {torch.__version__}, model {net.name}")
    if "1" not in skip:
        part_probability(net, out, steps=args.steps1 or (200 if args.quick else None),
                         size=args.size1 or (128 if args.quick else None))
    if "2" not in skip:
        part_frequencies(net, out, steps=60 if args.quick else 150, size=128)
    if "3" not in skip:
        part_speed(net, steps=args.speed_steps or (5 if args.quick else 20), reps=3 if args.quick else 5)
    if "4" not in skip:
        print(f"\n== 4. naturalness: {args.classes} classes judged by EfficientNet-Lite2 ==")
        knobs = {k: _value(v) for k, _, v in (item.partition("=") for item in args.set)}
        nat.naturalness(net, out, args.presets.split(","), nat.CLASSES[:args.classes], args.steps,
                        knobs)
    if "5" not in skip:
        print("\n== 5. visualize_layer on a whole layer vs Lucent one unit at a time ==")
        nat.layer_speed(net, args.layer, args.layer_steps, args.reps, args.batch_size,
                        tuple(int(t) for t in args.layer_threads.split(",")), args.layer_units)
    if "6" not in skip:
        print(f"\n== 6. synthesis vs the best of {args.photos} photos, {args.dataset_layer} ==")
        nat.dataset(net, out, args.dataset_layer, args.photos, None, args.dataset_steps,
                    args.batch_size, args.dataset_units)
    print(f"\npictures in {out}/")


if __name__ == "__main__":
    main()
