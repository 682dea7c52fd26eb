"""The ascent loop: change images so that each maximises its own target, all in one batch.

>>> import convsight
>>> net = convsight.load_model()
>>> result = convsight.maximize(net, ["class:130", "blocks.10:5"], steps=50, size=96)
>>> result.images.shape, result.trace.shape
(torch.Size([2, 3, 96, 96]), torch.Size([50, 2]))

Gradients are taken with respect to the images only (``torch.autograd.grad``), so the model's
parameters, their ``.grad`` and ``requires_grad`` stay as they were; forward passes run in eval
mode and every module's own mode is restored afterwards.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Sequence

import torch
import torch.nn.functional as F

from ..errors import ConvsightError, UnitError
from ..capture import capture
from ..models import Network, as_network, on_device, undeclared_size_error
from ..pictures import Picture, image_grid, png_bytes
from ..progress import ProgressArg, progress_bar
from ..targets import Target, check_target, evaluate
from ..units import check_layer
from . import regularizers as reg
from .diversity import gram_similarity
from .parameterize import FourierImage, PixelImage
from .presets import DEFAULT_PRESET, Settings, check_seed, settings_for
from .transforms import no_transforms, standard_transforms


@dataclass
class Synthesis:
    """What ``maximize`` returns.

    ``images`` (N, C, H, W) in [0, 1], one per target (``copies`` per target, target-major, when
    ``copies`` > 1); ``trace`` (steps, N) the target value at each step (under that step's random
    transform, if any); ``targets`` the parsed target of each image;
    ``frames`` the images at steps 0, every, 2*every ... and the last step (the result), when
    ``every`` was given (``frame_steps`` says which).
    """

    images: torch.Tensor
    trace: torch.Tensor
    targets: list
    frames: list[torch.Tensor] | None = None
    settings: Settings | None = field(default=None, repr=False)
    every: int | None = None
    copies: int = 1

    @property
    def frame_steps(self) -> list[int]:
        """The step each frame was taken at (the last one is the result)."""
        if not self.frames or not self.every:
            return []
        steps = self.trace.shape[0]
        at = list(range(0, steps, self.every))
        return at + ([steps - 1] if (steps - 1) % self.every else [])

    def picture(self, stretch: bool = True, labels: bool = True) -> Picture:
        """The images side by side, each captioned with its target and final value, and (by
        default) contrast-stretched to its own min..max, as Yosinski's toolbox shows them.
        Images under 128 px are enlarged (nearest neighbour) so that they can be seen."""
        text = [f"{t}: {float(v):.3g}" for t, v in zip(self.targets, self.trace[-1])] if labels else None
        return image_grid(self.images, text, stretch=stretch, min_side=128)

    def _repr_png_(self) -> bytes:
        return png_bytes(self.picture())


def _parse_targets(net: Network, targets: object) -> list[Target]:
    """The targets read once and checked (layers, channels) before any forward pass."""
    items = list(targets) if isinstance(targets, (list, tuple)) else [targets]
    if not items:
        raise UnitError("maximize needs at least one target, e.g. 'class:130' or 'blocks.5:3'")
    return [check_target(net, t) for t in items]


class Objective:
    """Target values per image (``convsight.targets.evaluate``), reading only the layers needed.

    When no target reads the model output, the forward pass stops after the last needed layer.
    With ``diversity`` > 0 the images come in groups of ``copies`` (target-major) and ``loss``
    subtracts ``diversity`` times each group's Gram similarity at ``layer`` (``diversity.py``).
    """

    def __init__(self, net: Network, targets: list[Target], copies: int = 1,
                 diversity: float = 0.0, layer: str | None = None) -> None:
        self.net = net
        self.targets = targets
        self.copies = copies
        self.diversity = float(diversity) if copies > 1 else 0.0
        self.layer = layer

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return self.values_and_loss(x)[0]

    def values_and_loss(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(target value per image, the scalar to maximise)."""
        read = {layer for t in self.targets for layer in t.layers}
        net = self.net.fast(sorted(read | {self.layer} if self.diversity else read))
        if not self.diversity:
            values = evaluate(net, x, self.targets)[0]
            return values, values.sum()
        # the diversity layer is captured around the evaluation; the pass may stop early only
        # when that layer is one the targets read anyway
        with capture(net.module, [self.layer], detach=False) as acts:
            values = evaluate(net, x, self.targets, stop=self.layer in read)[0]
        penalty = gram_similarity(acts[self.layer], self.copies)
        return values, values.sum() - self.diversity * penalty.sum()


