"""``/img/``: every picture of the explorer, each a few lines over one call of an explorer part."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from ..explorer import NotFound
from .respond import attributions, input_images, jobs, layers, picture, stored_syntheses


def tile(request: Request) -> Response:
    p = request.path_params
    return picture(layers(request).unit_tile(p["layer"], p["channel"]), "jpeg")


def patch(request: Request) -> Response:
    p, crop = request.path_params, request.query_params.get("crop")
    return picture(layers(request).patch(p["layer"], p["channel"], p["rank"], crop=crop), "jpeg")


def context(request: Request) -> Response:
    """A hit's whole image with its patch's box drawn (shown when the patch is hovered)."""
    p, crop = request.path_params, request.query_params.get("crop")
    return picture(layers(request).context(p["layer"], p["channel"], p["rank"], crop=crop),
                   "jpeg")


def projection(request: Request) -> Response:
    p, crop = request.path_params, request.query_params.get("crop")
    return picture(layers(request).projection(p["layer"], p["channel"], p["rank"], p["method"],
                                              crop=crop), "png")


def weights(request: Request) -> Response:
    p = request.path_params
    data = layers(request).weights(p["layer"], p["channel"])
    if data is None:
        raise NotFound(f"layer {p['layer']} has no filter picture (it is not a Conv2d or "
                       "Linear layer, or its kernels are 1x1)")
    return picture(data, "png")


def synthesis(request: Request) -> Response:
    p = request.path_params
    layers(request).channel(p["layer"], p["channel"])
    data = jobs(request).picture(p["layer"], p["channel"])
    if data is None:
        raise NotFound(f"no synthesis of {p['layer']}:{p['channel']} yet: POST "
                       f"/api/synth/{p['layer']}/{p['channel']} to start one")
    return picture(data, "png")


def stored_synthesis(request: Request) -> Response:
    p = request.path_params
    return picture(stored_syntheses(request).png(p["layer"], p["channel"], p["copy"]), "png")


def stored_synthesis_tile(request: Request) -> Response:
    p = request.path_params
    return picture(stored_syntheses(request).tile(p["layer"], p["channel"]), "jpeg")


def network_input(request: Request) -> Response:
    return picture(input_images(request).input_png(request.path_params["image_id"]), "png")


def thumbnail(request: Request) -> Response:
    return picture(input_images(request).thumbnail(request.path_params["image_id"]), "jpeg")


def source(request: Request) -> Response:
    image_id = f"a-{request.path_params['index']}"
    return picture(input_images(request).thumbnail(image_id, side=512), "jpeg")


def activation_maps(request: Request) -> Response:
    p = request.path_params
    return picture(attributions(request).activation_maps(p["image_id"], p["layer"])[0], "png")


def unit_attribution(request: Request) -> Response:
    p = request.path_params
    return picture(attributions(request).unit_attribution(p["image_id"], p["layer"],
                                                          p["channel"], p["method"]), "png")


def unit_patch(request: Request) -> Response:
    p = request.path_params
    return picture(attributions(request).unit_patch(p["image_id"], p["layer"], p["channel"]), "png")


def class_attribution(request: Request) -> Response:
    p = request.path_params
    input_images(request).image(p["image_id"])
    return picture(attributions(request).class_attribution(p["image_id"], p["cls"], p["method"]),
                   "png")


ROUTES = [
    Route("/img/tile/{layer}/{channel:number}.jpg", tile),
    Route("/img/patch/{layer}/{channel:number}/{rank:number}.jpg", patch),
    Route("/img/proj/{layer}/{channel:number}/{rank:number}/{method}.png", projection),
    Route("/img/context/{layer}/{channel:number}/{rank:number}.jpg", context),
    Route("/img/weights/{layer}/{channel:number}.png", weights),
    Route("/img/synth/{layer}/{channel:number}.png", synthesis),
    Route("/img/atlas-synth/{layer}/{channel:number}/{copy:number}.png", stored_synthesis),
    Route("/img/atlas-synth-tile/{layer}/{channel:number}.jpg", stored_synthesis_tile),
    Route("/img/input/{image_id}.png", network_input),
    Route("/img/thumb/{image_id}.jpg", thumbnail),
    Route("/img/source/{index:number}.jpg", source),
    Route("/img/acts/{image_id}/{layer}.png", activation_maps),
    Route("/img/uattr/{image_id}/{layer}/{channel:number}/{method}.png", unit_attribution),
    Route("/img/upatch/{image_id}/{layer}/{channel:number}.png", unit_patch),
    Route("/img/cattr/{image_id}/{cls:number}/{method}.png", class_attribution),
]
