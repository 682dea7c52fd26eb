"""``convsight maximize``: synthesise the image a class or unit wants (activation maximisation).

    convsight maximize --target class:130 -o flamingo.png
    convsight maximize --layer blocks.5 --units 0-31 --atlas atlas     # stored beside the patches
"""

from __future__ import annotations

import argparse

from ..optimize import DEFAULT_PRESET, MAX_SIZE, MIN_SIZE, PRESETS
from .common import add_model_args, add_quiet_arg, add_units_arg, network_from_args


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("maximize", help="synthesise the image that maximises a class or unit",
                       description="Gradient ascent on the image. One image per --target, all "
                                   "optimised together. Example: convsight maximize --target "
                                   "class:130 -o flamingo.png")
    add_model_args(p)
    p.add_argument("--target", action="append", default=None, metavar="TARGET",
                   help="class:N, prob:N, LAYER:C, LAYER:C@Y,X or a sum; repeat for several")
    p.add_argument("--layer", default=None,
                   help="instead of --target: one image per channel of this layer, in batches")
    add_units_arg(p, "with --layer: channels")
    p.add_argument("--atlas", default=None, metavar="FOLDER",
                   help="with --layer: store the images in this atlas (resumes an interrupted run)")
    p.add_argument("--batch-size", type=int, default=16,
                   help="with --layer: channels per batch (default 16)")
    p.add_argument("--overwrite", action="store_true",
                   help="with --atlas: replace the layer's stored syntheses made with other settings")
    p.add_argument("--copies", type=int, default=1,
                   help="images per target or channel (default 1)")
    p.add_argument("--diversity", type=float, default=0.0,
                   help="penalty weight on the copies' Gram similarity (Olah et al. 2017; "
                        "default 0: none)")
    p.add_argument("--preset", default=DEFAULT_PRESET,
                   help=f"{', '.join(PRESETS)} (default {DEFAULT_PRESET})")
    p.add_argument("--steps", type=int, default=None, help="number of steps (default: the preset's)")
    p.add_argument("--size", type=int, default=None, help=f"image side, {MIN_SIZE} to {MAX_SIZE} "
                   "pixels (default: the preset's or the network's input size)")
    p.add_argument("--seed", type=int, default=0, help="random seed (same seed, same image; default 0)")
    p.add_argument("--every", type=int, default=None, metavar="N",
                   help="also save the image every N steps (PNGs in OUT_frames/ and OUT.gif)")
    p.add_argument("--set", action="append", default=[], metavar="KNOB=VALUE",
                   help="override one setting, e.g. --set lr=0.1, or --preset yosinski-3 --set "
                        "blur_radius=0.5 (repeatable; see docs/maximize.md for the list)")
    p.add_argument("--raw", action="store_true",
                   help="save the optimised pixels as they are (default: each image contrast-stretched "
                        "to its own min..max, as Yosinski's toolbox shows them)")
    p.add_argument("-o", "--out", default="maximize.png", help="output PNG (default maximize.png)")
    add_quiet_arg(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from PIL import Image

    from .. import maximize
    from ..errors import ConvsightError
    from ..optimize import Recipe, parse_knobs
    from ..pictures import image_grid, save_png, to_uint8
    from ..targets import parse_target

    if (args.target is None) == (args.layer is None):
        raise ConvsightError("give either --target (one or more) or --layer (one image per channel)")
    if args.layer is None and (args.units or args.atlas):
        raise ConvsightError("--units and --atlas go with --layer")
    # the recipe and the targets are read (and the recipe checked) before the model is loaded
    recipe = Recipe(args.preset, args.steps, args.size, args.seed, parse_knobs(args.set))
    targets = [parse_target(t) for t in args.target or []]
    net = network_from_args(args)
    if args.layer is not None:
        return _run_layer(args, net, recipe)
    result = maximize(net, targets, progress=not args.quiet, every=args.every, copies=args.copies,
                      diversity=args.diversity, **recipe.arguments())
    out = Path(args.out)
    labels = [str(t) for t in result.targets] if len(result.targets) > 1 else None

    def picture(images) -> "object":
        return image_grid(images, labels, stretch=not args.raw)

    save_png(picture(result.images), out)
    last = result.trace[-1]
    for tg, v in zip(result.targets, last):
        print(f"{tg}: objective {float(v):.4g} after {result.trace.shape[0]} steps ({args.preset})")
    print(f"wrote {out}" + ("" if args.raw else " (contrast-stretched; --raw for the optimised pixels)"))
    if result.frames:
        folder = out.with_name(out.stem + "_frames")
        steps = result.frame_steps
        pils = []
        for step, frame in zip(steps, result.frames):
            img = picture(frame)
            save_png(img, folder / f"step_{step:05d}.png")
            pils.append(Image.fromarray(to_uint8(img)))
        gif = out.with_suffix(".gif")
        pils[0].save(gif, save_all=True, append_images=pils[1:], duration=120, loop=0)
        print(f"wrote {len(pils)} frames to {folder}/ and {gif}")
    return 0


def _run_layer(args: argparse.Namespace, net, recipe) -> int:
    from pathlib import Path

    from .. import visualize_layer
    from ..pictures import grid, label, save_png, to_numpy_image

    import sys

    try:
        out = visualize_layer(net, args.layer, args.units, batch_size=args.batch_size,
                              atlas=args.atlas, copies=args.copies, diversity=args.diversity,
                              overwrite=args.overwrite, progress=not args.quiet,
                              **recipe.arguments())
    except KeyboardInterrupt:
        if args.atlas is None:
            raise
        print(f"convsight: interrupted; the batches finished so far are stored in {args.atlas}: "
              "run the same command again to continue (finished batches are skipped)",
              file=sys.stderr)
        return 130
    made = len(out.computed)
    where = f" in {Path(args.atlas).resolve()}" if args.atlas else ""
    print(f"{args.layer}: {len(out.channels)} units, {made} synthesised now, "
          f"{len(out.channels) - made} already stored{where}")
    if args.atlas is None or args.out != "maximize.png":
        tiles = [label(to_numpy_image(im), f"{c}" + (f".{k}" if out.copies > 1 else ""))
                 for (c, k), im in zip(((c, k) for c in out.channels for k in range(out.copies)),
                                       out.images)]
        print(f"wrote {save_png(grid(tiles, ncols=min(len(tiles), 8 * out.copies)), args.out)}")
    return 0
