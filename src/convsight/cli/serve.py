"""``convsight serve``: the local web explorer over an atlas and/or a model."""

from __future__ import annotations

import argparse

from ..optimize import MAX_SIZE, MIN_SIZE, PRESETS
from ..optimize.presets import ON_DEMAND_SIZE, ON_DEMAND_STEPS
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
    p.add_argument("--synth-steps", type=int, default=None,
                   help=f"steps of an on-demand synthesis (default {ON_DEMAND_STEPS})")
    p.add_argument("--synth-size", type=int, default=None,
                   help=f"image side of an on-demand synthesis, {MIN_SIZE} to {MAX_SIZE} pixels "
                        f"(default {ON_DEMAND_SIZE})")
    p.add_argument("--synth-preset", default=None, metavar="PRESET",
                   help=f"maximisation preset: {', '.join(PRESETS)} (default lucid: clear "
                        "patterns in few steps)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..errors import ConvsightError
    from ..web import serve
    from ..web.guard import allowed_names
    from ..web.server import bind
    from .common import check_device_arg, network_from_args

    if args.atlas is None and args.model is None:
        raise ConvsightError("give an atlas folder (convsight serve ATLAS_DIR) or a model "
                             "(convsight serve --model efficientnet_lite0)")
    if not 0 <= args.port < 65536:
        raise ConvsightError(f"port {args.port} is not valid: use 1..65535 (or 0 for a free one)")
    settings = synthesis_settings(args)  # a bad preset, steps or size: told before anything else
    allowed_names(args.allow_host)  # a bad name, device or busy port is told before loading
    check_device_arg(args)
    bind(args.host, args.port).close()
    net = network_from_args(args) if args.model is not None else None
    serve(args.atlas, net, host=args.host, port=args.port, cache_dir=args.cache,
          synthesis=settings, allowed_hosts=args.allow_host, device=args.device,
          allow_outside=args.allow_outside)
    return 0


def synthesis_settings(args: argparse.Namespace):
    """The explorer's on-demand synthesis recipe from ``--synth-*`` (the explorer's defaults for
    those not given), checked: a one-line error naming the flag."""
    from ..errors import ConvsightError
    from ..web import SynthesisSettings

    given = {"preset": args.synth_preset, "steps": args.synth_steps, "size": args.synth_size}
    try:
        return SynthesisSettings(**{k: v for k, v in given.items() if v is not None})
    except ConvsightError as exc:
        text = str(exc)
        flag = next((f for f in ("steps", "size") if text.startswith(f + "=")), "preset")
        raise ConvsightError(f"--synth-{flag}: {text}") from None
