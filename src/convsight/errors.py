"""Exceptions convsight raises for bad input: each names the bad value and what would be valid."""

from __future__ import annotations


class ConvsightError(Exception):
    """Base class: a problem with what the user asked for (not a bug in convsight).

    The command line prints these as one-line messages instead of tracebacks.
    """


class UnknownLayerError(ConvsightError, KeyError):
    """A layer name that is not a module path of the model."""

    def __str__(self) -> str:  # KeyError would otherwise quote the message
        return str(self.args[0]) if self.args else ""


class UnitError(ConvsightError, ValueError):
    """A unit or target that is malformed or out of range (channel, position, class)."""


class ImageError(ConvsightError, ValueError):
    """An image that cannot be read or converted."""


class WeightsError(ConvsightError, ValueError):
    """A weights file that cannot be read or does not fit the architecture."""


class ModelNameError(ConvsightError, ValueError):
    """A model name that is not known."""


class ReceptiveFieldError(ConvsightError, ValueError):
    """A receptive field that cannot be given as one box per unit (or cannot be measured)."""


class MissingExtraError(ConvsightError, ImportError):
    """An optional dependency is not installed; the message names the extra that installs it."""
