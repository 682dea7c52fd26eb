"""Named settings for activation maximisation, and the checks that every knob gets a sane value.

A preset is a complete ``Settings``; any knob can be overridden on its own:

>>> settings_for("yosinski-3", steps=200, blur_radius=0.5).blur_every
4

Presets (Yosinski et al. 2015, "Understanding Neural Networks Through Deep Visualization",
Table 1; Olah et al. 2017, "Feature Visualization"; Simonyan et al. 2013):

- ``yosinski-1`` .. ``yosinski-4``: the four settings of Yosinski et al. 2015, Table 1, on an image
  in [0, 255] around the mean, started from N(0, 10) noise, plain gradient steps.
- ``simonyan``: class score minus an L2 penalty on the image, started from the mean (zero) image.
- ``none``: plain gradient ascent with nothing but the valid-pixel constraint.
- ``lucid`` (the default): Fourier + decorrelated colour parameterisation, the standard random
  transforms, Adam with lr 0.05 (Olah et al. 2017). Its class images are recognised by an
  independent network (bench/maximize.py part 4), which the pixel presets' are mostly not.

A ``Recipe`` (preset, steps, size, seed and knobs) is how syntheses are made, checked when it is
built: the command line builds one from its flags (``parse_knobs`` reads ``--set KNOB=VALUE``)
and the explorer one at start-up (``convsight serve`` refuses a bad one before it listens).

>>> Recipe("lucid", steps=64, size=128).settings.steps
64
"""

from __future__ import annotations

import dataclasses
import difflib
import numbers
from dataclasses import dataclass, field
from typing import Any

from ..errors import ConvsightError
from ..models import MAX_INPUT_SIDE as MAX_SIZE  # images larger need tens of GB of activations
from ..units import did_you_mean

MIN_SIZE = 8  # the smallest synthesis side: every size check and command-line help reads these
# the explorer's on-demand syntheses: small, so that one finishes in tens of seconds on a CPU
# (the Fourier ``lucid`` preset shows a unit's pattern after a few dozen steps)
ON_DEMAND_STEPS, ON_DEMAND_SIZE = 64, 128


@dataclass(frozen=True)
class Settings:
    """Every knob of the ascent loop. Pixel units are 0..255 around the network's mean."""

    parameterization: str = "pixel"  # "pixel" (image in 0..255 around the mean) or "fourier"
    init: str = "noise"              # "noise" (N(0, init_sd)) or "zero" (the mean image)
    init_sd: float = 10.0            # pixel: 0..255 units; fourier: sd of the spectrum
    optimizer: str = "sgd"           # "sgd" (x += lr * grad) or "adam"
    lr: float = 100.0                # learning rate; the cap on it for lr_rule="progress"
    lr_rule: str = "constant"        # "constant" or "progress": lr = min(lr, desired_progress / ||g||^2)
    desired_progress: float = 2.0    # first-order objective gain per step wanted by "progress"
    softmax_rule: str = "progress01"  # for prob:N targets, "progress" becomes this rule ...
    early_progress: float = 0.03     # ... progress01: desired gain min(early_progress,
    late_progress: float = 0.1       #     late_progress * (1 - probability)) (Yosinski's toolbox)
    steps: int = 1000
    size: int | None = None          # image side; None: the network's input size
    decay: float = 0.0               # x *= (1 - decay) after each step (L2 decay)
    l2: float = 0.0                  # objective - l2 * ||x||^2 (Simonyan's penalty), pixel units
    blur_radius: float = 0.0         # Gaussian sigma in pixels ...
    blur_every: int = 0              # ... applied at steps 0, blur_every, 2*blur_every ...
    n_pct: float = 0.0               # zero pixels whose norm over channels is below this percentile
    c_pct: float = 0.0               # zero pixels whose |sum_c grad * (-x)| is below this percentile
    clip: bool = True                # keep pixels inside the valid range [0, 255] each step
    transforms: str = "none"         # "none" or "standard" (pad, jitter, scale, rotate, jitter)
    decorrelate: bool = False        # fourier: colours through the decorrelation matrix
    fourier_decay: float = 1.0       # fourier: spectrum scaled by 1 / f ** fourier_decay
    upsample: bool = False           # resize images smaller than the network input up to it

    def replace(self, **knobs: object) -> "Settings":
        return dataclasses.replace(self, **knobs)


