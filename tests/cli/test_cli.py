"""End-to-end: the foundation's commands on real files, run as a user would."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from convsight.cli import main


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "convsight.cli", *args], capture_output=True,
                          text=True, timeout=300)


def test_layers_command(capsys):
    assert main(["layers"]) == 0
    out = capsys.readouterr().out
    assert "blocks.5" in out and "80x14x14" in out and "conv_head" in out


def test_layers_and_rf_json(capsys):
    assert main(["layers", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["model"] == "efficientnet_lite0" and data["input_size"] == [224, 224]
    rows = {r["name"]: r for r in data["layers"]}
    assert rows["blocks.5"]["shape"] == [80, 14, 14] and rows["blocks.5"]["channels"] == 80
    field = rows["blocks.5"]["receptive_field"]
    assert (field["size"], field["stride"], field["padding"]) == ([83, 83], [16, 16], [26, 26])
    assert rows["fc"]["receptive_field"]["global"] and rows["dropout"]["type"] == "Dropout"
    assert main(["rf", "blocks.5", "--unit", "3@4,5", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["field"]["grid"] == [14, 14] and data["field"]["method"] == "trace"
    # unit (4, 5): rows 4*16 - 26 .. + 82, columns 5*16 - 26 .. + 82
    assert data["unit"] == {"unit": "blocks.5:3@4,5",
                            "box": {"top": 38, "left": 54, "bottom": 120, "right": 136}}
    assert main(["rf", "blocks.5", "--unit", "3@40,5", "--json"]) == 2
    assert "out of range" in capsys.readouterr().err


def test_filters_command(tmp_path, capsys):
    out = tmp_path / "filters.png"
    assert main(["filters", "-o", str(out)]) == 0
    img = np.asarray(Image.open(out))
    assert img.ndim == 3 and img.shape[0] >= 6 * 48
    assert main(["filters", "--layer", "blocks.1.depthwise_conv", "--units", "0,1,2",
                 "-o", str(tmp_path / "dw.png")]) == 0


def test_errors_are_one_line_messages(tmp_path):
    r = run_cli("filters", "--layer", "blocks.55", "-o", str(tmp_path / "x.png"))
    assert r.returncode == 2
    assert "unknown layer 'blocks.55'" in r.stderr and "Traceback" not in r.stderr
    r = run_cli("layers", "--model", "resnet18", "--weights", str(tmp_path / "none.pth"))
    assert r.returncode == 2 and "weights file not found" in r.stderr
    r = run_cli("filters", "--units", "a,b")
    assert r.returncode == 2 and "ranges such as 0-31" in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1 and r.stderr.startswith("convsight: error:")


@pytest.mark.slow
def test_demo_quick(tmp_path):
    r = run_cli("demo", "--quick", "-o", str(tmp_path / "demo"))
    assert r.returncode == 0, r.stderr
    index = tmp_path / "demo" / "index.html"
    assert str(index) in r.stdout
    html = index.read_text()
    for name in ("filters.png", "face_units.png", "photo_chelsea.png"):
        assert name in html and (tmp_path / "demo" / name).is_file()
    assert "tiger cat" in html or "tabby" in html or "Egyptian cat" in html
    # each section is named before it runs, with an estimate; its seconds are on the page, in
    # timings.json and in the summary, with the commands that open the live view and the atlas
    assert "[4/9] mining the top-9 patches of blocks.1" in r.stderr and " s left)" in r.stderr
    timings = json.loads((tmp_path / "demo" / "timings.json").read_text())
    assert len(timings["sections"]) == 9 and html.count("this section took") == 9
    for t in timings["sections"]:
        assert f"{t['seconds']:6.1f} s  {t['section']}: {t['step']}" in r.stdout
        assert f"{t['section']} {t['seconds']:.1f} s" in html
    assert "convsight live" in r.stdout and f"serve {tmp_path / 'demo' / 'atlas'}" in r.stdout
    assert "<code>convsight live</code>" in html


def test_samples_writes_the_files_the_docs_name(tmp_path, capsys):
    import convsight
    from convsight.images import list_images

    assert main(["samples", "-o", str(tmp_path / "s"), "--crops", "3"]) == 0
    for name, image in convsight.sample_images().items():
        written = np.asarray(Image.open(tmp_path / "s" / f"{name}.jpg").convert("RGB"), np.float32)
        assert written.shape == np.asarray(image).shape
        assert np.abs(written - np.asarray(image, np.float32)).mean() < 3  # JPEG, quality 95
    assert len(list_images(tmp_path / "s")) == 5 + 3
    assert "chelsea.jpg" in capsys.readouterr().out
