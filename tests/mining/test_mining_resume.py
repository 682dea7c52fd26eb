"""Interrupted runs resume to the same atlas; two processes (torchrun, gloo) merge to the same atlas."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

import convsight
from convsight.cli import main
from convsight.images import list_images, load_image
from convsight.mining import photo_folder

from .test_mining import assert_matches, brute_force, small_network

LAYERS = ["blocks.2", "blocks.8", "fc"]
K = 5
REPO = Path(__file__).resolve().parents[2]


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("photos")
    photo_folder(root, n=30, seed=7, min_side=64, max_side=128)
    return root


@pytest.fixture(scope="module")
def net(lite0):
    return small_network(lite0)


@pytest.fixture(scope="module")
def oracle(net, folder):
    return brute_force(net, list_images(folder), LAYERS)


class Photos(torch.utils.data.Dataset):
    """The folder's photos as a Dataset; ``stop_at`` raises KeyboardInterrupt there (a Ctrl-C)."""

    def __init__(self, folder: Path, stop_at: int | None = None) -> None:
        self.paths = list_images(folder)
        self.stop_at = stop_at

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int):
        if i == self.stop_at:
            raise KeyboardInterrupt
        return load_image(self.paths[i]), 0


def assert_same_atlas(a: convsight.Atlas, b: convsight.Atlas, exact_values: bool = True) -> None:
    assert a.layers == b.layers and a.image_paths == b.image_paths and a.skipped == b.skipped
    for name in a.layers:
        for key in ("image", "y", "x"):
            assert np.array_equal(a.arrays(name)[key], b.arrays(name)[key]), (name, key)
        if exact_values:
            assert np.array_equal(a.arrays(name)["value"], b.arrays(name)["value"]), name
        else:
            np.testing.assert_allclose(a.arrays(name)["value"], b.arrays(name)["value"],
                                       rtol=1e-5, atol=1e-5)


def test_resume_after_ctrl_c_gives_the_uninterrupted_atlas(net, folder, oracle, tmp_path):
    whole = convsight.mine(net, Photos(folder), LAYERS, k=K, batch_size=4, progress=False)
    out = tmp_path / "atlas"
    with pytest.raises(KeyboardInterrupt):
        convsight.mine(net, Photos(folder, stop_at=17), LAYERS, k=K, batch_size=4, out=out,
                       checkpoint_every=1e9, progress=False)
    with np.load(out / "checkpoint.npz") as z:  # saved on the way out: the 4 full batches
        assert json.loads(str(z["meta"]))["done"] == 16
    assert not (out / "atlas.json").exists()
    with pytest.raises(convsight.ConvsightError, match="resume=True"):
        convsight.Atlas.open(out)
    resumed = convsight.mine(net, Photos(folder), LAYERS, k=K, batch_size=4, out=out, resume=True,
                             progress=False)
    assert_same_atlas(resumed, whole)
    assert_same_atlas(convsight.Atlas.open(out), whole)
    assert not (out / "checkpoint.npz").exists()
    assert_matches(resumed, oracle, LAYERS, K)
    # resuming a finished run just opens it; another model's checkpoint is refused
    assert_same_atlas(convsight.mine(net, Photos(folder), LAYERS, k=K, out=out, resume=True,
                                     progress=False), whole)


def test_resume_refuses_a_different_run(net, folder, tmp_path):
    out = tmp_path / "atlas"
    with pytest.raises(KeyboardInterrupt):
        convsight.mine(net, Photos(folder, stop_at=9), ["blocks.2"], k=K, batch_size=4, out=out,
                       checkpoint_every=0, progress=False)
    with pytest.raises(convsight.ConvsightError, match="different run.*k was 5, now 3"):
        convsight.mine(net, Photos(folder), ["blocks.2"], k=3, out=out, resume=True, progress=False)


SLOW_MINE = """
import sys, time, torch, convsight
from convsight.images import list_images, load_image
torch.set_num_threads(1)
paths = list_images(sys.argv[1])
class Slow(torch.utils.data.Dataset):
    def __len__(self):
        return len(paths)
    def __getitem__(self, i):
        time.sleep(0.15)
        return load_image(paths[i])
net = convsight.load_model()
net.input_size = (64, 64)
convsight.mine(net, Slow(), {layers!r}, k={k}, batch_size=4, out=sys.argv[2], checkpoint_every=0,
               progress=False)
"""


