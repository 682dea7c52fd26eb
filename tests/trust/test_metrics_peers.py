"""convsight.metric against Quantus 0.6.0 and Captum 0.9 on shared settings, same randomness.

Randomness is made the same by passing the same perturbations (max-sensitivity, infidelity) or
by the same seed and draw order (ROAD's imputation noise, random logit's other class). Where a
definition differs on purpose, the test shows the difference.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
from torch import nn

import convsight
from convsight.trust.road import imputation, imputed_batches, removal_sets

from ..tinynets import tiny_net

quantus = pytest.importorskip("quantus")
captum_metrics = pytest.importorskip("captum.metrics")
pytestmark = [pytest.mark.usefixtures("one_thread"),
              pytest.mark.filterwarnings("ignore::UserWarning"),
              pytest.mark.filterwarnings("ignore::DeprecationWarning"),
              pytest.mark.filterwarnings("ignore::FutureWarning")]


class GrayNet(nn.Module):
    """1 input channel: Quantus 0.6.0's ROAD only works on one-channel images."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 6, 3, padding=1)
        self.fc = nn.Linear(6 * 4, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = torch.relu(self.conv(x))
        return self.fc(nn.functional.adaptive_avg_pool2d(h, 2).flatten(1))


def gray_setup(n: int = 6, size: int = 12):
    torch.manual_seed(4)  # a seed where removing pixels changes some predictions
    net = GrayNet().eval()
    x = torch.randn(n, 1, size, size)
    a = torch.randn(n, 1, size, size)  # distinct values: no ties, so any sort gives one order
    y = net(x).argmax(1)
    return net, x, a, y


def rgb_setup(n: int = 2, size: int = 16):
    torch.manual_seed(2)
    net = tiny_net().eval()  # peers run the model as it is: no batch norm in train mode
    x = torch.randn(n, 3, size, size)
    y = net(x).argmax(1)
    return net, x, y


def gradient(model, inputs, targets, **kwargs) -> np.ndarray:
    """Quantus's explain_func: convsight's gradient."""
    x = torch.as_tensor(np.asarray(inputs), dtype=torch.float32)
    t = [int(c) for c in np.asarray(targets).reshape(-1)]
    return convsight.attribute(model, x, t, method="gradient").numpy()


def test_road_imputation_equals_quantus():
    from quantus.functions.perturb_func import noisy_linear_imputation
    rng = np.random.default_rng(0)
    image = rng.random((3, 20, 17)).astype(np.float32)
    for fraction in (0.1, 0.5, 0.9):
        idx = rng.permutation(20 * 17)[:int(340 * fraction)]
        theirs = noisy_linear_imputation(image, idx, noise=0.0)
        ours = image.reshape(3, -1).copy()
        ours[:, idx] = imputation(image, idx)
        np.testing.assert_allclose(ours.reshape(image.shape), theirs, atol=1e-6)


def test_road_imputation_of_a_large_region_equals_quantus():
    """Large systems (factorised in nested-dissection order): a blob of most of the image and
    scattered pixels, on an odd-sized image."""
    from quantus.functions.perturb_func import noisy_linear_imputation
    rng = np.random.default_rng(1)
    image = rng.random((3, 61, 47))
    yy, xx = np.mgrid[:61, :47]
    blob = np.flatnonzero(((yy - 30) ** 2 + (xx - 20) ** 2).ravel() < 24 ** 2)
    scattered = rng.permutation(61 * 47)[:int(61 * 47 * 0.9)]
    for idx in (blob, scattered):
        theirs = noisy_linear_imputation(image, idx, noise=0.0)
        ours = image.reshape(3, -1).copy()
        ours[:, idx] = imputation(image, idx)
        np.testing.assert_allclose(ours.reshape(image.shape), theirs, atol=1e-10)


def test_road_noise_draws_equal_quantus():
    from quantus.functions.perturb_func import noisy_linear_imputation
    _, x, a, _ = gray_setup(n=3)
    pct = [20, 60]
    removed = removal_sets(a.sum(1).flatten(1), pct, "morf")
    ours = list(imputed_batches(x, removed, 0.05, np.random.RandomState(7)))
    np.random.seed(7)
    for j in range(len(pct)):
        for i in range(3):
            theirs = noisy_linear_imputation(x[i].numpy(), removed[i][j], noise=0.05)
            np.testing.assert_allclose(ours[j][1][i].numpy(), theirs, atol=1e-5)


@pytest.mark.parametrize("noise", [0.0, 0.01])
def test_road_curve_equals_quantus(noise):
    net, x, a, y = gray_setup()
    pct = [10, 30, 50, 70, 90]
    np.random.seed(3)
    theirs = quantus.ROAD(percentages=pct, noise=noise, disable_warnings=True)(
        model=net, x_batch=x.numpy(), y_batch=y.numpy(), a_batch=a.numpy(), device="cpu")
    curve = convsight.trust.road_curves(net, x, a, y.tolist(), percentages=pct, order="morf",
                                        measure="accuracy", noise=noise, seed=3)
    np.testing.assert_allclose(curve.mean(0).numpy(), [theirs[p] for p in pct], atol=1e-12)
    # not a trivial curve: removing most of the image changes some predictions
    assert curve.min() == 0 and curve.max() == 1
    per_image = convsight.metric("road", net, x, a, y.tolist(), percentages=pct, order="morf",
                                 measure="accuracy", noise=noise, seed=3)
    np.testing.assert_allclose(per_image.numpy(), curve.mean(1).numpy(), atol=1e-6)


def test_road_on_colour_images_differs_on_purpose():
    """Quantus 0.6.0 indexes channel values as pixels and fails on RGB; convsight removes a
    pixel with its channels."""
    net, x, y = rgb_setup()
    a = torch.randn(2, 1, 16, 16)
    with pytest.raises(IndexError):
        quantus.ROAD(percentages=[50], disable_warnings=True)(
            model=net, x_batch=x.numpy(), y_batch=y.numpy(), a_batch=a.numpy(), device="cpu")
    v = convsight.metric("road", net, x, a, y.tolist(), percentages=[50], order="morf")
    assert v.shape == (2,) and torch.isfinite(v).all()


def quantus_maps(cls, a, **kw):
    x = np.zeros((a.shape[0], 1, *a.shape[2:]), dtype=np.float32)
    return np.array(cls(disable_warnings=True, **kw)(model=None, x_batch=x, y_batch=np.zeros(
        a.shape[0], dtype=int), a_batch=a.numpy().astype(np.float32), **kw.pop("_s", {})))


@pytest.mark.parametrize("name,cls", [("sparseness", "Sparseness"),
                                      ("complexity", "Complexity")])
def test_complexity_metrics_equal_quantus(name, cls):
    _, x, a, _ = gray_setup(n=3)
    theirs = quantus_maps(getattr(quantus, cls), a)
    ours = convsight.metric(name, GrayNet(), x, a)
    np.testing.assert_allclose(ours.numpy(), theirs, rtol=1e-5)


def test_sparseness_sums_channels_on_purpose():
    """A 3-channel map: convsight scores the pixel map (|a| summed over channels); Quantus scores
    every channel value as if it were a pixel. The same number as Quantus on the pixel map."""
    torch.manual_seed(0)
    a = torch.randn(2, 3, 10, 10)
    x = torch.randn(2, 3, 10, 10)
    ours = convsight.metric("sparseness", tiny_net(), x, a)
    pixel = a.abs().sum(1, keepdim=True)
    np.testing.assert_allclose(ours.numpy(), quantus_maps(quantus.Sparseness, pixel), rtol=1e-5)
    raw = quantus.Sparseness(disable_warnings=True)(model=None, x_batch=x.numpy(),
                                                    y_batch=np.zeros(2, dtype=int),
                                                    a_batch=a.numpy())
    assert np.abs(ours.numpy() - np.array(raw)).min() > 1e-3


def test_localisation_equals_quantus():
    _, x, a, _ = gray_setup(n=4)
    a[0, 0, 4, 5] = a[2, 0, 3, 4] = 10.0  # their largest values lie in the mask
    mask = torch.zeros(4, 12, 12, dtype=torch.bool)
    mask[:, 2:7, 3:9] = True
    mask[1] = False
    mask[1, 9:, 9:] = True
    s = mask[:, None].numpy().astype(float)
    kw = dict(model=None, x_batch=x.numpy(), y_batch=np.zeros(4, dtype=int), a_batch=a.numpy(),
              s_batch=s)
    pg = np.array(quantus.PointingGame(disable_warnings=True)(**kw), dtype=float)
    rm = np.array(quantus.RelevanceMassAccuracy(disable_warnings=True)(**kw))
    net = GrayNet()
    np.testing.assert_array_equal(convsight.metric("pointing_game", net, x, a, mask=mask).numpy(), pg)
    assert 0 < pg.sum() < 4  # hits and misses
    np.testing.assert_allclose(convsight.metric("relevance_mass", net, x, a, mask=mask).numpy(),
                               rm, rtol=1e-5)
    box = convsight.metric("relevance_mass", net, x, a, box=(2, 3, 6, 8))
    np.testing.assert_allclose(box[[0, 2, 3]].numpy(), rm[[0, 2, 3]], rtol=1e-5)


def test_random_logit_equals_quantus_on_one_image():
    net, x, y = rgb_setup(n=1)
    a = convsight.attribute(net, x, y.tolist(), method="gradient")
    theirs = quantus.RandomLogit(num_classes=10, seed=5, disable_warnings=True)(
        model=net, x_batch=x.numpy(), y_batch=y.numpy(), a_batch=a.numpy(), explain_func=gradient,
        device="cpu")
    ours = convsight.metric("random_logit", net, x, a, y.tolist(), method="gradient", seed=5)
    np.testing.assert_allclose(ours.numpy(), theirs, rtol=1e-4, atol=1e-6)


def test_random_logit_normalises_each_image_on_purpose():
    """Quantus divides a batch by its largest value, so one image's score depends on the
    others; convsight divides each map by its own (Quantus's per-image normalisation)."""
    net, x, y = rgb_setup(n=2)
    x[1] *= 4  # very different magnitudes
    y = net(x).argmax(1)
    a = convsight.attribute(net, x, y.tolist(), method="gradient")
    kw = dict(model=net, x_batch=x.numpy(), y_batch=y.numpy(), a_batch=a.numpy(),
              explain_func=gradient, device="cpu")
    batch = quantus.RandomLogit(num_classes=10, seed=5, disable_warnings=True)(**kw)
    each = quantus.RandomLogit(num_classes=10, seed=5, disable_warnings=True,
                               normalise_func_kwargs={"normalise_axes": (1, 2, 3)})(**kw)
    ours = convsight.metric("random_logit", net, x, a, y.tolist(), method="gradient", seed=5)
    np.testing.assert_allclose(ours.numpy(), each, rtol=1e-4, atol=1e-6)
    assert np.abs(np.array(batch) - np.array(each)).max() > 1e-3


def image_major(noise: torch.Tensor) -> torch.Tensor:
    """(S, N, ...) -> (N * S, ...) in Captum's repeat_interleave order."""
    return noise.transpose(0, 1).reshape(-1, *noise.shape[2:])


def test_max_sensitivity_equals_captum_and_quantus():
    net, x, y = rgb_setup(n=2)
    samples, radius = 6, 0.3
    noise = (torch.rand(samples, *x.shape, generator=torch.Generator().manual_seed(0)) * 2 - 1) \
        * radius
    a = convsight.attribute(net, x, y.tolist(), method="gradient")
    ours = convsight.metric("max_sensitivity", net, x, a, y.tolist(), method="gradient",
                            samples=samples, noise=noise)

    def explain(inputs, target):  # Captum passes and expects a tuple, or a tensor
        if isinstance(inputs, tuple):
            return (explain(inputs[0], target),)
        return convsight.attribute(net, inputs, target.tolist(), method="gradient")

    captum = captum_metrics.sensitivity_max(explain, x, lambda inp, r: inp + image_major(noise),
                                            n_perturb_samples=samples, target=y)
    np.testing.assert_allclose(ours.numpy(), captum.numpy(), rtol=1e-4)
    step = iter(range(samples))

    def perturb(arr, **kw):
        return arr + noise[next(step)].reshape(arr.shape).numpy()

    theirs = quantus.MaxSensitivity(nr_samples=samples, perturb_func=perturb,
                                    disable_warnings=True)(
        model=net, x_batch=x.numpy(), y_batch=y.numpy(), a_batch=a.numpy(),
        explain_func=gradient, device="cpu")
    np.testing.assert_allclose(ours.numpy(), theirs, rtol=1e-4)
    assert (ours > 0.01).all()
    again = convsight.metric("max_sensitivity", net, x, a, y.tolist(), method="gradient",
                             samples=samples, noise=noise, batch_size=5)
    np.testing.assert_allclose(again.numpy(), ours.numpy(), rtol=1e-5)


@pytest.mark.parametrize("normalize", [False, True])
def test_infidelity_equals_captum(normalize):
    net, x, y = rgb_setup(n=3)
    with torch.no_grad():
        net.fc.weight *= 100  # logits that move well above float32 rounding
    samples = 7
    noise = torch.randn(samples, *x.shape, generator=torch.Generator().manual_seed(1))
    for method in ("gradient", "gradcam"):
        a = convsight.attribute(net, x, y.tolist(), method=method)
        ours = convsight.metric("infidelity", net, x, a, y.tolist(), samples=samples,
                                noise=noise, normalize=normalize)

        def perturb(inputs):
            pert = image_major(noise)
            return pert, inputs - pert

        # Captum wants the map shaped like the images: a 1-channel map counts for every channel
        theirs = captum_metrics.infidelity(net, perturb, x, a.expand_as(x), target=y,
                                           n_perturb_samples=samples, normalize=normalize)
        np.testing.assert_allclose(ours.numpy(), theirs.numpy(), rtol=1e-3, atol=1e-7)
        assert (ours > 0).all()
        again = convsight.metric("infidelity", net, x, a, y.tolist(), samples=samples,
                                 noise=noise, normalize=normalize, batch_size=4)
        np.testing.assert_allclose(again.numpy(), ours.numpy(), rtol=1e-5)
