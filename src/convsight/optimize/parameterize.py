"""Parameterisations: the tensor the optimiser changes, and how it becomes an image in [0, 1].

- ``PixelImage``: the image itself, in pixel units 0..255 around the network's mean colour (the
  space of Yosinski et al. 2015: 0 is the mean, a pixel can go from -mean*255 to (1-mean)*255).
- ``FourierImage``: a scaled spectrum per channel -> inverse FFT -> optional colour decorrelation ->
  sigmoid (Olah et al. 2017). Low frequencies get larger steps, so images come out smoother.

Any channel count works. Colour decorrelation is about RGB only (the square root of ImageNet's
colour correlation), so other channel counts skip it: a gray image is its own luminance, and the
luminance column of the normalised matrix has norm 1, so gray images keep the scale that the
luminance of RGB ones gets.

>>> p = FourierImage(2, 64, 64, generator=torch.Generator().manual_seed(0))
>>> p.image().shape
torch.Size([2, 3, 64, 64])
"""

from __future__ import annotations

from typing import Sequence, Union

import torch

# One generator for the whole batch, or one per image (each image's start then depends on its own
# generator only, not on the batch it is made in).
Generators = Union[torch.Generator, Sequence[torch.Generator], None]

# Square root of the colour correlation of ImageNet images (rows map decorrelated -> RGB), from Lucid.
COLOR_CORRELATION = torch.tensor([[0.26, 0.09, 0.02],
                                  [0.27, 0.00, -0.05],
                                  [0.27, -0.09, 0.03]], dtype=torch.float64)


def normal(shape: tuple[int, ...], generator: Generators) -> torch.Tensor:
    """Standard normal noise of ``shape`` (N, ...): from one generator, or image i from the i-th."""
    if generator is None or isinstance(generator, torch.Generator):
        return torch.randn(shape, generator=generator)
    if len(generator) != shape[0]:
        raise ValueError(f"{len(generator)} generators for {shape[0]} images")
    return torch.stack([torch.randn(shape[1:], generator=g) for g in generator])


def decorrelation_matrix() -> torch.Tensor:
    """``COLOR_CORRELATION`` divided by its largest column norm (about 0.462)."""
    return COLOR_CORRELATION / COLOR_CORRELATION.norm(dim=0).max()


class PixelImage:
    """Images stored directly, in 0..255 units around ``mean`` (a (C,) sequence in [0, 1])."""

    def __init__(self, n: int, h: int, w: int, mean: Sequence[float], *, init: str = "noise",
                 sd: float = 10.0, generator: Generators = None,
                 device: torch.device | str = "cpu") -> None:
        shape = (n, len(mean), h, w)
        if init == "zero":
            x = torch.zeros(shape)
        else:
            x = normal(shape, generator) * sd
        self.x = x.to(device)
        self.mean = torch.tensor(mean, dtype=torch.float32, device=device).view(1, -1, 1, 1)
        self.low = -self.mean * 255.0   # pixel value 0 in these units
        self.high = (1.0 - self.mean) * 255.0

    @property
    def tensor(self) -> torch.Tensor:
        """The optimised tensor (what gradients are taken with respect to)."""
        return self.x

    def image(self, x: torch.Tensor | None = None) -> torch.Tensor:
        """Images in [0, 1] (not clipped) from the pixel tensor (default: the current one)."""
        return (self.x if x is None else x) / 255.0 + self.mean


class FourierImage:
    """Images as scaled spectra (Lucid's ``fft_image`` + ``to_valid_rgb``), written anew here."""

    def __init__(self, n: int, h: int, w: int, *, sd: float = 0.01, decay_power: float = 1.0,
                 decorrelate: bool = True, generator: Generators = None,
                 device: torch.device | str = "cpu", channels: int = 3) -> None:
        self.h, self.w = h, w
        fy = torch.fft.fftfreq(h, dtype=torch.float64)[:, None]
        fx = torch.fft.rfftfreq(w, dtype=torch.float64)[None, :]
        freqs = torch.sqrt(fx * fx + fy * fy)
        scale = 1.0 / torch.clamp(freqs, min=1.0 / max(h, w)) ** decay_power
        self.scale = scale.to(torch.float32).to(device)[None, None, :, :, None]
        spectrum = normal((n, channels) + tuple(freqs.shape) + (2,), generator) * sd
        self.x = spectrum.to(device)
        rgb = decorrelate and channels == 3  # the matrix is RGB's (module docstring)
        self.matrix = decorrelation_matrix().to(torch.float32).to(device) if rgb else None

    @property
    def tensor(self) -> torch.Tensor:
        return self.x

    def image(self, x: torch.Tensor | None = None) -> torch.Tensor:
        """Images in (0, 1): inverse orthonormal FFT, / 4, colour mixing, sigmoid."""
        spectrum = torch.view_as_complex((self.scale * (self.x if x is None else x)).contiguous())
        img = torch.fft.irfft2(spectrum, s=(self.h, self.w), norm="ortho") / 4.0
        if self.matrix is not None:
            img = torch.einsum("ij,njhw->nihw", self.matrix, img)
        return torch.sigmoid(img)