KNOBS = tuple(f.name for f in dataclasses.fields(Settings))

_PIXEL = Settings()
PRESETS: dict[str, Settings] = {
    "yosinski-1": _PIXEL.replace(decay=0.0, blur_radius=0.5, blur_every=4, n_pct=50, c_pct=0,
                                 steps=500, lr=100.0, lr_rule="progress", desired_progress=2.0),
    "yosinski-2": _PIXEL.replace(decay=0.3, blur_radius=0.0, blur_every=0, n_pct=20, c_pct=0,
                                 steps=750, lr=100.0),
    "yosinski-3": _PIXEL.replace(decay=0.0001, blur_radius=1.0, blur_every=4, n_pct=0, c_pct=0,
                                 steps=1000, lr=100.0),
    "yosinski-4": _PIXEL.replace(decay=0.0, blur_radius=0.5, blur_every=4, n_pct=0, c_pct=90,
                                 steps=1000, lr=1e8, lr_rule="progress", desired_progress=2.0),
    "simonyan": _PIXEL.replace(init="zero", l2=1e-4, lr=100.0, steps=500),
    "none": _PIXEL.replace(steps=1000, lr=100.0),
    "lucid": Settings(parameterization="fourier", init="noise", init_sd=0.01, optimizer="adam",
                      lr=0.05, steps=512, size=128, clip=False, transforms="standard",
                      decorrelate=True, upsample=True),
}
DEFAULT_PRESET = "lucid"

_CHOICES = {
    "parameterization": ("pixel", "fourier"),
    "init": ("noise", "zero"),
    "optimizer": ("sgd", "adam"),
    "lr_rule": ("constant", "progress", "progress01"),
    "softmax_rule": ("progress", "progress01"),
    "transforms": ("none", "standard"),
}
_PIXEL_ONLY = ("decay", "l2", "blur_radius", "n_pct", "c_pct")


def settings_for(preset: str = DEFAULT_PRESET, **knobs: object) -> Settings:
    """The settings of ``preset`` with ``knobs`` overriding single values (``None`` keeps the preset's)."""
    if preset not in PRESETS:
        close = difflib.get_close_matches(str(preset), PRESETS, n=1)
        hint = f" Did you mean {close[0]!r}?" if close else ""
        raise ConvsightError(f"unknown preset {preset!r}.{hint} Valid presets: {', '.join(PRESETS)}")
    unknown = [k for k in knobs if k not in KNOBS]
    if unknown:
        close = difflib.get_close_matches(unknown[0], KNOBS, n=1)
        hint = f" Did you mean {close[0]!r}?" if close else ""
        raise ConvsightError(f"unknown setting {unknown[0]!r}.{hint} Valid settings: {', '.join(KNOBS)}")
    settings = PRESETS[preset].replace(**{k: v for k, v in knobs.items() if v is not None})
    check(settings)
    return settings


