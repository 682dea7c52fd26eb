"""``convsight report``: a static HTML page of an atlas that opens from disk."""

from __future__ import annotations

import argparse

from ..attribute.registry import DEFAULT_PROJECTION, UNITS, MethodNames
from .common import add_quiet_arg


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("report", help="write a self-contained HTML page of an atlas")
    p.add_argument("atlas", metavar="ATLAS_DIR", help="atlas folder written by `convsight mine`")
    p.add_argument("-o", "--out", default="report.html", help="output file (default report.html)")
    p.add_argument("--layers", default=None, help="comma-separated layers (default: all mined)")
    p.add_argument("--max-units", type=int, default=128,
                   help="units per layer (default 128; 0 for all)")
    p.add_argument("--details", type=int, default=3,
                   help="units per layer shown at full size with projections (default 3)")
    p.add_argument("--method", default=DEFAULT_PROJECTION, choices=list(MethodNames(UNITS)),
                   help=f"projection of the detailed units (default {DEFAULT_PROJECTION})")
    p.add_argument("--no-trust", dest="trust", action="store_false",
                   help="leave out the trust score (deletion, insertion, randomisation) under "
                        "each detailed unit: faster")
    p.add_argument("--card", action="store_true",
                   help="with the trust score, the report card's metrics of the same projection "
                        "(sparseness, complexity, max-sensitivity, infidelity)")
    p.add_argument("--files", action="store_true",
                   help="write pictures to a folder beside the page instead of inlining them")
    add_quiet_arg(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..errors import ConvsightError
    from ..report import write_report

    if args.max_units < 0 or args.details < 0:
        raise ConvsightError("--max-units and --details must be 0 or more")
    layers = [s.strip() for s in args.layers.split(",") if s.strip()] if args.layers else None
    path = write_report(args.atlas, args.out, layers=layers, max_units=args.max_units or None,
                        detail_units=args.details, method=args.method, inline=not args.files,
                        trust=args.trust, progress=not args.quiet,
                        card=args.card)
    print(f"report written: {path.resolve()}")
    return 0