@pytest.mark.slow
def test_resume_after_kill_9_gives_the_uninterrupted_atlas(net, folder, tmp_path):
    script = tmp_path / "slow_mine.py"
    script.write_text(SLOW_MINE.format(layers=LAYERS, k=K))
    out = tmp_path / "atlas"
    proc = subprocess.Popen([sys.executable, str(script), str(folder), str(out)],
                            start_new_session=True, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 120
        done = 0
        while done < 8:
            assert proc.poll() is None, f"the run ended before it was killed: {proc.stderr.read()}"
            assert time.monotonic() < deadline, "no checkpoint appeared within 120 s"
            time.sleep(0.05)
            try:
                with np.load(out / "checkpoint.npz") as z:
                    done = json.loads(str(z["meta"]))["done"]
            except (OSError, ValueError, KeyError):
                pass
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL and not (out / "atlas.json").exists()
    dataset = Photos(folder)
    resumed = convsight.mine(net, dataset, LAYERS, k=K, batch_size=4, out=out, resume=True,
                             progress=False)
    whole = convsight.mine(net, dataset, LAYERS, k=K, batch_size=4, progress=False)
    assert_same_atlas(resumed, whole)


TORCHRUN_MINE = """
import sys, torch, convsight
torch.set_num_threads(1)
net = convsight.load_model()
net.input_size = (64, 64)
atlas = convsight.mine(net, sys.argv[1], {layers!r}, k={k}, batch_size=5, out=sys.argv[2],
                       progress=False, checkpoint_every=0)
import os, sys
# one write per process, so the two processes' lines cannot interleave
sys.stdout.write("process %s images %d\\n" % (os.environ["RANK"], atlas.image_count))
sys.stdout.flush()
"""


@pytest.mark.slow
def test_two_processes_merge_to_the_single_process_atlas(net, folder, oracle, tmp_path):
    script = tmp_path / "dist_mine.py"
    script.write_text(TORCHRUN_MINE.format(layers=LAYERS, k=K))
    out = tmp_path / "atlas"
    env = dict(os.environ, OMP_NUM_THREADS="1", CONVSIGHT_DIST_TIMEOUT="120")
    proc = subprocess.Popen([sys.executable, "-m", "torch.distributed.run", "--standalone",
                             "--nproc_per_node=2", str(script), str(folder), str(out)],
                            env=env, start_new_session=True, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    try:
        log, _ = proc.communicate(timeout=240)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        log, _ = proc.communicate()
        pytest.fail(f"torchrun did not finish within 240 s:\n{log[-3000:]}")
    assert proc.returncode == 0, log[-3000:]
    assert "process 0 images 30" in log and "process 1 images 30" in log
    merged = convsight.Atlas.open(out)
    assert merged.info["config"]["processes"] == 2
    assert not list(out.glob("checkpoint*"))
    assert_matches(merged, oracle, LAYERS, K)
    single = convsight.mine(net, folder, LAYERS, k=K, batch_size=5, progress=False)
    assert_same_atlas(merged, single, exact_values=False)
    # a finished torchrun run resumes (opens) in one process, as docs/mining.md says
    reopened = convsight.mine(net, folder, LAYERS, k=K, batch_size=5, out=out, resume=True,
                              progress=False)
    assert_same_atlas(reopened, merged)
    assert reopened.info["config"]["processes"] == 2  # opened, not mined again


def test_cli_mine(folder, tmp_path, capsys):
    out = tmp_path / "atlas"
    code = main(["mine", str(folder), "--layers", "blocks.2,fc", "--k", "4", "-o", str(out),
                 "--input-size", "64", "--batch-size", "8", "--quiet", "--grids", "2"])
    assert code == 0
    assert "atlas written" in capsys.readouterr().out
    from PIL import Image

    grid = np.asarray(Image.open(out / "blocks.2.png"))
    assert grid.ndim == 3 and grid.shape[1] >= 2 * (2 * 24 + 3)  # two units of 2x2 patches, >= 24 px
    atlas = convsight.Atlas.open(out)
    assert atlas.layers == ["blocks.2", "fc"] and atlas.k == 4 and atlas.input_size == (64, 64)
    assert atlas.model_name == "efficientnet_lite0" and atlas.image_count == 30
    assert len(atlas.top("fc", 0)) == 4
    assert main(["mine", str(folder), "--layers", "blocks.99", "-o", str(out)]) == 2
    assert "unknown layer 'blocks.99'" in capsys.readouterr().err
