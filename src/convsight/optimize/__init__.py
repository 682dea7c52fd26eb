"""Activation maximisation: synthesise the image a unit or class wants.

Small modules, one idea each: ``presets`` (named settings and knob checks), ``parameterize``
(pixels or a Fourier spectrum -> image), ``regularizers`` (Yosinski et al. 2015: decay, blur,
small-norm and small-contribution clipping), ``transforms`` (Lucid's random jitter/scale/rotate),
``diversity`` (the copies' Gram-similarity penalty of Olah et al. 2017), ``ascent`` (the loop
joining them) and ``layer`` (every channel of a layer in batches, for
``convsight.visualize_layer``).

>>> import convsight
>>> out = convsight.maximize(convsight.load_model(), ["class:130", "class:947"], steps=100, size=128)
>>> out.images.shape
torch.Size([2, 3, 128, 128])
"""

from .ascent import Objective, Synthesis, maximize
from .presets import (DEFAULT_PRESET, KNOBS, MAX_SIZE, MIN_SIZE, PRESETS, Recipe, Settings,
                      parse_knobs, settings_for)

__all__ = ["maximize", "Synthesis", "Settings", "PRESETS", "DEFAULT_PRESET", "KNOBS", "settings_for",
           "Objective", "Recipe", "parse_knobs", "MIN_SIZE", "MAX_SIZE"]
