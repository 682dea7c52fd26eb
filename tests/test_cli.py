"""End-to-end: the foundation's commands on real files, run as a user would."""

from __future__ import annotations

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
    assert r.returncode == 2 and "comma-separated integers" in r.stderr


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
