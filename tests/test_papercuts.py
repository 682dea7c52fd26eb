"""What a newcomer hit first: device errors, names after a plain import, invalid seeds.

Each test runs the call as the docs write it and checks for a one-line ``convsight: error:``
naming the problem and what would be valid, never a traceback and never a silent success.
"""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import torch
from PIL import Image

import convsight
from convsight.cli import main

from .tinynets import tiny_net

NO_GPU = not torch.cuda.is_available()


@pytest.fixture(scope="module")
def small_atlas(tmp_path_factory):
    root = tmp_path_factory.mktemp("papercuts")
    photos = root / "photos"
    photos.mkdir()
    rng = np.random.default_rng(0)
    for i in range(4):
        Image.fromarray(rng.integers(0, 255, (40, 40, 3), dtype=np.uint8)).save(photos / f"{i}.png")
    net = convsight.Network(tiny_net(), input_size=(32, 32))
    convsight.mine(net, photos, ["conv2"], k=2, out=root / "atlas", progress=False)
    return root


def _error_line(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("convsight: error: "), err
    return err[0]


def test_serve_refuses_an_unknown_device_without_model(small_atlas, capsys):
    assert main(["serve", str(small_atlas / "atlas"), "--device", "nonsense", "--port", "0"]) == 2
    line = _error_line(capsys)
    assert "nonsense" in line and "cpu" in line  # names the valid devices


@pytest.mark.skipif(not NO_GPU, reason="this machine has a GPU: --device cuda is valid here")
def test_serve_refuses_cuda_without_a_gpu(small_atlas, capsys):
    assert main(["serve", str(small_atlas / "atlas"), "--device", "cuda", "--port", "0"]) == 2
    assert "cuda" in _error_line(capsys)


@pytest.mark.parametrize("device", ["nonsense"] + (["cuda"] if NO_GPU else []))
def test_mine_refuses_a_bad_device_in_one_line(small_atlas, tmp_path, capsys, device):
    code = main(["mine", str(small_atlas / "photos"), "--layers", "blocks.3", "-o",
                 str(tmp_path / "a"), "--device", device])
    assert code == 2
    line = _error_line(capsys)
    assert repr(device) in line
    if device == "cuda":
        assert "no CUDA GPU" in line and "gloo" in line
    assert not (tmp_path / "a").exists()  # refused before any work


def test_report_and_faces_after_a_plain_import():
    code = ("import convsight\n"
            "assert callable(convsight.report.write_report)\n"
            "assert callable(convsight.faces.train_face_network)\n")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr


@pytest.mark.parametrize("seed", [None, "0", 1.5, -1, True])
def test_invalid_seeds_are_convsight_errors(seed):
    net = convsight.Network(tiny_net(), input_size=(16, 16))
    with pytest.raises(convsight.ConvsightError, match="seed"):
        convsight.maximize(net, "class:1", steps=2, seed=seed, progress=False)
    with pytest.raises(convsight.ConvsightError, match="seed"):
        convsight.visualize_layer(net, "conv2", [0], steps=2, seed=seed, progress=False)


def test_numpy_integer_seed_gives_the_same_images():
    net = convsight.Network(tiny_net(), input_size=(16, 16))
    a = convsight.maximize(net, "class:1", steps=3, seed=np.int64(7), progress=False).images
    b = convsight.maximize(net, "class:1", steps=3, seed=7, progress=False).images
    assert torch.equal(a, b)


def test_maximize_size_is_capped(capsys):
    assert main(["maximize", "--target", "class:1", "--size", "50000", "--steps", "1"]) == 2
    line = _error_line(capsys)
    assert "50000" in line and "2048" in line


# ---- issue 24: one-line errors for what a new user tries ---------------------------------------

COMMANDS_WITH_A_DEVICE = [
    ["layers"], ["rf", "blocks.5"], ["filters"], ["maximize", "--target", "class:1"],
    ["attribute", "IMAGE"], ["check", "IMAGE"], ["serve", "--model", "efficientnet_lite0"],
]


@pytest.fixture()
def no_cuda(monkeypatch):
    """This machine as one without a CUDA GPU, whatever it has."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 0)


@pytest.mark.parametrize("command", COMMANDS_WITH_A_DEVICE, ids=lambda c: c[0])
def test_cuda_without_a_gpu_is_one_line_in_every_command(command, no_cuda, photos, tmp_path,
                                                          capsys):
    photos["chelsea"].save(tmp_path / "cat.jpg")
    argv = [str(tmp_path / "cat.jpg") if w == "IMAGE" else w for w in command]
    assert main(argv + ["--device", "cuda"]) == 2
    line = _error_line(capsys)
    assert "'cuda'" in line and "no CUDA GPU" in line


def test_a_gpu_number_this_machine_lacks(monkeypatch, capsys):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    assert main(["layers", "--device", "cuda:5"]) == 2
    line = _error_line(capsys)
    assert "cuda:5" in line and "2 CUDA GPUs" in line and "cuda:1" in line


def test_rf_input_size_is_capped(capsys):
    assert main(["rf", "blocks.5", "--input-size", "100000", "100000"]) == 2
    line = _error_line(capsys)
    assert "100000" in line and "2048" in line
    with pytest.raises(convsight.ReceptiveFieldError, match="2048"):
        convsight.receptive_field(convsight.Network(tiny_net()), "conv2", (100000, 100000))


class FixedHead(torch.nn.Module):
    """A 1-channel 28 x 28 network ending in Flatten + Linear: it runs at 28 px only."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.conv = torch.nn.Conv2d(1, 8, 3)
        self.head = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(8 * 26 * 26, 10))

    def forward(self, x):
        return self.head(torch.relu(self.conv(x)))


