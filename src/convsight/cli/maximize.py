"""``convsight maximize``: synthesise the image a class or unit wants (activation maximisation)."""

from __future__ import annotations

import argparse

from .common import add_model_args, add_quiet_arg, network_from_args


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("maximize", help="synthesise the image that maximises a class or unit",
                       description="Gradient ascent on the image. One image per --target, all "
                                   "optimised together. Example: convsight maximize --target "
                                   "class:130 -o flamingo.png")
    add_model_args(p)
    p.add_argument("--target", action="append", required=True, metavar="TARGET",
                   help="class:N, prob:N, LAYER:C, LAYER:C@Y,X or a sum; repeat for several")
    p.add_argument("--preset", default="yosinski-3",
                   help="yosinski-1..4, simonyan, none, lucid (default yosinski-3)")
    p.add_argument("--steps", type=int, default=None, help="number of steps (default: the preset's)")
    p.add_argument("--size", type=int, default=None, help="image side in pixels (default: the preset's "
                   "or the network's input size)")
    p.add_argument("--seed", type=int, default=0, help="random seed (same seed, same image)")
    p.add_argument("--every", type=int, default=None, metavar="N",
                   help="also save the image every N steps (PNGs in OUT_frames/ and OUT.gif)")
    p.add_argument("--set", action="append", default=[], metavar="KNOB=VALUE",
                   help="override one setting, e.g. --set blur_radius=0.5 --set lr=50 (repeatable; "
                        "see docs/maximize.md for the list)")
    p.add_argument("--raw", action="store_true",
                   help="save the optimised pixels as they are (default: each image contrast-stretched "
                        "to its own min..max, as Yosinski's toolbox shows them)")
    p.add_argument("-o", "--out", default="maximize.png", help="output PNG (default maximize.png)")
    add_quiet_arg(p)
    p.set_defaults(func=run)


def _parse_knobs(items: list[str]) -> dict[str, object]:
    from ..errors import ConvsightError
    from ..optimize import KNOBS, Settings

    types = {f: type(getattr(Settings(), f)) for f in KNOBS}
    knobs: dict[str, object] = {}
    for item in items:
        key, sep, text = item.partition("=")
        key = key.strip().replace("-", "_")
        if not sep or key not in KNOBS:
            raise ConvsightError(f"cannot read --set {item!r}: write KNOB=VALUE with KNOB one of "
                                 f"{', '.join(KNOBS)}")
        kind = types[key]
        try:
            if kind is bool:
                if text.lower() not in ("true", "false", "1", "0", "yes", "no"):
                    raise ValueError
                value: object = text.lower() in ("true", "1", "yes")
            elif kind is int or key in ("steps", "blur_every", "size"):
                value = int(text)
            elif kind is float:
                value = float(text)
            else:
                value = text
        except ValueError:
            raise ConvsightError(f"cannot read --set {item!r}: {key} needs a "
                                 f"{'true/false' if kind is bool else kind.__name__} value") from None
        knobs[key] = value
    return knobs


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from PIL import Image

    from .. import maximize
    from ..pictures import image_grid, save_png, to_uint8

    net = network_from_args(args)
    result = maximize(net, args.target, preset=args.preset, steps=args.steps, size=args.size,
                      seed=args.seed, progress=not args.quiet, every=args.every,
                      **_parse_knobs(args.set))
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
