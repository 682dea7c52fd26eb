"""A static, self-contained HTML report of an atlas: every unit's top patches, no server needed.

``write_report`` writes one HTML file that opens from disk: the layer table, then for each mined
layer a grid with one cell per unit (its top-k patches), and for the first few units of each
layer the patches at full size beside their guided-backprop projections. Under those, unless
``trust=False``, how far the projection of the unit's top image can be trusted
(``convsight.trust_score`` of the neuron within its receptive field): deletion and insertion AUC
beside random maps' (Petsiuk et al. 2018, RISE) and the randomisation check (Adebayo et al.
2018). Pictures are inlined as data URIs (default) or written to a sibling folder
``NAME_files/`` (``inline=False``), which keeps the HTML small for big atlases.

>>> from convsight.report import write_report
>>> write_report("atlas/", "report.html")                      # doctest: +SKIP
PosixPath('report.html')
"""

from __future__ import annotations

import base64
import hashlib
import html
import re
import time
import warnings
from pathlib import Path
from typing import Any, Sequence
from urllib.parse import quote

import numpy as np

from .atlas import Atlas
from .errors import ConvsightError
from .models import Network
from .figures import PatchCutter, with_synthesis
from .pictures import jpeg_bytes, patch_montage, png_bytes
from .progress import ProgressArg, progress_bar
from .targets import Target
from .attribute import attribute
from .attribute.registry import DEFAULT_PROJECTION
from .trust import PAGE_STEPS as TRUST_STEPS, metric, trust_score


STYLE = """
body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; color: #1d2230;
       background: #f7f8fa; margin: 0; }
header { background: #161b2e; color: #e8eaf2; padding: 14px 28px; }
header h1 { margin: 0; font-size: 20px; } header p { margin: 2px 0 0; color: #aab0c5; }
main { max-width: 1240px; margin: 0 auto; padding: 16px 28px 60px; }
h2 { font-size: 18px; margin: 30px 0 4px; } h3 { font-size: 15px; margin: 18px 0 6px; }
.sub { color: #6b7280; margin: 2px 0 10px; }
table { border-collapse: collapse; background: #fff; font-size: 13px; }
td, th { border-bottom: 1px solid #eceef2; padding: 3px 12px; text-align: left; }
th { color: #6b7280; font-weight: 600; }
.units { display: grid; grid-template-columns: repeat(auto-fill, minmax(128px, 1fr)); gap: 8px; }
.unit { background: #fff; border: 1px solid #e5e7eb; border-radius: 8px; padding: 4px; text-align: center;
        font-size: 12px; color: #1d2230; text-decoration: none; }
.unit img { width: 120px; height: 120px; display: block; margin: 0 auto 2px; border-radius: 4px; }
.unit span { color: #6b7280; }
a.unit:hover { border-color: #3b5bdb; }
.unit.pair { grid-column: span 2; } .unit.pair img { width: 243px; }
.detail { background: #fff; border: 1px solid #e5e7eb; border-radius: 10px; padding: 10px 14px; margin: 10px 0; }
.detail:target { box-shadow: 0 0 0 3px #c5d0ff; }
.detail img { max-width: 100%; }
.trust { font-size: 12.5px; margin: 6px 0 0; } .trust span { color: #6b7280; }
nav.toc a { margin-right: 14px; }
"""


def write_report(atlas_or_dir: Atlas | str | Path, out_path: str | Path,
                 layers: Sequence[str] | None = None, max_units: int | None = 128,
                 detail_units: int = 3, method: str = DEFAULT_PROJECTION, net: Network | None = None,
                 inline: bool = True, tile: int = 40, trust: bool = True,
                 progress: ProgressArg = True, card: bool = False) -> Path:
    """Write the report of an atlas (an ``Atlas`` or its folder) to ``out_path``; return the path.

    ``layers`` (default: all mined layers), ``max_units`` per layer (``None``: all units),
    ``detail_units``: how many units per layer also get the full-size patches beside their
    ``method`` projections (0: none, so no model is needed). ``net`` overrides ``atlas.network()``.
    ``trust``: under each detailed unit, the trust score of its projection on its top image (a
    few seconds per unit on a CPU; ``False`` leaves them out). ``progress``: True, False or
    ``fn(done, total)`` (see ``convsight.progress``), counting unit cells, detailed units'
    figures and trust scores. ``card``: with the trust score, a line of the report card's
    metrics of the same projection (``REPORT_CARD``; ``convsight.metric``).
    """
    atlas = atlas_or_dir if isinstance(atlas_or_dir, Atlas) else Atlas.open(atlas_or_dir)
    out = Path(out_path)
    out.parent.mkdir(parents=True, exist_ok=True)
    layers = list(layers) if layers is not None else list(atlas.layers)
    for layer in layers:
        atlas.channels(layer)  # unknown layers fail here, before any work
    assets = _Assets(out, inline)
    if net is None and detail_units > 0:
        net = atlas.network(allow_random=True)
    start = time.time()
    sections = []
    cutter = PatchCutter(atlas.access, net)  # keeps the images for all layers
    counts = [_unit_count(atlas, name, max_units) for name in layers]
    work = sum(counts) + sum(min(detail_units, n) for n in counts) * (2 if trust else 1)
    with progress_bar(work, "report", "picture", progress) as bar:
        for layer in layers:
            sections.append(_layer_section(atlas, layer, max_units, detail_units, method, net,
                                           assets, tile, bar, cutter, trust, card))
    rows = "".join(
        f"<tr><td><a href='#{_anchor(name)}'>{_e(name)}</a></td>"
        f"<td>{_e('x'.join(map(str, atlas.shapes.get(name, ()))))}</td>"
        f"<td>{atlas.channels(name)}</td><td>{_e(_rf_text(atlas, name, net))}</td>"
        f"<td>{_e(_crop_text(atlas, name, net))}</td></tr>"
        for name in layers)
    page = f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width">
