"""Each metric of convsight.metric against Quantus 0.6.0 (and Captum 0.9 where it has one).

Default model (EfficientNet-Lite0), 8 photos (the five of ``convsight.sample_images()`` and
scikit-image's camera man, immunohistochemistry and Hubble deep field), each photo's top class,
the gradient's map (|map| summed over colours, as convsight ranks it; max-sensitivity and
random logit explain again with the gradient). Equal settings, and the same randomness: the same
perturbations passed to all (max-sensitivity, infidelity), the same seed and draw order (ROAD's
noise, random logit's other class). One run of each library per metric (``--repeats N``: N
runs, interleaved, medians), after one warm-up call of the model; the time is the wall time of
the whole metric on the 8 photos (the median per photo is the same divided by 8: every photo
costs alike here). "max |diff|" is the largest difference of the values. "passes": the model
passes that the metric needs, timed alone in convsight's process (``bare_passes``): where they
are most of both sides' time, no implementation of the metric can be many times faster.

Each library's timing runs in a fresh child process of its own, as a user runs it: convsight's
with its own setting of keeping freed memory for reuse (``convsight.cpu.keep_freed_memory``,
applied from its first computation on), each peer's with ``CONVSIGHT_KEEP_MEMORY=0`` (the peers
call convsight's gradient as their explanation function and load the model through convsight:
without it, convsight's setting would speed up the peers' batches too, which a user of the peer
alone does not get). The column "kept" says whether the setting was in force in that process.

ROAD: Quantus 0.6.0's ``ROAD`` fails on colour images (it indexes channel values as pixels), so
its loop is timed as it is written, with the pixel indices it should pass: Quantus's
``noisy_linear_imputation`` per image and percentage, one forward pass of the 8 images per
percentage.

    .venv/bin/python bench/metrics.py [--percentages 10,30,50,70,90] [--samples 10]
        [--only road,sparseness] [--device cuda] [--repeats 3] [--same-process]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
import warnings

import numpy as np
import torch

import convsight


def photos(net: convsight.Network) -> torch.Tensor:
    from skimage import data

    imgs = list(convsight.sample_images().values())
    imgs += [data.camera(), data.immunohistochemistry(), data.hubble_deep_field()]
    return torch.cat([net.preprocess(i) for i in imgs[:8]])


def timed(fn):
    start = time.perf_counter()
    out = fn()
    return time.perf_counter() - start, np.asarray(out, dtype=np.float64).reshape(-1)


def gradient_explainer(net):
    def explain(model, inputs, targets, **kw):
        x = torch.as_tensor(np.asarray(inputs), dtype=torch.float32, device=net.device)
        t = [int(c) for c in np.asarray(targets).reshape(-1)]
        return convsight.attribute(net, x, t, method="gradient").cpu().numpy()
    return explain


def quantus_road(module, x, y, a, pct, noise, seed):
    from quantus.functions.perturb_func import noisy_linear_imputation

    np.random.seed(seed)
    order = np.argsort(-a.reshape(len(a), -1), axis=1, kind="stable")
    xs, out = x.cpu().numpy(), []
    for p in pct:
        top = order[:, :int(order.shape[1] * p / 100)]
        pert = np.stack([noisy_linear_imputation(e, t, noise=noise) for e, t in zip(xs, top)])
        with torch.no_grad():
            pred = module(torch.from_numpy(pert).float().to(x.device)).argmax(1).cpu().numpy()
        out.append(pred == y)
    return np.stack(out, 1).mean(1)


def image_major(noise):
    return noise.transpose(0, 1).reshape(-1, *noise.shape[2:])


def cases(net, x, y, args):
    import quantus
    from captum.metrics import infidelity, sensitivity_max

    targets = y.tolist()
    grad = convsight.attribute(net, x, targets, method="gradient")
    a = grad.abs().sum(1, keepdim=True)
    an, xn, yn = a.cpu().numpy(), x.cpu().numpy(), y.cpu().numpy()
    pct = [float(p) for p in args.percentages.split(",")]
    s, r = args.samples, 0.02
    gen = torch.Generator().manual_seed(0)
    uniform = ((torch.rand(s, *x.shape, generator=gen) * 2 - 1) * r).to(x.device)
    gauss = (torch.randn(s, *x.shape, generator=gen) * 0.1).to(x.device)
    qkw = dict(model=net.module, x_batch=xn, y_batch=yn, device=str(net.device))
    explain = gradient_explainer(net)
    steps = iter(range(10 ** 6))

    def q_perturb(arr, **kw):
        return arr + uniform[next(steps) % s].reshape(arr.shape).cpu().numpy()

    def c_explain(inputs, target):
        if isinstance(inputs, tuple):
            return (c_explain(inputs[0], target),)
        return convsight.attribute(net, inputs, target.tolist(), method="gradient")

    def c_perturb(inputs):
        pert = image_major(gauss)
        return pert, inputs - pert

    mask = torch.zeros(len(x), 224, 224, dtype=torch.bool)
    mask[:, 56:168, 56:168] = True
    return {
        "road": (lambda: convsight.trust.road_curves(net, x, a, targets, percentages=pct,
                                                     measure="accuracy", seed=0).mean(1),
                 {"Quantus (its loop)": lambda: quantus_road(net.module, x, yn, an, pct, 0.01, 0)}),
        "sparseness": (lambda: convsight.metric("sparseness", net, x, a),
                       {"Quantus": lambda: quantus.Sparseness(disable_warnings=True)(
                           a_batch=an, **qkw)}),
        "complexity": (lambda: convsight.metric("complexity", net, x, a),
                       {"Quantus": lambda: quantus.Complexity(disable_warnings=True)(
                           a_batch=an, **qkw)}),
        "pointing_game": (lambda: convsight.metric("pointing_game", net, x, a, mask=mask),
                          {"Quantus": lambda: quantus.PointingGame(disable_warnings=True)(
                              a_batch=an, s_batch=mask[:, None].numpy(), **qkw)}),
        "relevance_mass": (lambda: convsight.metric("relevance_mass", net, x, a, mask=mask),
                           {"Quantus": lambda: quantus.RelevanceMassAccuracy(
                               disable_warnings=True)(a_batch=an, s_batch=mask[:, None].numpy(),
                                                      **qkw)}),
        "random_logit": (lambda: np.concatenate([convsight.metric(
            "random_logit", net, x[i:i + 1], grad[i:i + 1], targets[i:i + 1],
            method="gradient", seed=i, classes=1000) for i in range(len(x))]),
            {"Quantus (a photo per call: per-image normalisation)": lambda: np.concatenate([
                quantus.RandomLogit(num_classes=1000, seed=i, disable_warnings=True)(
                    model=net.module, x_batch=xn[i:i + 1], y_batch=yn[i:i + 1],
                    a_batch=grad[i:i + 1].cpu().numpy(), explain_func=explain,
                    device=str(net.device)) for i in range(len(x))])}),
        "max_sensitivity": (lambda: convsight.metric(
            "max_sensitivity", net, x, grad, targets, method="gradient", samples=s,
            noise=uniform),
            {"Quantus": lambda: quantus.MaxSensitivity(
                nr_samples=s, perturb_func=q_perturb, disable_warnings=True)(
                a_batch=grad.cpu().numpy(), explain_func=explain, **qkw),
             "Captum": lambda: sensitivity_max(c_explain, x, lambda inp, rr: inp +
                                               image_major(uniform), n_perturb_samples=s,
                                               target=y).cpu()}),
        "infidelity": (lambda: convsight.metric("infidelity", net, x, grad, targets, samples=s,
                                                noise=gauss),
                       {"Captum": lambda: infidelity(net.module, c_perturb, x, grad, target=y,
                                                     n_perturb_samples=s,
                                                     normalize=True).cpu()}),
    }


def arguments(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--percentages", default="10,20,30,40,50,60,70,80,90")
    p.add_argument("--samples", type=int, default=10)
    p.add_argument("--only", default=None)
    p.add_argument("--device", default=None)
    p.add_argument("--repeats", type=int, default=1,
                   help="runs per library, interleaved (ours, peers, ours, ...): medians")
    p.add_argument("--same-process", action="store_true",
                   help="time every library in this process (the peers then share convsight's "
                        "memory setting)")
    p.add_argument("--worker", default=None, help=argparse.SUPPRESS)  # "metric:side index"
    return p.parse_args(argv)


def setup(args):
    warnings.filterwarnings("ignore")
    from convsight.models import on_device

    net = on_device(convsight.load_model(), args.device)
    x = photos(net).to(net.device)
    with torch.no_grad():  # also the warm-up call of the model
        y = net.module.eval()(x).argmax(1)
    return net, x, y


def bare_passes(net, x, args) -> dict:
    """The model's passes that each model-bound metric needs, alone (no metric around them), as
    convsight runs them (on ``Network.fast``: BatchNorm folded), the floor of convsight's time;
    a peer running the same passes on the model as given pays more per pass. Copies in batches
    of 16, as convsight's default."""
    s, n = args.samples, len(x)
    pct = len(args.percentages.split(","))
    copies = x.repeat(s, 1, 1, 1)
    fast = net.fast()

    def forwards(batch, times=1):
        with torch.no_grad():
            for _ in range(times):
                for start in range(0, len(batch), 16):
                    fast.module(net.layout(batch[start:start + 16]))

    def grads(batch, size=16):
        for start in range(0, len(batch), size):
            convsight.attribute(fast, batch[start:start + size], method="gradient")

    return {"road": lambda: forwards(x, pct),
            "random_logit": lambda: grads(x, 1),
            "max_sensitivity": lambda: grads(copies),
            "infidelity": lambda: (forwards(x), forwards(copies))}


