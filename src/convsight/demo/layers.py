"""Demo section: the layer table, as `convsight layers` prints it."""

from __future__ import annotations

import html
from pathlib import Path

from ..capture import layer_table
from ..models import Network
from ..progress import ProgressArg


STEP = "the layer table"


def section(net: Network, out: Path, quick: bool, progress: ProgressArg = False) -> str:
    """The layer table (as `convsight layers` prints it)."""
    rows = layer_table(net)
    body = "".join(
        f"<tr><td>{html.escape(r.name)}</td><td>{r.type}</td>"
        f"<td>{'x'.join(map(str, r.shape)) if r.shape else '-'}</td><td>{r.channels or '-'}</td></tr>"
        for r in rows)
    return ("<h2>Layers</h2><p class='note'>Names are PyTorch module paths; use them everywhere "
            "(units are written LAYER:CHANNEL or LAYER:CHANNEL@Y,X).</p>"
            "<details><summary>Show all {n} layers</summary><table><tr><th>layer</th><th>type</th>"
            "<th>output shape</th><th>channels</th></tr>{body}</table></details>"
            ).format(n=len(rows), body=body)
