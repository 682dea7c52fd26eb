"""A 1-channel (grayscale) network through every public function, checked against oracles.

The network (``graynets.stroke_net``) is trained in the tests on synthetic strokes. ``CALLS``
maps each public function to a check on it; every call also runs under ``untouched`` (the model
is left as it was). ``test_registry_covers_the_public_api`` fails when a public function is
added to ``convsight`` or ``convsight.figures`` without a check here.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

import convsight
from convsight.capture import capture, layer_shape, layer_table
from convsight.figures import atlas_html, attribution_figure, filter_grid, layer_grid, unit_figure
from convsight.filters import weight_images
from convsight.images import resize_center_crop, to_tensor
from convsight.receptive.probe import probe_fields
from convsight.targets import evaluate

from .graynets import CLASSES, SIZE, stroke, stroke_net, strokes
from .untouched import untouched

LUMA = np.array([0.299, 0.587, 0.114])  # ITU-R BT.601, the weights of PIL's convert("L")


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    """16 stroke images as gray PNG files (4 of each class)."""
    root = tmp_path_factory.mktemp("strokes")
    rng = np.random.default_rng(11)
    for i in range(16):
        img, _ = stroke(i % 4, rng)
        Image.fromarray((img * 255).round().astype(np.uint8), "L").save(root / f"{i:02d}.png")
    return root


def _stroke_input(net, kind: int, seed: int = 5):
    img, mask = stroke(kind, np.random.default_rng(seed))
    return net.normalize(torch.from_numpy(img)[None, None]), mask


def _gray(picture) -> bool:
    a = np.asarray(picture)
    return a.ndim == 2 or bool(np.allclose(a[..., 0], a[..., 1]) and np.allclose(a[..., 1], a[..., 2]))


# ---- the checks, one per public function ---------------------------------------------------

def _preprocess(net):
    photo = convsight.sample_images()["coffee"]
    x = net.preprocess(photo)
    assert x.shape == (1, 1, SIZE, SIZE)
    rgb = np.asarray(resize_center_crop(photo, (SIZE, SIZE), net.resize_ratio), np.float64)
    expected = (rgb @ LUMA) / 255.0  # luma computed here, not by PIL
    got = net.denormalize(x)[0, 0].double().numpy()
    assert np.abs(got - expected).max() <= 1 / 255 + 1e-6


def _layer_table(net):
    rows = {r.name: r for r in layer_table(net)}
    assert rows["conv1"].shape == (8, 28, 28) and rows["pool2"].shape == (16, 7, 7)
    assert rows["fc"].shape == (4,) and layer_shape(net, "conv3") == (16, 7, 7)


def _capture_and_evaluate(net):
    x, _ = strokes(4, seed=2)
    xn = net.normalize(x)
    with capture(net.module, ["conv3"]) as acts, torch.no_grad():
        logits = net.module(xn)
    assert acts["conv3"].shape == (4, 16, 7, 7)
    values, _ = evaluate(net, xn, "class:1 + 0.5*conv3:2@3,4")
    expected = logits[:, 1] + 0.5 * acts["conv3"][:, 2, 3, 4]
    assert torch.allclose(values, expected, atol=1e-5)


def _receptive_fields(net):
    # by hand: conv 5x5 pad 2 -> (5, 1, 2); pool 2 -> (6, 2, 2); conv 3x3 pad 1 -> (10, 2, 4);
    # pool 2 -> (12, 4, 4); conv 3x3 pad 1 -> (20, 4, 8)
    rf = convsight.receptive_field(net, "conv3")
    assert (rf.size, rf.stride, rf.padding, rf.grid) == ((20, 20), (4, 4), (8, 8), (7, 7))
    assert rf.box(3, 3) == (4, 4, 23, 23)
    probed = probe_fields(net.module, ["conv3"], (SIZE, SIZE), channels=1)["conv3"]
    assert (probed.size, probed.stride, probed.padding) == (rf.size, rf.stride, rf.padding)
    fields = convsight.receptive_fields(net)
    assert fields["pool1"].size == (6, 6) and fields["fc"].is_global


def _effective_boxes(net):
    image = torch.from_numpy(stroke(0, np.random.default_rng(1))[0])[None]  # (1, 28, 28)
    x = net.normalize(image[None])
    rf = convsight.receptive_field(net, "conv3")
    (box,) = convsight.effective_boxes(net, "conv3", x, [(0, 3, 3)], q=0.5)
    top, left, bottom, right = rf.clipped_box(3, 3)
    assert top <= box[0] <= box[2] <= bottom and left <= box[1] <= box[3] <= right


def _receptive_field_draw(net):
    image = torch.from_numpy(stroke(0, np.random.default_rng(1))[0])[None]  # (1, 28, 28)
    rf = convsight.receptive_field(net, "conv2")  # (10, 2, 4): unit (0, 0) sees -4..5
    pic = rf.draw(image, 0, 0)
    assert isinstance(pic, convsight.Picture) and pic._repr_png_()[:4] == b"\x89PNG"
    # the canvas grows by the 4 px the box leaves the image plus the 3 px outline
    caption = 16
    assert pic.shape == (caption + 7 + SIZE + 3, 7 + SIZE + 3, 3)
    red = np.asarray(pic[caption + 2, 5:15])  # the outline's top row, above the box
    assert np.allclose(red, [230 / 255, 30 / 255, 30 / 255], atol=0.01)


def _weight_images(net):
    tiles = weight_images(net)
    w = net.module.conv1.weight.detach()[:, 0].numpy()
    assert len(tiles) == 8 and all(t.shape == (5, 5) for t in tiles)  # grayscale tiles
    for tile, wk in zip(tiles, w):
        assert np.allclose(tile, 0.5 + 0.5 * wk / np.abs(wk).max(), atol=1e-6)


def _filter_grid(net):
    pic = filter_grid(net, scale=4, ncols=4)
    assert pic.ndim == 2 and pic.shape == (2 * 20 + 3 * 2, 4 * 20 + 5 * 2)
    assert np.allclose(pic[2:22, 2:22], np.kron(weight_images(net)[0], np.ones((4, 4))), atol=1e-6)


def _attribute(net):
    x, _ = _stroke_input(net, 1)
    xg = x.clone().requires_grad_(True)
    (oracle,) = torch.autograd.grad(net.module(xg)[0, 1], xg)  # autograd by hand
    ours = convsight.attribute(net, x, "class:1", method="gradient")
    assert torch.allclose(ours, oracle, atol=1e-6)
    for method in ("guided", "deconv", "smoothgrad", "gradcam", "guided-gradcam"):
        kw = {"samples": 3, "seed": 0} if method == "smoothgrad" else {}
        assert convsight.attribute(net, x, None, method=method, **kw).shape == (1, 1, SIZE, SIZE)
    with pytest.raises(convsight.ImageError, match="3 channels but the network takes 1"):
        convsight.attribute(net, torch.rand(1, 3, SIZE, SIZE))


def _guided_backprop_sees_the_stroke(net):
    """Guided backprop concentrates on the stroke, more than the gradient (Springenberg 2015)."""
    for kind in range(len(CLASSES)):
        x, mask = _stroke_input(net, kind)
        ratio = {}
        for method in ("gradient", "guided"):
            a = convsight.attribute(net, x, f"class:{kind}", method=method)[0, 0].abs().numpy()
            ratio[method] = a[mask].mean() / a[~mask].mean()
        assert ratio["guided"] > 3 and ratio["guided"] > ratio["gradient"], (kind, ratio)


def _attribution_figure(net):
    x, _ = _stroke_input(net, 2)
    fig = attribution_figure(net, x[0], [None, "conv3:1"], methods=["gradient", "guided", "deconv"])
    assert isinstance(fig, convsight.Picture) and fig.shape[-1] == 3
    assert _gray(fig)  # gray photo, gray attributions, black captions on white
    # inputs under 96 px are drawn 4x: 2 rows of (caption 16 + 112) and 4 columns of 112
    assert fig.shape == (2 * 128 + 3 * 4, 4 * 112 + 5 * 4, 3)


def _maximize(net):
    """Each class's synthesis is that class for the network, with the stroke's orientation."""
    r = convsight.maximize(net, [f"class:{c}" for c in range(4)], preset="none", steps=100,
                           lr=3000.0, progress=False)
    assert r.images.shape == (4, 1, SIZE, SIZE)
    with torch.no_grad():
        assert net(net.normalize(r.images)).argmax(1).tolist() == [0, 1, 2, 3]
    j = []
    for im in r.images[:, 0].double().numpy():
        gy, gx = np.gradient(im)  # central differences: the orientation is independent of the net
        j.append(((gx * gx).mean(), (gy * gy).mean(), (gx * gy).mean()))
    corr = [jxy / np.sqrt(jxx * jyy) for jxx, jyy, jxy in j]
    assert j[0][0] > 2 * j[0][1]          # vertical: intensity changes along x
    assert j[1][1] > j[1][0]              # horizontal: along y
    assert corr[2] < -0.2 and corr[3] > 0.2  # "\" and "/": opposite signs of gx * gy
    assert r._repr_png_()[:4] == b"\x89PNG"


def _maximize_every_preset(net):
    from convsight.optimize.parameterize import FourierImage

    # the colour decorrelation is RGB's: one channel has none (docs/models.md)
    assert FourierImage(1, 8, 8, channels=1).matrix is None
    assert FourierImage(1, 8, 8).matrix is not None
    assert FourierImage(2, 8, 8, channels=1).image().shape == (2, 1, 8, 8)
    for preset in convsight.optimize.PRESETS:
        r = convsight.maximize(net, ["class:3", "conv3:2"], preset=preset, steps=40, size=28,
                               progress=False)
        assert r.images.shape == (2, 1, 28, 28) and 0 <= float(r.images.min()) <= float(r.images.max()) <= 1
        if preset in ("none", "lucid"):
            assert (r.trace[-1] > r.trace[0]).all(), (preset, r.trace[0], r.trace[-1])


def _mine_and_atlas(net, folder):
    atlas = convsight.mine(net, folder, ["conv2", "conv3"], k=3, batch_size=5, progress=False)
    # brute force: each file read with PIL, every channel's strongest activation, top 3
    files = sorted(folder.glob("*.png"))
    x = torch.stack([torch.from_numpy(np.asarray(Image.open(f), np.float32) / 255.0)[None]
                     for f in files])
    with capture(net.module, ["conv3"]) as acts, torch.no_grad():
        net.module(net.normalize(x))
    peak = acts["conv3"].flatten(2).amax(2)  # (images, channels)
    for c in range(16):
        hits = atlas.top("conv3", c)
        assert [h.image for h in hits] == peak[:, c].argsort(descending=True)[:3].tolist()
        assert np.allclose([h.value for h in hits], peak[:, c].sort(descending=True).values[:3], atol=1e-4)
    hit = atlas.top("conv3", 0)[0]
    patch = atlas.patch("conv3", 0, 0, net=net)
    assert patch.mode == "L" and patch.size == (20, 20)
    rf = convsight.receptive_field(net, "conv3")
    expected = rf.crop(atlas.image(hit.image), hit.y, hit.x)[0].numpy()
    assert np.abs(np.asarray(patch) / 255.0 - expected).max() <= 0.5 / 255 + 1e-6
    assert _gray(atlas.layer_grid("conv3", max_units=4, net=net))
    assert _gray(layer_grid(atlas, "conv2", max_units=2, net=net))
    assert _gray(atlas.unit_figure("conv3", 1, net=net))  # gray patch | gray projection
    assert _gray(unit_figure(atlas, "conv3", 1, net=net, method="deconv"))
    html = atlas_html(atlas, net=net)
    assert html.count("data:image/png;base64,") == 2 and "receptive field 20 px, stride 4" in html


def _atlas_html_without_network(net, folder):
    atlas = convsight.mine(net, folder, ["conv3"], k=2, progress=False)
    html = atlas._repr_html_()  # a custom model cannot be rebuilt by name: the summary says so
    assert "no pictures" in html and "pass net=" in html and "<img" not in html
    assert "Atlas</b> of strokes: top 2 of 16 images" in html


def _write_report(net, folder, tmp_path):
    from convsight.report import write_report

    atlas = convsight.mine(net, folder, ["conv3"], k=2, progress=False)
    out = write_report(atlas, tmp_path / "report.html", net=net, detail_units=1, progress=False)
    assert out.read_text().count("<img") >= 17  # 16 unit cells and the detailed unit


def _show(net):
    x, _ = strokes(2, seed=4)
    one = convsight.show(x[0])  # (1, 28, 28) -> enlarged 4x to reach 96 px
    assert one.shape == (112, 112) and np.allclose(one[::4, ::4], x[0, 0].numpy())
    two = convsight.show(x, labels=["a", "b"])
    assert two.ndim == 3 and _gray(two)
    with torch.no_grad():  # a normalised input (values outside [0, 1]) is stretched to show
        shown = convsight.pictures.as_picture(net.normalize(x[:1])[0])
    assert float(shown.min()) == 0.0 and float(shown.max()) == 1.0


def _faithfulness(net):
    """Deleting the stroke first (the drawn mask, an oracle independent of the network) kills the
    class faster than deleting the background first; inserting it first brings it back faster."""
    x, mask = _stroke_input(net, 2)
    truth = torch.from_numpy(mask.astype(np.float32))[None, None]
    scores = {}
    for name, m in (("stroke", truth), ("background", 1 - truth)):
        for kind in ("deletion", "insertion"):
            auc = convsight.faithfulness(net, x, m, "class:2", kind=kind, steps=16)
            assert auc.shape == (1,) and 0 <= float(auc) <= 1
            scores[name, kind] = float(auc)
    assert scores["stroke", "deletion"] < scores["background", "deletion"] - 0.2, scores
    assert scores["stroke", "insertion"] > scores["background", "insertion"] + 0.2, scores


def _metrics(net):
    """The drawn stroke (an oracle independent of the network) is where a map should point:
    taken as a map it localises itself, and removing it first (ROAD, most relevant first) keeps
    less of the class than removing the background first. The report card runs on gray."""
    x, mask = _stroke_input(net, 2)
    truth = torch.from_numpy(mask.astype(np.float32))[None, None]
    stroke = torch.from_numpy(mask)
    assert float(convsight.metric("relevance_mass", net, x, truth, mask=stroke)) == 1.0
    assert float(convsight.metric("pointing_game", net, x, truth + 0.1 * torch.rand_like(truth),
                                  mask=stroke)) == 1.0
    road = {name: float(convsight.metric("road", net, x, m, "class:2", order="morf",
                                         percentages=[10, 20, 30]))
            for name, m in (("stroke", truth + 1e-3 * torch.rand_like(truth)),
                            ("background", 1 - truth + 1e-3 * torch.rand_like(truth)))}
    assert road["stroke"] < road["background"] - 0.2, road
    card = convsight.evaluate(net, x, "class:2", methods=("gradient", "gradcam"),
                              metrics=("road", "sparseness", "max_sensitivity"),
                              road={"percentages": [20, 60]}, max_sensitivity={"samples": 2})
    assert card.array("road").shape == (2, 1) and _gray(card.figure()) is False  # green cells


def _sanity_check(net):
    x, _ = _stroke_input(net, 1)
    report = convsight.sanity_check(net, x, "class:1", methods=("gradient", "guided"),
                                    progress=False)
    # the parameterised layers of the model, from the output down (read from the module here)
    weighted = [n for n, m in net.module.named_modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    assert report.layers == weighted[::-1]
    for method in ("gradient", "guided"):
        assert report.spearman[method].shape == (len(weighted) + 1, 1)
        assert float(report.spearman[method][0, 0]) == pytest.approx(1.0)
    assert report.figure().ndim in (2, 3)


def _visualize_layer(net, folder, tmp_path):
    """Each unit's synthesis, stored in the atlas as a gray PNG, excites that unit more than the
    other unit's synthesis does (measured here with a forward hook)."""
    atlas = convsight.mine(net, folder, ["conv3"], k=2, out=tmp_path / "atlas", progress=False)
    out = convsight.visualize_layer(net, "conv3", [0, 5], steps=60, size=SIZE, atlas=atlas,
                                    progress=False)
    assert out.images.shape == (2, 1, SIZE, SIZE)
    with capture(net.module, ["conv3"]) as acts, torch.no_grad():
        net.module(net.normalize(out.images))
    mean = acts["conv3"].mean(dim=(2, 3))  # (images, channels)
    assert mean[0, 0] > mean[1, 0] and mean[1, 5] > mean[0, 5]
    stored = atlas.synthesis("conv3", 5)
    assert stored.mode == "L" and stored.size == (SIZE, SIZE)
    assert np.abs(np.asarray(stored) / 255.0 - out.image(5)[0].numpy()).max() <= 0.5 / 255 + 1e-6
    assert _gray(convsight.figures.synthesis_facets(atlas, "conv3", 0))
    assert _gray(convsight.figures.with_synthesis(np.zeros((20, 30), np.float32), stored))
    assert _gray(atlas.layer_grid("conv3", max_units=6, net=net))