def run_one(args, name: str, side: int) -> dict:
    """Time side ``side`` (0: convsight, then the peers in order) of metric ``name``, here."""
    from convsight import cpu

    net, x, y = setup(args)
    ours, peers = cases(net, x, y, args)[name]
    fn = ours if side == 0 else list(peers.values())[side - 1]
    seconds, values = timed(fn)
    bare = bare_passes(net, x, args).get(name) if side == 0 else None
    return {"seconds": seconds, "values": values.tolist(), "kept": bool(cpu._kept),
            "passes": timed(bare)[0] if bare else None}


def in_child(args, name: str, side: int) -> dict:
    env = dict(os.environ)
    if side > 0:
        env["CONVSIGHT_KEEP_MEMORY"] = "0"
    argv = [sys.executable, __file__, "--worker", f"{name}:{side}", "--percentages",
            args.percentages, "--samples", str(args.samples)]
    if args.device:
        argv += ["--device", args.device]
    done = subprocess.run(argv, env=env, capture_output=True, text=True, check=False)
    lines = [line for line in done.stdout.splitlines() if line.startswith("RESULT ")]
    if done.returncode or not lines:
        raise SystemExit(f"{name} side {side} failed:\n{done.stderr[-3000:]}")
    return json.loads(lines[-1][len("RESULT "):])


