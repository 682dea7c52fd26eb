"""Each metric of convsight.metric against Quantus 0.6.0 (and Captum 0.9 where it has one).

Default model (EfficientNet-Lite0), 8 photos (the five of ``convsight.sample_images()`` and
scikit-image's camera man, immunohistochemistry and Hubble deep field), each photo's top class,
the gradient's map (|map| summed over colours, as convsight ranks it; max-sensitivity and
random logit explain again with the gradient). Equal settings, and the same randomness: the same
perturbations passed to all (max-sensitivity, infidelity), the same seed and draw order (ROAD's
noise, random logit's other class). One run of each library per metric, after one warm-up call of
the model; the time is the wall time of the whole metric on the 8 photos (the median per photo is
the same divided by 8: every photo costs alike here). "equal" is the largest difference of the
values.

ROAD: Quantus 0.6.0's ``ROAD`` fails on colour images (it indexes channel values as pixels), so
its loop is timed as it is written, with the pixel indices it should pass: Quantus's
``noisy_linear_imputation`` per image and percentage, one forward pass of the 8 images per
percentage.

    .venv/bin/python bench/metrics.py [--percentages 10,30,50,70,90] [--samples 10]
        [--only road,sparseness] [--device cuda]
"""

from __future__ import annotations

import argparse
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
            method="gradient", seed=i) for i in range(len(x))]),
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


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--percentages", default="10,20,30,40,50,60,70,80,90")
    p.add_argument("--samples", type=int, default=10)
    p.add_argument("--only", default=None)
    p.add_argument("--device", default=None)
    args = p.parse_args()
    warnings.filterwarnings("ignore")
    from convsight.models import on_device

    net = on_device(convsight.load_model(), args.device)
    x = photos(net).to(net.device)
    with torch.no_grad():
        y = net.module.eval()(x).argmax(1)
    print(f"{len(x)} photos on {net.device}, threads {torch.get_num_threads()}")
    print(f"{'metric':16s} {'convsight':>10s} {'peer':>10s} {'ratio':>7s} {'max |diff|':>10s}  peer")
    for name, (ours, peers) in cases(net, x, y, args).items():
        if args.only and name not in args.only.split(","):
            continue
        t_ours, v_ours = timed(ours)
        for label, peer in peers.items():
            t_peer, v_peer = timed(peer)
            diff = float(np.nanmax(np.abs(v_ours - v_peer)))
            print(f"{name:16s} {t_ours:9.3f}s {t_peer:9.3f}s {t_peer / t_ours:6.1f}x "
                  f"{diff:10.2e}  {label}", flush=True)


if __name__ == "__main__":
    main()