def check_diversity(targets: list[Target], copies: int, diversity: float,
                    layer: str | None) -> str | None:
    """Check ``copies`` and ``diversity``; the layer the diversity penalty reads (None: no penalty)."""
    if not isinstance(copies, int) or isinstance(copies, bool) or copies < 1:
        raise ConvsightError(f"copies={copies!r} is not valid: use a whole number >= 1")
    if not isinstance(diversity, (int, float)) or diversity < 0 or diversity != diversity:
        raise ConvsightError(f"diversity={diversity!r} is not valid: use a number >= 0")
    if copies == 1 or not diversity:
        return None
    if layer is not None:
        return layer
    for t in targets:
        if t.layers:
            return t.layers[0]
    raise ConvsightError("diversity for class targets needs diversity_layer=LAYER (the layer whose "
                         "Gram matrices the copies should not share, e.g. a middle block)")


def maximize(model, targets, preset: str = DEFAULT_PRESET, steps: int | None = None,
             size: int | None = None, seed: int = 0, progress: ProgressArg = True,
             every: int | None = None, device: str | torch.device | None = None,
             copies: int = 1, diversity: float = 0.0, diversity_layer: str | None = None,
             **knobs: object) -> Synthesis:
    """Synthesise one image per target by gradient ascent on the image, all in one batch.

    ``targets``: one or a list of ``"class:130"``, ``"prob:130"``, ``"LAYER:C"``,
    ``"LAYER:C@Y,X"``, sums of these, class indices or ``Target`` objects. ``preset``: one of
    ``convsight.optimize.PRESETS`` (``yosinski-1`` .. ``yosinski-4``, ``simonyan``, ``none``,
    ``lucid``); ``steps``, ``size`` and any other knob of ``Settings`` (``lr``, ``decay``,
    ``blur_radius``, ``blur_every``, ``n_pct``, ``c_pct``, ...) override the preset's value.
    The same ``seed`` gives the same images. ``every=K`` keeps every K-th image in ``frames``.
    ``progress``: True (a bar, or log lines when stderr is not a terminal), False, or a callable
    ``fn(done, total)`` called after every step (see ``convsight.progress``).

    ``copies=K`` makes K images per target (``images`` is (T * K, C, H, W), target-major: the K
    copies of the first target, then the next); ``diversity=w`` subtracts w times the cosine
    similarity of the copies' Gram matrices at ``diversity_layer`` (default: the layer the target
    reads) from the objective, so the copies show different facets (Olah et al. 2017).

    >>> out = maximize(net, "class:130", preset="yosinski-3", steps=200, size=128)
    >>> out.images.shape
    torch.Size([1, 3, 128, 128])
    """
    net = on_device(as_network(model), device)
    s = settings_for(preset, steps=steps, size=size, **knobs)
    if every is not None and (not isinstance(every, int) or every < 1):
        raise ConvsightError(f"every={every!r} is not valid: use a whole number of steps >= 1")
    parsed = _parse_targets(net, targets)
    layer = check_diversity(parsed, copies, diversity, diversity_layer)
    if layer is not None:
        check_layer(net.module, layer)
    seed = check_seed(seed)
    generator = torch.Generator().manual_seed(seed)
    objective = Objective(net, [t for t in parsed for _ in range(copies)], copies, diversity, layer)
    with progress_bar(s.steps, f"maximize ({preset})", "step", progress, leave=False) as report:
        try:
            return ascend(objective, s, generator, report, every)
        except RuntimeError as exc:
            if not net.input_size_assumed or "shape" not in str(exc):
                raise
            raise undeclared_size_error(net, [s.size or net.input_size[0]] * 2, exc) from None


def network_view(img: torch.Tensor, net: Network, upsample: bool,
                 size: tuple[int, int]) -> torch.Tensor:
    """The image as the network is fed it. A module that declared no input size
    (``Network.input_size_assumed``) sees it at the synthesis ``size`` (a fixed-size head then
    works at the size asked); else, with ``upsample``, an image smaller than the network's input
    size is resized up to it."""
    if net.input_size_assumed:
        if tuple(img.shape[-2:]) == tuple(size):
            return img
        return F.interpolate(img, size=size, mode="bilinear", align_corners=False)
    if upsample and (img.shape[-2] < net.input_size[0] or img.shape[-1] < net.input_size[1]):
        return F.interpolate(img, size=net.input_size, mode="bilinear", align_corners=False)
    return img


