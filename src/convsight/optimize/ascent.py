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

import copy
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

from ..capture import capture
from ..errors import ConvsightError, UnitError
from ..models import Network, as_network
from ..targets import ClassProb, ClassScore, Target, parse_target
from . import regularizers as reg
from .parameterize import FourierImage, PixelImage
from .presets import DEFAULT_PRESET, Settings, settings_for
from .transforms import no_transforms, standard_transforms


@dataclass
class Synthesis:
    """What ``maximize`` returns.

    ``images`` (N, 3, H, W) in [0, 1], one per target; ``trace`` (steps, N) the target value at
    each step (under that step's random transform, if any); ``targets`` the parsed targets;
    ``frames`` the images at steps 0, every, 2*every ... and the last step (the result), when
    ``every`` was given (``frame_steps`` says which).
    """

    images: torch.Tensor
    trace: torch.Tensor
    targets: list
    frames: list[torch.Tensor] | None = None
    settings: Settings | None = field(default=None, repr=False)
    every: int | None = None

    @property
    def frame_steps(self) -> list[int]:
        """The step each frame was taken at (the last one is the result)."""
        if not self.frames or not self.every:
            return []
        steps = self.trace.shape[0]
        at = list(range(0, steps, self.every))
        return at + ([steps - 1] if (steps - 1) % self.every else [])


def _parse_targets(targets: object) -> list[Target]:
    items = list(targets) if isinstance(targets, (list, tuple)) else [targets]
    if not items:
        raise UnitError("maximize needs at least one target, e.g. 'class:130' or 'blocks.5:3'")
    return [parse_target(t) for t in items]


class Objective:
    """Target values per image, reading only the layers the targets need.

    When no target reads the model output, the forward pass stops after the last needed layer.
    """

    def __init__(self, net: Network, targets: list[Target]) -> None:
        self.net = net
        self.targets = targets
        self.layers = list(dict.fromkeys(l for t in targets for l in t.layers))
        self.needs_output = any(isinstance(term, (ClassScore, ClassProb))
                                for t in targets for _, term in t.terms)
        self.shared = all(t == targets[0] for t in targets)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        output = None
        stop = bool(self.layers) and not self.needs_output
        with capture(self.net.module, self.layers, detach=False, stop=stop) as acts:
            output = self.net.module(x)
        if self.needs_output and (not isinstance(output, torch.Tensor) or output.dim() != 2):
            raise UnitError("class targets need a model whose output is class scores (N, classes); "
                            f"this one returns {type(output).__name__}"
                            + (f" of shape {tuple(output.shape)}" if isinstance(output, torch.Tensor) else ""))
        if self.shared:
            return self.targets[0](acts, output)
        return torch.cat([t({k: v[i:i + 1] for k, v in acts.items()},
                            output[i:i + 1] if output is not None else None)
                          for i, t in enumerate(self.targets)])


def _resolve_device(net: Network, device: str | torch.device | None) -> Network:
    """The network to run: the user's own, or a copy on another device (the original stays put)."""
    if device is None:
        return net
    try:
        device = torch.device(device)
    except (RuntimeError, TypeError) as exc:
        raise ConvsightError(f"cannot use device {device!r}: {exc}") from None
    here = net.device
    if here.type == device.type and (device.index is None or here.index == device.index):
        return net
    try:
        module = copy.deepcopy(net.module).to(device)
    except (RuntimeError, AssertionError) as exc:
        raise ConvsightError(f"cannot use device {str(device)!r}: {exc}") from None
    return Network(module, mean=net.mean, std=net.std, input_size=net.input_size,
                   class_names=net.class_names, name=net.name, resize_ratio=net.resize_ratio,
                   info=dict(net.info))


