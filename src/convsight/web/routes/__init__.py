"""The explorer's routes, one module per kind of answer, each handler a few lines over an
``Explorer`` call: ``pages`` (HTML), ``pictures`` (``/img/``), ``api`` (JSON), ``uploads``,
``live`` (the Live page and its WebSocket) and ``errors`` (what each exception becomes).
``create_app`` mounts ``ROUTES`` and ``HANDLERS``.
"""

from . import api, live, pages, pictures, uploads
from .errors import HANDLERS
from .respond import whole_paths

ROUTES = whole_paths(pages.ROUTES + uploads.ROUTES + pictures.ROUTES + api.ROUTES + live.ROUTES)

__all__ = ["ROUTES", "HANDLERS"]
