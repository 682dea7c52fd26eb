"""Receptive-field analysis time for resnet50 and the default model, against one plain forward pass.

The analysis is one traced forward pass (plus bookkeeping per op), so it should cost a small
multiple of a forward pass and stay well under a second. Prints medians of several repetitions.

    .venv/bin/python bench/receptive_field.py
"""

from __future__ import annotations

import statistics
import time
import warnings

import torch
import torchvision

import convsight
import convsight.units

REPEATS = 7


def median_time(fn) -> float:
    times = []
    for _ in range(REPEATS):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    torch.set_num_threads(max(1, torch.get_num_threads()))
    warnings.simplefilter("ignore")
    models = {
        "efficientnet_lite0 (default)": convsight.load_model(),
        "resnet50": convsight.Network(torchvision.models.resnet50(weights=None).eval()),
    }
    start = time.perf_counter()
    convsight.receptive_field(models["resnet50"], "layer1")  # one-time: torch imports torch._dynamo
    print(f"first call in this process (one-time imports): {time.perf_counter() - start:.2f} s")
    print(f"{'model':30s} {'forward':>9s} {'all layers':>11s} {'one layer':>10s} {'ratio':>6s}")
    for name, net in models.items():
        x = torch.rand(1, 3, *net.input_size)
        last = convsight.units.layer_names(net)[-1]
        with torch.inference_mode():
            forward = median_time(lambda: net.module(x))
        every = median_time(lambda: convsight.receptive_fields(net))
        one = median_time(lambda: convsight.receptive_field(net, last))
        print(f"{name:30s} {forward * 1e3:7.1f}ms {every * 1e3:9.1f}ms {one * 1e3:8.1f}ms "
              f"{every / forward:5.1f}x")
    print(f"(medians of {REPEATS} runs; ratio = all layers / one plain forward pass)")


if __name__ == "__main__":
    main()
