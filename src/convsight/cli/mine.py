"""``convsight mine``: the top-k images of every channel of some layers over a folder of images.

    convsight mine photos/ --layers blocks.3,blocks.10 -o atlas
    convsight mine photos/ --layers blocks.5 -o atlas --synthesize        # + a synthesis per unit
    convsight mine photos/ --layers blocks.3 -o atlas --crop effective    # each hit's effective box
    torchrun --nproc_per_node=2 -m convsight.cli mine photos/ --layers blocks.3 -o atlas   # CPU, gloo
    torchrun --nproc_per_node=4 -m convsight.cli mine photos/ --layers blocks.3 -o atlas --device cuda
"""

from __future__ import annotations

import argparse

from .common import (add_input_size_arg, add_model_args, add_quiet_arg, input_size_from_args,
                     network_from_args, units_list)


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("mine", help="find the top-k dataset images of every unit of some layers")
    p.add_argument("images", help="folder of images (searched recursively; class subfolders are fine)")
    p.add_argument("--layers", required=True,
                   help="comma-separated layer names, e.g. blocks.3,blocks.10 (see `convsight layers`)")
    p.add_argument("-o", "--out", required=True, help="atlas folder to write")
    p.add_argument("--k", type=int, default=9, help="images kept per channel (default 9)")
    add_model_args(p)
    add_input_size_arg(p, "the model's own, 224 for most")
    p.add_argument("--batch-size", type=int, default=32, help="images per forward pass (default 32)")
    p.add_argument("--workers", type=int, default=0, help="DataLoader worker processes (default 0)")
    p.add_argument("--resume", action="store_true",
                   help="continue an interrupted run from the checkpoint in the --out folder")
    p.add_argument("--checkpoint-every", type=float, default=60.0, metavar="SECONDS",
                   help="seconds between checkpoints (default 60; 0: after every batch)")
    p.add_argument("--crop", choices=("auto", "exact", "local", "effective"), default="auto",
                   help="box each patch is cut from: exact or local receptive field, or the hit's "
                        "effective box (Luo et al. 2016); auto (default): exact where finite, "
                        "else local")
    p.add_argument("--q", type=float, default=None, metavar="FRACTION",
                   help="with --crop effective: fraction of the unit's input-gradient magnitude "
                        "the box holds (default 0.5)")
    p.add_argument("--grids", type=int, default=0, metavar="N",
                   help="also draw the first N units of each layer as LAYER.png in the atlas folder "
                        "(default 0: none)")
    # argparse passes a string const through units_list too: "all" -> None, every unit
    p.add_argument("--synthesize", nargs="?", type=units_list, const="all", default=False,
                   metavar="UNITS",
                   help="after mining, also store a synthesised image for every unit of each "
                        "layer (or only UNITS, e.g. 0-31), as `convsight maximize --layer L "
                        "--atlas OUT` does; resumable (default: no syntheses)")
    p.add_argument("--synthesis-preset", default=None, metavar="PRESET",
                   help="preset for --synthesize (default: maximize's default preset)")
    p.add_argument("--synthesis-steps", type=int, default=None, metavar="N",
                   help="steps for --synthesize (default: the preset's)")
    add_quiet_arg(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import os
    import sys
    from pathlib import Path

    from ..mining import mine
    from ..pictures import save_png

    size = input_size_from_args(args)
    recipe = _recipe(args)  # a bad --synthesis-preset or -steps is told before mining, not after
    # the model stays where it was loaded: mine() runs a copy on --device (under torchrun, a bare
    # cuda is each process' own GPU)
    net = network_from_args(argparse.Namespace(**{**vars(args), "device": None}))
    if size:
        net.input_size = size
    try:
        atlas = mine(net, args.images, args.layers, k=args.k, batch_size=args.batch_size,
                     workers=args.workers, device=args.device, out=args.out, resume=args.resume,
                     progress=not args.quiet, checkpoint_every=args.checkpoint_every,
                     crop=args.crop, **({"q": args.q} if args.q is not None else {}))
    except KeyboardInterrupt:
        saved = any(Path(args.out).glob("checkpoint*.npz"))
        print("convsight: interrupted; " + (
            f"the images mined so far are saved in {args.out}: run the same command with "
            "--resume to continue" if saved else "nothing was mined yet"), file=sys.stderr)
        return 130
    if int(os.environ.get("RANK", "0")) != 0:
        return 0
    print(f"atlas written: {Path(args.out).resolve()} ({atlas.image_count} images, "
          f"{len(atlas.layers)} layers, k={atlas.k})")
    rules = ", ".join(f"{layer} {atlas.crop_rule(layer)}" for layer in atlas.layers)
    print(f"patches cut by: {rules}")
    if atlas.skipped:
        print(f"skipped {len(atlas.skipped)} unreadable files:")
        for path, reason in atlas.skipped[:20]:
            print(f"  {path}: {reason}")
        if len(atlas.skipped) > 20:
            print(f"  ... and {len(atlas.skipped) - 20} more (listed in atlas.json)")
    if args.synthesize is not False:
        _synthesize(args, net, atlas, recipe)
    for layer in atlas.layers if args.grids > 0 else []:
        path = save_png(atlas.layer_grid(layer, max_units=args.grids, net=net),
                        Path(args.out) / f"{layer}.png")
        print(f"{layer}: {path}")
    return 0


def _recipe(args: argparse.Namespace):
    """The checked recipe of ``--synthesize`` (None without it)."""
    from ..optimize import DEFAULT_PRESET, Recipe

    if args.synthesize is False:
        return None
    return Recipe(args.synthesis_preset or DEFAULT_PRESET, steps=args.synthesis_steps)


def _synthesize(args: argparse.Namespace, net, atlas, recipe) -> None:
    """A synthesis per unit of each mined layer, stored in the atlas (after mining is done)."""
    from .. import visualize_layer

    units = args.synthesize  # None: every unit
    for layer in atlas.layers:
        out = visualize_layer(net, layer, units, atlas=atlas, device=args.device,
                              progress=not args.quiet, **recipe.arguments())
        print(f"{layer}: syntheses of {len(out.channels)} units stored "
              f"({len(out.computed)} made now)")
