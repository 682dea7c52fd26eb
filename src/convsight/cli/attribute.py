"""``convsight attribute``: explain one image with gradient, guided backprop, deconvnet, ..."""

from __future__ import annotations

import argparse

from ..attribute.registry import FIGURE, MethodNames
from .common import add_model_args, network_from_args


def register(sub: argparse._SubParsersAction) -> None:
    names, default = ", ".join(MethodNames()), ",".join(MethodNames(FIGURE))
    p = sub.add_parser("attribute", help="which pixels drive a class or unit: gradient, guided "
                                         "backprop, deconvnet, SmoothGrad, Grad-CAM")
    add_model_args(p)
    p.add_argument("image", help="image file (any format Pillow reads)")
    p.add_argument("--target", action="append", default=None, metavar="TARGET",
                   help="class:N, prob:N, LAYER:C, LAYER:C@Y,X or a sum such as "
                        "'class:281 - class:282' or 'class:281 + 0.5*blocks.5:3'; repeat for one "
                        "row per target "
                        "(default: the top class)")
    p.add_argument("--methods", default=default,
                   help=f"comma-separated, from {names} (default {default})")
    p.add_argument("--layer", default=None, help="layer for Grad-CAM (default: last feature map)")
    p.add_argument("--kind", default="rgb", choices=["rgb", "signed", "saliency"],
                   help="display of gradient-like maps (default rgb: zero is grey)")
    p.add_argument("-o", "--out", default="attribution.png", help="output PNG (default attribution.png)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..attribute import METHODS
    from ..figures import attribution_figure
    from ..errors import ConvsightError
    from ..images import load_image
    from ..pictures import save_png

    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    bad = [m for m in methods if m not in METHODS]
    if bad or not methods:
        raise ConvsightError(f"unknown method {', '.join(bad) or repr(args.methods)}: choose from "
                             f"{', '.join(METHODS)}")
    image = load_image(args.image)
    net = network_from_args(args)
    targets = args.target or [None]
    img = attribution_figure(net, image, targets, methods=methods, kind=args.kind, layer=args.layer)
    path = save_png(img, args.out)
    print(f"wrote {path} ({img.shape[1]}x{img.shape[0]} px): {len(targets)} target(s) x "
          f"{', '.join(methods)}")
    return 0
