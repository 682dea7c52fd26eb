"""The explorer's routes: thin Starlette handlers over ``Explorer``; pages are Jinja2 templates.

Every view has a stable URL (``/layer/blocks.5?page=2``, ``/unit/blocks.5/12``,
``/image/sample-chelsea?layer=blocks.5&unit=12``), pictures live under ``/img/`` and are cached
on disk, and ``/api/`` answers the page's scripts with JSON. All assets come from ``/static``.

>>> from convsight.web import create_app
>>> app = create_app(atlas="atlas/")           # or create_app(model=convsight.load_model())
"""

from __future__ import annotations

import dataclasses
import logging
import math
import threading
from pathlib import Path
from typing import Any

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.templating import Jinja2Templates

import convsight

from .explorer import (CLASS_METHODS, MAX_UPLOAD_BYTES, MAX_UPLOAD_PIXELS, UNIT_METHODS,
                       BadUpload, Explorer, NotFound)
from .jobs import QueueFull, SynthesisQueue, SynthesisSettings

HERE = Path(__file__).parent
log = logging.getLogger("convsight.web")
PAGE_SIZE = 128  # units per page of the layer view
IMAGE_HEADERS = {"Cache-Control": "private, max-age=600"}


def create_app(atlas: Any | str | Path | None = None, model: Any | None = None,
               cache_dir: str | Path | None = None,
               synthesis: SynthesisSettings | None = None,
               max_upload_bytes: int = MAX_UPLOAD_BYTES,
               max_upload_pixels: int = MAX_UPLOAD_PIXELS, prewarm: bool = False) -> Starlette:
    """The explorer as an ASGI app, over an atlas (folder or ``Atlas``) and/or a model.

    With only ``atlas``, the network is the one the atlas was mined with (``atlas.network()``).
    With only ``model`` (a ``Network``, ``nn.Module`` or model name), the pages show layers, unit
    syntheses and image views but no top patches. ``prewarm`` fills the cache with every unit's
    tile in a background thread.
    """
    atlas_dir = None
    if isinstance(atlas, (str, Path)):
        atlas_dir = Path(atlas)
        if not atlas_dir.exists():
            raise convsight.ConvsightError(f"atlas folder not found: {atlas_dir}")
        atlas = convsight.Atlas.open(atlas_dir)
    if isinstance(model, str):
        model = convsight.load_model(model)
    if model is None and atlas is None:
        raise convsight.ConvsightError("give an atlas folder, a model, or both")
    net = convsight.as_network(model) if model is not None else atlas.network()
    if atlas is not None and (tuple(net.input_size) != tuple(atlas.input_size)
                              or net.resize_ratio != atlas.resize_ratio):
        # see images as the atlas was mined (same module; only the preprocessing differs)
        net = dataclasses.replace(net, input_size=atlas.input_size,
                                  resize_ratio=atlas.resize_ratio)
    explorer = Explorer(net, atlas, cache_dir=cache_dir, atlas_dir=atlas_dir,
                        max_upload_bytes=max_upload_bytes, max_upload_pixels=max_upload_pixels)
    jobs = SynthesisQueue(net, explorer.cache, synthesis)
    templates = Jinja2Templates(directory=str(HERE / "templates"))
    templates.env.globals.update(model_name=net.name, has_atlas=atlas is not None,
                                 input_size=net.input_size,
                                 unit_methods=UNIT_METHODS, class_methods=CLASS_METHODS)

    def page(request: Request, name: str, **context: Any) -> HTMLResponse:
        return templates.TemplateResponse(request, name, context)

    def image(data: bytes, kind: str) -> Response:
        return Response(data, media_type=f"image/{kind}", headers=IMAGE_HEADERS)

    # ----- pages ------------------------------------------------------------------------------
    def layers_page(request: Request) -> HTMLResponse:
        rows = explorer.layers()
        atlas_info = None
        if atlas is not None:
            atlas_info = {"images": len(list(atlas.image_paths)), "k": atlas.k,
                          "layers": explorer.mined_layers}
        return page(request, "layers.html", rows=rows, atlas_info=atlas_info, net=net)

    def layer_page(request: Request) -> HTMLResponse:
        name = request.path_params["layer"]
        row = explorer.layer(name)
        if not row.channels:
            raise NotFound(f"layer {name} has output shape {row.shape_text}: it has no units to "
                           "show")
        pages = max(1, math.ceil(row.channels / PAGE_SIZE))
        number = _int_param(request, "page", 1)
        if not 1 <= number <= pages:
            raise NotFound(f"layer {name} has {pages} page(s) of units; page {number} does not "
                           "exist")
        first = (number - 1) * PAGE_SIZE
        channels = range(first, min(first + PAGE_SIZE, row.channels))
        units = [(c, explorer.hits(name, c)[:1]) for c in channels]
        return page(request, "layer.html", row=row, units=units, page=number, pages=pages,
                    rf=explorer.receptive_field(name))

    def unit_page(request: Request) -> HTMLResponse:
        name, channel = request.path_params["layer"], request.path_params["channel"]
        row = explorer.channel(name, channel)
        method = request.query_params.get("method", "guided")
        if method not in UNIT_METHODS:
            raise NotFound(f"unknown method {method!r}; use one of {', '.join(UNIT_METHODS)}")
        hits = explorer.hits(name, channel)
        names = list(atlas.image_paths) if atlas is not None else []
        hit_rows = [(rank, h, Path(str(names[h.image])).name if h.image < len(names) else "?")
                    for rank, h in enumerate(hits)]
        return page(request, "unit.html", row=row, channel=channel, hits=hit_rows, method=method,
                    has_weights=explorer.weights(name, channel) is not None,
                    synth=jobs.status(name, channel), settings=jobs.settings,
                    rf=explorer.receptive_field(name))

    def images_page(request: Request) -> HTMLResponse:
        return page(request, "images.html", choices=explorer.image_choices(),
                    max_mb=round(explorer.max_upload_bytes / 2**20, 1))

    async def upload(request: Request) -> Response:
        limit = explorer.max_upload_bytes
        length = request.headers.get("content-length")
        if length is None:  # a streamed body could grow past any limit before we see it
            raise BadUpload("uploads need a Content-Length header", status=411)
        if not length.isdigit():
            raise BadUpload(f"bad Content-Length {length!r}", status=400)
        if int(length) > limit + 64 * 1024:
            if int(length) <= 8 * limit:  # read it away so the client gets our answer
                async for _ in request.stream():
                    pass
            raise BadUpload(f"the upload has {int(length):,} bytes; the limit is {limit:,}",
                            status=413)
        try:
            form = await request.form(max_files=1, max_fields=4, max_part_size=limit)
        except HTTPException as exc:
            raise BadUpload(f"cannot read the upload: {exc.detail}", status=exc.status_code)
        field = form.get("image")
        if field is None or isinstance(field, str):
            raise BadUpload("send the picture as a file in the form field 'image'", status=400)
        data = await field.read(limit + 1)
        image_id = await run_in_threadpool(explorer.add_upload, data)
        return RedirectResponse(f"/image/{image_id}", status_code=303)

    def image_page(request: Request) -> HTMLResponse:
        image_id = request.path_params["image_id"]
        explorer.image(image_id)
        spatial = [r for r in explorer.layers() if r.spatial]
        default = next((n for n in explorer.mined_layers if explorer.layer(n).spatial),
                       spatial[len(spatial) // 2].name if spatial else None)
        layer = request.query_params.get("layer") or default
        if layer is None:
            raise NotFound("this network has no layer with spatial activation maps")
        explorer.layer(layer)
        layout = explorer.map_layout(image_id, layer)
        predictions = explorer.predictions(image_id)
        cls = _int_param(request, "cls", predictions[0][0] if predictions else 0)
        unit = request.query_params.get("unit") or None
        if unit is not None and not unit.isdigit():
            raise NotFound(f"unit must be a channel number, got {unit!r}")
        chosen = unit_info(image_id, layer, int(unit)) if unit is not None else None
        return page(request, "image.html", image_id=image_id, layer=layer, layers=spatial,
                    layout=layout, predictions=predictions, cls=cls,
                    cls_name=net.class_name(cls), chosen=chosen)

    def unit_info(image_id: str, layer: str, channel: int) -> dict[str, Any]:
        y, x, value = explorer.strongest(image_id, layer, channel)
        rf = explorer.receptive_field(layer)
        box = None if rf is None or rf.is_global else [int(v) for v in rf.box(y, x)]
        return {"layer": layer, "channel": channel, "y": y, "x": x, "value": round(value, 4),
                "box": box, "input": list(net.input_size),
                "images": {"patch": f"/img/upatch/{image_id}/{layer}/{channel}.png",
                           **{m: f"/img/uattr/{image_id}/{layer}/{channel}/{m}.png"
                              for m in UNIT_METHODS}},
                "unit_url": f"/unit/{layer}/{channel}"}

    # ----- pictures and JSON ------------------------------------------------------------------
    def tile(request: Request) -> Response:
        p = request.path_params
        return image(explorer.unit_tile(p["layer"], p["channel"]), "jpeg")

    def patch(request: Request) -> Response:
        p = request.path_params
        return image(explorer.patch(p["layer"], p["channel"], p["rank"]), "jpeg")

    def projection(request: Request) -> Response:
        p = request.path_params
        return image(explorer.projection(p["layer"], p["channel"], p["rank"], p["method"]), "png")

    def weights(request: Request) -> Response:
        p = request.path_params
        data = explorer.weights(p["layer"], p["channel"])
        if data is None:
            raise NotFound(f"layer {p['layer']} has no filter picture (it is not a Conv2d or "
                           "Linear layer, or its kernels are 1x1)")
        return image(data, "png")

    def synth_picture(request: Request) -> Response:
        p = request.path_params
        explorer.channel(p["layer"], p["channel"])
        data = jobs.picture(p["layer"], p["channel"])
        if data is None:
            raise NotFound(f"no synthesis of {p['layer']}:{p['channel']} yet: POST "
                           f"/api/synth/{p['layer']}/{p['channel']} to start one")
        return image(data, "png")

    def synth_api(request: Request) -> JSONResponse:
        p = request.path_params
        explorer.channel(p["layer"], p["channel"])
        if request.method == "POST":
            return JSONResponse(jobs.start(p["layer"], p["channel"]), status_code=202)
        return JSONResponse(jobs.status(p["layer"], p["channel"]))

    def input_picture(request: Request) -> Response:
        return image(explorer.input_png(request.path_params["image_id"]), "png")

    def thumb(request: Request) -> Response:
        return image(explorer.thumbnail(request.path_params["image_id"]), "jpeg")

    def source(request: Request) -> Response:
        return image(explorer.thumbnail(f"a-{request.path_params['index']}", side=512), "jpeg")

    def acts_picture(request: Request) -> Response:
        p = request.path_params
        return image(explorer.activation_maps(p["image_id"], p["layer"])[0], "png")

    def unit_attr_picture(request: Request) -> Response:
        p = request.path_params
        return image(explorer.unit_attribution(p["image_id"], p["layer"], p["channel"],
                                               p["method"]), "png")

    def unit_patch_picture(request: Request) -> Response:
        p = request.path_params
        return image(explorer.unit_patch(p["image_id"], p["layer"], p["channel"]), "png")

    def class_attr_picture(request: Request) -> Response:
        p = request.path_params
        explorer.image(p["image_id"])
        return image(explorer.class_attribution(p["image_id"], p["cls"], p["method"]), "png")

    def unit_api(request: Request) -> JSONResponse:
        p = request.path_params
        explorer.image(p["image_id"])
        return JSONResponse(unit_info(p["image_id"], p["layer"], p["channel"]))

    # ----- errors -----------------------------------------------------------------------------
    def wants_html(request: Request) -> bool:
        return not request.url.path.startswith(("/img/", "/api/", "/static/"))

    def error(request: Request, status: int, message: str) -> Response:
        if request.url.path.startswith("/api/"):
            return JSONResponse({"error": message}, status_code=status)
        if wants_html(request):
            return templates.TemplateResponse(request, "error.html",
                                              {"status": status, "message": message},
                                              status_code=status)
        return Response(message, status_code=status, media_type="text/plain; charset=utf-8")

    async def on_not_found(request: Request, exc: Exception) -> Response:
        return error(request, 404, str(exc))

    async def on_bad_upload(request: Request, exc: Exception) -> Response:
        return error(request, getattr(exc, "status", 415), str(exc))

    async def on_queue_full(request: Request, exc: Exception) -> Response:
        return error(request, 503, str(exc))

    async def on_convsight_error(request: Request, exc: Exception) -> Response:
        return error(request, 400, str(exc))

    async def on_crash(request: Request, exc: Exception) -> Response:
        log.error("%s failed", request.url.path, exc_info=exc)
        return error(request, 500, f"convsight failed on this request ({type(exc).__name__}: "
                                   f"{exc}); the server log has the details")

    async def on_http(request: Request, exc: Exception) -> Response:
        detail = getattr(exc, "detail", "") or "error"
        status = getattr(exc, "status_code", 500)
        if status == 404:
            detail = f"nothing at {request.url.path}; start from the layer list at /"
        return error(request, status, detail)

    routes = [
        Route("/", layers_page),
        Route("/layer/{layer}", layer_page),
        Route("/unit/{layer}/{channel:int}", unit_page),
        Route("/images", images_page, methods=["GET"]),
        Route("/images", upload, methods=["POST"]),
        Route("/image/{image_id}", image_page),
        Route("/img/tile/{layer}/{channel:int}.jpg", tile),
        Route("/img/patch/{layer}/{channel:int}/{rank:int}.jpg", patch),
        Route("/img/proj/{layer}/{channel:int}/{rank:int}/{method}.png", projection),
        Route("/img/weights/{layer}/{channel:int}.png", weights),
        Route("/img/synth/{layer}/{channel:int}.png", synth_picture),
        Route("/img/input/{image_id}.png", input_picture),
        Route("/img/thumb/{image_id}.jpg", thumb),
        Route("/img/source/{index:int}.jpg", source),
        Route("/img/acts/{image_id}/{layer}.png", acts_picture),
        Route("/img/uattr/{image_id}/{layer}/{channel:int}/{method}.png", unit_attr_picture),
        Route("/img/upatch/{image_id}/{layer}/{channel:int}.png", unit_patch_picture),
        Route("/img/cattr/{image_id}/{cls:int}/{method}.png", class_attr_picture),
        Route("/api/synth/{layer}/{channel:int}", synth_api, methods=["GET", "POST"]),
        Route("/api/unit/{image_id}/{layer}/{channel:int}", unit_api),
        Mount("/static", StaticFiles(directory=str(HERE / "static")), name="static"),
    ]
    app = Starlette(routes=routes, exception_handlers={
        NotFound: on_not_found, convsight.UnknownLayerError: on_not_found,
        convsight.UnitError: on_not_found, BadUpload: on_bad_upload, QueueFull: on_queue_full,
        convsight.ConvsightError: on_convsight_error, HTTPException: on_http,
        Exception: on_crash})
    app.state.explorer = explorer
    app.state.jobs = jobs
    if prewarm and explorer.mined_layers:
        threading.Thread(target=explorer.prewarm, name="convsight-prewarm", daemon=True).start()
    return app


def _int_param(request: Request, name: str, default: int) -> int:
    text = request.query_params.get(name)
    if text in (None, ""):
        return default
    try:
        return int(text)
    except ValueError:
        raise NotFound(f"{name} must be a whole number, got {text!r}") from None


def serve(atlas: Any | str | Path | None = None, model: Any | None = None,
          host: str = "127.0.0.1", port: int = 8000, cache_dir: str | Path | None = None,
          synthesis: SynthesisSettings | None = None) -> None:
    """Run the explorer with uvicorn until Ctrl-C (bound to localhost unless ``host`` says)."""
    import uvicorn

    app = create_app(atlas, model, cache_dir=cache_dir, synthesis=synthesis, prewarm=True)
    print(f"convsight explorer: http://{host}:{port}/  (Ctrl-C to stop)")
    uvicorn.run(app, host=host, port=port, log_level="warning")
