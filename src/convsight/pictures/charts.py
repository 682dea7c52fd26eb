"""Line charts drawn with Pillow: curves (x, y) in a labelled frame, with a legend.

>>> chart = line_chart([("Grad-CAM", xs, ys), ("random", xs, ys2)], title="deletion",
...                    xlabel="fraction of pixels deleted", ylabel="probability")
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
from PIL import Image, ImageDraw

from .canvas import Picture, font

# distinguishable colours (Okabe & Ito's palette), then grey for the reference curve
COLOURS = [(0, 114, 178), (213, 94, 0), (0, 158, 115), (204, 121, 167), (230, 159, 0),
           (86, 180, 233), (240, 228, 66), (0, 0, 0)]
GREY = (150, 150, 150)


def _ticks(lo: float, hi: float) -> list[float]:
    span = hi - lo
    step = 10 ** np.floor(np.log10(span)) if span > 0 else 1.0
    for k in (1, 2, 5, 10):
        if span / (step * k) <= 5:
            step *= k
            break
    start = np.ceil(lo / step) * step
    return [float(v) for v in np.arange(start, hi + step * 1e-6, step)]


def line_chart(series: Sequence[tuple], title: str = "", xlabel: str = "", ylabel: str = "",
               size: tuple[int, int] = (420, 300), ylim: tuple[float, float] | None = None,
               reference: str | None = None) -> Picture:
    """Curves ``(name, xs, ys)`` -> float (H, W, 3) picture in [0, 1]. The series named
    ``reference`` is drawn dashed in grey; NaN points are skipped."""
    w, h = size
    left, right, top, bottom = 46, 10, 22, 34
    im = Image.new("RGB", (w, h), "white")
    d = ImageDraw.Draw(im)
    f = font(11)
    xs_all = np.concatenate([np.asarray(s[1], float) for s in series]) if series else np.zeros(1)
    ys_all = np.concatenate([np.asarray(s[2], float) for s in series]) if series else np.zeros(1)
    ys_all = ys_all[np.isfinite(ys_all)]
    x0, x1 = float(np.min(xs_all)), float(np.max(xs_all))
    if ylim is None:
        y0, y1 = (float(ys_all.min()), float(ys_all.max())) if ys_all.size else (0.0, 1.0)
    else:
        y0, y1 = ylim
    x1, y1 = (x1 if x1 > x0 else x0 + 1), (y1 if y1 > y0 else y0 + 1)

    def at(x: float, y: float) -> tuple[float, float]:
        return (left + (x - x0) / (x1 - x0) * (w - left - right),
                h - bottom - (y - y0) / (y1 - y0) * (h - top - bottom))

    d.rectangle([left, top, w - right, h - bottom], outline=(120, 120, 120))
    for t in _ticks(x0, x1):
        px, _ = at(t, y0)
        d.line([px, h - bottom, px, h - bottom + 3], fill=(120, 120, 120))
        d.text((px - 8, h - bottom + 4), f"{t:g}", fill="black", font=f)
    for t in _ticks(y0, y1):
        _, py = at(x0, t)
        d.line([left - 3, py, left, py], fill=(120, 120, 120))
        d.line([left + 1, py, w - right - 1, py], fill=(235, 235, 235))
        d.text((2, py - 6), f"{t:.3g}", fill="black", font=f)
    d.text((left, 4), title, fill="black", font=font(12))
    d.text((left, h - 14), xlabel, fill="black", font=f)
    if ylabel:
        d.text((w - right - 6 * len(ylabel), top + 2), ylabel, fill=(90, 90, 90), font=f)
    colours = iter(COLOURS)
    legend_y = top + 16
    for name, xs, ys in series:
        colour = GREY if name == reference else next(colours, (0, 0, 0))
        pts = [at(float(x), float(y)) for x, y in zip(xs, ys) if np.isfinite(y)]
        for i, (a, b) in enumerate(zip(pts, pts[1:])):
            if name != reference or i % 2 == 0:
                d.line([a, b], fill=colour, width=2)
        d.line([w - right - 110, legend_y + 6, w - right - 92, legend_y + 6], fill=colour, width=2)
        d.text((w - right - 88, legend_y), str(name)[:16], fill="black", font=f)
        legend_y += 14
    return Picture(np.asarray(im, dtype=np.float32) / 255.0)


def table_picture(header: Sequence[str], rows: Sequence[Sequence[str]],
                  shades: Sequence[Sequence[float | None]] | None = None, cell: int = 96,
                  title: str = "") -> Picture:
    """A table as a picture: a header row, then rows of text; ``shades[r][c]`` in [0, 1] colours
    a cell from red (0, worst) to green (1, best), None leaves it white (used for report cards)."""
    size, line = 11, 20
    cell = max(cell, max(len(h) for h in header[1:]) * 7 + 8)
    first = max([len(r[0]) for r in rows] + [len(header[0])]) * 7 + 10
    width = first + cell * (len(header) - 1)
    top = line if title else 0
    img = Image.new("RGB", (width, top + line * (len(rows) + 1)), "white")
    draw = ImageDraw.Draw(img)
    if title:
        draw.text((4, 3), title, fill="black", font=font(size + 1))
    for r, row in enumerate([list(header)] + [list(x) for x in rows]):
        y = top + r * line
        for c, text in enumerate(row):
            x0 = 0 if c == 0 else first + (c - 1) * cell
            x1 = first if c == 0 else x0 + cell
            v = None if r == 0 or c == 0 or shades is None else shades[r - 1][c - 1]
            if v is not None and np.isfinite(v):
                g = float(np.clip(v, 0, 1))
                fill = (int(250 - 70 * g), int(180 + 70 * g), 180)
                draw.rectangle([x0, y, x1 - 1, y + line - 1], fill=fill)
            draw.text((x0 + 4, y + 4), str(text), fill="black", font=font(size))
        draw.line([0, y + line - 1, width, y + line - 1], fill=GREY)
    return Picture(np.asarray(img, dtype=np.float32) / 255.0)