<title>convsight atlas: {html.escape(atlas.model_name)}</title><style>{STYLE}</style></head>
<body><header><h1>What each unit of {html.escape(atlas.model_name)} sees</h1>
<p>top {atlas.k} patches over {atlas.image_count} images; input {atlas.input_size[0]}x{atlas.input_size[1]};
{len(atlas.skipped)} unreadable file(s) skipped; made in {time.time() - start:.0f} s</p></header>
<main>
<h2>Layers</h2>
<table><tr><th>layer</th><th>output shape</th><th>units</th><th>receptive field</th><th>patches cut by</th></tr>{rows}</table>
{TRUST_NOTE if trust and detail_units > 0 else ''}
{''.join(sections)}
</main></body></html>
"""
    out.write_text(page, encoding="utf-8")
    return out


TRUST_NOTE = """<p class='sub'>Under each detailed unit: how far the projection of its top
image can be trusted, measured on the neuron within its receptive field. Deletion AUC: the
neuron's value (over its value on the intact image) as the projection's top pixels are replaced
by the mean colour, lower is better; insertion AUC: as they are put back into a blurred copy,
higher is better; each beside random maps' (Petsiuk et al. 2018, RISE). Randomisation: the
projection passes when it changes with the weights of the unit's own top layer, and of every
layer, re-initialised (Adebayo et al. 2018, Sanity Checks for Saliency Maps).</p>"""


class _Assets:
    """Pictures as data URIs, or as files in ``NAME_files/`` beside the page."""

    def __init__(self, out: Path, inline: bool) -> None:
        self.inline = inline
        self.folder = out.parent / f"{out.stem}_files"
        self.count = 0
        if not inline:
            self.folder.mkdir(parents=True, exist_ok=True)

    def url(self, data: bytes, kind: str) -> str:
        if self.inline:
            return f"data:image/{kind};base64,{base64.b64encode(data).decode('ascii')}"
        self.count += 1
        name = f"{self.count:05d}.{'jpg' if kind == 'jpeg' else kind}"
        (self.folder / name).write_bytes(data)
        # the page's own name may hold quotes, '#', '?' or spaces: percent-encoded, then escaped
        return _e(f"{quote(self.folder.name, safe='')}/{name}")


def _unit_count(atlas: Atlas, layer: str, max_units: int | None) -> int:
    n = atlas.channels(layer)
    return n if max_units is None else min(n, max_units)


def _e(value: Any) -> str:
    """Any value from an atlas file as HTML text or attribute value (quotes escaped too)."""
    return html.escape(str(value), quote=True)


def _anchor(layer: str, channel: int | None = None) -> str:
    """``layer-blocks-5`` for ``blocks.5``. A shared atlas may name layers anything: names with
    other characters than letters, digits, '.', '_' and '-' get a safe id with a short hash."""
    base = "layer-" + layer.replace(".", "-")
    if not re.fullmatch(r"[A-Za-z0-9_-]+", base):
        readable = re.sub(r"[^A-Za-z0-9_-]+", "-", base)[:40]
        base = f"{readable}-{hashlib.sha256(layer.encode('utf-8')).hexdigest()[:8]}"
    return base if channel is None else f"{base}-{int(channel)}"


def _rf_text(atlas: Atlas, layer: str, net: Network | None) -> str:
    try:
        return atlas.access.receptive_field(layer, net).caption()
    except Exception:
        return "-"


REPORT_CARD = {"sparseness": {}, "complexity": {}, "max_sensitivity": {"samples": 3},
               "infidelity": {"samples": 5}}


def _card_line(model: Network, x: Any, target: Target, method: str) -> str:
    """The report card's metrics of a unit's projection (those that need no class)."""
    attr = attribute(model, x, target, method=method)
    parts = []
    for name, settings in REPORT_CARD.items():
        extra = {"method": method} if name == "max_sensitivity" else {}
        value = float(metric(name, model, x, attr.abs() if name in ("sparseness", "complexity")
                             else attr, target, **extra, **settings)[0])
        parts.append(f"{name.replace('_', '-')} {value:.3f}")
    return "<br><span>report card: " + _e(" · ".join(parts)) + "</span>"


CROP_WORDS = {"exact": "exact receptive field", "local": "local receptive field (gates held fixed)",
              "effective": "effective box (Luo et al. 2016)"}


def _crop_text(atlas: Atlas, layer: str, net: Network | None) -> str:
    try:
        return CROP_WORDS[atlas.crop_rule(layer, net)]
    except Exception:
        return "-"


def _trust_html(atlas: Atlas, layer: str, channel: int, net: Network | None,
                method: str, card: bool = False) -> str:
    """The trust line of the ``method`` projection of the unit's top image (its neuron there)."""
    hits = atlas.top(layer, channel)
    if not hits:
        return ""
    hit = hits[0]
    try:
        model = atlas.network(net=net)
        x = model.normalize(atlas.image(hit.image)[None]).to(model.device)
        with warnings.catch_warnings():  # a unit that is not positive: its AUCs read n/a
            warnings.simplefilter("ignore", UserWarning)
            target = Target.unit(layer, channel, hit.y, hit.x)
            score = trust_score(model, x, target, method, steps=TRUST_STEPS)
            extra = _card_line(model, x, target, method) if card else ""
    except ConvsightError as exc:
        return f"<p class='trust'>no trust score: {_e(exc)}</p>"
    return (f"<p class='trust'>{_e(method)} projection of the top image: {_e(score.line(0))}"
            f"<br><span>{_e(score.verdict(0))}</span>{extra}</p>")


