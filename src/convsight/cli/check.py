"""``convsight check``: which explanation to believe, for one image (faithfulness, randomisation)."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..attribute.registry import CHECK, MethodNames, check_option_default, method_info
from .common import add_model_args, add_quiet_arg, network_from_args

WINDOW_OPTIONS = ("window", "stride")  # what --window and --stride set, in each method taking them


def register(sub: argparse._SubParsersAction) -> None:
    # convsight.trust.check's own occlusion window and stride (Method.check_options), coarser
    # than attribute's 16 and 8 because the cascade computes the map once per step
    window, stride = (check_option_default(o) for o in WINDOW_OPTIONS)
    default = ",".join(MethodNames(CHECK))
    p = sub.add_parser("check", help="score each explanation of an image: deletion and insertion "
                                     "AUC, and whether it survives randomising the network")
    add_model_args(p)
    p.add_argument("image", help="image file (any format Pillow reads)")
    p.add_argument("--target", default=None, metavar="TARGET",
                   help="class:N, prob:N, LAYER:C or LAYER:C@Y,X (default: the top class)")
    p.add_argument("--methods", default=default,
                   help=f"comma-separated, from {', '.join(MethodNames())} (default {default})")
    p.add_argument("--figure-methods", default=None, metavar="M1,M2",
                   help="methods drawn in the randomisation figure (default: all but occlusion, "
                        "which costs one forward pass per window and step)")
    p.add_argument("--steps", type=int, default=50,
                   help="points on each deletion and insertion curve (default 50)")
    p.add_argument("--group", default="block", choices=["block", "layer", "all"],
                   help="randomise block by block (default), layer by layer, or all at once")
    p.add_argument("--window", type=int, default=window,
                   help=f"occlusion window in pixels (default {window}, as "
                        "convsight.trust.check; `attribute` uses 16)")
    p.add_argument("--stride", type=int, default=stride,
                   help=f"occlusion stride in pixels (default {stride}, as "
                        "convsight.trust.check; `attribute` uses 8)")
    p.add_argument("--seed", type=int, default=0,
                   help="seed of the random weights and maps (default 0)")
    p.add_argument("--metrics", default=None, metavar="M1,M2|all",
                   help="print the report card of these metrics (road, max_sensitivity, "
                        "infidelity, random_logit, randomisation, sparseness, complexity, "
                        "pointing_game, relevance_mass, deletion, insertion; 'all': every one, "
                        "the localisation ones when --box is given) instead of the table, and "
                        "write it as NAME_card.png")
    p.add_argument("--box", default=None, metavar="T,L,B,R",
                   help="the object's box (top, left, bottom, right) in the model's input "
                        "pixels, for pointing_game and relevance_mass")
    p.add_argument("-o", "--out", default="check.png",
                   help="randomisation figure (PNG, default check.png); the curves go beside it "
                        "as NAME_curves.png")
    add_quiet_arg(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..attribute import METHODS
    from ..errors import ConvsightError
    from ..pictures import save_png
    from ..trust import check
    from ..units import did_you_mean

    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    drawn = None if args.figure_methods is None else \
        [m.strip() for m in args.figure_methods.split(",") if m.strip()]
    for m in (methods or [args.methods]) + (drawn or []):
        if m not in METHODS:
            raise ConvsightError(f"unknown method {m!r}: choose from {', '.join(METHODS)}."
                                 f"{did_you_mean(m, list(METHODS))}")
    net = network_from_args(args)
    x = net.preprocess(args.image).to(net.device)
    if args.metrics is not None:
        return print_card(args, net, x, methods)
    result = check(net, x, args.target, methods=methods, steps=args.steps, seed=args.seed,
                   group=args.group, options=window_options(args, methods),
                   figure_methods=drawn, progress=not args.quiet)
    target = result.sanity.targets[0]
    name = f" ({net.class_name(target.class_index)})" if target.class_index is not None else ""
    print(f"{args.image}: target {target}{name}{'' if args.target else ', the top class'}\n")
    print(result.table())
    out = Path(args.out)
    figure = save_png(result.sanity.figure(), out)
    curves = save_png(result.curves_figure(), out.with_name(f"{out.stem}_curves.png"))
    print(f"\nwrote {figure} (randomisation, one column per step) and {curves} (curves)")
    return 0


def window_options(args: argparse.Namespace, methods: list[str]) -> dict[str, dict[str, int]]:
    """--window and --stride for each of ``methods`` that takes them (occlusion)."""
    given = {"window": args.window, "stride": args.stride}
    return {m: given for m in methods if set(WINDOW_OPTIONS) <= method_info(m).options}


def print_card(args: argparse.Namespace, net, x, methods: list[str]) -> int:
    """``--metrics``: the report card of ``methods`` on the image (``convsight.evaluate``)."""
    from ..errors import ConvsightError
    from ..pictures import save_png
    from ..trust import METRICS, evaluate
    from ..units import did_you_mean

    box = None
    if args.box is not None:
        try:
            box = tuple(int(v) for v in args.box.split(","))
        except ValueError:
            box = ()
        if len(box) != 4:
            raise ConvsightError(f"--box takes four integers T,L,B,R, got {args.box!r}")
    local = ("pointing_game", "relevance_mass")
    names = [m.strip() for m in args.metrics.split(",") if m.strip()]
    if names == ["all"]:
        names = [m for m in METRICS if box is not None or m not in local]
    for m in names or [args.metrics]:
        if m not in METRICS:
            raise ConvsightError(f"unknown metric {m!r}: choose from {', '.join(METRICS)} or "
                                 f"all.{did_you_mean(m, list(METRICS))}")
    settings = {k: {"steps": args.steps} for k in ("deletion", "insertion") if k in names}
    card = evaluate(net, x, args.target, methods=methods, metrics=names, seed=args.seed,
                    options=window_options(args, methods) or None,
                    **({"box": box} if box is not None else {}), **settings, progress=True)
    target = card.targets[0]
    name = f" ({net.class_name(target.class_index)})" if target.class_index is not None else ""
    print(f"{args.image}: target {target}{name}{'' if args.target else ', the top class'}\n")
    print(card.to_markdown())
    print("\n↑: higher is better, ↓: lower is better; random map: a uniform random number per "
          "pixel; n/a: no random map for a metric that explains again (docs/sanity.md)")
    out = Path(args.out)
    written = save_png(card.figure(), out.with_name(f"{out.stem}_card.png"))
    print(f"\nwrote {written} (the card, best of each column in green)")
    return 0
