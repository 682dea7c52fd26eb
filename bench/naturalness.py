"""Parts of bench/maximize.py about the synthesised images themselves.

- ``naturalness``: class images per preset (and Lucent's ``render_vis``) judged by an independent
  network (EfficientNet-Lite2, see judge.py): top-1 / top-5 hits over the chosen classes. Each
  preset's result is saved as JSON in the output folder, so that presets can run in separate
  processes (``--presets``) and one table gathers them.
- ``layer_speed``: ``visualize_layer`` on a whole layer (batched) against Lucent rendering the same
  units one at a time, in images per second, alternated in the same run.
- ``dataset``: a synthesis per unit of a middle layer against the best of a folder of photos on
  the unit's mean activation.
"""

from __future__ import annotations

import copy
import json
import statistics
import time
import warnings
from pathlib import Path

import torch
import torch.nn.functional as F

import convsight
import convsight.capture
from convsight.pictures import grid, label, save_png, to_numpy_image
from judge import judge, load_lite2

# 20 ImageNet classes: birds, insects, mammals, fish, food, fruit, objects, vehicles, scenes, plants
CLASSES = [130, 11, 323, 951, 963, 1, 94, 145, 292, 309, 340, 388, 417, 430, 483, 504, 817, 954,
           980, 985]
LUCENT = "lucent"


def own_probabilities(net, images: torch.Tensor, classes: list[int]) -> list[float]:
    x = images
    if x.shape[-2:] != tuple(net.input_size):
        x = F.interpolate(x, size=net.input_size, mode="bilinear", align_corners=False)
    with torch.no_grad():
        p = torch.softmax(net.module(net.normalize(x)), dim=1)
    return [float(p[i, c]) for i, c in enumerate(classes)]


def lucent_render(net, objective, steps: int, batch: int = 1, size: int = 128,
                  model: torch.nn.Module | None = None) -> torch.Tensor:
    """Lucent's ``render_vis`` with its defaults (Fourier 128 px, decorrelated colour, standard
    transforms, Adam 0.05, upsampled to 224), our normalisation (mean = std = 0.5), on a copy of
    the model (Lucent leaves hooks behind; ``model``: a copy made beforehand). Returns
    (batch, 3, size, size) in [0, 1]."""
    from lucent.optvis import param, render, transform

    model = copy.deepcopy(net.module).eval() if model is None else model
    mean = torch.tensor(net.mean).view(1, 3, 1, 1)
    std = torch.tensor(net.std).view(1, 3, 1, 1)
    tfs = transform.standard_transforms + [lambda x: (x - mean) / std]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        out = render.render_vis(model, objective,
                                param_f=lambda: param.image(size, batch=batch, fft=True,
                                                            decorrelate=True),
                                transforms=tfs, thresholds=(steps,), preprocess=False,
                                progress=False, show_image=False)
    return torch.from_numpy(out[-1]).permute(0, 3, 1, 2).float()


def _run_preset(net, preset: str, classes: list[int], steps: int | None,
                knobs: dict) -> tuple[torch.Tensor, dict]:
    if preset == LUCENT:
        from lucent.optvis import objectives

        n = steps or 512
        images = torch.cat([lucent_render(net, objectives.channel("fc", c), n) for c in classes])
        return images, {"steps": n, "size": 128}
    res = convsight.maximize(net, [f"class:{c}" for c in classes], preset=preset, steps=steps,
                             progress=True, **knobs)
    return res.images, {"steps": res.settings.steps, "size": res.images.shape[-1],
                        "last_objective": res.trace[-1].tolist()}


