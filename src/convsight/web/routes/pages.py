"""The HTML pages: the layer list, a layer's units, a unit, the image picker and an image view.

Every view has a stable URL (``/layer/blocks.5?page=2``, ``/unit/blocks.5/12``,
``/image/sample-chelsea?layer=blocks.5&unit=12``); uploads are in ``uploads.py``.
"""

from __future__ import annotations

import math

from starlette.requests import Request
from starlette.responses import HTMLResponse
from starlette.routing import Route

from convsight.attribute.registry import DEFAULT_PROJECTION

from ..guard import CROSS_SITE
from ..workbench import UNIT_METHODS, NotFound, check_method
from .api import unit_info
from .respond import explorer, input_images, int_param, jobs, layers, page, stored_syntheses

PAGE_SIZE = 128  # units per page of the layer view


def layers_page(request: Request) -> HTMLResponse:
    ex = explorer(request)
    return page(request, "layers.html", rows=ex.layers.layers(),
                atlas_info=ex.layers.atlas_summary(), net=ex.net,
                synthesized=set(ex.stored_syntheses.layers_with_syntheses()))


def layer_page(request: Request) -> HTMLResponse:
    ex, name = explorer(request), request.path_params["layer"]
    units_of, stored = ex.layers, ex.stored_syntheses
    row = units_of.layer(name)
    if not row.channels:
        raise NotFound(f"layer {name} has output shape {row.shape_text}: it has no units to show")
    pages = max(1, math.ceil(row.channels / PAGE_SIZE))
    number = int_param(request, "page", 1)
    if not 1 <= number <= pages:
        raise NotFound(f"layer {name} has {pages} page(s) of units; page {number} does not exist")
    first = (number - 1) * PAGE_SIZE
    units = [(c, units_of.hits(name, c)[:1])
             for c in range(first, min(first + PAGE_SIZE, row.channels))]
    crop = units_of.crop_rule(name) if name in ex.bench.mined_layers else None
    return page(request, "layer.html", row=row, units=units, page=number, pages=pages, crop=crop,
                rf=units_of.receptive_field(name), recipe=stored.recipe(name),
                stored=stored.units(name), hidden=stored.hidden(name))


def unit_page(request: Request) -> HTMLResponse:
    units, stored, p = layers(request), stored_syntheses(request), request.path_params
    name, channel = p["layer"], p["channel"]
    row = units.channel(name, channel)
    method = request.query_params.get("method", DEFAULT_PROJECTION)
    check_method(method, UNIT_METHODS)
    hits = units.named_hits(name, channel)
    asked = request.query_params.get("crop")
    rule = units.crop_rule(name, asked) if hits else None
    return page(request, "unit.html", row=row, channel=channel, hits=hits,
                method=method, crop=rule, crop_query=f"&crop={rule}" if asked else "",
                mined_crop=units.crop_rule(name) if hits else None, has_weights=units.weights(name, channel) is not None,
                synth=jobs(request).status(name, channel), settings=jobs(request).settings,
                rf=units.receptive_field(name), recipe=stored.recipe(name),
                facets=stored.facets(name, channel), hidden=stored.hidden(name))


def images_page(request: Request) -> HTMLResponse:
    ex = input_images(request)
    return page(request, "images.html", choices=ex.image_choices(),
                max_mb=round(ex.max_upload_bytes / 2**20, 1))


def image_page(request: Request) -> HTMLResponse:
    ex, image_id = explorer(request), request.path_params["image_id"]
    images, maps = ex.input_images, ex.attributions
    images.image(image_id)
    if request.headers.get("sec-fetch-site") in CROSS_SITE:  # a link on another site's page:
        query = f"?{request.url.query}" if request.url.query else ""  # run nothing for it
        return page(request, "visit.html", image_id=image_id, url=request.url.path + query)
    layer = request.query_params.get("layer") or ex.layers.default_image_layer()
    ex.layers.layer(layer)
    layout = maps.map_layout(image_id, layer)
    predictions = images.predictions(image_id)
    cls = int_param(request, "cls", predictions[0][0] if predictions else 0,
                    images.class_count(image_id))
    unit = int_param(request, "unit", None, layout.channels)
    chosen = unit_info(ex, image_id, layer, unit) if unit is not None else None
    return page(request, "image.html", image_id=image_id, layer=layer,
                layers=[r for r in ex.layers.layers() if r.spatial], layout=layout,
                predictions=predictions, cls=cls, cls_name=ex.net.class_name(cls), chosen=chosen)


ROUTES = [
    Route("/", layers_page),
    Route("/layer/{layer}", layer_page),
    Route("/unit/{layer}/{channel:number}", unit_page),
    Route("/images", images_page, methods=["GET"]),
    Route("/image/{image_id}", image_page),
]
