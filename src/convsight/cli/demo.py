"""``convsight demo``: run the main job on the embedded defaults."""

from __future__ import annotations

import argparse

from .common import add_quiet_arg


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("demo", help="write a demo folder (index.html) on the default model and photos")
    p.add_argument("-o", "--out", default="demo", help="output folder (default: demo)")
    p.add_argument("--quick", action="store_true", help="fewer steps and units: a fast preview")
    add_quiet_arg(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..demo import demo

    index = demo(args.out, quick=args.quick, progress=not args.quiet)
    print(f"demo written: {index.resolve()}")
    return 0
