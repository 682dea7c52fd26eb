"""``convsight filters``: draw a layer's weights as images."""

from __future__ import annotations

import argparse

from .common import add_model_args, add_units_arg, network_from_args


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("filters", help="draw a layer's filters (default: the first conv layer)")
    add_model_args(p)
    p.add_argument("--layer", default=None, help="Conv2d or Linear layer (default: first conv)")
    add_units_arg(p, "units to draw")
    p.add_argument("--input-shape", default=None, metavar="C,H,W",
                   help="for a Linear layer: the image shape its inputs form")
    p.add_argument("--scale", type=int, default=None,
                   help="nearest-neighbour upscaling factor (default: one that makes small "
                        "kernels readable)")
    p.add_argument("--shared-scale", action="store_true",
                   help="one colour scale for all units (default: each unit scaled on its own)")
    p.add_argument("-o", "--out", default="filters.png", help="output PNG (default filters.png)")
    p.set_defaults(func=run)


def _ints(text: str | None, what: str) -> list[int] | None:
    from ..errors import UnitError

    if not text:
        return None
    try:
        return [int(t) for t in text.split(",") if t.strip()]
    except ValueError:
        raise UnitError(f"cannot read {what} {text!r}: write comma-separated integers") from None


def run(args: argparse.Namespace) -> int:
    from ..figures import filter_grid
    from ..filters import first_conv_layer
    from ..pictures import save_png

    net = network_from_args(args)
    layer = args.layer or first_conv_layer(net)
    img = filter_grid(net, layer, input_shape=_ints(args.input_shape, "--input-shape"),
                      units=args.units, scale=args.scale,
                      per_unit_scale=not args.shared_scale)
    path = save_png(img, args.out)
    print(f"{layer}: wrote {path} ({img.shape[1]}x{img.shape[0]} px)")
    return 0
