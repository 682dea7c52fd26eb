"""Guided backprop cost: against the plain gradient and against Captum's GuidedBackprop.

torchvision resnet18 (random weights: timing does not depend on them), batch 8, 224 px, CPU.
All three are timed in the same run, interleaved, and reported as medians; the results are checked
equal (resnet18 uses only ``nn.ReLU`` modules, where Captum is right).

    .venv/bin/python bench/attribution.py [--repeats 7] [--batch 8] [--size 224]
"""

from __future__ import annotations

import argparse
import statistics
import time
import warnings

import torch
import torchvision

import convsight


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--repeats", type=int, default=7)
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--size", type=int, default=224)
    args = p.parse_args()
    from captum.attr import GuidedBackprop

    torch.manual_seed(0)
    model = torchvision.models.resnet18(weights=None).eval()
    x = torch.randn(args.batch, 3, args.size, args.size)
    targets = [int(t) for t in torch.randint(0, 1000, (args.batch,))]
    captum = GuidedBackprop(model)

    def plain():
        return convsight.attribute(model, x, targets, method="gradient")

    def guided():
        return convsight.attribute(model, x, targets, method="guided")

    def captum_guided():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return captum.attribute(x.clone(), target=targets)

    runs = {"gradient": plain, "guided": guided, "captum guided": captum_guided}
    results = {name: fn() for name, fn in runs.items()}  # warm-up, and the results to compare
    err = float((results["guided"] - results["captum guided"]).abs().max())
    scale = float(results["captum guided"].abs().max())
    assert err <= 1e-6 * scale, f"guided backprop differs from Captum's: {err:.3g} vs {scale:.3g}"
    assert not torch.allclose(results["guided"], results["gradient"])
    # Wall time, and CPU time of this process (less disturbed when other jobs share the cores).
    wall: dict[str, list[float]] = {name: [] for name in runs}
    cpu: dict[str, list[float]] = {name: [] for name in runs}
    for _ in range(args.repeats):
        for name, fn in runs.items():
            start, start_cpu = time.perf_counter(), time.process_time()
            fn()
            wall[name].append(time.perf_counter() - start)
            cpu[name].append(time.process_time() - start_cpu)
    print(f"resnet18, batch {args.batch}, {args.size} px, CPU ({torch.get_num_threads()} threads), "
          f"median of {args.repeats} interleaved runs")
    for label, times in (("wall", wall), ("cpu", cpu)):
        med = {name: statistics.median(t) for name, t in times.items()}
        for name, t in med.items():
            runs_ms = ", ".join(f"{v * 1000:.0f}" for v in times[name])
            print(f"  {label:4s} {name:14s} {t * 1000:8.1f} ms   (runs: {runs_ms})")
        # ratios per round (the runs of a round share the machine's load), then their median
        vs_grad = statistics.median(g / p for g, p in zip(times["guided"], times["gradient"]))
        vs_captum = statistics.median(g / c for g, c in zip(times["guided"], times["captum guided"]))
        print(f"  {label:4s} guided / gradient      = {vs_grad:.3f}   (target <= 1.10)")
        print(f"  {label:4s} guided / Captum guided = {vs_captum:.3f}   (target <= 1.0)")
    print(f"  results equal to Captum: max |difference| {err:.2e} (max |value| {scale:.2e})")


if __name__ == "__main__":
    main()
