"""Options shared by several sub-commands: one definition each, so that an option of the same name
takes the same form everywhere (``tests/cli/test_cli_options.py`` checks it)."""

from __future__ import annotations

import argparse
import sys

MIN_INPUT_SIDE = 8


class Parser(argparse.ArgumentParser):
    """argparse with one-line errors (``convsight: error: ...``, exit 2), like every other error
    of the command, instead of the usage block followed by the message."""

    def error(self, message: str):  # type: ignore[override]
        print(f"convsight: error: {message} (see `{self.prog} --help`)", file=sys.stderr)
        sys.exit(2)


def add_model_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", default="efficientnet_lite0",
                   help="efficientnet_lite0 (default, ImageNet weights included), "
                        "efficientnet_lite1 or efficientnet_lite2 (ImageNet weights with "
                        "convsight[models]), a torchvision architecture such as resnet18, vgg16, "
                        "alexnet, or timm:NAME for a timm architecture such as timm:resnet50 "
                        "(with convsight[timm])")
    p.add_argument("--weights", default=None, metavar="PATH",
                   help="state-dict file for --model (torchvision and timm models without it "
                        "are random)")
    p.add_argument("--device", default="cpu", help="cpu (default), cuda, cuda:1, mps ...")


def check_device_arg(args: argparse.Namespace) -> None:
    """Refuse a ``--device`` this machine does not have (``cuda`` without a CUDA GPU, ...) in one
    line, before any model is loaded: the one check every sub-command uses."""
    device = getattr(args, "device", None)
    if device not in (None, "cpu"):
        from ..models import check_device

        check_device(device)


def network_from_args(args: argparse.Namespace):
    from ..models import load_model, on_device

    check_device_arg(args)
    return on_device(load_model(args.model, weights=args.weights), getattr(args, "device", None))


def add_quiet_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("--quiet", action="store_true",
                   help="no progress output (by default: a live bar on a terminal, else a line "
                        "every few seconds)")


def units_list(text: str) -> list[int] | None:
    """``--units``: ``"0-31"``, ``"3,7,10-12"`` -> channel numbers, ``"all"`` -> None (every
    unit). The one parser of unit lists; whether the units exist is checked against the layer by
    the call that uses them."""
    if text.strip() == "all":
        return None
    units: list[int] = []
    for part in text.split(","):
        first, dash, last = part.strip().partition("-")
        try:
            a = int(first)
            b = int(last) if dash else a
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"cannot read {text!r}: write unit numbers and ranges such as 0-31 or "
                "3,7,10-12") from None
        if b < a:
            raise argparse.ArgumentTypeError(f"cannot read {text!r}: the range {part.strip()} "
                                             "runs backwards")
        units += range(a, b + 1)
    return units


def add_units_arg(p: argparse.ArgumentParser, help: str) -> None:
    p.add_argument("--units", type=units_list, default=None, metavar="LIST",
                   help=f"{help}: numbers and ranges such as 0-31 or 3,7,10-12, or all "
                        "(default: all)")


def add_input_size_arg(p: argparse.ArgumentParser, default: str = "the model's own") -> None:
    p.add_argument("--input-size", type=int, nargs="+", default=None, metavar="PX",
                   help="network input size in pixels: one number for a square (224) or "
                        f"height and width (224 160) (default: {default})")


def input_size_from_args(args: argparse.Namespace) -> tuple[int, int] | None:
    """``--input-size`` as (height, width), None when not given; one-line errors otherwise."""
    from ..errors import ConvsightError
    from ..models import MAX_INPUT_SIDE

    sizes = args.input_size
    if sizes is None:
        return None
    if len(sizes) > 2:
        raise ConvsightError(f"--input-size takes one number or two (height width), got "
                             f"{len(sizes)}: {' '.join(map(str, sizes))}")
    h, w = (sizes[0], sizes[0]) if len(sizes) == 1 else sizes
    for side in (h, w):
        if not MIN_INPUT_SIDE <= side <= MAX_INPUT_SIDE:
            raise ConvsightError(f"--input-size must be {MIN_INPUT_SIDE} to {MAX_INPUT_SIDE} "
                                 f"pixels per side, got {side}")
    return h, w


def field_json(rf) -> dict | None:
    """A ``ReceptiveField`` as plain JSON data (None stays None)."""
    if rf is None:
        return None
    return {"layer": rf.layer, "size": list(rf.size), "stride": list(rf.stride),
            "padding": list(rf.padding), "global": rf.is_global, "input_size": list(rf.input_size),
            "grid": list(rf.grid) if rf.grid else None, "method": rf.method,
            "context": rf.context, "gates": list(rf.gates)}
