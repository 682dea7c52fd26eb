"""SmoothGrad (Smilkov et al. 2017): average the attribution over noisy copies of the image.

Each image gets ``samples`` copies with Gaussian noise of standard deviation
``noise * (max - min)`` of that image (in the normalised input space, as in the paper). The noise
of image ``i`` comes from its own generator seeded from ``(seed, i)``, so a fixed seed gives the
same result for every ``batch_size`` and device. The base
method is the gradient by default; guided backprop and deconvnet work too.

>>> attr = smoothgrad(net, x, "class:281", samples=25, noise=0.15, seed=0)
"""

from __future__ import annotations

import hashlib
from collections import Counter

import torch

from ..errors import ConvsightError
from ..models import Network
from ..targets import fixed_targets
from .gradients import TargetSpec, input_gradient, warn_other_activations


def _image_generator(seed: int, index: int) -> torch.Generator:
    """A CPU generator for image ``index`` of a batch, seeded from (seed, index)."""
    digest = hashlib.sha256(f"smoothgrad:{seed}:{index}".encode()).digest()
    return torch.Generator().manual_seed(int.from_bytes(digest[:8], "little") >> 1)


def smoothgrad(net: Network, x: torch.Tensor, target: TargetSpec = None, samples: int = 25,
               noise: float = 0.15, base: str = "gradient", seed: int | None = None,
               batch_size: int | None = 16, others: str = "gate", seen: Counter | None = None
               ) -> torch.Tensor:
    """Mean of the ``base`` attribution (gradient, guided, deconv) over ``samples`` noisy copies."""
    batch_size = 16 if batch_size is None else batch_size
    if not isinstance(batch_size, int) or batch_size < 1:
        raise ConvsightError(f"batch_size must be a positive integer, got {batch_size!r}")
    if not isinstance(samples, int) or samples < 1:
        raise ConvsightError(f"samples must be a positive integer, got {samples!r}")
    if not noise >= 0:
        raise ConvsightError(f"noise must be >= 0 (a fraction of each image's value range), got {noise!r}")
    if base not in ("gradient", "guided", "deconv"):
        raise ConvsightError(f"smoothgrad base {base!r} is not one of gradient, guided, deconv")
    n = x.shape[0]
    targets = fixed_targets(net, x, target)  # each image's top class on the clean image
    base_seed = torch.Generator().seed() if seed is None else int(seed)
    sigma = noise * (x.flatten(1).amax(1) - x.flatten(1).amin(1))
    total = torch.zeros_like(x)
    own_warning = seen is None
    seen = Counter() if seen is None else seen
    # Copies in chunks of ``batch_size``, image by image. Each image draws all its noise at once
    # from its own generator, so the result does not depend on the batch size (the CPU's randn
    # fills a tensor in blocks: two small draws differ from one large one).
    rows = [(i, s) for i in range(n) for s in range(samples)]
    noise_of: dict[int, torch.Tensor] = {}
    for start in range(0, len(rows), batch_size):
        chunk = rows[start:start + batch_size]
        for i in [i for i in noise_of if i < chunk[0][0]]:  # rows are image-major: i is done
            del noise_of[i]
        for i, _ in chunk:
            if i not in noise_of:
                draw = torch.randn((samples,) + tuple(x.shape[1:]),
                                   generator=_image_generator(base_seed, i))
                noise_of[i] = draw.to(x.device, x.dtype) * sigma[i]
        eps = torch.stack([noise_of[i][s] for i, s in chunk])
        idx = torch.tensor([i for i, _ in chunk], device=x.device)
        grad = input_gradient(net, x[idx] + eps, [targets[i] for i, _ in chunk], rule=base,
                              others=others, seen=seen)
        total.index_add_(0, idx, grad)
    if own_warning:
        warn_other_activations(seen, base, others)
    return total / samples
