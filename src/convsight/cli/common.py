"""Options shared by several sub-commands."""

from __future__ import annotations

import argparse


def add_model_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", default="efficientnet_lite0",
                   help="efficientnet_lite0 (default, ImageNet weights included) or a torchvision "
                        "architecture name such as resnet18, vgg16, alexnet")
    p.add_argument("--weights", default=None, metavar="PATH",
                   help="state-dict file for --model (torchvision models without it are random)")
    p.add_argument("--device", default="cpu", help="cpu (default), cuda, cuda:1, mps ...")


def network_from_args(args: argparse.Namespace):
    from ..models import load_model, on_device

    return on_device(load_model(args.model, weights=args.weights), getattr(args, "device", None))
