"""``/api/``: JSON for the page scripts (a synthesis's progress, a unit on an image, the trust
score of a class attribution, the report card of the class attributions)."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from ..explorer import CLASS_METHODS, UNIT_METHODS, Explorer, NotFound
from .respond import attributions, explorer, input_images, int_param, jobs, layers


def synthesis(request: Request) -> JSONResponse:
    """GET: the synthesis's state and step; POST: start it (or join the one queued)."""
    p = request.path_params
    layers(request).channel(p["layer"], p["channel"])
    if request.method == "POST":
        return JSONResponse(jobs(request).start(p["layer"], p["channel"]), status_code=202)
    return JSONResponse(jobs(request).status(p["layer"], p["channel"]))


def unit(request: Request) -> JSONResponse:
    p = request.path_params
    input_images(request).image(p["image_id"])
    return JSONResponse(unit_info(explorer(request), p["image_id"], p["layer"], p["channel"]))


def trust(request: Request) -> JSONResponse:
    """``/api/trust/IMAGE?cls=N&method=M``: deletion and insertion AUC of the class attribution
    (beside random maps') and the randomisation check, with the line the page shows. Computed
    on the first request (seconds), then cached."""
    ex, image_id = attributions(request), request.path_params["image_id"]
    input_images(request).image(image_id)
    method = request.query_params.get("method")
    if method not in CLASS_METHODS:
        raise NotFound(f"unknown method {(method or '')[:40]!r}: give method= one of "
                       f"{', '.join(CLASS_METHODS)}")
    cls = int_param(request, "cls", None)
    if cls is None:
        raise NotFound("give the class as cls=N (a class number, e.g. one of the top 5)")
    return JSONResponse(ex.class_trust(image_id, cls, method))


def card(request: Request) -> JSONResponse:
    """``/api/card/IMAGE?cls=N``: the report card of the class attributions (GET: computed on
    the first request, seconds to a minute, then cached; POST ``?cls=N&cancel=1``: stop it)."""
    ex, image_id = attributions(request), request.path_params["image_id"]
    input_images(request).image(image_id)
    cls = int_param(request, "cls", None)
    if cls is None:
        raise NotFound("give the class as cls=N (a class number, e.g. one of the top 5)")
    if request.method == "POST":
        return JSONResponse({"cancelled": ex.cancel_card(image_id, cls)})
    return JSONResponse(ex.class_card(image_id, cls))


def unit_info(ex: Explorer, image_id: str, layer: str, channel: int) -> dict[str, Any]:
    """A unit on an image: where it is strongest, the input box it sees there, its pictures."""
    y, x, value = ex.attributions.strongest(image_id, layer, channel)
    rf = ex.layers.receptive_field(layer)
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
    Route("/api/trust/{image_id}", trust),
    Route("/api/card/{image_id}", card, methods=["GET", "POST"]),
]