def main() -> None:
    args = arguments()
    if args.worker:
        name, side = args.worker.split(":")
        print("RESULT " + json.dumps(run_one(args, name, int(side))), flush=True)
        return
    names = {"road": 1, "sparseness": 1, "complexity": 1, "pointing_game": 1,
             "relevance_mass": 1, "random_logit": 1, "max_sensitivity": 2, "infidelity": 1}
    labels = {"max_sensitivity": ["Quantus", "Captum"], "infidelity": ["Captum"],
              "road": ["Quantus (its loop)"],
              "random_logit": ["Quantus (a photo per call: per-image normalisation)"]}
    where = "this process" if args.same_process else "a fresh process each"
    print(f"8 photos, threads {torch.get_num_threads()}, each library timed in {where}")
    print("passes: the model passes the metric needs, alone, on the folded copy convsight runs "
          "(bare_passes): convsight's floor")
    print(f"{'metric':16s} {'convsight':>10s} {'passes':>8s} {'peer':>10s} {'ratio':>7s} "
          f"{'max |diff|':>10s} {'kept':>11s}  peer")
    state = setup(args) if args.same_process else None
    for name, count in names.items():
        if args.only and name not in args.only.split(","):
            continue
        if state:
            ours, peers = cases(*state, args)[name]
            results = [dict(zip(("seconds", "values"), timed(f)), kept=None, passes=None)
                       for f in [ours, *peers.values()]]
        else:
            runs = [[in_child(args, name, side) for side in range(count + 1)]
                    for _ in range(args.repeats)]  # interleaved: load changes hit both sides
            results = [dict(run[0], seconds=float(np.median([r[side]["seconds"] for r in runs])))
                       for side, run in enumerate(zip(*runs))]
        v_ours = np.asarray(results[0]["values"])
        for side, peer in enumerate(results[1:], 1):
            label = labels.get(name, ["Quantus"])[side - 1]
            diff = float(np.nanmax(np.abs(v_ours - np.asarray(peer["values"]))))
            kept = f"{results[0]['kept']!s:>5s}/{peer['kept']!s:>5s}"
            passes = results[0]["passes"]
            passes = f"{passes:7.2f}s" if passes is not None else f"{'-':>8s}"
            print(f"{name:16s} {results[0]['seconds']:9.3f}s {passes} {peer['seconds']:9.3f}s "
                  f"{peer['seconds'] / results[0]['seconds']:6.1f}x {diff:10.2e} {kept:>11s}  "
                  f"{label}", flush=True)


if __name__ == "__main__":
    main()
