"""The foundation's parts of ``convsight demo``: predictions, layer table, weight images."""

from __future__ import annotations

import html
from pathlib import Path

import torch

from .faces import train_face_network
from .filters import filter_grid, first_conv_layer
from .images import sample_images
from .models import Network
from .render import save_png
from .capture import layer_table


def predictions(net: Network, out: Path, quick: bool) -> str:
    """Top-5 classes for each sample photo, with the photo as the network saw it."""
    photos = sample_images()
    x = net.preprocess(list(photos.values())).to(net.device)
    with torch.no_grad():
        probs = torch.softmax(net.module(x), dim=1).cpu()
    cards = []
    for (name, _), xi, p in zip(photos.items(), x, probs):
        save_png(net.denormalize(xi[None])[0].permute(1, 2, 0).cpu().numpy(), out / f"photo_{name}.png")
        values, idx = p.topk(5)
        rows = "".join(f"<tr><td>{html.escape(net.class_name(int(i)))}</td><td>{float(v):.3f}</td></tr>"
                       for v, i in zip(values, idx))
        cards.append(f'<div class="card"><img src="photo_{name}.png" alt="{name}">'
                     f"<b>{name}</b><table>{rows}</table></div>")
    return ("<h2>Top-5 predictions on the sample photos</h2>"
            "<p class='note'>Real photos shipped inside scikit-image, resized and centre-cropped "
            f"to {net.input_size[0]} px as the network sees them.</p>"
            f'<div class="cards">{"".join(cards)}</div>')


def layers(net: Network, out: Path, quick: bool) -> str:
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


def filters(net: Network, out: Path, quick: bool) -> str:
    """First-layer filters as RGB, a depthwise layer in grayscale, and a face network's units."""
    first = first_conv_layer(net)
    save_png(filter_grid(net, first), out / "filters.png")
    parts = [f"<h2>First-layer filters ({html.escape(first)})</h2>"
             "<p class='note'>Grey is 0; colour means sign (a red tile adds red). Each filter is "
             "scaled on its own and upscaled with nearest neighbour.</p>"
             '<img src="filters.png" alt="first-layer filters">']
    depthwise = [n for n, m in net.module.named_modules()
                 if isinstance(m, torch.nn.Conv2d) and m.groups > 1 and m.groups == m.in_channels]
    if depthwise:
        save_png(filter_grid(net, depthwise[0]), out / "filters_depthwise.png")
        parts.append(f"<h3>A depthwise layer ({html.escape(depthwise[0])})</h3>"
                     '<img src="filters_depthwise.png" alt="depthwise filters">')
    faces = train_face_network(hidden=16, epochs=150 if quick else 300)
    save_png(filter_grid(faces.network, "hidden", scale=4), out / "face_units.png")
    parts.append("<h3>Hidden units of a network trained on faces</h3>"
                 "<p class='note'>A 625-16-2 fully connected network trained in "
                 f"{faces.seconds:.1f} s on scikit-image's lfw_subset (faces vs non-faces, 25x25; "
                 f"test accuracy {faces.test_accuracy:.2f}). Each tile is one hidden unit's "
                 "weights reshaped to the image: face templates.</p>"
                 '<img src="face_units.png" alt="face network hidden units">')
    return "".join(parts)


def report(net: Network, out: Path, quick: bool) -> str:
    """The static explorer report of the atlas the mining section wrote (opens without a server)."""
    from .report import write_report

    atlas_dir = out / "atlas"
    if not (atlas_dir / "atlas.json").is_file():
        return "<h2>Report</h2><p class='note'>skipped: no atlas was mined.</p>"
    path = write_report(atlas_dir, out / "report.html", net=net, max_units=32 if quick else 64,
                        detail_units=1 if quick else 3, progress=False)
    return ("<h2>Explorer report</h2><p>Every mined unit's top patches, and the first units' "
            f'patches beside their guided-backprop projections: <a href="{path.name}">'
            f"{path.name}</a> (a static page). Browse interactively with "
            "<code>convsight serve demo/atlas</code>.</p>")
