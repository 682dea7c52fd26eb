"""The ``convsight`` command: thin argument parsing over the public API.

Each sub-command lives in its own module of this package with a ``register(subparsers)`` function
that adds its parser and sets ``func``. Modules import heavy libraries inside ``func`` only, so
``convsight --help`` stays fast. ``--threads N|auto`` on every command; ``auto`` (the default of
the interactive commands) follows the cores other programs leave free (``convsight.cpu``).
"""

from __future__ import annotations

import argparse
import importlib
import sys
import warnings

# Interactive commands, whose thread count follows the free cores by default (convsight.cpu).
ADAPTIVE = ("demo", "serve", "live")
# Sub-command modules, in the order ``convsight --help`` lists them.
COMMANDS = ["demo", "layers", "filters", "mine", "serve", "live", "report", "maximize", "attribute",
            "check", "rf", "samples"]


class _Version(argparse.Action):
    """``--version``: the package version, read only when asked (importing it loads torch)."""

    def __init__(self, option_strings, dest=argparse.SUPPRESS, default=argparse.SUPPRESS,
                 help="print convsight's version and exit"):
        super().__init__(option_strings, dest=dest, default=default, nargs=0, help=help)

    def __call__(self, parser, namespace, values, option_string=None):
        from .. import __version__

        print(f"convsight {__version__}")
        parser.exit()


def build_parser() -> argparse.ArgumentParser:
    from .common import Parser

    parser = Parser(prog="convsight", description="See how a convolutional network sees.")
    parser.add_argument("--version", action=_Version)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in COMMANDS:
        importlib.import_module(f"{__name__}.{name}").register(sub)
    for name, command in sub.choices.items():
        auto = name in ADAPTIVE
        command.add_argument("--threads", type=_thread_count, default="auto" if auto else None,
                             metavar="N|auto",
                             help="CPU threads for PyTorch; 'auto': as many as other programs "
                                  "leave cores free, measured while it works (default: "
                                  + ("auto)" if auto else "one per core, so that results "
                                     "repeat bit for bit)"))
    return parser


def _thread_count(text: str) -> int | str:
    if text == "auto":
        return text
    try:
        n = int(text)
    except ValueError:
        n = 0
    if n < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number >= 1 or 'auto', not {text!r}")
    return n


def main(argv: list[str] | None = None) -> int:
    from ..errors import ConvsightError

    try:
        args = build_parser().parse_args(argv)
    except SystemExit as stop:  # --help, --version, or a one-line argument error (2)
        return stop.code if isinstance(stop.code, int) else 0
    from contextlib import nullcontext

    from ..cpu import keep_freed_memory, threads

    keep_freed_memory()  # the command owns its process: no page faults for every batch
    warnings.simplefilter("default", UserWarning)
    warnings.formatwarning = lambda msg, cat, *a, **k: f"convsight: warning: {msg}\n"
    try:
        with threads(args.threads) if args.threads is not None else nullcontext():
            return int(args.func(args) or 0)
    except ConvsightError as exc:
        print(f"convsight: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("convsight: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
