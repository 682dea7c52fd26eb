"""Pictures of attributions: display kinds, the figure, the ``convsight attribute`` command."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

import convsight
from convsight.figures import attribution_figure
from convsight.pictures import render_attribution
from convsight.cli import main

from ..tinynets import tiny_net


def test_rgb_zero_is_grey_and_percentile_clips_outliers():
    a = torch.zeros(3, 20, 20)
    assert np.allclose(render_attribution(a, "rgb"), 0.5)
    a[0, :10] = 1.0     # red channel up in the top half
    a[2, 10:] = -1.0    # blue channel down in the bottom half
    a[1, 0, 0] = 1000.0  # one outlier must not wash the rest out
    img = render_attribution(a, "rgb", percentile=99)
    assert img.shape == (20, 20, 3) and img.min() >= 0 and img.max() <= 1
    assert img[5, 5, 0] == pytest.approx(1.0) and img[5, 5, 1] == pytest.approx(0.5)
    assert img[15, 5, 2] == pytest.approx(0.0) and img[15, 5, 0] == pytest.approx(0.5)


def test_signed_uses_the_diverging_map():
    a = torch.zeros(3, 4, 4)
    a[:, 0] = 1.0
    a[:, 3] = -1.0
    img = render_attribution(a, "signed")
    assert np.allclose(img[0, 0], [1, 0, 0])       # positive: red
    assert np.allclose(img[3, 0], [0, 0, 1])       # negative: blue
    assert np.allclose(img[1, 0], [1, 1, 1])       # zero: white


def test_saliency_is_max_abs_over_channels():
    a = torch.tensor([[[1.0, 0.0]], [[-3.0, 0.5]], [[2.0, -1.0]]])  # (3, 1, 2)
    img = render_attribution(a, "saliency", percentile=100)
    assert np.allclose(img[0, :, 0], [1.0, 1.0 / 3.0])
    assert np.allclose(img[..., 0], img[..., 2])


def test_heatmap_overlay_and_errors():
    cam = torch.zeros(1, 8, 8)
    cam[0, 2, 3] = 5.0
    heat = render_attribution(cam, "heatmap")
    assert np.allclose(heat[2, 3], [0.5, 0, 0])  # jet at 1: dark red
    assert np.allclose(heat[0, 0], [0, 0, 0.5])  # jet at 0: dark blue
    photo = np.ones((16, 16, 3), dtype=np.float32)  # resized to the map's size
    over = render_attribution(cam, "heatmap", image=photo, alpha=0.5)
    assert over.shape == (8, 8, 3) and np.allclose(over[0, 0], [0.5, 0.5, 0.75])
    with pytest.raises(convsight.ConvsightError, match="signed, saliency, rgb, heatmap"):
        render_attribution(cam, "hot")
    with pytest.raises(convsight.ConvsightError, match="shape"):
        render_attribution(torch.zeros(2, 3, 4, 4))


def test_figure_has_a_row_per_target_and_a_column_per_method():
    net = convsight.Network(tiny_net(), input_size=(32, 32))
    fig = attribution_figure(net, torch.rand(3, 32, 32), [None, "conv3:1", "class:2"],
                             methods=["gradient", "guided", "deconv", "gradcam"])
    tile_h, tile_w, pad = 3 * 32 + 16, 3 * 32, 4  # inputs under 96 px are drawn 3x larger
    assert fig.shape == (3 * tile_h + 4 * pad, 5 * tile_w + 6 * pad, 3)
    # the photo tile is the input, enlarged by nearest neighbour, under its caption
    x = torch.rand(3, 32, 32)
    fig = attribution_figure(net, x, "class:2", methods=["gradient"])
    shown = np.asarray(fig[pad + 16:pad + tile_h, pad:pad + tile_w])
    expected = np.repeat(np.repeat(net.denormalize(x[None])[0].clamp(0, 1).permute(1, 2, 0).numpy(),
                                   3, axis=0), 3, axis=1)
    assert shown.shape == expected.shape
    assert np.abs(shown - np.round(expected * 255) / 255).max() < 1 / 255 + 1e-6


@pytest.mark.slow
def test_attribute_command(tmp_path, photos, capsys):
    path = tmp_path / "cat.jpg"
    Image.fromarray(np.asarray(photos["chelsea"])).save(path)
    out = tmp_path / "fig.png"
    assert main(["attribute", str(path), "--target", "class:281", "--target", "blocks.5:3",
                 "--methods", "gradient,guided,deconv", "-o", str(out)]) == 0
    img = np.asarray(Image.open(out))
    assert img.shape[0] > 2 * 224 and img.shape[1] > 4 * 224
    assert "2 target(s)" in capsys.readouterr().out
    assert main(["attribute", str(path), "--methods", "guided,sailency", "-o", str(out)]) == 2
    assert "unknown method sailency" in capsys.readouterr().err
    assert main(["attribute", str(path), "--target", "blocks.99:1", "-o", str(out)]) == 2


def test_public_names():
    """``convsight.attribute`` is callable and is also the package holding the helpers."""
    import convsight.pictures.attribution as display

    assert callable(convsight.attribute)
    assert convsight.pictures.render_attribution is render_attribution is display.render_attribution
    assert convsight.figures.attribution_figure is attribution_figure
    x = torch.rand(1, 3, 32, 32)
    net = convsight.Network(tiny_net(), input_size=(32, 32))
    assert torch.equal(convsight.attribute(net, x, 1), convsight.attribute.attribute(net, x, 1))