def _demo(net, tmp_path):
    from convsight.demo import demo

    index = demo(tmp_path / "demo", model=net, quick=True, progress=False)
    assert "<img" in index.read_text()
    assert Image.open(tmp_path / "demo" / "photo_chelsea.png").mode == "L"


def _web_live(net, tmp_path):
    """The Live page's engine: a colour camera frame becomes the gray input (BT.601 luma), and
    the backward view of a unit is a gray picture."""
    import io

    from convsight.web.explorer import Explorer
    from convsight.web.live import LiveEngine, LiveSettings

    engine = LiveEngine(Explorer(net, cache_dir=tmp_path / "cache"))
    rgb = np.zeros((SIZE, SIZE, 3), np.uint8)
    rgb[:, SIZE // 2 - 2:SIZE // 2 + 2] = (200, 40, 90)  # a vertical stroke, in colour
    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, format="PNG")
    x = net.normalize(torch.from_numpy(rgb @ LUMA / 255).float()[None, None])
    want = torch.softmax(net.module.eval()(x)[0], 0).topk(1).indices.item()
    frame = engine.process(buf.getvalue(), LiveSettings("conv1", 2, view="guided"))
    assert frame.header["classes"][0][0] == want == CLASSES.index("vertical")
    back = np.asarray(Image.open(io.BytesIO(dict(frame.parts)["backward"])), np.int16)
    assert np.abs(back[..., 0] - back[..., 1]).max() <= 3  # gray, up to JPEG rounding


