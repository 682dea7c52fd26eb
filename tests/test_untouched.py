"""After every public call, also failing ones, the user's model must be exactly as it was.

Each issue adds its public calls to ``CALLS``: ``name -> function(network)``. Calls that are
expected to fail list the exception type in ``FAILING``.
"""

from __future__ import annotations

import warnings

import pytest
import torch

import convsight
from convsight.capture import capture
from convsight.targets import evaluate
from convsight.capture import layer_table

from .tinynets import tiny_net
from .untouched import untouched


def _failing_forward(model):
    module = convsight.as_network(model).module
    with capture(module, ["conv2"]):
        module(torch.zeros(1, 5, 32, 32))  # wrong channel count: forward fails


def _check_target(net, spec):
    from convsight import capture as capture_module
    from convsight.targets import check_target

    capture_module._PROBED.clear()  # probe this very module (no architecture cached before)
    check_target(net, spec)


def _filters(net):
    from convsight.filters import weight_images

    weight_images(net, "conv1")
    weight_images(net, "conv2")
    weight_images(net, "fc", input_shape=(1, 4, 4))


def _filters_bad_shape(net):
    from convsight.filters import weight_images

    weight_images(net, "fc", input_shape=(3, 4, 4))  # fc takes 16 inputs, not 48


def _mine(model):
    import numpy as np

    rng = np.random.default_rng(0)
    images = [rng.random((40, 48, 3)) for _ in range(5)]
    atlas = convsight.mine(model, images, ["conv2", "conv3"], k=2, batch_size=2, progress=False)
    atlas.top("conv3", 1)
    atlas.patch("conv3", 1, 0, net=model)
    atlas.layer_grid("conv2", max_units=3, net=model, tile=16)
    atlas.unit_figure("conv3", 0, net=model)


def _atlas_access(model):
    import numpy as np

    from convsight.atlas_access import AtlasAccess
    from convsight.figures import layer_grid, unit_figure

    rng = np.random.default_rng(2)
    images = [rng.random((40, 48, 3)) for _ in range(4)]
    atlas = convsight.mine(model, images, ["conv3"], k=2, batch_size=2, progress=False)
    access = AtlasAccess(atlas, net=model)
    access.hit_box("conv3", atlas.hit("conv3", 1, 0), crop="effective")
    access.box("conv3", 1, 0, crop="local")
    layer_grid(access, "conv3", max_units=2, tile=16)
    unit_figure(access, "conv3", 1, method="deconv")


def _mine_failing_forward(model):
    # a 1x1 input: the model's max pool fails on its first forward pass
    convsight.mine(convsight.Network(convsight.as_network(model).module, input_size=(1, 1)),
                   [torch.rand(40, 40, 3).numpy()] * 2, ["conv3"], progress=False)


def _atlas_html(model):
    import numpy as np

    from convsight.figures import atlas_html

    rng = np.random.default_rng(3)
    atlas = convsight.mine(model, [rng.random((40, 48, 3)) for _ in range(3)], ["conv3"], k=2,
                           progress=False)
    atlas._repr_html_()
    atlas_html(atlas, units=2, net=model)


def _network_and_display(model):
    net = convsight.Network(convsight.as_network(model).module, mean=(0.5,), std=(0.5,))
    assert net.channels == 3
    repr(net)
    result = convsight.maximize(net, "class:1", steps=2, size=24, progress=False)
    result._repr_png_()
    convsight.show(net.denormalize(torch.rand(1, 3, 8, 8)))
    convsight.receptive_field(net, "conv3", input_size=(32, 32)).draw(torch.rand(3, 32, 32), 1, 1)


def _attribute_all(net):
    x = torch.rand(2, 3, 32, 32)
    for method in ("gradient", "guided", "deconv", "gradcam", "guided-gradcam"):
        convsight.attribute(net, x, [None, "conv3:1@1,1"], method=method)
    convsight.attribute(net, x[0], "conv2:3", method="smoothgrad", samples=2, base="guided")


def _attribution_figure(net):
    from convsight.figures import attribution_figure

    attribution_figure(net, torch.rand(3, 32, 32), [None, "conv3:1"],
                       methods=["gradient", "guided", "deconv", "gradcam"])


