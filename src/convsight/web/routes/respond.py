"""How a route answers: a page from a template, a picture, JSON; and what every route reads.

The app keeps its parts in ``request.app.state`` (set by ``create_app``): ``explorer`` (what the
pages show), ``jobs`` (syntheses on demand) and ``templates`` (the Jinja2 pages). A route takes
the explorer's part it needs by the part's one name: ``layers``, ``input_images``,
``attributions``, ``stored_syntheses``.

Numbers in URLs are ASCII digits only, at most nine of them (``str.isdigit`` and ``int`` also
take "²" or Arabic-Indic digits), without leading zeros (``01`` would be a second URL, and cache
entry, for 1): the ``{name:number}`` path convertor and ``int_param``. Route patterns end in
``\\Z``, not ``$`` (which matches before a trailing newline): ``whole_paths``.
"""

from __future__ import annotations

import re
from typing import Any

from starlette.convertors import Convertor, register_url_convertor
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.routing import BaseRoute

from ..attributions import Attributions
from ..explorer import Explorer, NotFound
from ..inputs import InputImages
from ..jobs import SynthesisQueue
from ..layers import Layers
from ..syntheses import StoredSyntheses

IMAGE_HEADERS = {"Cache-Control": "private, max-age=600"}


def explorer(request: Request) -> Explorer:
    return request.app.state.explorer


def layers(request: Request) -> Layers:
    return request.app.state.explorer.layers


def input_images(request: Request) -> InputImages:
    return request.app.state.explorer.input_images


def attributions(request: Request) -> Attributions:
    return request.app.state.explorer.attributions


def stored_syntheses(request: Request) -> StoredSyntheses:
    return request.app.state.explorer.stored_syntheses


def jobs(request: Request) -> SynthesisQueue:
    return request.app.state.jobs


def page(request: Request, name: str, **context: Any) -> HTMLResponse:
    return request.app.state.templates.TemplateResponse(request, name, context)


def picture(data: bytes, kind: str) -> Response:
    return Response(data, media_type=f"image/{kind}", headers=IMAGE_HEADERS)


DIGITS = "0|[1-9][0-9]{0,8}"  # one spelling per number: no leading zeros


class Number(Convertor[int]):
    """Path values of ``{name:number}``: 0..999,999,999 in ASCII digits, no leading zeros (others
    find no route)."""

    regex = f"(?:{DIGITS})"

    def convert(self, value: str) -> int:
        return int(value)

    def to_string(self, value: int) -> str:
        return str(int(value))


register_url_convertor("number", Number())


def int_param(request: Request, name: str, default: int | None,
              top: int | None = None) -> int | None:
    """The query value ``name`` as a number in 0..top-1 (``default`` when absent), else 404."""
    text = request.query_params.get(name)
    if text in (None, ""):
        return default
    if not re.fullmatch(DIGITS, text):
        raise NotFound(f"{name} must be a whole number such as 3, got {text[:40]!r}")
    value = int(text)
    if top is not None and value >= top:
        raise NotFound(f"{name} {value} does not exist: valid values are 0..{top - 1}")
    return value


def whole_paths(routes: list[BaseRoute]) -> list[BaseRoute]:
    """``routes`` with each pattern made to match whole paths: Starlette ends them in ``$``,
    which also matches before a trailing newline (``/unit/conv2/1%0A``)."""
    for route in routes:
        pattern = getattr(route, "path_regex", None)
        if pattern is not None and pattern.pattern.endswith("$"):
            route.path_regex = re.compile(pattern.pattern[:-1] + r"\Z")
    return routes
