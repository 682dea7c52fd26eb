"""convsight: see how a convolutional network sees."""

from .errors import ConvsightError, ImageError, ModelNameError, UnitError, UnknownLayerError, WeightsError
from .images import load_image, sample_images
from .models import Network, as_network, load_model

__version__ = "0.1.0"