def test_maximize_a_bare_module_at_the_size_asked():
    module = FixedHead()
    out = convsight.maximize(module, "class:3", size=28, steps=4, progress=False)  # default preset
    assert out.images.shape == (1, 1, 28, 28) and torch.isfinite(out.trace).all()
    layer = convsight.visualize_layer(convsight.Network(module, input_size=28), "conv", [0, 1],
                                      size=28, steps=2, progress=False)
    assert layer.images.shape == (2, 1, 28, 28)


def test_a_bare_module_at_a_size_it_cannot_take_says_how_to_declare_one():
    for call in (lambda: convsight.maximize(FixedHead(), "class:3", steps=2, progress=False),
                 lambda: convsight.visualize_layer(FixedHead(), "conv", [0], steps=2,
                                                   progress=False)):
        with pytest.raises(convsight.ConvsightError) as err:
            call()
        message = str(err.value)
        assert "\n" not in message and "Network(module, input_size=(H, W))" in message


def test_set_suggests_the_knob_meant(capsys):
    assert main(["maximize", "--target", "class:1", "--set", "blur_radus=1", "--steps", "1"]) == 2
    assert "Did you mean: blur_radius" in _error_line(capsys)


def test_units_past_the_layer_are_all_named(capsys):
    assert main(["maximize", "--layer", "blocks.5", "--units", "70-90", "--steps", "1"]) == 2
    line = _error_line(capsys)
    assert "80-90" in line and "0..79" in line
    assert main(["filters", "--layer", "conv_stem", "--units", "30-34"]) == 2
    assert "32-34" in _error_line(capsys)


def test_filters_of_a_linear_layer_name_the_option(capsys):
    assert main(["filters", "--layer", "fc"]) == 2
    assert "--input-shape C,H,W" in _error_line(capsys)


def test_ctrl_c_in_a_stored_layer_synthesis_says_how_to_resume(monkeypatch, tmp_path, capsys):
    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(convsight, "visualize_layer", interrupted)
    atlas = str(tmp_path / "atlas")
    assert main(["maximize", "--layer", "blocks.5", "--atlas", atlas]) == 130
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "run the same command again to continue" in err[0] and atlas in err[0]


def test_layer_grid_of_a_synthesised_layer_that_was_not_mined(small_atlas, tmp_path):
    import shutil

    root = tmp_path / "atlas"
    shutil.copytree(small_atlas / "atlas", root)
    net = convsight.Network(tiny_net(), input_size=(32, 32))
    convsight.visualize_layer(net, "conv1", [0, 1, 2, 3], steps=2, size=16, atlas=root,
                              progress=False)
    atlas = convsight.Atlas.open(root)
    assert "conv1" not in atlas.layers
    assert atlas.layer_grid("conv1", channels=range(8), tile=20).shape[1] > 3 * 20  # 3 columns
    grid = atlas.layer_grid("conv1", tile=20)  # the 4 units that have a synthesis
    assert grid.ndim == 3 and grid.shape[2] == 3
    # 2 x 2 cells of 20 px tiles (plus pads and labels) holding the syntheses
    assert 2 * 20 <= grid.shape[1] < 2 * 20 + 40
    for c in range(4):
        tile = np.asarray(atlas.synthesis("conv1", c).resize((20, 20)), np.float32) / 255
        assert min(np.abs(grid[y:y + 20, x:x + 20] - tile).mean()
                   for y in range(grid.shape[0] - 19) for x in range(grid.shape[1] - 19)) < 0.03
    with pytest.raises(convsight.UnitError, match="0..7"):
        atlas.layer_grid("conv1", channels=[9])
