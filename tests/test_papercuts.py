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