def _trust(net):
    from convsight.trust import randomized_copy, trust_score

    x = torch.rand(2, 3, 32, 32)
    convsight.attribute(net, x, [None, "conv3:1@1,1"], method="occlusion", window=8, stride=6,
                        baseline="blur", batch_size=5)
    with warnings.catch_warnings():  # conv3:1 may be negative: a warning, NaN curves
        warnings.simplefilter("ignore")
        convsight.faithfulness(net, x, torch.rand(2, 1, 32, 32), [2, "conv3:1"], steps=3)
    convsight.faithfulness(net, x, torch.rand(2, 3, 32, 32), kind="insertion", steps=3)
    for mode in ("cascading", "independent"):
        convsight.sanity_check(net, x, None, methods=("gradient", "guided", "gradcam"), mode=mode,
                               group="block", progress=False).figure()
    trust_score(net, x[:1], "class:1", "gradcam", steps=3)
    trust_score(net, x, ["conv2:1@3,3", "conv3:2@1,2"], "guided", steps=3)  # neurons: own scope
    randomized_copy(net, x)
    convsight.trust.check(net, x[0], methods=("gradient", "occlusion"), steps=3, progress=False,
                          options={"occlusion": {"window": 16, "stride": 16}})


def _web_explorer(model):
    import io
    import tempfile

    import numpy as np
    from PIL import Image

    from convsight.web.explorer import Explorer
    from convsight.web.jobs import Job, SynthesisQueue, SynthesisSettings

    net = convsight.as_network(model)
    rng = np.random.default_rng(1)
    atlas = convsight.mine(net, [rng.random((40, 48, 3)) for _ in range(4)], ["conv2", "conv3"],
                           k=2, batch_size=2, progress=False)
    explorer = Explorer(net, atlas, cache_dir=tempfile.mkdtemp(prefix="cs-untouched-"))
    explorer.layers.layers()
    explorer.layers.unit_tile("conv3", 1)
    explorer.layers.patch("conv3", 1, 0)
    explorer.layers.projection("conv3", 1, 0, "guided")
    explorer.layers.weights("conv1", 2)
    buf = io.BytesIO()
    Image.fromarray((rng.random((50, 60, 3)) * 255).astype(np.uint8)).save(buf, format="PNG")
    image_id = explorer.input_images.add_upload(buf.getvalue())
    explorer.input_images.predictions(image_id)
    explorer.attributions.activation_maps(image_id, "conv2")
    explorer.attributions.unit_attribution(image_id, "conv3", 2, "deconv")
    explorer.attributions.class_attribution(image_id, 3, "gradcam")
    explorer.attributions.class_trust(image_id, 3, "guided")  # on the explorer's own copy of the network
    jobs = SynthesisQueue(net, explorer.cache, SynthesisSettings(steps=2, size=32))
    jobs._synthesise(Job("conv3", 1, "k", 2))


def _web_report(model):
    import tempfile
    from pathlib import Path

    import numpy as np

    from convsight.report import write_report

    rng = np.random.default_rng(2)
    atlas = convsight.mine(model, [rng.random((40, 48, 3)) for _ in range(3)], ["conv3"], k=2,
                           batch_size=2, progress=False)
    write_report(atlas, Path(tempfile.mkdtemp(prefix="cs-untouched-")) / "r.html", net=model,
                 detail_units=1, progress=False)


def _web_unknown_layer(model):
    import tempfile

    from convsight.web.explorer import Explorer

    Explorer(convsight.as_network(model), cache_dir=tempfile.mkdtemp(prefix="cs-untouched-")
             ).attributions.activations("sample-chelsea", "conv9")


def _web_live(model):
    import io
    import tempfile

    import numpy as np
    from PIL import Image

    from convsight.web.explorer import Explorer
    from convsight.web.live import VIEWS, LiveEngine, LiveSettings

    engine = LiveEngine(Explorer(convsight.as_network(model),
                                 cache_dir=tempfile.mkdtemp(prefix="cs-untouched-")))
    buf = io.BytesIO()
    Image.fromarray((np.random.default_rng(4).random((40, 50, 3)) * 255).astype(np.uint8)).save(
        buf, format="JPEG")
    for view in VIEWS:
        for classes in (True, False):
            engine.process(buf.getvalue(), LiveSettings("conv2", 3, view, "tile", classes))


