"""``convsight serve``: the local web explorer over an atlas and/or a model."""

from __future__ import annotations

import argparse

from .common import add_model_args


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("serve", help="browse what every unit sees in a local web page",
                       description="Start the explorer on http://127.0.0.1:PORT/. Give an atlas "
                                   "folder (from `convsight mine`) to see each unit's top patches, "
                                   "or only --model to browse layers, syntheses and images.")
    p.add_argument("atlas", nargs="?", default=None, metavar="ATLAS_DIR",
                   help="atlas folder written by `convsight mine` (optional with --model)")
    add_model_args(p)
    p.set_defaults(model=None)  # no --model: the atlas's own model
    p.add_argument("--port", type=int, default=8000, help="port (default 8000; 0 picks a free one)")
    p.add_argument("--host", default="127.0.0.1",
                   help="address to bind (default 127.0.0.1: this computer only; 0.0.0.0 lets "
                        "other machines in, and the explorer has no authentication)")
    p.add_argument("--allow-host", action="append", default=[], metavar="NAME",
                   help="also answer requests that name the server NAME (a name it is reached "
                        "by through a proxy or DNS; repeatable). Others are refused, so that "
                        "web pages cannot reach it through DNS rebinding")
    p.add_argument("--allow-outside", action="store_true",
                   help="also read atlas images outside the atlas folder and the image folders "
                        "recorded when it was mined, and stored syntheses that link outside the "
                        "atlas folder (by default they are refused)")
    p.add_argument("--cache", default=None, metavar="DIR",
                   help="folder for cached pictures (default ~/.cache/convsight/web/...)")
    p.add_argument("--synth-steps", type=int, default=64,
                   help="steps of an on-demand synthesis (default 64)")
    p.add_argument("--synth-size", type=int, default=128,
                   help="image side of an on-demand synthesis (default 128)")
    p.add_argument("--synth-preset", default="lucid", metavar="PRESET",
                   help="maximisation preset (default lucid: clear patterns in few steps)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..errors import ConvsightError
    from ..web import SynthesisSettings, serve
    from ..web.guard import allowed_names
    from ..web.server import bind
    from .common import check_device_arg, network_from_args

    if args.atlas is None and args.model is None:
        raise ConvsightError("give an atlas folder (convsight serve ATLAS_DIR) or a model "
                             "(convsight serve --model efficientnet_lite0)")
    if not 0 <= args.port < 65536:
        raise ConvsightError(f"port {args.port} is not valid: use 1..65535 (or 0 for a free one)")
    if args.synth_steps < 1 or args.synth_size < 16:
        raise ConvsightError("--synth-steps must be at least 1 and --synth-size at least 16")
    allowed_names(args.allow_host)  # a bad name, device or busy port is told before loading
    check_device_arg(args)
    bind(args.host, args.port).close()
    net = network_from_args(args) if args.model is not None else None
    settings = SynthesisSettings(preset=args.synth_preset, steps=args.synth_steps,
                                 size=args.synth_size)
    serve(args.atlas, net, host=args.host, port=args.port, cache_dir=args.cache,
          synthesis=settings, allowed_hosts=args.allow_host, device=args.device,
          allow_outside=args.allow_outside)
    return 0
