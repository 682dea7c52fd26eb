"""``/api/``: JSON for the page scripts (a synthesis's progress, a unit on an image)."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from ..explorer import UNIT_METHODS, Explorer
from .respond import explorer, jobs


def synthesis(request: Request) -> JSONResponse:
    """GET: the synthesis's state and step; POST: start it (or join the one queued)."""
    p = request.path_params
    explorer(request).channel(p["layer"], p["channel"])
    if request.method == "POST":
        return JSONResponse(jobs(request).start(p["layer"], p["channel"]), status_code=202)
    return JSONResponse(jobs(request).status(p["layer"], p["channel"]))


def unit(request: Request) -> JSONResponse:
    p = request.path_params
    explorer(request).image(p["image_id"])
    return JSONResponse(unit_info(explorer(request), p["image_id"], p["layer"], p["channel"]))


def unit_info(ex: Explorer, image_id: str, layer: str, channel: int) -> dict[str, Any]:
    """A unit on an image: where it is strongest, the input box it sees there, its pictures."""
    y, x, value = ex.strongest(image_id, layer, channel)
    rf = ex.receptive_field(layer)
    box = None if rf is None or rf.is_global else [int(v) for v in rf.box(y, x)]
    return {"layer": layer, "channel": channel, "y": y, "x": x, "value": round(value, 4),
            "box": box, "input": list(ex.net.input_size),
            "images": {"patch": f"/img/upatch/{image_id}/{layer}/{channel}.png",
                       **{m: f"/img/uattr/{image_id}/{layer}/{channel}/{m}.png"
                          for m in UNIT_METHODS}},
            "unit_url": f"/unit/{layer}/{channel}"}


ROUTES = [
    Route("/api/synth/{layer}/{channel:number}", synthesis, methods=["GET", "POST"]),
    Route("/api/unit/{image_id}/{layer}/{channel:number}", unit),
]
