"""The atlas on disk and its pictures: patches checked against receptive fields worked out by hand."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from torch import nn

import convsight
from convsight.images import list_images, load_image, to_tensor
from convsight.mining import photo_folder
from convsight.figures.atlas import _tile


class TwoConvs(nn.Module):
    """conv 5x5 stride 2 pad 2 -> ReLU -> conv 3x3 stride 2 pad 1.

    By hand (Araujo et al. 2019): conv2 sees r = 1 + 4*1 + 2*2 = 9 pixels, stride S = 4, padding
    P = 2 + 1*2 = 4, so unit u covers input rows/columns 4u - 4 .. 4u + 4.
    """

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.conv1 = nn.Conv2d(3, 4, 5, stride=2, padding=2)
        self.relu = nn.ReLU()
        self.conv2 = nn.Conv2d(4, 6, 3, stride=2, padding=1)

    def forward(self, x):
        return self.conv2(self.relu(self.conv1(x)))


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    root = tmp_path_factory.mktemp("photos")
    photo_folder(root, n=12, seed=11, min_side=48, max_side=96)
    return root


@pytest.fixture(scope="module")
def tiny():
    return convsight.Network(TwoConvs().eval(), mean=(0.5,) * 3, std=(0.5,) * 3, input_size=(32, 32))


@pytest.fixture(scope="module")
def atlas(tiny, folder, tmp_path_factory):
    out = tmp_path_factory.mktemp("atlas")
    return convsight.mine(tiny, folder, ["conv1", "conv2"], k=4, batch_size=5, out=out, progress=False)


def expected_patch(atlas, hit) -> tuple[np.ndarray, tuple[int, int, int, int]]:
    """The hand-computed box cut from the preprocessed image, padded with the image's mean colour."""
    x = to_tensor(load_image(hit.path), (32, 32), atlas.resize_ratio).numpy()
    top, left = 4 * hit.y - 4, 4 * hit.x - 4
    out = np.empty((3, 9, 9), np.float32)
    out[:] = x.reshape(3, -1).mean(axis=1)[:, None, None]
    for i in range(9):
        for j in range(9):
            if 0 <= top + i < 32 and 0 <= left + j < 32:
                out[:, i, j] = x[:, top + i, left + j]
    return (out.transpose(1, 2, 0) * 255), (top, left, top + 8, left + 8)


def test_patches_are_the_receptive_field_boxes(atlas, tiny):
    checked = 0
    for c in range(6):
        for rank, hit in enumerate(atlas.top("conv2", c)):
            want, box = expected_patch(atlas, hit)
            assert atlas.box("conv2", c, rank, net=tiny) == box
            got = np.asarray(atlas.patch("conv2", c, rank, net=tiny), dtype=np.float32)
            assert got.shape == (9, 9, 3)
            assert np.abs(got - want).max() <= 1.0, (c, rank, hit)
            clipped = np.asarray(atlas.patch("conv2", c, rank, net=tiny, clip=True))
            t, l = max(box[0], 0), max(box[1], 0)
            assert clipped.shape[:2] == (min(box[2], 31) - t + 1, min(box[3], 31) - l + 1)
            checked += 1
    assert checked == 24


def test_atlas_round_trip(atlas, tiny, folder):
    again = convsight.Atlas.open(atlas.path)
    assert again.layers == ["conv1", "conv2"] and again.k == 4 and again.image_count == 12
    assert again.image_paths == [str(p.resolve()) for p in list_images(folder)]
    assert again.input_size == (32, 32) and again.mean == (0.5, 0.5, 0.5)
    assert again.shapes == {"conv1": (4, 16, 16), "conv2": (6, 8, 8)}
    for layer in again.layers:
        for c in range(again.channels(layer)):
            assert again.top(layer, c) == atlas.top(layer, c)
            values = [h.value for h in again.top(layer, c)]
            assert values == sorted(values, reverse=True)
    meta = json.loads((atlas.path / "atlas.json").read_text())
    assert meta["format"] == "convsight-atlas" and meta["layers"][1] == {
        "name": "conv2", "shape": [6, 8, 8], "crop": "exact"}  # finite exact field: exact boxes
    with np.load(atlas.path / "top.npz") as z:
        assert z["layer1_image"].shape == (6, 4) and z["layer1_value"].dtype == np.float32
        assert z["layer1_box"].shape == (6, 4, 4)
    # a hit's value is the unit's activation at (y, x) on the preprocessed image
    hit = again.top("conv2", 2)[0]
    with torch.no_grad():
        act = tiny.module(tiny.preprocess(hit.path))
    assert float(act[0, 2, hit.y, hit.x]) == pytest.approx(hit.value, abs=1e-5)
    assert float(act[0, 2].max()) == pytest.approx(hit.value, abs=1e-5)


