"""``convsight demo``: run the main job on the embedded defaults."""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path

from .common import add_quiet_arg


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("demo", help="write a demo folder (index.html) on the default model and photos")
    p.add_argument("-o", "--out", default="demo", help="output folder (default: demo)")
    p.add_argument("--quick", action="store_true", help="fewer steps and units: a fast preview")
    add_quiet_arg(p)
    p.set_defaults(func=run)


def _program() -> str:
    """How to call convsight again: ``convsight``, or the path this run was started by when
    that is not on PATH (``.venv/bin/convsight`` after ``make demo``)."""
    started = Path(sys.argv[0]) if sys.argv and sys.argv[0] else None
    if shutil.which("convsight") is None and started is not None and started.name == "convsight":
        return str(started)
    return "convsight"


def run(args: argparse.Namespace) -> int:
    from ..demo import demo, next_steps

    index = demo(args.out, quick=args.quick, progress=not args.quiet)
    timings = json.loads((index.parent / "timings.json").read_text(encoding="utf-8"))
    print(f"demo written in {timings['seconds']:.0f} s: {index.resolve()}")
    for t in timings["sections"]:
        print(f"  {t['seconds']:6.1f} s  {t['section']}: {t['step']}")
    program = _program()
    print("open it live:")
    for command, what in next_steps(args.out):
        print(f"  {program}{command[len('convsight'):]}    # {what}")
    return 0