def maximize(model, targets, preset: str = DEFAULT_PRESET, steps: int | None = None,
             size: int | None = None, seed: int = 0, progress: bool = True,
             every: int | None = None, device: str | torch.device | None = None,
             **knobs: object) -> Synthesis:
    """Synthesise one image per target by gradient ascent on the image, all in one batch.

    ``targets``: one or a list of ``"class:130"``, ``"prob:130"``, ``"LAYER:C"``,
    ``"LAYER:C@Y,X"``, sums of these, class indices or ``Target`` objects. ``preset``: one of
    ``convsight.optimize.PRESETS`` (``yosinski-1`` .. ``yosinski-4``, ``simonyan``, ``none``,
    ``lucid``); ``steps``, ``size`` and any other knob of ``Settings`` (``lr``, ``decay``,
    ``blur_radius``, ``blur_every``, ``n_pct``, ``c_pct``, ...) override the preset's value.
    The same ``seed`` gives the same images. ``every=K`` keeps every K-th image in ``frames``.

    >>> out = maximize(net, "class:130", preset="yosinski-3", steps=200, size=128)
    >>> out.images.shape
    torch.Size([1, 3, 128, 128])
    """
    net = _resolve_device(as_network(model), device)
    s = settings_for(preset, steps=steps, size=size, **knobs)
    if every is not None and (not isinstance(every, int) or every < 1):
        raise ConvsightError(f"every={every!r} is not valid: use a whole number of steps >= 1")
    parsed = _parse_targets(targets)
    objective = Objective(net, parsed)
    dev = net.device
    n = len(parsed)
    h, w = (s.size, s.size) if s.size is not None else net.input_size
    generator = torch.Generator().manual_seed(int(seed))

    if len(net.mean) != 3:
        raise ConvsightError(f"maximize makes RGB images; the network expects {len(net.mean)} "
                             "channels (its mean has that many values)")
    if s.parameterization == "pixel":
        param: PixelImage | FourierImage = PixelImage(
            n, h, w, net.mean, init=s.init, sd=s.init_sd, generator=generator, device=dev)
    else:
        param = FourierImage(n, h, w, sd=s.init_sd, decay_power=s.fourier_decay,
                             decorrelate=s.decorrelate, generator=generator, device=dev)
    transform = standard_transforms() if s.transforms == "standard" else no_transforms()
    x = param.tensor.detach().clone()
    adam = torch.optim.Adam([x], lr=s.lr) if s.optimizer == "adam" else None
    trace = torch.zeros(s.steps, n)
    is_prob = torch.tensor([len(t.terms) == 1 and isinstance(t.terms[0][1], ClassProb) and t.terms[0][0] > 0
                            for t in parsed], device=dev).view(-1, 1, 1, 1)
    frames: list[torch.Tensor] | None = [] if every else None

    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=s.steps, desc=f"maximize ({preset})", unit="step", leave=False)
    try:
        for step in range(s.steps):
            if s.parameterization == "pixel" and s.clip:
                x = reg.clip_to_range(x, param.low, param.high)
            if frames is not None and step % every == 0:
                frames.append(param.image(x).detach().clamp(0, 1).cpu())
            x = x.detach().requires_grad_(True)
            img = transform(param.image(x), generator)
            if s.upsample and (img.shape[-2] < net.input_size[0] or img.shape[-1] < net.input_size[1]):
                img = F.interpolate(img, size=net.input_size, mode="bilinear", align_corners=False)
            values = objective(net.normalize(img))
            (grad,) = torch.autograd.grad(values.sum(), [x])
            trace[step] = values.detach().float().cpu()
            if bar is not None:
                bar.update(1)
                bar.set_postfix(objective=f"{float(trace[step].mean()):.4g}")
            if step == s.steps - 1:
                break  # as Yosinski's loop: the last value is that of the returned image
            x = _update(x.detach(), grad, step, s, adam, values.detach(), is_prob)
    finally:
        if bar is not None:
            bar.close()
    if s.parameterization == "pixel" and s.clip:
        x = reg.clip_to_range(x.detach(), param.low, param.high)
    images = param.image(x.detach()).clamp(0, 1).detach().cpu()
    if frames is not None and (s.steps - 1) % every:
        frames.append(images.clone())  # the last step, when it is not a multiple of ``every``
    return Synthesis(images=images, trace=trace, targets=parsed, frames=frames, settings=s,
                     every=every)


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