def _visualize_layer(model):
    import tempfile

    import numpy as np

    folder = tempfile.mkdtemp(prefix="cs-untouched-")
    images = [np.random.default_rng(0).random((36, 36, 3))] * 2
    atlas = convsight.mine(model, images, ["conv3"], k=1, out=folder, progress=False)
    kw = dict(preset="lucid", steps=2, size=24, upsample=False, progress=False)
    convsight.visualize_layer(model, "conv3", [0, 3], batch_size=1, atlas=folder, copies=2, **kw)
    convsight.visualize_layer(model, "conv2", **kw)
    atlas.source = images
    atlas.synthesis("conv3", 3, 1)
    atlas.layer_grid("conv3", [0, 3], net=model, tile=16)
    convsight.figures.synthesis_facets(atlas, "conv3", 0)


def _metrics_all(net):
    x = torch.rand(2, 3, 32, 32)
    a = torch.rand(2, 1, 32, 32)
    for name in convsight.trust.METRICS:
        extra = {"method": "gradient"} if name in ("max_sensitivity", "random_logit",
                                                   "randomisation") else {}
        extra.update({"box": (2, 2, 20, 20)} if name in ("pointing_game", "relevance_mass")
                     else {})
        extra.update({"samples": 2} if name in ("max_sensitivity", "infidelity") else {})
        extra.update({"percentages": [50]} if name == "road" else {})
        extra.update({"steps": 3} if name in ("deletion", "insertion") else {})
        convsight.metric(name, net, x, a if "method" not in extra else
                         convsight.attribute(net, x, method="gradient"), **extra)
    convsight.evaluate(net, x, methods=("gradient", "gradcam"),
                       metrics=("road", "max_sensitivity", "complexity"),
                       road={"percentages": [50]}, max_sensitivity={"samples": 2}).figure()


def _demo(model):
    import tempfile

    from convsight.demo import demo

    with tempfile.TemporaryDirectory() as folder:
        demo(folder, model=convsight.as_network(model), quick=True, progress=False)


