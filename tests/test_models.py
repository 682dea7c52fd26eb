"""Default model, torchvision models from state dicts, wrapping any nn.Module."""

from __future__ import annotations

import warnings

import pytest
import torch
from torch import nn

import convsight
import convsight.models
from convsight.models import default_weights_path

CAT_CLASSES = range(281, 286)  # tabby, tiger cat, Persian, Siamese, Egyptian cat


def test_default_model_predicts_sample_photos(lite0, photos):
    x = lite0.preprocess([photos["chelsea"], photos["coffee"], photos["motorcycle"]])
    with torch.no_grad():
        probs = lite0(x).softmax(1)
    top = probs.argmax(1).tolist()
    assert top[0] in CAT_CLASSES, lite0.class_name(top[0])
    assert lite0.class_names[top[1]] == "espresso" and probs[1, top[1]] > 0.9
    assert lite0.class_names[top[2]] in ("moped", "motor scooter")
    # the five cat classes together hold most of the mass for the cat photo
    assert probs[0, list(CAT_CLASSES)].sum() > 0.8


def test_default_model_metadata(lite0):
    assert not lite0.module.training
    assert lite0.input_size == (224, 224)
    assert lite0.mean == (0.5, 0.5, 0.5) and lite0.std == (0.5, 0.5, 0.5)
    assert len(lite0.class_names) == 1000 and lite0.class_names[281] == "tabby"
    assert sum(p.numel() for p in lite0.module.parameters()) == pytest.approx(4.65e6, rel=0.01)


def test_default_model_matches_timm_definition(lite0, photos):
    """Independent oracle: timm's tf_efficientnet_lite0 with the file's tensors in order."""
    timm = pytest.importorskip("timm")
    ref = timm.create_model("tf_efficientnet_lite0", pretrained=False).eval()
    state = torch.load(default_weights_path(), map_location="cpu", weights_only=True)
    keys = list(ref.state_dict())
    assert len(keys) == len(state)
    ref.load_state_dict(dict(zip(keys, state.values())))
    x = lite0.preprocess([photos["astronaut"], photos["rocket"]])
    with torch.no_grad():
        assert torch.allclose(ref(x), lite0(x), atol=1e-5)


def test_preprocess_mean_std_choice(lite0, photos):
    """mean = std = 0.5 (the weights' own preprocessing) is more confident on the espresso than ImageNet stats."""
    x01 = lite0.denormalize(lite0.preprocess(photos["coffee"]))
    espresso = lite0.class_names.index("espresso")
    with torch.no_grad():
        p_half = lite0(lite0.normalize(x01)).softmax(1)[0, espresso]
        imagenet = convsight.Network(lite0.module)  # ImageNet mean/std
        p_imagenet = lite0(imagenet.normalize(x01)).softmax(1)[0, espresso]
    assert p_half > p_imagenet


def test_torchvision_from_state_dict(tmp_path):
    torch.manual_seed(1)
    with pytest.warns(UserWarning, match="RANDOM"):
        src = convsight.load_model("resnet18")
    path = tmp_path / "r18.pth"
    torch.save(src.module.state_dict(), path)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # weights given: no random-weights warning
        net = convsight.load_model("resnet18", weights=path)
    for (k, a), b in zip(src.module.state_dict().items(), net.module.state_dict().values()):
        assert torch.equal(a, b), k
    assert not net.module.training and net.class_names[0] == "tench"
    # a checkpoint dict and a DataParallel prefix are accepted as well
    torch.save({"state_dict": {"module." + k: v for k, v in src.module.state_dict().items()}}, path)
    net2 = convsight.load_model("resnet18", weights=path)
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        assert torch.equal(net.module(x), net2.module(x))


def test_torchvision_other_class_count(tmp_path):
    import torchvision

    m = torchvision.models.alexnet(num_classes=7)
    path = tmp_path / "a7.pt"
    torch.save(m.state_dict(), path)
    net = convsight.load_model("alexnet", weights=path)
    assert net.module.classifier[-1].out_features == 7 and net.class_names is None


def test_mismatched_state_dict_lists_keys(tmp_path):
    import torchvision

    path = tmp_path / "r34.pth"
    torch.save(torchvision.models.resnet34().state_dict(), path)
    with pytest.raises(convsight.WeightsError) as err:
        convsight.load_model("resnet18", weights=path)
    msg = str(err.value)
    assert "unexpected keys" in msg and "layer1.2.conv1.weight" in msg
    path2 = tmp_path / "vgg.pth"
    torch.save(torchvision.models.vgg11().state_dict(), path2)
    with pytest.raises(convsight.WeightsError, match="missing keys: conv1.weight"):
        convsight.load_model("resnet18", weights=path2)


def test_bad_weights_files(tmp_path):
    junk = tmp_path / "junk.pth"
    junk.write_bytes(b"not a torch file")
    with pytest.raises(convsight.WeightsError, match="cannot read weights file"):
        convsight.load_model("resnet18", weights=junk)
    with pytest.raises(convsight.WeightsError, match="not found"):
        convsight.load_model("resnet18", weights=tmp_path / "missing.pth")
    torch.save([1, 2, 3], tmp_path / "list.pth")
    with pytest.raises(convsight.WeightsError, match="does not hold a state dict"):
        convsight.load_model("resnet18", weights=tmp_path / "list.pth")


def test_unknown_model_name_suggests():
    with pytest.raises(convsight.ModelNameError, match="resnet18"):
        convsight.load_model("resnt18")


def test_wrap_any_module():
    module = nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU())
    net = convsight.Network(module, mean=(0.1,), std=(0.2,), input_size=32)
    assert net.input_size == (32, 32)
    assert convsight.as_network(net) is net
    # a bare 1-channel module gets ImageNet's statistics in gray; a 3-channel one ImageNet's
    assert convsight.as_network(module).mean == (0.459,) and convsight.as_network(module).std == (0.226,)
    rgb = nn.Sequential(nn.Conv2d(3, 4, 3))
    assert convsight.as_network(rgb).mean == convsight.models.IMAGENET_MEAN
    with pytest.raises(TypeError, match="nn.Module"):
        convsight.as_network("resnet18")
    x = torch.rand(2, 1, 8, 8)
    assert torch.allclose(net.denormalize(net.normalize(x)), x, atol=1e-6)
