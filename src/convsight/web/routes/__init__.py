"""The explorer's routes, one module per kind of answer, each handler a few lines over an
``Explorer`` call: ``pages`` (HTML), ``pictures`` (``/img/``), ``api`` (JSON), ``uploads``
and ``errors`` (what each exception becomes). ``create_app`` mounts ``ROUTES`` and ``HANDLERS``.
"""

from . import api, pages, pictures, uploads
from .errors import HANDLERS
from .respond import whole_paths

ROUTES = whole_paths(pages.ROUTES + uploads.ROUTES + pictures.ROUTES + api.ROUTES)

__all__ = ["ROUTES", "HANDLERS"]
