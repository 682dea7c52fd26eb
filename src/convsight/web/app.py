"""The explorer as an ASGI app: Starlette routes (``routes/``) over an ``Explorer``; pages are
Jinja2 templates.

Every view has a stable URL (``/layer/blocks.5?page=2``, ``/unit/blocks.5/12``,
``/image/sample-chelsea?layer=blocks.5&unit=12``), pictures live under ``/img/`` and are cached
on disk, and ``/api/`` answers the page's scripts with JSON. All assets come from ``/static``.
Outside it all, ``guard.Guard`` refuses foreign hosts and cross-site writes and adds the security
headers.

>>> from convsight.web import create_app
>>> app = create_app(atlas="atlas/")           # or create_app(model=convsight.load_model())
"""

from __future__ import annotations

import dataclasses
import threading
from pathlib import Path
from typing import Any, Iterable

from starlette.applications import Starlette
from starlette.routing import Mount
from starlette.staticfiles import StaticFiles
from starlette.templating import Jinja2Templates

import convsight
import convsight.models
from convsight.attribute.registry import method_info

from .explorer import CLASS_METHODS, MAX_UPLOAD_BYTES, MAX_UPLOAD_PIXELS, UNIT_METHODS, Explorer
from .guard import Guard, allowed_names
from .jobs import SynthesisQueue, SynthesisSettings
from .live import LiveEngine
from .routes import HANDLERS, ROUTES
from .routes.live import Sockets
from .routes.respond import whole_paths

HERE = Path(__file__).parent


def create_app(atlas: Any | str | Path | None = None, model: Any | None = None,
               cache_dir: str | Path | None = None,
               synthesis: SynthesisSettings | None = None,
               max_upload_bytes: int = MAX_UPLOAD_BYTES,
               max_upload_pixels: int = MAX_UPLOAD_PIXELS, prewarm: bool = False,
               allowed_hosts: Iterable[str] = (), device: Any = None,
               allow_outside: bool = False) -> Starlette:
    """The explorer as an ASGI app, over an atlas (folder or ``Atlas``) and/or a model.

    With only ``atlas``, the network is the one the atlas was mined with (``atlas.network()``).
    With only ``model`` (a ``Network``, ``nn.Module`` or model name), the pages show layers, unit
    syntheses and image views but no top patches. ``prewarm`` fills the cache with every unit's
    tile in a background thread (``app.state.prewarm_stop.set()`` ends it). Requests must name
    the server by ``localhost``, a loopback address, the address they arrived on, or one of
    ``allowed_hosts`` (names or addresses, for a server reached by another name). ``device``
    runs the network there (a copy: ``convsight.models.on_device``). Atlas images are read
    only inside the atlas folder and the image folders recorded at mining time, symbolic links
    followed, and stored syntheses only inside the atlas folder, unless ``allow_outside``.
    """
    names = allowed_names(allowed_hosts)  # checked before the (slow) model is loaded
    atlas_dir = Path(atlas) if isinstance(atlas, (str, Path)) else None
    atlas, net = _atlas_and_network(atlas, model)
    net = convsight.models.on_device(net, device)
    explorer = Explorer(net, atlas, cache_dir=cache_dir, atlas_dir=atlas_dir,
                        max_upload_bytes=max_upload_bytes, max_upload_pixels=max_upload_pixels,
                        allow_outside=allow_outside)
    templates = Jinja2Templates(directory=str(HERE / "templates"))
    templates.env.globals.update(model_name=net.name, has_atlas=atlas is not None,
                                 input_size=net.input_size,
                                 unit_methods=UNIT_METHODS, class_methods=CLASS_METHODS,
                                 method_info=method_info)
    static = Mount("/static", StaticFiles(directory=str(HERE / "static")), name="static")
    app = ExplorerApp(routes=[*ROUTES, *whole_paths([static])], exception_handlers=dict(HANDLERS))
    app.state.allowed_hosts = names
    app.state.explorer = explorer
    app.state.jobs = SynthesisQueue(net, explorer.cache, synthesis)
    app.state.templates = templates
    app.state.live = LiveEngine(explorer)  # the Live page's own model copy, made at its first frame
    app.state.live_sockets = Sockets()
    app.state.prewarm_stop = threading.Event()
    app.state.prewarm_thread = None
    if prewarm and explorer.bench.mined_layers:
        app.state.prewarm_thread = threading.Thread(
            target=explorer.layers.prewarm, args=(app.state.prewarm_stop,), name="convsight-prewarm",
            daemon=True)
        app.state.prewarm_thread.start()
    return app


class ExplorerApp(Starlette):
    """Starlette with ``Guard`` outside its whole stack, so that every answer, a 500 included,
    passes the host and origin checks and carries the security headers."""

    def build_middleware_stack(self) -> Any:
        return Guard(super().build_middleware_stack(), self.state.allowed_hosts)


def _atlas_and_network(atlas: Any | str | Path | None,
                       model: Any | None) -> tuple[Any | None, convsight.Network]:
    """The atlas (opened from its folder) and the network the pages show."""
    if isinstance(atlas, (str, Path)):
        if not Path(atlas).exists():
            raise convsight.ConvsightError(f"atlas folder not found: {Path(atlas)}")
        atlas = convsight.Atlas.open(atlas)
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
    return atlas, net
