"""examples/tour.ipynb runs end to end in a real kernel, and its results show as pictures."""

from __future__ import annotations

import base64
import io
from pathlib import Path

import pytest
from PIL import Image

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")
pytest.importorskip("ipykernel")

TOUR = Path(__file__).resolve().parents[1] / "examples" / "tour.ipynb"
PICTURES = ("photos", "filters", "layer_grid", "receptive_field", "attribution", "synthesis", "show")


def _png(data: str) -> Image.Image:
    image = Image.open(io.BytesIO(base64.b64decode(data)))
    image.load()
    return image


def test_tour_is_stored_without_outputs():
    nb = nbformat.read(TOUR, as_version=4)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert code and all(not c.outputs and c.execution_count is None for c in code)
    tags = {t for c in code for t in c.metadata.get("tags", [])}
    assert set(PICTURES) | {"atlas"} <= tags


@pytest.mark.slow
def test_tour_runs_and_shows_pictures(tmp_path, monkeypatch):
    monkeypatch.setenv("CONVSIGHT_TOUR_QUICK", "1")  # smaller sizes; the same cells
    nb = nbformat.read(TOUR, as_version=4)
    nbclient.NotebookClient(nb, timeout=900, kernel_name="python3",
                            resources={"metadata": {"path": str(tmp_path)}}).execute()
    by_tag = {c.metadata["tags"][0]: c for c in nb.cells
              if c.cell_type == "code" and c.metadata.get("tags")}
    for cell in nb.cells:
        assert not [o for o in cell.get("outputs", []) if o.output_type == "error"]
    for tag in PICTURES:
        pngs = [o.data["image/png"] for o in by_tag[tag].outputs if "image/png" in o.get("data", {})]
        assert len(pngs) == 1, f"cell {tag} shows no picture"
        image = _png(pngs[0])
        assert image.width >= 64 and image.height >= 64, (tag, image.size)
    assert _png(by_tag["filters"].outputs[0].data["image/png"]).size[0] >= 6 * 48  # 32 tiles
    html = next(o.data["text/html"] for o in by_tag["atlas"].outputs if "text/html" in o.get("data", {}))
    assert html.count("data:image/png;base64,") == 3  # one picture per mined layer
    assert "blocks.5" in html and "receptive field 83 px, stride 16" in html
    assert (tmp_path / "tour_photos").is_dir()
    # the synthesis's progress bar: one output redrawn in place, not one output per redraw
    outputs = by_tag["synthesis"].outputs
    assert not [o for o in outputs if o.output_type == "stream"], outputs
    assert len([o for o in outputs if o.output_type == "display_data"]) <= 1
