"""``convsight layers``: every layer with its type, output shape, channels and receptive field."""

from __future__ import annotations

import argparse

from .common import add_model_args, field_json, network_from_args


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("layers", help="list layers with output shapes and channels")
    add_model_args(p)
    p.add_argument("--json", action="store_true",
                   help="print JSON instead of a table: model, input size, channels and per layer "
                        "name, type, output shape, channels and receptive field (null where none)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..receptive import receptive_fields
    from ..capture import layer_table

    net = network_from_args(args)
    rows = layer_table(net)
    fields = receptive_fields(net)  # layers without a receptive field are left out: "-"
    if args.json:
        import json

        print(json.dumps({"model": net.name, "input_size": list(net.input_size),
                          "input_channels": net.channels,
                          "layers": [{"name": r.name, "type": r.type,
                                      "shape": list(r.shape) if r.shape else None,
                                      "channels": r.channels,
                                      "receptive_field": field_json(fields.get(r.name))}
                                     for r in rows]}, indent=1))
        return 0
    header = ["layer", "type", "output shape", "channels", "rf size", "rf stride"]
    table = []
    for r in rows:
        shape = "x".join(map(str, r.shape)) if r.shape else "-"
        rf = fields.get(r.name)
        size = "-" if rf is None else "global" if rf.is_global else "x".join(map(str, rf.size))
        stride = "-" if rf is None or rf.is_global else "x".join(map(str, rf.stride))
        cells = [r.name, r.type, shape, str(r.channels or "-"), size, stride]
        table.append(cells)
    widths = [max(len(h), *(len(c[i]) for c in table)) for i, h in enumerate(header)]
    print(f"{net.name}, input {net.input_size[0]}x{net.input_size[1]}")
    print("  ".join(h.ljust(w) for h, w in zip(header, widths)))
    for cells in table:
        print("  ".join(c.ljust(w) for c, w in zip(cells, widths)))
    return 0
