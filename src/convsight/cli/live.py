"""``convsight live``: the explorer's Live page for a model, no atlas needed."""

from __future__ import annotations

import argparse

from .common import add_model_args


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("live", help="watch a layer's units respond to your camera, live",
                       description="Serve the explorer's Live page on "
                                   "http://127.0.0.1:PORT/live: a layer's activations, the top "
                                   "classes and a unit's backward view on every frame of the "
                                   "camera, a video file or a dropped image (the sample photos "
                                   "without them). Frames are never stored.")
    add_model_args(p)
    p.add_argument("--atlas", default=None, metavar="FOLDER",
                   help="also show each unit's top patches and stored syntheses from this atlas "
                        "(mined from the same model)")
    p.add_argument("--port", type=int, default=8000, help="port (default 8000; 0 picks a free one)")
    p.add_argument("--host", default="127.0.0.1",
                   help="address to bind (default 127.0.0.1: this computer only; browsers give "
                        "pages the camera only on localhost or https)")
    p.add_argument("--allow-host", action="append", default=[], metavar="NAME",
                   help="also answer requests that name the server NAME (repeatable)")
    p.add_argument("--cache", default=None, metavar="DIR",
                   help="folder for cached pictures (default ~/.cache/convsight/web/...)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import torch

    from ..errors import ConvsightError
    from ..models import on_device
    from ..web import serve
    from ..web.guard import allowed_names
    from ..web.server import bind
    from .common import network_from_args

    if not 0 <= args.port < 65536:
        raise ConvsightError(f"port {args.port} is not valid: use 1..65535 (or 0 for a free one)")
    allowed_names(args.allow_host)  # a bad name, device or busy port is told before loading
    on_device(torch.nn.Linear(1, 1), args.device)
    bind(args.host, args.port).close()
    serve(args.atlas, network_from_args(args), host=args.host, port=args.port,
          cache_dir=args.cache, allowed_hosts=args.allow_host, device=args.device, page="/live",
          prewarm=False)
    return 0
