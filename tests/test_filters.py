"""Weight images: first-layer RGB grid, grayscale stacks, Linear units, the face network."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

import convsight
from convsight.faces import train_face_network
from convsight.figures import filter_grid
from convsight.filters import first_conv_layer, weight_images


def _conv_net() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 6, 5), nn.ReLU(), nn.Conv2d(6, 4, 3), nn.Flatten(),
                         nn.Linear(4, 2))


def test_first_layer_rgb_grid_shape_and_count():
    model = _conv_net()
    net = convsight.Network(model, input_size=16)
    assert first_conv_layer(net) == "0"
    tiles = weight_images(net)
    assert len(tiles) == 6 and tiles[0].shape == (5, 5, 3)
    img = filter_grid(net, scale=4, ncols=3)
    pad = 2  # max(2, 4 // 3)
    assert img.shape == (2 * 20 + 3 * pad, 3 * 20 + 4 * pad, 3)
    # count tiles: non-background columns/rows separated by white padding
    assert img.min() >= 0 and img.max() <= 1


def test_sign_colouring():
    model = _conv_net()
    with torch.no_grad():
        model[0].weight.zero_()
        model[0].weight[0, 0] = 1.0    # filter 0: +red only
        model[0].weight[1, 2] = -1.0   # filter 1: -blue only
        model[0].weight[2, 1, 2, 2] = 0.5  # filter 2: one green pixel
    tiles = weight_images(model, "0", per_unit_scale=False)
    assert np.allclose(tiles[0][..., 0], 1.0) and np.allclose(tiles[0][..., 1:], 0.5)
    assert np.allclose(tiles[1][..., 2], 0.0) and np.allclose(tiles[1][..., :2], 0.5)
    assert tiles[2][2, 2, 1] == pytest.approx(0.75) and np.allclose(tiles[3], 0.5)  # zero = grey
    scaled = weight_images(model, "0")  # per-unit: the green pixel reaches full scale
    assert scaled[2][2, 2, 1] == pytest.approx(1.0)


def test_later_layer_stacks_and_linear():
    model = _conv_net()
    stacks = weight_images(model, "2")
    assert len(stacks) == 4 and stacks[0].shape == (6, 3, 3)
    img = filter_grid(model, "2", scale=2)
    assert img.ndim == 2  # grayscale
    lin = weight_images(model, "4", input_shape=(1, 2, 2))
    assert len(lin) == 2 and lin[0].shape == (2, 2)
    with pytest.raises(convsight.UnitError, match="C\\*H\\*W = 4"):
        weight_images(model, "4", input_shape=(3, 2, 2))
    with pytest.raises(convsight.UnitError, match="ReLU.*nn.Conv2d or nn.Linear"):
        weight_images(model, "1")
    with pytest.raises(convsight.UnitError, match=r"valid units are 0\.\.3"):
        weight_images(model, "2", units=[4])


def test_default_model_filters(lite0):
    img = filter_grid(lite0)
    tiles = weight_images(lite0)
    assert len(tiles) == 32 and tiles[0].shape == (3, 3, 3)
    # 32 tiles of 3x3 upscaled x16 -> 48 px, 6 columns x 6 rows
    assert img.shape[0] > 6 * 48 and img.shape[1] > 6 * 48 and img.shape[2] == 3
    dw = weight_images(lite0, "blocks.1.depthwise_conv")
    assert len(dw) == 96 and dw[0].shape == (3, 3)  # depthwise: one grayscale tile per channel


def test_face_network_units_look_like_faces():
    result = train_face_network(hidden=16)
    assert result.test_accuracy >= 0.9
    units = weight_images(result.network, "hidden")
    assert len(units) == 16 and units[0].shape == (25, 25)
    # Independent check that the templates are face-like: each unit's weights correlate with
    # the mean face far more than with the mean non-face.
    from skimage.data import lfw_subset

    data = lfw_subset()
    mean_face, mean_other = data[:100].mean(0), data[100:].mean(0)
    w = result.network.module.hidden.weight.detach().numpy().reshape(16, 25, 25)
    def corr(a, b):
        return float(np.corrcoef(a.ravel(), b.ravel())[0, 1])
    face_corr = np.array([abs(corr(u, mean_face - mean_face.mean())) for u in w])
    other_corr = np.array([abs(corr(u, mean_other)) for u in w])
    assert np.median(face_corr) > 0.3
    assert np.median(face_corr) > np.median(other_corr)