def naturalness(net, out: Path, presets: list[str], classes: list[int], steps: int | None,
                knobs: dict | None = None) -> None:
    lite2 = load_lite2()
    knobs = knobs or {}
    pairs = [f"{k}={v:g}" if isinstance(v, float) else f"{k}={v}" for k, v in sorted(knobs.items())]
    tag = "".join("_" + pair for pair in pairs)
    for preset in presets:
        t = time.perf_counter()
        images, used = _run_preset(net, preset, classes, steps, knobs)
        seconds = time.perf_counter() - t
        verdict = judge(lite2, images, classes)
        own = own_probabilities(net, images, classes)
        shown = " ".join([preset] + pairs)
        row = {"preset": shown, "classes": classes, "own_p": own,
               **verdict, **used, "seconds": seconds, "threads": torch.get_num_threads()}
        name = f"naturalness_{preset}{tag}_{len(classes)}c_{used['steps']}s"
        (out / f"{name}.json").write_text(json.dumps(row))
        tiles = [label(to_numpy_image(im), f"{net.class_name(c)[:14]} {'Y' if hit else '-'}")
                 for im, c, hit in zip(images, classes, verdict["top5"])]
        save_png(grid(tiles, ncols=10), out / f"{name}.png")
        print(f"  {preset}: top-5 {sum(verdict['top5'])}/{len(classes)} in {seconds:.0f} s", flush=True)
    print_table(net, out)


def print_table(net, out: Path) -> None:
    rows = [json.loads(p.read_text()) for p in sorted(out.glob("naturalness_*.json"))]
    if not rows:
        return
    print(f"\n  {'images':24s} {'classes':>7s} {'steps':>5s} {'px':>4s} {'own p min-median':>17s} "
          f"{'Lite2 top-1':>11s} {'top-5':>6s} {'CPU s':>7s}")
    for r in rows:
        n = len(r["classes"])
        own = sorted(r["own_p"])
        print(f"  {r['preset']:24s} {n:7d} {r['steps']:5d} {r['size']:4d} "
              f"{own[0]:8.2f}-{statistics.median(own):.2f} {sum(r['top1']):5d}/{n:<5d}"
              f"{sum(r['top5']):3d}/{n:<3d} {r['seconds']:7.0f}")
        misses = [net.class_name(c) for c, hit in zip(r["classes"], r["top5"]) if not hit]
        if misses:
            print(f"  {'':24s} not in Lite2's top 5: {', '.join(misses)}")


_NETS: dict = {}


def lucent_layer(layer: str, n: int, steps: int, threads: int) -> tuple[float, float, float]:
    """(wall, user, system) seconds of Lucent rendering channels 0..n-1 of ``layer`` one
    ``render_vis`` each, at ``threads`` threads; meant for the peer process (peer.py)."""
    from lucent.optvis import objectives

    from peer import timed

    torch.set_num_threads(threads)
    if "default" not in _NETS:
        _NETS["default"] = convsight.load_model()
    net = _NETS["default"]
    name = layer.replace(".", "_")
    # a fresh copy per render (Lucent leaves its hooks on the model), made before the clock runs
    models = [copy.deepcopy(net.module).eval() for _ in range(n)]
    return timed(lambda: [lucent_render(net, objectives.channel(name, c), steps, model=m)
                          for c, m in zip(range(n), models)])[0]


