"""``convsight rf``: receptive field size, stride and padding of a layer, and the box of one unit."""

from __future__ import annotations

import argparse

from .common import add_input_size_arg, add_model_args, field_json, input_size_from_args, \
    network_from_args


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("rf", help="receptive field of a layer (size, stride, padding, unit box)")
    add_model_args(p)
    p.add_argument("layer", help="layer name, as listed by `convsight layers`")
    p.add_argument("--unit", metavar="C@Y,X", default=None,
                   help="also print the input box seen by this unit (channel C at row Y, column X)")
    add_input_size_arg(p)
    p.add_argument("--allow-misaligned", action="store_true",
                   help="for layers where paths with different centres meet, give the box covering all")
    p.add_argument("--context", choices=("exact", "local"), default="exact",
                   help="exact: every pixel the unit depends on (default); local: global-context "
                        "gates (squeeze-and-excitation, ECA, global context...) held fixed")
    p.add_argument("--json", action="store_true",
                   help="print JSON: model, the field (size, stride, padding, global, input size, "
                        "grid, method, context, gates) and, with --unit, the unit and its box")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..receptive import receptive_field

    size = input_size_from_args(args)
    net = network_from_args(args)
    rf = receptive_field(net, args.layer, size, allow_misaligned=args.allow_misaligned,
                         context=args.context)
    unit_box = _unit_box(net, rf, args.unit, size) if args.unit else None
    if args.json:
        import json

        data = {"model": net.name, "field": field_json(rf)}
        if unit_box:
            unit, (top, left, bottom, right) = unit_box
            data["unit"] = {"unit": str(unit), "box": {"top": top, "left": left, "bottom": bottom,
                                                      "right": right}}
        print(json.dumps(data, indent=1))
        return 0
    h, w = rf.input_size
    print(f"{net.name}, input {h}x{w}, layer {rf.layer}")
    if rf.is_global:
        print("receptive field: the whole input (an op mixes all positions)")
    else:
        print(f"size     {rf.size[0]} x {rf.size[1]}")
        print(f"stride   {rf.stride[0]} x {rf.stride[1]}")
        print(f"padding  {rf.padding[0]} x {rf.padding[1]}")
    print(f"method   {rf.method}")
    if rf.context == "local":
        held = ", ".join(rf.gates) if rf.gates else "none found"
        print(f"context  local (gates held fixed: {held})")
    if unit_box:
        unit, (top, left, bottom, right) = unit_box
        print(f"unit {unit}: rows {top}..{bottom}, columns {left}..{right} "
              "(inclusive; may extend past the image)")
    return 0


def _unit_box(net, rf, text: str, size) -> tuple:
    """The unit named by ``--unit C@Y,X`` (checked against the layer) and its box."""
    from ..capture import layer_shape
    from ..errors import UnitError
    from ..units import check_unit, parse_unit

    unit = parse_unit(text, layer=rf.layer)
    if size is None:
        check_unit(unit, tuple(layer_shape(net, rf.layer)))
    rows, cols = rf.grid or (1, 1)
    if unit.y is None and (rows, cols) != (1, 1):
        raise UnitError(f"--unit {text}: give a position too, as C@Y,X")
    y, x = (unit.y or 0, unit.x or 0)
    if not (0 <= y < rows and 0 <= x < cols):
        raise UnitError(f"position ({y}, {x}) is out of range for layer {rf.layer}: "
                        f"y must be in 0..{rows - 1} and x in 0..{cols - 1}")
    return unit, rf.box(y, x)