CALLS = {
    "web live page": lambda net, tmp_path, **_: _web_live(net, tmp_path),
    "Network.preprocess": lambda net, **_: _preprocess(net),
    "layer_table": lambda net, **_: _layer_table(net),
    "capture+evaluate": lambda net, **_: _capture_and_evaluate(net),
    "receptive_field(s)": lambda net, **_: _receptive_fields(net),
    "ReceptiveField.draw": lambda net, **_: _receptive_field_draw(net),
    "effective_boxes": lambda net, **_: _effective_boxes(net),
    "weight_images": lambda net, **_: _weight_images(net),
    "filter_grid": lambda net, **_: _filter_grid(net),
    "attribute": lambda net, **_: _attribute(net),
    "attribute:guided": lambda net, **_: _guided_backprop_sees_the_stroke(net),
    "attribution_figure": lambda net, **_: _attribution_figure(net),
    "maximize": lambda net, **_: _maximize(net),
    "maximize:presets": lambda net, **_: _maximize_every_preset(net),
    "mine+Atlas": lambda net, folder, **_: _mine_and_atlas(net, folder),
    "atlas_html": lambda net, folder, **_: _atlas_html_without_network(net, folder),
    "write_report": lambda net, folder, tmp_path, **_: _write_report(net, folder, tmp_path),
    "show": lambda net, **_: _show(net),
    "demo": lambda net, tmp_path, **_: _demo(net, tmp_path),
    "faithfulness": lambda net, **_: _faithfulness(net),
    "sanity_check": lambda net, **_: _sanity_check(net),
    "metric+evaluate": lambda net, **_: _metrics(net),
    "visualize_layer": lambda net, folder, tmp_path, **_: _visualize_layer(net, folder, tmp_path),
}
# what each public name is checked by (functions that take no model are listed as such)
COVERS = {
    "load_image": None, "sample_images": None, "load_model": None,  # no model to give them
    "set_threads": None, "threads": None, "thread_policy": None,  # CPU settings, no model
    "Network": "Network.preprocess", "as_network": "attribute", "show": "show",
    "Picture": "show", "receptive_field": "receptive_field(s)",
    "receptive_fields": "receptive_field(s)", "ReceptiveField": "ReceptiveField.draw",
    "effective_boxes": "effective_boxes",
    "maximize": "maximize", "Synthesis": "maximize", "Atlas": "mine+Atlas",
    "Hit": "mine+Atlas", "mine": "mine+Atlas", "attribute": "attribute",
    "attribution_figure": "attribution_figure", "filter_grid": "filter_grid",
    "layer_grid": "mine+Atlas", "unit_figure": "mine+Atlas", "PatchCutter": "mine+Atlas",
    "default_tile": "mine+Atlas", "atlas_html": "atlas_html",
    "faithfulness": "faithfulness", "sanity_check": "sanity_check",
    "metric": "metric+evaluate", "evaluate": "metric+evaluate",
    "visualize_layer": "visualize_layer", "LayerSynthesis": "visualize_layer",
    "synthesis_facets": "visualize_layer", "with_synthesis": "visualize_layer",
}


