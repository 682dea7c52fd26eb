"""``convsight demo``: one folder with an ``index.html`` showing what convsight sees in a network.

Each module of this package is one *section*: its ``section(net, folder, quick, progress=False)
-> html`` writes its pictures into ``folder`` and returns an HTML fragment linking them, and its
``STEP`` says in a few words what it runs. ``SECTIONS`` lists them in page order.

With ``progress=True`` the demo names each section before it runs it (``[4/9] mining blocks.1,
... (demo: about 40 s left)``) and the section draws its own progress bar. Every section's
seconds, measured in the run, are written on the page, in ``timings.json`` beside it, and printed
by ``convsight demo`` at the end.
"""

from __future__ import annotations

import html
import inspect
import json
import sys
import time
from pathlib import Path
from typing import Callable

from ..models import Network, as_network, load_model
from ..progress import ProgressArg
from . import (attribution, filters, layers, microscope, mining, predictions, report, sanity,
               synthesis)

Section = Callable[..., str]
SECTIONS: list[Section] = [predictions.section, layers.section, filters.section, mining.section,
                           microscope.section, report.section, attribution.section, sanity.section,
                           synthesis.section]

# Seconds of each section (quick, full): processor time of one thread, measured in a run of the
# default model; used only for the estimate printed before a section, rescaled by how fast the
# sections before it ran on this machine.
EXPECTED = {"predictions": (0.7, 0.7), "layers": (0.1, 0.1), "filters": (0.2, 0.3),
            "mining": (1.6, 6.3), "microscope": (2.0, 8.2), "report": (1.4, 2.7),
            "attribution": (1.0, 2.9), "sanity": (1.4, 2.5), "synthesis": (4.8, 14.5)}

PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>convsight demo: {name}</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1100px; color: #222; }}
h1 {{ margin-bottom: 0; }} .sub {{ color: #666; margin-top: .2em; }}
section {{ margin: 2.5em 0; }} img {{ max-width: 100%; image-rendering: pixelated; }}
table {{ border-collapse: collapse; font-size: 13px; }}
td, th {{ border-bottom: 1px solid #ddd; padding: 2px 8px; text-align: left; }}
.cards {{ display: flex; flex-wrap: wrap; gap: 1em; }} .card {{ width: 200px; }}
.card img {{ width: 200px; image-rendering: auto; }} .note {{ color: #666; font-size: 90%; }}
.time {{ color: #888; font-size: 85%; text-align: right; margin: .3em 0 0; }}
</style></head><body>
<h1>convsight: how {name} sees</h1>
<p class="sub">input {h}x{w}, weights: {weights}; made in {seconds:.0f} s ({times})</p>
{live}
{body}
</body></html>
"""


def section_name(section: Section) -> str:
    """A section's short name: its module's (``mining``)."""
    return section.__module__.rsplit(".", 1)[-1]


def section_step(section: Section) -> str:
    """What a section runs, in a few words (its module's ``STEP``)."""
    return str(getattr(sys.modules.get(section.__module__), "STEP", section_name(section)))


def next_steps(out: str | Path) -> list[tuple[str, str]]:
    """The commands that open the live view and the explorer on a demo folder, with what they do
    (the explorer only when the demo mined an atlas)."""
    steps = [("convsight live", "the live view: the default model's layers, live, on your camera "
                                "or the sample photos")]
    atlas = Path(out) / "atlas"
    if (atlas / "atlas.json").is_file():
        steps.append((f"convsight serve {atlas}", "the explorer on this demo's atlas (units, "
                                                  "patches, syntheses, and its live page)"))
    return steps


def _estimate(chosen: list[Section], done: int, elapsed: float, quick: bool) -> float:
    """Seconds left for sections ``done..``: their expected seconds, times how much slower (or
    faster) than expected the finished ones ran."""
    expected = [EXPECTED.get(section_name(s), (1, 1))[0 if quick else 1] for s in chosen]
    so_far = sum(expected[:done])
    speed = elapsed / so_far if so_far >= 1 else 1.0
    return sum(expected[done:]) * speed


def _run(section: Section, net: Network, out: Path, quick: bool, progress: bool) -> str:
    if "progress" in inspect.signature(section).parameters:
        return section(net, out, quick, progress=progress)
    return section(net, out, quick)


def demo(out: str | Path = "demo", model: Network | None = None, quick: bool = False,
         sections: list[Section] | None = None, progress: ProgressArg = True) -> Path:
    """Write the demo folder and return the path of its ``index.html``.

    ``progress``: True names each section on stderr before it runs, with an estimate of the time
    left, and lets the section draw its own bar; False prints nothing; ``fn(done, total)`` is
    called after each section.
    """
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    net = as_network(model) if model is not None else load_model()
    chosen = sections or SECTIONS
    start = time.time()
    parts, timings = [], []
    for i, section in enumerate(chosen):
        if progress is True:
            left = _estimate(chosen, i, time.time() - start, quick)
            print(f"[{i + 1}/{len(chosen)}] {section_step(section)} (demo: about {left:.0f} s "
                  "left)", file=sys.stderr, flush=True)
        began = time.time()
        fragment = _run(section, net, out, quick, progress is True)
        seconds = round(time.time() - began, 2)  # the same number on the page and in the file
        timings.append({"section": section_name(section), "step": section_step(section),
                        "seconds": seconds})
        parts.append(f"<section>{fragment}<p class='time'>this section took {seconds:.1f} s"
                     "</p></section>")
        if callable(progress) and not isinstance(progress, bool):
            progress(i + 1, len(chosen))
    total = time.time() - start
    times = ", ".join(f"{html.escape(t['section'])} {t['seconds']:.1f} s" for t in timings)
    live = "<p class='note'>Open it live: " + "; ".join(
        f"<code>{html.escape(cmd)}</code>: {html.escape(what)}" for cmd, what in next_steps(out)
    ) + ".</p>"
    page = PAGE.format(name=html.escape(net.name), h=net.input_size[0], w=net.input_size[1],
                       weights=html.escape(str(net.info.get("weights", "?"))), seconds=total,
                       times=times, live=live, body="\n".join(parts))
    (out / "timings.json").write_text(json.dumps(
        {"quick": quick, "seconds": round(total, 2), "sections": timings}, indent=1) + "\n",
        encoding="utf-8")
    index = out / "index.html"
    index.write_text(page, encoding="utf-8")
    return index
