"""``convsight check`` end to end on a real photo file, and its errors."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

import convsight
from convsight.cli import main


@pytest.mark.slow
def test_check_command_writes_table_and_pictures(tmp_path, capsys, one_thread):
    photo = tmp_path / "coffee.jpg"
    convsight.sample_images()["coffee"].save(photo)
    out = tmp_path / "check.png"
    assert main(["check", str(photo), "--methods", "gradient,gradcam", "--steps", "4",
                 "--group", "all", "-o", str(out)]) == 0
    text = capsys.readouterr().out
    assert "espresso" in text and "the top class" in text
    for word in ("gradient", "Grad-CAM", "deletion", "insertion", "rho top", "rho all"):
        assert word in text
    fig = np.asarray(Image.open(out))
    curves = np.asarray(Image.open(tmp_path / "check_curves.png"))
    assert fig.shape[1] > 3 * 96 and fig.shape[0] > 2 * 96  # photo + trained + one step; 2 rows
    assert curves.shape[0] > 2 * 200 and curves.shape[1] > 2 * 300  # 2 methods x 2 kinds
    assert curves.std() > 0.05  # something is drawn


def test_check_unknown_method_is_a_one_line_error(tmp_path, capsys):
    photo = tmp_path / "x.png"
    Image.fromarray(np.zeros((32, 32, 3), np.uint8)).save(photo)
    assert main(["check", str(photo), "--methods", "gradient,guidde"]) == 2
    err = capsys.readouterr().err
    assert "unknown method 'guidde'" in err and "Did you mean: guided" in err
    assert "Traceback" not in err


@pytest.mark.slow
def test_check_metrics_prints_the_card(tmp_path, capsys, one_thread):
    photo = tmp_path / "coffee.jpg"
    convsight.sample_images()["coffee"].save(photo)
    out = tmp_path / "check.png"
    assert main(["check", str(photo), "--methods", "gradient,gradcam", "--metrics",
                 "sparseness,relevance_mass,road", "--box", "40,40,180,180", "-o", str(out)]) == 0
    text = capsys.readouterr().out
    assert "espresso" in text
    assert "| method | sparseness ↑ | relevance_mass ↑ | road ↑ |" in text
    for row in ("| gradient |", "| Grad-CAM |", "| random map |"):
        assert row in text
    card = np.asarray(Image.open(tmp_path / "check_card.png"))
    assert card.shape[1] > 300 and card.std() > 0.05
    assert not (tmp_path / "check_curves.png").exists()  # the card instead of the check


@pytest.mark.parametrize("argv,message", [
    (["--metrics", "sparsenes"], "unknown metric 'sparsenes'"),
    (["--metrics", "relevance_mass", "--box", "1,2,3"], "--box takes four integers"),
    (["--metrics", "relevance_mass", "--box", "0,0,500,5"], "is not inside the"),
])
def test_check_metrics_errors_are_one_line(tmp_path, capsys, argv, message):
    photo = tmp_path / "x.png"
    Image.fromarray(np.zeros((32, 32, 3), np.uint8)).save(photo)
    assert main(["check", str(photo), "--methods", "gradient"] + argv) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err and err.count("\n") <= 2
