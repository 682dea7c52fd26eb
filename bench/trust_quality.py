"""The numbers of docs/sanity.md: faithfulness and randomisation of each method on real photos.

Default model (EfficientNet-Lite0), each photo's top class. Photos: the five sample photos of
``convsight.sample_images()``, scikit-image's camera man, and for each of the nine source photos
of ``convsight.mining.photo_folder`` (120 crops, seed 0) its first crop that the model gives a
top-class probability of 0.5 or more. For each photo and method:

- deletion and insertion AUC (50 steps) beside random maps of the method's kind and pixel-wise
  random maps (3 draws each);
- Spearman rank correlation of |map| after re-initialising the top layer and every layer, and,
  for the gradient-like methods and Grad-CAM, along the whole block-by-block cascade.

    .venv/bin/python bench/trust_quality.py          # measure all photos, then the summary
    .venv/bin/python bench/trust_quality.py run --part 0/2 -o /tmp/q0.json   # (two processes)
    .venv/bin/python bench/trust_quality.py summary /tmp/q0.json /tmp/q1.json

Without arguments it takes about half an hour on a 2-core CPU (occlusion dominates: 729 windows
per map, three maps per photo).
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time

import torch

import convsight
from convsight.mining import photo_folder
from convsight.trust import random_reference, sanity_check, trust_score
from convsight.trust.sanity import fixed_targets

METHODS = ("gradient", "guided", "deconv", "gradcam", "occlusion")
CASCADE = ("gradient", "guided", "deconv", "gradcam")
STEPS = 50


def photos(net: convsight.Network) -> list[tuple[str, torch.Tensor]]:
    """The sample photos, scikit-image's camera man, and for each source photo of
    ``photo_folder`` (120 crops, seed 0) its first crop the model gives 0.5 or more."""
    from skimage import data

    out = [(name, net.preprocess(im)) for name, im in convsight.sample_images().items()]
    out.append(("camera", net.preprocess(data.camera())))
    folder = tempfile.mkdtemp(prefix="convsight-trust-")
    taken = set()
    for path in photo_folder(folder, n=120, seed=0):
        if path.parent.name in taken:
            continue
        x = net.preprocess(path)
        with torch.no_grad():
            if float(torch.softmax(net.module(x), 1).max()) >= 0.5:
                out.append((f"{path.parent.name}/{path.name}", x))
                taken.add(path.parent.name)
    return out


def measure(net: convsight.Network, name: str, x: torch.Tensor) -> dict:
    targets = fixed_targets(net, x, None)
    klass = targets[0].class_index
    with torch.no_grad():
        prob = float(torch.softmax(net.module(x), 1)[0, klass])
    row = {"photo": name, "class": net.class_name(klass), "prob": prob, "methods": {}}
    pixel = random_reference(net, x, targets, STEPS, "gradient")
    row["pixel_random"] = {k: float(pixel[k][0]) for k in ("deletion", "insertion")}
    for m in METHODS:
        start = time.time()
        s = trust_score(net, x, targets, m, steps=STEPS,
                        reference=pixel if m in ("gradient", "guided", "deconv") else None)
        row["methods"][m] = {"deletion": float(s.deletion[0]), "insertion": float(s.insertion[0]),
                             "random_deletion": float(s.random_deletion[0]),
                             "random_insertion": float(s.random_insertion[0]),
                             "rho_top": float(s.top_layer_correlation[0]),
                             "rho_all": float(s.randomized_correlation[0]),
                             "verdict": s.verdict(0), "seconds": time.time() - start}
    rep = sanity_check(net, x, targets, methods=CASCADE, group="block", progress=False)
    row["cascade_layers"] = rep.layers
    row["cascade"] = {m: [float(v) for v in rep.spearman_abs[m][:, 0]] for m in CASCADE}
    row["cascade_ssim"] = {m: [float(v) for v in rep.ssim[m][:, 0]] for m in CASCADE}
    row["cascade_hog"] = {m: [float(v) for v in rep.hog[m][:, 0]] for m in CASCADE}
    return row


def run(args: argparse.Namespace) -> None:
    if args.threads:
        torch.set_num_threads(args.threads)
    net = convsight.load_model()
    part, parts = (int(v) for v in args.part.split("/"))
    rows = []
    for i, (name, x) in enumerate(photos(net)):
        if i % parts != part:
            continue
        start = time.time()
        rows.append(measure(net, name, x))
        print(f"{name}: {time.time() - start:.0f} s", flush=True)
        with open(args.out, "w") as f:
            json.dump(rows, f, indent=1)


def _median(values: list[float]) -> str:
    return f"{statistics.median(values):.3f}"


def summary(args: argparse.Namespace) -> None:
    rows = [r for path in args.files for r in json.load(open(path))]
    print(f"{len(rows)} photos: " + ", ".join(f"{r['photo']} ({r['class']} {r['prob']:.2f})"
                                            for r in rows))
    print("\nmedian over photos (wins = photos where the method beats its random reference)")
    print(f"{'method':10s} {'del':>6s} {'rand':>6s} {'wins':>5s} {'ins':>6s} {'rand':>6s} "
          f"{'wins':>5s} {'both':>5s} {'rho top':>7s} {'rho all':>7s}")
    for m in METHODS:
        ms = [r["methods"][m] for r in rows]
        wins_d = sum(v["deletion"] < v["random_deletion"] for v in ms)
        wins_i = sum(v["insertion"] > v["random_insertion"] for v in ms)
        both = sum(v["deletion"] < v["random_deletion"] and v["insertion"] > v["random_insertion"]
                   for v in ms)
        print(f"{m:10s} {_median([v['deletion'] for v in ms]):>6s} "
              f"{_median([v['random_deletion'] for v in ms]):>6s} {wins_d:>2d}/{len(ms):<2d} "
              f"{_median([v['insertion'] for v in ms]):>6s} "
              f"{_median([v['random_insertion'] for v in ms]):>6s} {wins_i:>2d}/{len(ms):<2d} "
              f"{both:>2d}/{len(ms):<2d} "
              f"{_median([v['rho_top'] for v in ms]):>7s} {_median([v['rho_all'] for v in ms]):>7s}")
    pix = [r["pixel_random"] for r in rows]
    print(f"{'pixels':10s} {_median([v['deletion'] for v in pix]):>6s} {'':>6s} {'':>5s} "
          f"{_median([v['insertion'] for v in pix]):>6s}   (pixel-wise random maps)")
    for m in ("gradcam", "occlusion"):
        wins = [(r["methods"][m]["deletion"] < r["pixel_random"]["deletion"],
                 r["methods"][m]["insertion"] > r["pixel_random"]["insertion"]) for r in rows]
        print(f"{m} against pixel-wise random maps: deletion wins {sum(w[0] for w in wins)}"
              f"/{len(rows)}, insertion wins {sum(w[1] for w in wins)}/{len(rows)}")
    layers = rows[0]["cascade_layers"]
    for key in ("cascade", "cascade_ssim", "cascade_hog"):
        print(f"\n{key}: median over photos after each cascading step (block by block)")
        print(f"{'step':12s} " + " ".join(f"{m:>8s}" for m in CASCADE))
        for s, name in enumerate(["trained"] + layers):
            vals = [statistics.median([r[key][m][s] for r in rows]) for m in CASCADE]
            print(f"{name:12s} " + " ".join(f"{v:8.2f}" for v in vals))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="cmd")
    r = sub.add_parser("run")
    r.add_argument("--part", default="0/1", help="i/n: measure every n-th photo from the i-th")
    r.add_argument("--threads", type=int, default=1)
    r.add_argument("-o", "--out", required=True)
    r.set_defaults(func=run)
    s = sub.add_parser("summary")
    s.add_argument("files", nargs="+")
    s.set_defaults(func=summary)
    args = p.parse_args()
    if args.cmd is None:  # everything, into a temporary file
        out = tempfile.mktemp(suffix=".json", prefix="trust-quality-")
        run(argparse.Namespace(part="0/1", threads=0, out=out))
        args = argparse.Namespace(files=[out])
        summary(args)
        return
    args.func(args)


if __name__ == "__main__":
    main()