def test_queries_name_bad_values(atlas):
    with pytest.raises(convsight.UnitError, match="valid channels are 0..5"):
        atlas.top("conv2", 6)
    with pytest.raises(convsight.UnknownLayerError, match="conv1, conv2"):
        atlas.top("conv3", 0)
    with pytest.raises(convsight.UnitError, match="rank 4"):
        atlas.patch("conv2", 0, 4)
    with pytest.raises(convsight.ConvsightError, match="custom model"):
        atlas.network()
    with pytest.raises(convsight.ConvsightError, match="no atlas"):
        convsight.Atlas.open(atlas.path / "nowhere")


def test_dataset_atlas_needs_its_images(tiny, folder, tmp_path):
    images = [load_image(p) for p in list_images(folder)[:6]]
    mined = convsight.mine(tiny, images, ["conv2"], k=2, out=tmp_path, progress=False)
    assert np.asarray(mined.patch("conv2", 0, 0, net=tiny)).shape == (9, 9, 3)
    opened = convsight.Atlas.open(tmp_path)
    with pytest.raises(convsight.ConvsightError, match="atlas.source"):
        opened.patch("conv2", 0, 0, net=tiny)
    opened.source = images
    assert np.array_equal(np.asarray(opened.patch("conv2", 0, 0, net=tiny)),
                          np.asarray(mined.patch("conv2", 0, 0, net=tiny)))


def test_layer_grid_holds_each_units_patches(atlas, tiny):
    img = atlas.layer_grid("conv2", net=tiny, tile=24)
    cell = 2 * 24 + 3 * 1  # k = 4: 2x2 tiles with 1 px gaps
    assert img.shape == (2 * (cell + 13) + 3 * 6, 3 * cell + 4 * 6, 3)  # 6 units in 3 columns
    one = atlas.layer_grid("conv2", channels=[3], net=tiny, tile=24)
    first = _tile(atlas.patch("conv2", 3, 0, net=tiny, clip=True), 24)
    y0, x0 = 6 + 13 + 1, 6 + 1
    assert np.abs(one[y0:y0 + 24, x0:x0 + 24] - first).max() <= 1 / 255 + 1e-6
    with pytest.raises(convsight.UnitError, match="out of range"):
        atlas.layer_grid("conv2", channels=[9], net=tiny)


@pytest.mark.parametrize("method", ["guided", "deconv", "gradient"])
def test_unit_figure(atlas, tiny, method):
    img = atlas.unit_figure("conv2", 1, net=tiny, method=method)
    assert img.ndim == 3 and img.shape[2] == 3 and img.shape[1] == 3 * (2 * 128 + 2) + 4 * 4
    with pytest.raises(convsight.ConvsightError, match="guided"):
        atlas.unit_figure("conv2", 1, net=tiny, method="lrp")


def test_network_is_rebuilt_for_named_models(lite0, folder, tmp_path):
    net = convsight.Network(lite0.module, mean=lite0.mean, std=lite0.std, input_size=(48, 48),
                            name=lite0.name, info=dict(lite0.info))
    convsight.mine(net, list_images(folder)[:4], ["blocks.3"], k=2, out=tmp_path, progress=False)
    opened = convsight.Atlas.open(tmp_path)
    assert opened.model_name == "efficientnet_lite0" and opened.weights is None
    rebuilt = opened.network()
    assert rebuilt.input_size == (48, 48)
    for (n, a), (_, b) in zip(lite0.module.state_dict().items(), rebuilt.module.state_dict().items()):
        assert torch.equal(a, b), n
    assert np.asarray(opened.patch("blocks.3", 0, 0)).shape[2] == 3


def test_boxes_without_their_rule_are_not_saved(atlas, tmp_path):
    """An Atlas built from another's arrays (boxes included) but without its crop rules saves an
    atlas that opens: boxes are kept only with the rule that made them, else recomputed."""
    assert "box" in atlas.arrays("conv1")
    copy = convsight.Atlas({n: atlas.arrays(n) for n in atlas.layers}, atlas.shapes, atlas.k,
                           atlas.image_paths, [], model_name=atlas.model_name, mean=atlas.mean,
                           std=atlas.std, input_size=atlas.input_size)
    reopened = convsight.Atlas.open(copy.save(tmp_path / "copy"))
    assert "box" not in reopened.arrays("conv1") and reopened.crops == {}
    assert reopened.top("conv1", 0) == atlas.top("conv1", 0)