CALLS = {
    "atlas_html": _atlas_html,
    "demo": _demo,
    "network_and_display": _network_and_display,
    "web_explorer": _web_explorer,
    "web_report": _web_report,
    "web_unknown_layer": _web_unknown_layer,
    "web_live": _web_live,
    "attribute": _attribute_all,
    "trust": _trust,
    "metrics": _metrics_all,
    "metric_unknown": lambda net: convsight.metric("roads", net, torch.rand(1, 3, 32, 32),
                                                   torch.rand(1, 1, 32, 32)),
    "occlusion_bad_window": lambda net: convsight.attribute(net, torch.rand(1, 3, 32, 32),
                                                            method="occlusion", window=40),
    "faithfulness_bad_shape": lambda net: convsight.faithfulness(net, torch.rand(2, 3, 32, 32),
                                                                 torch.rand(2, 3, 16, 16)),
    "sanity_check_failing_forward": lambda net: convsight.sanity_check(
        net, torch.rand(1, 3, 1, 1), methods=("gradient",), progress=False),
    "sanity_check_unknown_method": lambda net: convsight.sanity_check(
        net, torch.rand(1, 3, 32, 32), methods=("guidded",), progress=False),
    "attribution_figure": _attribution_figure,
    "fixed_targets": lambda net: convsight.targets.fixed_targets(net, torch.rand(2, 3, 32, 32),
                                                                 [None, "conv3:1"]),
    "attribute_failing_forward": lambda net: convsight.attribute(net, torch.rand(1, 3, 1, 1), 0,
                                                                 method="guided"),
    "attribute_bad_gradcam_layer": lambda net: convsight.attribute(net, torch.rand(1, 3, 32, 32),
                                                                   method="gradcam", layer="fc"),
    "mine": _mine,
    "atlas_access": _atlas_access,
    "mine_unknown_layer": lambda net: convsight.mine(net, [torch.rand(3, 20, 20).numpy()], ["conv9"],
                                                     progress=False),
    "mine_failing_forward": _mine_failing_forward,
    "layer_table": lambda net: layer_table(net),
    "evaluate": lambda net: evaluate(net, torch.rand(2, 3, 32, 32), "conv3:1@1,1 + class:2"),
    "evaluate_bad_channel": lambda net: evaluate(net, torch.rand(1, 3, 32, 32), "conv3:99"),
    "check_target_probed": lambda net: _check_target(net, "act3:3 + pool:1 + class:2"),
    "check_target_bad_channel": lambda net: _check_target(net, "relu:99"),
    "capture_failing_forward": _failing_forward,
    "filters": _filters,
    "filters_bad_shape": _filters_bad_shape,
    "maximize": lambda net: [convsight.maximize(net, ["class:1", "conv3:2", "conv2:1@3,3 + prob:4"],
                                                preset=p, steps=3, size=24, every=2, upsample=False,
                                                progress=False)
                             for p in convsight.optimize.PRESETS],
    "maximize_bad_channel": lambda net: convsight.maximize(net, ["class:1", "conv3:99"], steps=2,
                                                           size=24, progress=False),
    "maximize_copies_diversity": lambda net: convsight.maximize(
        net, ["conv3:2", "class:1"], copies=2, diversity=1.0, diversity_layer="conv2", steps=2,
        size=24, progress=False),
    "visualize_layer": _visualize_layer,
    "visualize_layer_bad_channels": lambda net: convsight.visualize_layer(
        net, "conv3", [0, 16], steps=2, size=24, progress=False),
    "receptive_field": lambda net: convsight.receptive_field(net, "conv3", input_size=(32, 32)),
    "receptive_fields": lambda net: convsight.receptive_fields(net),
    "receptive_field_local": lambda net: convsight.receptive_field(net, "conv3", (32, 32),
                                                                   context="local"),
    "effective_boxes": lambda net: convsight.effective_boxes(
        net, "conv3", torch.rand(2, 3, 32, 32), [(0, 1, 1), (2, 3, 3)], q=0.5),
    "receptive_field_unknown_layer": lambda net: convsight.receptive_field(net, "conv9"),
    "receptive_field_failing_forward": lambda net: convsight.receptive_field(net, "conv3",
                                                                             input_size=(1, 1)),
}
FAILING = {
    "web_unknown_layer": convsight.ConvsightError,
    "attribute_failing_forward": RuntimeError,
    "occlusion_bad_window": convsight.ConvsightError,
    "faithfulness_bad_shape": convsight.ConvsightError,
    "metric_unknown": convsight.ConvsightError,
    "sanity_check_failing_forward": RuntimeError,
    "sanity_check_unknown_method": convsight.ConvsightError,
    "attribute_bad_gradcam_layer": convsight.UnitError,
    "mine_unknown_layer": convsight.UnknownLayerError,
    "mine_failing_forward": RuntimeError,
    "evaluate_bad_channel": convsight.UnitError,
    "check_target_bad_channel": convsight.UnitError,
    "capture_failing_forward": RuntimeError,
    "filters_bad_shape": convsight.UnitError,
    "maximize_bad_channel": convsight.UnitError,
    "visualize_layer_bad_channels": convsight.UnitError,
    "receptive_field_unknown_layer": convsight.UnknownLayerError,
    "receptive_field_failing_forward": convsight.ConvsightError,
}


@pytest.mark.parametrize("name", sorted(CALLS))
def test_call_leaves_model_untouched(name):
    module = tiny_net()
    net = convsight.Network(module, input_size=(32, 32))
    with untouched(module):
        if name in FAILING:
            with pytest.raises(FAILING[name]):
                CALLS[name](net)
        else:
            CALLS[name](net)


@pytest.mark.parametrize("name", sorted(CALLS))
def test_bare_module_accepted(name):
    """Every public function also takes a bare nn.Module (wrapped with ImageNet defaults)."""
    module = tiny_net()
    with untouched(module):
        if name in FAILING:
            with pytest.raises(FAILING[name]):
                CALLS[name](module)
        else:
            CALLS[name](module)
