"""Demo section: the static explorer report of the atlas the mining section wrote."""

from __future__ import annotations

from pathlib import Path

from ..models import Network
from ..progress import ProgressArg
from ..report import write_report

STEP = "writing the static report of the atlas"


def section(net: Network, out: Path, quick: bool, progress: ProgressArg = False) -> str:
    """The static explorer report of the atlas the mining section wrote (opens without a server).

    The trust lines under detailed units (a few seconds each) are left out to keep the demo
    short; ``convsight report`` adds them."""
    atlas_dir = out / "atlas"
    if not (atlas_dir / "atlas.json").is_file():
        return "<h2>Report</h2><p class='note'>skipped: no atlas was mined.</p>"
    path = write_report(atlas_dir, out / "report.html", net=net, max_units=32 if quick else 64,
                        detail_units=1 if quick else 2, trust=False, progress=progress)
    return ("<h2>Explorer report</h2><p>Every mined unit's top patches, and the first units' "
            f'patches beside their guided-backprop projections: <a href="{path.name}">'
            f"{path.name}</a> (a static page). <code>convsight report {atlas_dir}</code> adds "
            "how far each projection can be trusted (deletion, insertion and randomisation "
            "scores). Browse interactively with "
            f"<code>convsight serve {atlas_dir}</code>.</p>")