def ascend(objective: Objective, s: Settings, generator: torch.Generator,
           report: Callable[..., None], every: int | None = None,
           starts: Sequence[torch.Generator] | None = None) -> Synthesis:
    """The loop: ``s.steps`` ascent steps on one batch of images, one per target of ``objective``.

    ``generator`` draws the random start and then each step's random transform (one draw per
    step, shared by the batch); with ``starts`` (one generator per image) each image's random
    start is drawn from its own generator instead and ``generator`` draws the transforms only.
    """
    net, targets = objective.net, objective.targets
    dev = net.device
    n = len(targets)
    h, w = (s.size, s.size) if s.size is not None else net.input_size
    start = generator if starts is None else starts
    if s.parameterization == "pixel":
        param: PixelImage | FourierImage = PixelImage(
            n, h, w, net.mean, init=s.init, sd=s.init_sd, generator=start, device=dev)
    else:
        param = FourierImage(n, h, w, sd=s.init_sd, decay_power=s.fourier_decay,
                             decorrelate=s.decorrelate, generator=start, device=dev,
                             channels=net.channels)
    transform = standard_transforms() if s.transforms == "standard" else no_transforms()
    x = param.tensor.detach().clone()
    adam = torch.optim.Adam([x], lr=s.lr) if s.optimizer == "adam" else None
    trace = torch.zeros(s.steps, n)
    is_prob = torch.tensor([t.is_probability for t in targets], device=dev).view(-1, 1, 1, 1)
    frames: list[torch.Tensor] | None = [] if every else None
    for step in range(s.steps):
        if s.parameterization == "pixel" and s.clip:
            x = reg.clip_to_range(x, param.low, param.high)
        if frames is not None and step % every == 0:
            frames.append(param.image(x).detach().clamp(0, 1).cpu())
        x = x.detach().requires_grad_(True)
        img = transform(param.image(x), generator)
        img = network_view(net.layout(img), net, s.upsample, (h, w))
        values, loss = objective.values_and_loss(net.layout(net.normalize(img)))
        (grad,) = torch.autograd.grad(loss, [x])
        trace[step] = values.detach().float().cpu()
        report(1, objective=f"{float(trace[step].mean()):.4g}")
        if step == s.steps - 1:
            break  # as Yosinski's loop: the last value is that of the returned image
        x = _update(x.detach(), grad, step, s, adam, values.detach(), is_prob)
    if s.parameterization == "pixel" and s.clip:
        x = reg.clip_to_range(x.detach(), param.low, param.high)
    images = param.image(x.detach()).clamp(0, 1).detach().cpu()
    if frames is not None and (s.steps - 1) % every:
        frames.append(images.clone())  # the last step, when it is not a multiple of ``every``
    return Synthesis(images=images, trace=trace, targets=targets, frames=frames, settings=s,
                     every=every, copies=objective.copies)


def _progress_lr(ascent: torch.Tensor, values: torch.Tensor, is_prob: torch.Tensor,
                 s: Settings) -> torch.Tensor:
    """Per image lr = min(lr, desired gain / ||grad||^2): a step that gains ``desired`` if linear.

    "progress" wants ``desired_progress`` per step; "progress01" (Yosinski's rule for outputs in
    [0, 1]) wants min(early_progress, late_progress * (1 - value)), slowing down near 1. With
    ``lr_rule="progress"``, images whose target is a probability use ``softmax_rule``.
    """
    sq = ascent.flatten(1).pow(2).sum(1).view(-1, 1, 1, 1)
    v = values.to(sq.dtype).view(-1, 1, 1, 1)
    p01 = torch.minimum(torch.full_like(v, s.early_progress), s.late_progress * (1 - v)).clamp_min(0)
    progress = torch.full_like(v, s.desired_progress)
    if s.lr_rule == "progress01":
        desired = p01
    elif s.softmax_rule == "progress01":
        desired = torch.where(is_prob, p01, progress)
    else:
        desired = progress
    safe = torch.where(sq > 0, sq, torch.ones_like(sq))
    return torch.where(sq > 0, torch.clamp(desired / safe, max=s.lr), torch.full_like(sq, s.lr))


def _update(x: torch.Tensor, grad: torch.Tensor, step: int, s: Settings,
            adam: torch.optim.Optimizer | None, values: torch.Tensor,
            is_prob: torch.Tensor) -> torch.Tensor:
    """One ascent step followed by the pixel regularizers, in the order of Yosinski's toolbox."""
    ascent = grad - 2.0 * s.l2 * x if s.l2 else grad
    if adam is not None:
        var = adam.param_groups[0]["params"][0]
        with torch.no_grad():
            var.copy_(x)
        var.grad = -ascent
        adam.step()
        x = var.detach().clone()
    else:
        lr: torch.Tensor | float = s.lr
        if s.lr_rule != "constant":
            lr = _progress_lr(ascent, values, is_prob, s)
        x = x + lr * ascent
    if s.parameterization != "pixel":
        return x
    x = reg.decay(x, s.decay)
    if s.blur_radius > 0 and s.blur_every > 0 and step % s.blur_every == 0:
        x = reg.gaussian_blur(x, s.blur_radius)
    x = reg.zero_small_norm(x, s.n_pct)
    x = reg.zero_small_contribution(x, grad, s.c_pct)
    return x
