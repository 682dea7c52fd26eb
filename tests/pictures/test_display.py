"""Results that show themselves in a notebook: Picture, show, and the reprs of results."""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch
from PIL import Image

import convsight
from convsight.figures import atlas_html, attribution_figure
from convsight.pictures import Picture, as_picture, draw_box, image_grid
from convsight.pictures import display as display_module

from ..tinynets import tiny_net


def _decode(png: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(png)))


def test_picture_is_an_array_that_renders_as_png(tmp_path):
    a = np.random.default_rng(0).random((5, 7, 3)).astype(np.float32)
    pic = Picture(a)
    assert isinstance(pic, np.ndarray) and np.shares_memory(pic, a)  # a view: no copy
    assert np.array_equal(_decode(pic._repr_png_()), np.round(a * 255).astype(np.uint8))
    assert pic[0, 0]._repr_png_() is None  # not an image: IPython falls back to text
    assert Picture(np.zeros((0, 3)))._repr_png_() is None
    path = pic.save(tmp_path / "sub" / "p.png")
    assert np.array_equal(np.asarray(Image.open(path)), _decode(pic._repr_png_()))
    gray = Picture(np.linspace(0, 1, 12).reshape(3, 4))
    assert _decode(gray._repr_png_()).shape == (3, 4)


def test_as_picture_accepts_what_users_have():
    rgb = np.random.default_rng(1).random((3, 6, 8))
    assert np.allclose(as_picture(torch.from_numpy(rgb)), rgb.transpose(1, 2, 0))  # CHW tensor
    assert np.allclose(as_picture(rgb.transpose(1, 2, 0)), rgb.transpose(1, 2, 0))   # HWC array
    u8 = (rgb.transpose(1, 2, 0) * 255).astype(np.uint8)
    assert np.allclose(as_picture(Image.fromarray(u8)), u8 / 255.0)                   # PIL
    assert as_picture(torch.rand(1, 6, 8)).shape == (6, 8)                              # gray
    stretched = as_picture(np.array([[-2.0, 0.0], [2.0, 6.0]]))  # outside [0, 1]: min..max
    assert np.allclose(stretched, [[0, 0.25], [0.5, 1]])
    with pytest.raises(convsight.ImageError, match="cannot show an array of shape"):
        as_picture(np.zeros((2, 3, 4, 5, 6)))


def test_image_grid_labels_stretch_and_sizes():
    batch = torch.rand(3, 3, 10, 12) * 0.5
    pic = image_grid(batch, ncols=3)
    assert pic.shape == (10 + 2 * 4, 3 * 12 + 4 * 4, 3)
    assert np.allclose(pic[4:14, 4:16], batch[0].permute(1, 2, 0).numpy())
    stretched = image_grid(batch[:1], stretch=True)
    assert float(stretched.min()) == 0.0 and float(stretched.max()) == 1.0
    labelled = image_grid(batch, labels=["a", "b", "c"])
    assert labelled.shape[0] == 10 + 16 + 2 * 4
    assert image_grid(batch[:1], min_side=40).shape == (40, 48, 3)   # 4x, nearest neighbour
    assert image_grid(torch.rand(3, 100, 50), max_side=20).shape == (20, 10, 3)
    with pytest.raises(convsight.ImageError, match="2 labels for 3 images"):
        image_grid(batch, labels=["a", "b"])


def test_show_returns_the_picture_outside_a_notebook_and_displays_inside(monkeypatch):
    x = torch.rand(2, 3, 30, 30)
    pic = convsight.show(x, labels=["one", "two"])
    assert isinstance(pic, Picture) and pic.shape[1] >= 2 * 96  # enlarged to 96 px
    shown = []
    monkeypatch.setattr(display_module, "in_notebook", lambda: True)
    import IPython.display

    monkeypatch.setattr(IPython.display, "display", shown.append)
    assert convsight.show(x) is None  # displayed at once, not again as the cell's value
    assert len(shown) == 1 and np.array_equal(shown[0], convsight.pictures.image_grid(
        list(x), min_side=96, max_side=512))
    with pytest.raises(convsight.ImageError, match="at least one image"):
        convsight.show()


def test_draw_box_outlines_a_box_inside_and_outside_the_image():
    img = np.zeros((20, 30, 3), np.float32)
    pic = draw_box(img, (2, 3, 9, 12), width=1)  # inside: the canvas is the image plus 2 px
    assert pic.shape == (24, 34, 3)
    red = np.array([230, 30, 30]) / 255
    assert np.allclose(pic[2 + 1, 2 + 2:2 + 14], red, atol=0.01)  # row above the box
    assert np.allclose(pic[2 + 2:2 + 10, 2 + 3:2 + 13], 0)          # the box itself untouched
    pic = draw_box(img, (-5, -1, 25, 10), caption="big", width=2)
    # margins: the part of the box outside (5 above, 1 left, 6 below) + width + 1
    assert pic.shape == (16 + 5 + 3 + 20 + 6 + 3, 1 + 3 + 30 + 3, 3)


def test_results_display_themselves(tmp_path):
    net = convsight.Network(tiny_net(), input_size=(32, 32))
    fig = attribution_figure(net, torch.rand(3, 32, 32), "class:2", methods=["gradient"])
    assert isinstance(fig, Picture) and fig._repr_png_()[:4] == b"\x89PNG"
    syn = convsight.maximize(net, ["class:1", "conv3:2"], steps=3, size=24, progress=False)
    png = _decode(syn._repr_png_())
    assert np.array_equal(png, _decode(syn.picture()._repr_png_()))
    assert png.shape[1] >= 2 * 144  # two 24 px images enlarged 6x (to reach 128 px), captioned
    plain = syn.picture(stretch=False, labels=False)
    assert plain.shape == (144 + 2 * 4, 2 * 144 + 3 * 4, 3)
    assert np.allclose(plain[4:148:6, 4:148:6], syn.images[0].permute(1, 2, 0).numpy())
    rng = np.random.default_rng(0)
    atlas = convsight.mine(net, [rng.random((40, 40, 3)) for _ in range(4)], ["conv2", "conv3"],
                           k=2, progress=False)
    html = atlas._repr_html_()  # a custom model: its network is needed for receptive fields
    assert "no pictures" in html and "<img" not in html
    html = atlas_html(atlas, units=3, net=net)
    assert html.count("<img") == 2 and "conv3</code> 16x8x8, 16 units" in html
    assert "units 0-2" in html
