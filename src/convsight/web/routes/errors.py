"""How the explorer answers errors: an HTML page, JSON under ``/api/``, plain text for pictures.

``HANDLERS`` maps each exception type to its HTTP status: a missing layer, unit, image or page
404, a bad upload 4xx (its own status), a full synthesis queue 503, other ``ConvsightError`` 400,
and anything else 500: the details go to the server's log, the answer says only "internal error"
(an exception's text can hold paths and data that are nobody else's business). Messages name
files relative to the atlas; ``scrub`` also takes out the atlas, cache and home folders.
"""

from __future__ import annotations

import logging
from pathlib import Path

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

import convsight

from ..jobs import QueueFull
from ..workbench import BadUpload, NotFound

log = logging.getLogger("convsight.web")


def scrub(request: Request, message: str) -> str:
    """``message`` without the folders where the user keeps things (the atlas, the cache, the
    home folder): a last net under the errors that name files relative to the atlas."""
    ex = request.app.state.explorer
    folders = [ex.atlas_dir, ex.cache.root, Path.home()]
    for folder, shown in zip(folders, ("ATLAS", "CACHE", "~")):
        if folder is not None and len(str(folder)) > 1:
            message = message.replace(str(Path(folder).resolve()), shown)
            message = message.replace(str(folder), shown)
    return message


def error(request: Request, status: int, message: str) -> Response:
    message = scrub(request, message)
    path = request.url.path
    if path.startswith("/api/"):
        return JSONResponse({"error": message}, status_code=status)
    if path.startswith(("/img/", "/static/")):
        return Response(message, status_code=status, media_type="text/plain; charset=utf-8")
    return request.app.state.templates.TemplateResponse(
        request, "error.html", {"status": status, "message": message}, status_code=status)


async def not_found(request: Request, exc: Exception) -> Response:
    return error(request, 404, str(exc))


async def bad_upload(request: Request, exc: Exception) -> Response:
    return error(request, getattr(exc, "status", 415), str(exc))


async def queue_full(request: Request, exc: Exception) -> Response:
    return error(request, 503, str(exc))


async def bad_request(request: Request, exc: Exception) -> Response:
    return error(request, 400, str(exc))


async def crash(request: Request, exc: Exception) -> Response:
    log.error("%s %s failed", request.method, request.url.path[:200], exc_info=exc)
    return error(request, 500, "internal error")


async def http_error(request: Request, exc: Exception) -> Response:
    detail = getattr(exc, "detail", "") or "error"
    status = getattr(exc, "status_code", 500)
    if status == 404:
        detail = f"nothing at {request.url.path}; start from the layer list at /"
    return error(request, status, detail)


HANDLERS = {
    NotFound: not_found, convsight.UnknownLayerError: not_found, convsight.UnitError: not_found,
    BadUpload: bad_upload, QueueFull: queue_full, convsight.ConvsightError: bad_request,
    HTTPException: http_error, Exception: crash,
}