def check(s: Settings) -> None:
    """Raise ``ConvsightError`` naming the first knob with an invalid value."""
    for name, choices in _CHOICES.items():
        if getattr(s, name) not in choices:
            raise ConvsightError(f"{name}={getattr(s, name)!r} is not valid: use one of {', '.join(choices)}")
    if not isinstance(s.steps, int) or s.steps < 1:
        raise ConvsightError(f"steps={s.steps!r} is not valid: use a whole number >= 1")
    if s.size is not None and (not isinstance(s.size, int) or not MIN_SIZE <= s.size <= MAX_SIZE):
        raise ConvsightError(f"size={s.size!r} is not valid: use a whole number of pixels from "
                             f"{MIN_SIZE} to {MAX_SIZE}")
    for name in ("lr", "desired_progress", "early_progress", "late_progress", "init_sd", "l2", "blur_radius", "fourier_decay"):
        value = getattr(s, name)
        if not isinstance(value, (int, float)) or value < 0 or value != value:
            raise ConvsightError(f"{name}={value!r} is not valid: use a number >= 0")
    if not isinstance(s.blur_every, int) or s.blur_every < 0:
        raise ConvsightError(f"blur_every={s.blur_every!r} is not valid: use a whole number >= 0 (0: never)")
    if not 0 <= s.decay < 1:
        raise ConvsightError(f"decay={s.decay!r} is not valid: use a number in [0, 1)")
    for name in ("n_pct", "c_pct"):
        if not 0 <= getattr(s, name) < 100:
            raise ConvsightError(f"{name}={getattr(s, name)!r} is not valid: use a percentile in [0, 100)")
    if s.parameterization == "fourier":
        used = [n for n in _PIXEL_ONLY if getattr(s, n)]
        if used:
            raise ConvsightError(f"{used[0]} works on pixels: use a pixel preset with it, such "
                                 "as preset='yosinski-3' (--preset yosinski-3), or "
                                 "parameterization='pixel' (the fourier parameterisation has no "
                                 "pixels to regularise)")
    elif s.decorrelate:
        raise ConvsightError("decorrelate=True needs parameterization='fourier'")


def check_seed(seed: object) -> int:
    """``seed`` as an int, or a ConvsightError (None, text, floats and negative numbers)."""
    if not isinstance(seed, bool) and isinstance(seed, numbers.Integral) and int(seed) >= 0:
        return int(seed)
    raise ConvsightError(f"seed={seed!r} is not valid: use a whole number >= 0 (the same seed "
                         "gives the same images)")


def parse_knobs(items: list[str], flag: str = "--set") -> dict[str, object]:
    """``["lr=0.1", "clip=false"]`` (``--set KNOB=VALUE`` on the command line) -> knob values of
    the type each knob of ``Settings`` has."""
    types = {f: type(getattr(Settings(), f)) for f in KNOBS}
    knobs: dict[str, object] = {}
    for item in items:
        key, sep, text = item.partition("=")
        key = key.strip().replace("-", "_")
        if not sep or key not in KNOBS:
            hint = did_you_mean(key, list(KNOBS)) if sep else ""
            raise ConvsightError(f"cannot read {flag} {item!r}: write KNOB=VALUE with KNOB one of "
                                 f"{', '.join(KNOBS)}.{hint}")
        kind = types[key]
        try:
            if kind is bool:
                if text.lower() not in ("true", "false", "1", "0", "yes", "no"):
                    raise ValueError
                value: object = text.lower() in ("true", "1", "yes")
            elif kind is int or key in ("steps", "blur_every", "size"):
                value = int(text)
            elif kind is float:
                value = float(text)
            else:
                value = text
        except ValueError:
            raise ConvsightError(f"cannot read {flag} {item!r}: {key} needs a "
                                 f"{'true/false' if kind is bool else kind.__name__} value") from None
        knobs[key] = value
    return knobs


@dataclass(frozen=True)
class Recipe:
    """How syntheses are made: a preset, the steps and image side (None: the preset's), the seed
    and other knobs overriding the preset's, as ``(name, value)`` pairs. Checked when built (a
    ``ConvsightError`` names the first bad value); ``settings`` is the complete ``Settings``."""

    preset: str = DEFAULT_PRESET
    steps: int | None = None
    size: int | None = None
    seed: int = 0
    knobs: tuple[tuple[str, Any], ...] = ()
    settings: Settings = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        knobs = dict(self.knobs.items() if isinstance(self.knobs, dict) else self.knobs)
        object.__setattr__(self, "knobs", tuple(sorted(knobs.items())))
        object.__setattr__(self, "seed", check_seed(self.seed))
        object.__setattr__(self, "settings", settings_for(self.preset, steps=self.steps,
                                                          size=self.size, **knobs))

    def arguments(self) -> dict[str, Any]:
        """The recipe as keyword arguments of ``maximize`` and ``visualize_layer``."""
        return {"preset": self.preset, "steps": self.steps, "size": self.size, "seed": self.seed,
                **dict(self.knobs)}
