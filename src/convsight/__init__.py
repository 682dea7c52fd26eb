"""convsight: see how a convolutional network sees.

The names below are the public API (``__all__``), with the subpackages the docs name
(``convsight.attribute``, ``trust``, ``figures``, ``pictures``, ``report``, ``faces``, ``mining``,
``optimize``, ``receptive``, ``targets``). Every other module (``convsight.hooks``,
``convsight.files``, ...) is an internal: importable by its full path (``import convsight.hooks``), not part of the API,
and not listed by ``dir(convsight)`` or ``from convsight import *``.
"""

from .errors import (ConvsightError, ImageError, MissingExtraError, ModelNameError,
                     ReceptiveFieldError, UnitError, UnknownLayerError, WeightsError)
from .images import load_image, sample_images
from .models import Network, as_network, load_model
from .receptive import ReceptiveField, effective_boxes, receptive_field, receptive_fields
from .optimize import Synthesis, maximize
from .atlas import Atlas, Hit
from .mining import mine
from .microscope import LayerSynthesis, visualize_layer
from . import attribute  # callable: convsight.attribute(model, images, target, method=...)
from . import trust
from .trust import evaluate, faithfulness, metric, sanity_check
from . import faces, figures, pictures, report  # convsight.report.write_report, convsight.faces...
from .pictures import Picture, show
from .cpu import set_threads, thread_policy, threads
from . import mining, optimize, receptive, targets  # public subpackages the docs name

__version__ = "0.1.0"

_PUBLIC_MODULES = ("attribute", "faces", "figures", "mining", "optimize", "pictures", "receptive",
                  "report", "targets", "trust")
__all__ = sorted([
    "ConvsightError", "ImageError", "MissingExtraError", "ModelNameError", "ReceptiveFieldError",
    "UnitError", "UnknownLayerError", "WeightsError",
    "load_image", "sample_images", "Network", "as_network", "load_model",
    "ReceptiveField", "effective_boxes", "receptive_field", "receptive_fields",
    "Synthesis", "maximize", "Atlas", "Hit", "mine", "LayerSynthesis", "visualize_layer",
    "evaluate", "faithfulness", "metric", "sanity_check", "Picture", "show",
    "set_threads", "thread_policy", "threads", *_PUBLIC_MODULES])


def _hide_internals() -> None:
    """Drop the internal modules that importing the public ones bound as attributes here."""
    import types

    for name, value in list(globals().items()):
        if (isinstance(value, types.ModuleType) and not name.startswith("_")
                and name not in _PUBLIC_MODULES):
            del globals()[name]


_hide_internals()


def __getattr__(name: str):
    """``import convsight.hooks`` then ``convsight.hooks.x`` still works: an internal module
    already imported answers by its full path, without being listed (``dir``, ``__all__``)."""
    import sys

    module = sys.modules.get(f"{__name__}.{name}")
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return module


def __dir__() -> list[str]:
    return [*__all__, "__version__"]
