"""The report card of docs/sanity.md: gradient, guided backprop, Grad-CAM and occlusion.

Default model (EfficientNet-Lite0), the five photos of ``convsight.sample_images()``, each
photo's top class; occlusion window 32, stride 16 (as ``convsight check``); 20 points per
deletion and insertion curve; max-sensitivity with 3 samples (each sample explains the photo
again: occlusion costs 169 forward passes per map); the other metrics at their defaults. Prints
the card per photo and the median over the photos (Markdown), and writes the card's picture.

    .venv/bin/python bench/metrics_card.py [-o docs/metrics_card.png]
"""

from __future__ import annotations

import argparse
import time
import warnings

import torch

import convsight
from convsight.trust.evaluate import EvaluationTable

METHODS = ("gradient", "guided", "gradcam", "occlusion")
METRICS = ("deletion", "insertion", "road", "infidelity", "max_sensitivity", "random_logit",
           "randomisation", "sparseness", "complexity")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("-o", "--out", default="metrics_card.png")
    args = p.parse_args()
    warnings.filterwarnings("ignore")
    net = convsight.load_model()
    cards = []
    for name, img in convsight.sample_images().items():
        x = net.preprocess(img)
        start = time.perf_counter()
        card = convsight.evaluate(net, x, methods=METHODS, metrics=METRICS,
                                  options={"occlusion": {"window": 32, "stride": 16}},
                                  deletion={"steps": 20}, insertion={"steps": 20},
                                  max_sensitivity={"samples": 3})
        t = card.targets[0]
        print(f"\n{name}: {net.class_name(t.class_index)} ({time.perf_counter() - start:.0f} s)")
        print(card.to_markdown(0), flush=True)
        cards.append(card)
    merged = EvaluationTable(
        METHODS, METRICS,
        {k: {m: torch.cat([c.values[k][m] for c in cards]) for m in METHODS} for k in METRICS},
        {k: torch.cat([c.random[k] for c in cards]) for k in cards[0].random},
        [c.targets[0] for c in cards])
    print("\nmedian over the photos")
    print(merged.to_markdown())
    convsight.pictures.save_png(merged.figure(), args.out)


if __name__ == "__main__":
    main()
