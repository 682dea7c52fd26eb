"""The explorer's routes, one module per kind of answer, each handler a few lines over an
``Explorer`` call: ``pages`` (HTML), ``pictures`` (``/img/``), ``api`` (JSON) and ``errors``
(what each exception becomes). ``create_app`` mounts ``ROUTES`` and ``HANDLERS``.
"""

from . import api, pages, pictures
from .errors import HANDLERS

ROUTES = pages.ROUTES + pictures.ROUTES + api.ROUTES

__all__ = ["ROUTES", "HANDLERS"]
