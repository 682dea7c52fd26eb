"""Why Yosinski et al.'s presets fall short on EfficientNet-Lite0, and which knob fixes each.

For each configuration: the preset at its own step count and the network's input size (224 px),
two classes (flamingo, lemon) optimised in one batch from the seeded start, then the softmax
probability of each class on the finished image, how far the image moved from the mean colour
(mean |x - mean| in grey levels, 0..255) and the class logits at 11 points of the run. Also the
squared gradient norm of the class logits at the preset's start (N(0, 10) noise and the mean
image), which sets the scale every constant of the paper's Table 1 works against.

Run:  .venv/bin/python bench/yosinski_knobs.py [--only y2_decay0.01,...] [--threads 1]
(each configuration takes 2-8 CPU minutes on a 2-core machine; the full list about an hour)
"""

from __future__ import annotations

import argparse
import time

import torch

import convsight
from convsight.targets import evaluate

CLASSES = [130, 951]  # flamingo, lemon
CONFIGS = [  # name, preset, knobs (targets class:N unless "kind")
    ("y1", "yosinski-1", {}),
    ("y1_n_pct20", "yosinski-1", {"n_pct": 20.0}),
    ("y1_n_pct0", "yosinski-1", {"n_pct": 0.0}),
    ("y1_progress0.5", "yosinski-1", {"desired_progress": 0.5}),
    ("y1_progress0.2", "yosinski-1", {"desired_progress": 0.2}),
    ("y1_progress5_lr1000", "yosinski-1", {"desired_progress": 5.0, "lr": 1000.0}),
    ("y1_constant", "yosinski-1", {"lr_rule": "constant"}),
    ("y1_prob", "yosinski-1", {"kind": "prob"}),
    ("y2", "yosinski-2", {}),
    ("y2_lr1e5", "yosinski-2", {"lr": 1e5}),
    ("y2_lr1e6", "yosinski-2", {"lr": 1e6}),
    ("y2_decay0.01", "yosinski-2", {"decay": 0.01}),
    ("y2_decay0.01_lr1e4", "yosinski-2", {"decay": 0.01, "lr": 1e4}),
    ("y4", "yosinski-4", {}),
    ("y4_c_pct50", "yosinski-4", {"c_pct": 50.0}),
    ("y4_c_pct0", "yosinski-4", {"c_pct": 0.0}),
    ("y4_progress0.5", "yosinski-4", {"desired_progress": 0.5}),
    ("y4_progress0.2", "yosinski-4", {"desired_progress": 0.2}),
    ("y4_progress5", "yosinski-4", {"desired_progress": 5.0}),
    ("y4_progress10", "yosinski-4", {"desired_progress": 10.0}),
    ("y4_progress20", "yosinski-4", {"desired_progress": 20.0}),
    ("y4_constant", "yosinski-4", {"lr_rule": "constant", "lr": 100.0}),
    ("y4_prob", "yosinski-4", {"kind": "prob"}),
    ("simonyan", "simonyan", {}),
    ("simonyan_l2_1e-6", "simonyan", {"l2": 1e-6}),
    ("simonyan_lr1e4", "simonyan", {"lr": 1e4}),
    ("simonyan_noise", "simonyan", {"init": "noise"}),
]


def gradient_scale(net) -> None:
    gen = torch.Generator().manual_seed(0)
    for start, x in (("N(0, 10) noise", torch.randn(2, 3, 224, 224, generator=gen) * 10),
                     ("the mean image", torch.zeros(2, 3, 224, 224))):
        x.requires_grad_(True)
        img = x / 255 + torch.tensor(net.mean).view(1, 3, 1, 1)
        values, _ = evaluate(net, net.normalize(img), [f"class:{c}" for c in CLASSES])
        (g,) = torch.autograd.grad(values.sum(), [x])
        sq = g.flatten(1).pow(2).sum(1)
        print(f"  at {start}: ||d logit / d x||^2 = {', '.join(f'{float(v):.2g}' for v in sq)} "
              f"(pixel units 0..255), mean |d logit / d x| = {float(g.abs().mean()):.2g}")


def run(net, name: str, preset: str, knobs: dict) -> None:
    knobs = dict(knobs)
    kind = knobs.pop("kind", "class")
    t = time.perf_counter()
    res = convsight.maximize(net, [f"{kind}:{c}" for c in CLASSES], preset=preset, progress=False,
                             **knobs)
    with torch.no_grad():
        p = torch.softmax(net.module(net.normalize(res.images)), 1)
    own = [round(float(p[i, c]), 3) for i, c in enumerate(CLASSES)]
    moved = float((res.images - torch.tensor(net.mean).view(1, 3, 1, 1)).abs().mean() * 255)
    steps = res.trace.shape[0]
    marks = list(range(0, steps, max(1, steps // 10))) + [steps - 1]
    print(f"{name:22s} {preset} {knobs} {kind}: p {own}, mean |x - mean| {moved:.2f} grey levels "
          f"({time.perf_counter() - t:.0f} s)", flush=True)
    print("   objective at steps " + ", ".join(f"{m}: {[round(float(v), 1) for v in res.trace[m]]}"
                                              for m in marks), flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--only", default="", help="comma-separated configuration names")
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    net = convsight.load_model()
    print("gradient scale of the class logits (flamingo, lemon):")
    gradient_scale(net)
    only = set(filter(None, args.only.split(",")))
    for name, preset, knobs in CONFIGS:
        if not only or name in only:
            run(net, name, preset, knobs)


if __name__ == "__main__":
    main()