def _layer_section(atlas: Atlas, layer: str, max_units: int | None, detail_units: int,
                   method: str, net: Network | None, assets: _Assets, tile: int, bar: Any,
                   cutter: PatchCutter, trust: bool = True, card: bool = False) -> str:
    n = _unit_count(atlas, layer, max_units)
    total = atlas.channels(layer)
    details = min(detail_units, n)
    cells = []
    paired = atlas.synthesis_info(layer) is not None  # a synthesis left of each unit's patches
    for c in range(n):
        hits = atlas.top(layer, c)
        patches = [cutter.cut(layer, h) for h in hits]
        montage = patch_montage(patches, tile, slots=atlas.k)
        if paired:
            montage = with_synthesis(montage, atlas.synthesis(layer, c))
        picture = jpeg_bytes(montage, quality=85)
        value = f"{hits[0].value:.3g}" if hits else "-"
        tag = "a" if c < details else "div"
        href = f" href='#{_anchor(layer, c)}'" if c < details else ""
        cells.append(f"<{tag} class='unit{' pair' if paired else ''}'{href}><img src='{assets.url(picture, 'jpeg')}' "
                     f"alt='unit {c}'><b>{c}</b> <span>{value}</span></{tag}>")
        bar(1)
    shown = f"units 0-{n - 1} of {total}" if n < total else f"all {total} units"
    parts = [f"<h2 id='{_anchor(layer)}'>{_e(layer)}</h2>",
             f"<p class='sub'>{shown}; each cell holds a unit's top {_e(atlas.k)} patches, cut by the "
             f"{_e(_crop_text(atlas, layer, net))}, strongest first" + (", after the image synthesised for it" if paired else "") +
             ". Click one of the first units for its patches at full size.</p>",
             f"<div class='units'>{''.join(cells)}</div>"]
    for c in range(details):
        figure = np.asarray(atlas.unit_figure(layer, c, net=net, method=method), dtype=np.float32)
        if figure.max() > 1.5:
            figure = figure / 255.0
        bar(1)
        scores = ""
        if trust:
            scores = _trust_html(atlas, layer, c, net, method, card)
            bar(1)
        parts.append(f"<div class='detail' id='{_anchor(layer, c)}'><h3>{_e(layer)}:{c}"
                     f"</h3><p class='sub'>top patches with their {_e(method)} "
                     f"projections</p><img src='{assets.url(png_bytes(figure), 'png')}' "
                     f"alt='{_e(layer)}:{c}'>{scores}</div>")
    return "\n".join(parts)