def layer_speed(net, layer: str, steps: int, reps: int, batch_size: int,
                thread_counts: tuple[int, ...] = (1, 2), units: int | None = None) -> None:
    """Images per second: ``visualize_layer`` on the first ``units`` units of ``layer`` (all by
    default; batched) against Lucent rendering the same units one ``render_vis`` each, same
    parameterisation and transforms (the ``lucid`` preset is Lucent's defaults), alternated,
    medians of ``reps``; each side at each of ``thread_counts`` and compared at its own best.
    Lucent runs in a fresh process without convsight's allocator setting (peer.py)."""
    from peer import NOTE, Peer, timed

    n = units or convsight.capture.layer_shape(net, layer)[0]

    def ours() -> None:
        convsight.visualize_layer(net, layer, list(range(n)), preset="lucid", steps=steps,
                                  batch_size=batch_size, progress=False)

    best: dict[str, tuple[float, int]] = {}
    cpu_rate: dict[tuple[str, int], float] = {}
    with Peer() as peer:
        peer.call("naturalness.lucent_layer", layer, 1, 2, 1)  # warm-up: model, imports
        for threads in thread_counts:
            times: dict[str, list[tuple[float, float, float]]] = {"ours": [], "lucent": []}
            with convsight.threads(threads):
                ours()  # warm-up at this thread count
                for _ in range(reps):  # alternated, so load changes hit both alike
                    times["ours"].append(timed(ours)[0])
                    times["lucent"].append(peer.call("naturalness.lucent_layer", layer, n, steps,
                                                     threads))
            for name, ts in times.items():
                rate = n / statistics.median(t[0] for t in ts)
                cpu = statistics.median(t[1] + t[2] for t in ts)
                cpu_rate[name, threads] = n / cpu
                print(f"  {name:7s} {threads} thread(s): {rate:.3f} images/s "
                      f"(wall {[round(t[0], 1) for t in ts]} s; median CPU {cpu:.1f} s, of it "
                      f"system {statistics.median(t[2] for t in ts):.1f} s)")
                if rate > best.get(name, (0.0, 0))[0]:
                    best[name] = (rate, threads)
    print(f"  ({NOTE}; convsight, in this process, keeps freed memory: "
          f"{convsight.thread_policy()['keeps_freed_memory']})")
    (a, ta), (b, tb) = best["ours"], best["lucent"]
    print(f"  {layer} ({n} units, {steps} steps each, batch {batch_size}): visualize_layer "
          f"{a:.3f} images/s ({ta} thread(s)), Lucent one unit at a time {b:.3f} images/s "
          f"({tb} thread(s)): {a / b:.2f}x (each at its best thread count, medians of {reps}; "
          "target >= 4x)")
    print(f"  by CPU seconds (images per CPU second, steadier on a busy machine): "
          f"{cpu_rate['ours', ta] / cpu_rate['lucent', tb]:.2f}x at those thread counts; "
          + ", ".join(f"{t} thread(s) {cpu_rate['ours', t] / cpu_rate['lucent', t]:.2f}x"
                      for t in thread_counts))


def dataset(net, out: Path, layer: str, photos: int, preset: str | None, steps: int | None,
            batch_size: int, channels: int | None) -> None:
    """Each unit's value (mean activation over positions) on its synthesis against the best of
    ``photos`` photo crops (``convsight.mining.photo_folder``)."""
    from convsight.capture import capture
    from convsight.mining import photo_folder

    paths = photo_folder(out / "photos", n=photos, seed=0)
    best = None
    with torch.no_grad():
        for i in range(0, len(paths), 32):
            x = net.preprocess(paths[i:i + 32])
            with capture(net.module, [layer], stop=True) as acts:
                net.module(x)
            m = acts[layer].mean(dim=(2, 3)).max(dim=0).values
            best = m if best is None else torch.maximum(best, m)
    chosen = list(range(channels or best.numel()))
    t = time.perf_counter()
    res = convsight.visualize_layer(net, layer, chosen, preset=preset or convsight.optimize.DEFAULT_PRESET,
                                    steps=steps, batch_size=batch_size, progress=True)
    seconds = time.perf_counter() - t
    wins = (res.values > best[chosen]).float()
    ratio = res.values / best[chosen]
    print(f"  {layer}: synthesis beats the best of {len(paths)} photos for "
          f"{int(wins.sum())}/{len(chosen)} units ({100 * float(wins.mean()):.1f} %); median "
          f"ratio synthesis / best photo {float(ratio.median()):.2f}, worst {float(ratio.min()):.2f}"
          f" ({res.settings.steps} steps, {res.images.shape[-1]} px, {seconds:.0f} s)")
    losers = [c for c, w in zip(chosen, wins) if not w]
    if losers:
        print(f"  units where a photo wins: {losers}")
    tiles = [label(to_numpy_image(im), f"{c}: {float(v):.2f} vs {float(best[c]):.2f}")
             for c, im, v in zip(chosen, res.images, res.values)]
    save_png(grid(tiles[:48], ncols=8), out / f"dataset_{layer}.png")