@pytest.mark.parametrize("name", sorted(CALLS))
def test_grayscale_network(name, folder, tmp_path, one_thread):
    net = stroke_net()
    with untouched(net.module):
        CALLS[name](net, folder=folder, tmp_path=tmp_path)


def test_registry_covers_the_public_api():
    public = {n for n, v in vars(convsight).items() if not n.startswith("_") and callable(v)
              and not (isinstance(v, type) and issubclass(v, Exception))}
    public |= set(convsight.figures.__all__)
    missing = sorted(public - set(COVERS))
    assert not missing, f"public names without a grayscale check: {missing}"
    assert {c for c in COVERS.values() if c} <= set(CALLS)


def test_trained_network_reads_strokes():
    """The fixture itself: held-out strokes are classified by their drawn orientation."""
    net = stroke_net()
    x, y = strokes(200, seed=7)
    with torch.no_grad():
        assert (net(net.normalize(x)).argmax(1) == y).float().mean() > 0.95


def test_channels_come_from_the_first_convolution():
    gray = nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU())
    net = convsight.Network(gray)
    assert net.channels == 1
    # ImageNet's statistics in gray: the BT.601 luma of its means and of its standard deviations
    assert net.mean == (round(float(LUMA @ [0.485, 0.456, 0.406]), 3),) == (0.459,)
    assert net.std == (round(float(LUMA @ [0.229, 0.224, 0.225]), 3),) == (0.226,)
    with pytest.raises(convsight.ConvsightError, match=r"3 values but the model's first convolution "
                                                       r"\(0\) takes 1 channels"):
        convsight.Network(gray, mean=(0.5, 0.5, 0.5), std=(0.2, 0.2, 0.2))
    rgb = convsight.Network(nn.Sequential(nn.Conv2d(3, 4, 3)), mean=(0.5,), std=(0.25,))
    assert rgb.channels == 3 and rgb.mean == (0.5,) * 3 and rgb.std == (0.25,) * 3
    with pytest.raises(convsight.ConvsightError, match="same length"):
        convsight.Network(nn.Linear(4, 2), mean=(0.1, 0.2), std=(1.0, 2.0, 3.0))
    # no convolution: the channel count is that of mean/std (a Linear face network: 1)
    assert convsight.Network(nn.Linear(625, 2), mean=(0.3,), std=(0.2,)).channels == 1
    assert convsight.Network(nn.Linear(4, 2)).channels == 3
    four = convsight.Network(nn.Conv2d(4, 2, 1))  # other counts: the gray values per channel
    assert four.mean == (0.459,) * 4
    with pytest.raises(convsight.ImageError, match="takes 4 input channels"):
        four.preprocess(convsight.sample_images()["coffee"])
    layer_table(four)  # tensors of 4 channels still flow everywhere


def test_to_tensor_gray_matches_pil_luma():
    photo = convsight.sample_images()["astronaut"]
    x = to_tensor(photo, channels=1)
    assert x.shape == (1, photo.height, photo.width)
    expected = np.asarray(photo.convert("L"), np.float32) / 255.0
    assert np.array_equal(x[0].numpy(), expected)
