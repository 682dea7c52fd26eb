"""convsight: see how a convolutional network sees."""

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

__version__ = "0.1.0"
