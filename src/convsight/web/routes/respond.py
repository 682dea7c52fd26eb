"""How a route answers: a page from a template, a picture, JSON; and what every route reads.

The app keeps its parts in ``request.app.state`` (set by ``create_app``): ``explorer`` (what the
pages show), ``jobs`` (syntheses on demand) and ``templates`` (the Jinja2 pages).
"""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import HTMLResponse, Response

from ..explorer import Explorer, NotFound
from ..jobs import SynthesisQueue

IMAGE_HEADERS = {"Cache-Control": "private, max-age=600"}


def explorer(request: Request) -> Explorer:
    return request.app.state.explorer


def jobs(request: Request) -> SynthesisQueue:
    return request.app.state.jobs


def page(request: Request, name: str, **context: Any) -> HTMLResponse:
    return request.app.state.templates.TemplateResponse(request, name, context)


def picture(data: bytes, kind: str) -> Response:
    return Response(data, media_type=f"image/{kind}", headers=IMAGE_HEADERS)


def int_param(request: Request, name: str, default: int) -> int:
    text = request.query_params.get(name)
    if text in (None, ""):
        return default
    try:
        return int(text)
    except ValueError:
        raise NotFound(f"{name} must be a whole number, got {text!r}") from None
