"""Each regularizer, transform and parameterisation does what it says, on hand-made images."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.ndimage import gaussian_filter

from convsight.optimize import regularizers as reg
from convsight.optimize.parameterize import FourierImage, PixelImage, decorrelation_matrix
from convsight.optimize.transforms import (jitter, pad, random_rotate, random_scale,
                                           standard_transforms)


def high_frequency_energy(x: torch.Tensor) -> float:
    """Energy of the spectrum above a quarter of the sampling frequency (per image, summed)."""
    f = torch.fft.fft2(x.double())
    fy = torch.fft.fftfreq(x.shape[-2]).abs()[:, None]
    fx = torch.fft.fftfreq(x.shape[-1]).abs()[None, :]
    mask = (torch.maximum(fy, fx) > 0.25)
    return float((f.abs() ** 2 * mask).sum())


def checkerboard(n: int = 32) -> torch.Tensor:
    yy, xx = torch.meshgrid(torch.arange(n), torch.arange(n), indexing="ij")
    board = ((yy + xx) % 2).float() * 2 - 1
    return board.expand(1, 3, n, n).clone() * 50


@pytest.mark.parametrize("sigma", [0.5, 1.0, 2.5])
def test_blur_matches_scipy_gaussian_filter(sigma):
    x = torch.randn(2, 3, 17, 23, dtype=torch.float64)
    ours = reg.gaussian_blur(x, sigma).numpy()
    theirs = np.stack([[gaussian_filter(c, sigma, mode="reflect") for c in im] for im in x.numpy()])
    np.testing.assert_allclose(ours, theirs, atol=1e-10)


def test_blur_on_image_smaller_than_kernel_matches_scipy():
    x = torch.randn(1, 3, 3, 4, dtype=torch.float64)
    theirs = np.stack([gaussian_filter(c, 2.0, mode="reflect") for c in x[0].numpy()])
    np.testing.assert_allclose(reg.gaussian_blur(x, 2.0)[0].numpy(), theirs, atol=1e-10)


def test_blur_lowers_high_frequency_energy_and_keeps_the_mean():
    x = checkerboard() + 20
    blurred = reg.gaussian_blur(x, 1.0)
    assert high_frequency_energy(blurred) < 0.01 * high_frequency_energy(x)
    assert torch.allclose(blurred.mean(), x.mean(), atol=1e-4)
    assert torch.equal(reg.gaussian_blur(x, 0.0), x)


@pytest.mark.parametrize("pct", [20, 50, 90])
def test_small_norm_clipping_zeroes_the_stated_percentile_of_pixels(pct):
    g = torch.Generator().manual_seed(1)
    x = torch.randn(2, 3, 10, 10, generator=g)
    out = reg.zero_small_norm(x, pct)
    for i in range(2):
        norms = x[i].norm(dim=0).flatten()
        zeroed = (out[i] == 0).all(dim=0).flatten()
        # numpy's linear percentile of 100 distinct values: exactly pct values lie below it
        assert int(zeroed.sum()) == pct
        assert set(torch.nonzero(zeroed).flatten().tolist()) == set(norms.argsort()[:pct].tolist())
        assert torch.equal(out[i][:, ~zeroed.view(10, 10)], x[i][:, ~zeroed.view(10, 10)])


def test_small_norm_threshold_is_numpy_percentile():
    x = torch.randn(1, 3, 7, 9, dtype=torch.float64)
    norms = x[0].norm(dim=0).numpy()
    expected = norms < np.percentile(norms, 37.5)
    got = (reg.zero_small_norm(x, 37.5)[0] == 0).all(dim=0).numpy()
    np.testing.assert_array_equal(got, expected)


def test_small_contribution_clipping_zeroes_pixels_that_matter_least():
    x = torch.ones(1, 3, 10, 10)
    grad = torch.zeros(1, 3, 10, 10)
    grad[0, :, :, :5] = 1.0            # left half drives the objective, right half does not
    grad[0, 0, :, 5:] = torch.arange(1, 51).view(10, 5) * 1e-4   # distinct, all small
    out = reg.zero_small_contribution(x, grad, 40)
    assert (out[0, :, :, 5:] == 0).sum() == 3 * 40       # 40 % of pixels gone, all on the right
    assert torch.equal(out[0, :, :, :5], x[0, :, :, :5])
    contribution = (grad * -x).sum(1).abs()[0].numpy()
    expected = contribution < np.percentile(contribution, 40)
    np.testing.assert_array_equal((out[0] == 0).all(0).numpy(), expected)


def test_decay_shrinks_the_image():
    x = torch.randn(1, 3, 8, 8)
    out = reg.decay(x, 0.3)
    assert torch.allclose(out, 0.7 * x)
    assert out.norm() < x.norm()


def test_clip_to_range_per_channel():
    low = torch.tensor([-10.0, -20.0, -30.0]).view(1, 3, 1, 1)
    high = -low
    x = torch.full((1, 3, 2, 2), 100.0)
    assert torch.equal(reg.clip_to_range(x, low, high)[0, :, 0, 0], torch.tensor([10.0, 20.0, 30.0]))


def test_pixel_image_units_are_0_to_255_around_the_mean():
    p = PixelImage(1, 4, 4, (0.5, 0.25, 0.75), init="zero")
    assert torch.allclose(p.image()[0, :, 0, 0], torch.tensor([0.5, 0.25, 0.75]))
    assert torch.allclose(p.image(p.high.expand(1, 3, 4, 4)), torch.ones(1, 3, 4, 4))
    noise = PixelImage(1, 64, 64, (0.5,) * 3, sd=10.0, generator=torch.Generator().manual_seed(0))
    assert 9.5 < float(noise.tensor.std()) < 10.5


def test_fourier_image_is_smooth_and_decorrelated():
    g = torch.Generator().manual_seed(0)
    f = FourierImage(4, 64, 64, sd=0.01, generator=g)
    img = f.image()
    assert img.shape == (4, 3, 64, 64) and 0 < float(img.min()) and float(img.max()) < 1
    # the 1/f scaling puts most energy into low frequencies, unlike white noise of equal size
    def high_share(x):
        x = x - x.mean(dim=(-2, -1), keepdim=True)
        return high_frequency_energy(x) / float((x.double() ** 2).sum() * 64 * 64)
    assert high_share(torch.randn(4, 3, 64, 64)) > 0.7
    assert high_share(img) < 0.3
    m = decorrelation_matrix()
    assert abs(float(m.norm(dim=0).max()) - 1.0) < 1e-12
    assert abs(0.26 / float(m[0, 0]) - 0.462) < 1e-3


def test_transforms_are_repeatable_and_change_size_as_stated():
    x = torch.rand(2, 3, 40, 40)
    assert pad(12)(x, torch.Generator()).shape[-1] == 64
    assert pad(12)(x, torch.Generator())[0, :, 0, 0].eq(0.5).all()
    assert jitter(8)(x, torch.Generator().manual_seed(0)).shape[-1] == 32
    assert random_scale([1.1])(x, torch.Generator()).shape[-1] == 44
    rot = random_rotate([90])(x, torch.Generator())
    assert torch.allclose(rot, torch.rot90(x, 1, dims=(-2, -1)), atol=1e-5) or \
        torch.allclose(rot, torch.rot90(x, -1, dims=(-2, -1)), atol=1e-5)
    a = standard_transforms()(x, torch.Generator().manual_seed(3))
    b = standard_transforms()(x, torch.Generator().manual_seed(3))
    assert torch.equal(a, b)
