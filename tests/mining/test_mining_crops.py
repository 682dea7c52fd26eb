"""Crop rules of an atlas: each hit's stored box (exact, local or effective receptive field), the
patches they cut, atlases mined before boxes were stored, and the errors."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

import convsight
from convsight.atlas_store import read_folder, save_folder
from convsight.cli import main
from convsight.mining import photo_folder

from ..receptive.test_receptive_local import GatedNet


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    root = tmp_path_factory.mktemp("photos")
    photo_folder(root, n=8, seed=3, min_side=64, max_side=128)
    return root


@pytest.fixture(scope="module")
def gated():
    torch.manual_seed(0)
    return convsight.Network(GatedNet().eval(), mean=(0.5,) * 3, std=(0.5,) * 3, input_size=(48, 48))


def inside(box, outer) -> bool:
    return outer[0] <= box[0] <= box[2] <= outer[2] and outer[1] <= box[1] <= box[3] <= outer[3]


def test_auto_crop_is_local_where_exact_is_global_and_old_atlases_still_open(gated, folder, tmp_path):
    atlas = convsight.mine(gated, folder, ["conv1", "split"], k=3, out=tmp_path / "a", progress=False)
    # conv1 comes after the squeeze-and-excitation block: global exactly, finite locally
    assert atlas.crops == {"conv1": {"crop": "local"}, "split": {"crop": "local"}}
    local = convsight.receptive_field(gated, "split", context="local")
    for rank, hit in enumerate(atlas.top("split", 2)):
        assert hit.box == local.box(hit.y, hit.x) == atlas.box("split", 2, rank)
        side = local.size[0]
        assert atlas.patch("split", 2, rank).size == (side, side)  # padded, not the whole image
        assert atlas.patch("split", 2, rank, net=gated, crop="exact").size == (48, 48)
    # an atlas written before crop boxes: no "box" arrays, no "crop" in atlas.json
    meta, paths, flat = read_folder(tmp_path / "a")
    for layer in meta["layers"]:
        del layer["crop"]
    save_folder(tmp_path / "old", {k: v for k, v in meta.items() if k != "checksums"},
                {k: v for k, v in flat.items() if not k.endswith("_box")}, paths)
    old = convsight.Atlas.open(tmp_path / "old")
    assert old.crops == {} and old.top("split", 2)[0].box is None
    assert old.crop_rule("split", net=gated) == "local"  # recomputed on demand
    assert old.box("split", 2, 0, net=gated) == atlas.box("split", 2, 0)
    np.testing.assert_array_equal(np.asarray(old.patch("split", 2, 0, net=gated)),
                                  np.asarray(atlas.patch("split", 2, 0, net=gated)))
    # its model is custom (not rebuildable by name): effective boxes need it passed
    with pytest.raises(convsight.ConvsightError, match="cannot give crop 'effective' for layer "
                                                       "split: it stores no boxes"):
        old.patch("split", 2, 0, crop="effective")
    eff = old.box("split", 2, 0, net=gated, crop="effective")
    first = atlas.top("split", 2)[0]
    assert inside(eff, local.clipped_box(first.y, first.x))


def test_effective_crops_come_from_one_pass_per_channel_group_and_match_one_hit_alone(
        gated, folder, tmp_path):
    atlas = convsight.mine(gated, folder, ["split"], k=3, batch_size=7, crop="effective", q=0.6,
                           out=tmp_path / "e", progress=False)
    assert atlas.crops == {"split": {"crop": "effective", "q": 0.6}}
    again = convsight.Atlas.open(tmp_path / "e")
    assert again.crops == atlas.crops and again.crop_rule("split") == "effective"
    local = convsight.receptive_field(gated, "split", context="local")
    for c in range(atlas.channels("split")):
        for hit in again.top("split", c):
            assert inside(hit.box, local.clipped_box(hit.y, hit.x))
    hit = again.top("split", 5)[1]
    x = gated.normalize(again.image(hit.image)[None])
    (alone,) = convsight.effective_boxes(gated, "split", x, [(5, hit.y, hit.x)], q=0.6)
    assert alone == hit.box  # batching hits of several channels and images changes nothing
    b = hit.box
    assert again.patch("split", 5, 1).size == (b[3] - b[1] + 1, b[2] - b[0] + 1)


def test_crop_errors_are_one_line(gated, folder, tmp_path):
    with pytest.raises(convsight.ConvsightError, match="unknown crop rule 'whole': use one of "
                                                       "auto, exact, local, effective"):
        convsight.mine(gated, folder, ["split"], crop="whole", progress=False)
    with pytest.raises(convsight.ConvsightError, match=r"q must be in \(0, 1\]"):
        convsight.mine(gated, folder, ["split"], crop="effective", q=1.5, progress=False)
    atlas = convsight.mine(gated, folder, ["split"], k=2, progress=False)
    with pytest.raises(convsight.ConvsightError, match="unknown crop rule 'auto': use one of "
                                                       "exact, local, effective"):
        atlas.patch("split", 0, 0, net=gated, crop="auto")


@pytest.mark.slow
def test_cli_mines_timm_efficientnet_b0_with_patches_that_are_not_whole_images(folder, tmp_path):
    timm = pytest.importorskip("timm")
    torch.manual_seed(0)
    weights = tmp_path / "b0.pth"
    torch.save(timm.create_model("efficientnet_b0", pretrained=False).state_dict(), weights)
    out = tmp_path / "atlas"
    assert main(["mine", str(folder), "--layers", "blocks.2,blocks.4", "--model",
                 "timm:efficientnet_b0", "--weights", str(weights), "-o", str(out), "--k", "2",
                 "--input-size", "128", "--crop", "effective", "--grids", "4", "--quiet"]) == 0
    atlas = convsight.Atlas.open(out)
    meta = json.loads((out / "atlas.json").read_text())
    assert [layer["crop"] for layer in meta["layers"]] == ["effective", "effective"]
    net = atlas.network()
    for layer in atlas.layers:
        assert convsight.receptive_field(net, layer, (128, 128)).is_global  # exact: whole image
        local = convsight.receptive_field(net, layer, (128, 128), context="local")
        sides, areas = [], []
        for c in range(atlas.channels(layer)):
            for hit in atlas.top(layer, c):
                assert inside(hit.box, local.clipped_box(hit.y, hit.x))
                h, w = hit.box[2] - hit.box[0] + 1, hit.box[3] - hit.box[1] + 1
                sides.append(max(h, w))
                areas.append(h * w)
        # no patch is the whole image; most are far smaller
        assert max(sides) < 128 and np.median(areas) < 128 * 128 / 2, (layer, sorted(sides))
        grid = Image.open(out / f"{layer}.png")
        assert grid.size[0] > 0


def test_cli_rf_context_local_names_the_gates(tmp_path, capsys):
    timm = pytest.importorskip("timm")
    torch.manual_seed(0)
    weights = tmp_path / "b0.pth"
    torch.save(timm.create_model("efficientnet_b0", pretrained=False).state_dict(), weights)
    args = ["rf", "--model", "timm:efficientnet_b0", "--weights", str(weights), "blocks.1"]
    assert main(args + ["--json"]) == 0
    assert json.loads(capsys.readouterr().out)["field"]["global"] is True
    assert main(args + ["--context", "local", "--json"]) == 0
    field = json.loads(capsys.readouterr().out)["field"]
    assert (field["size"], field["stride"], field["context"]) == ([19, 19], [4, 4], "local")
    assert field["gates"] == ["blocks.0.0.se", "blocks.1.0.se", "blocks.1.1.se"]
    assert main(args + ["--context", "local"]) == 0
    assert "context  local (gates held fixed: blocks.0.0.se, blocks.1.0.se, blocks.1.1.se)" in \
        capsys.readouterr().out
    assert main(args + ["--context", "global"]) == 2  # argparse: "invalid choice: 'global'"
    assert "invalid choice: 'global'" in capsys.readouterr().err


def test_report_names_the_crop_rule_of_each_layer(gated, folder, tmp_path):
    from convsight.report import write_report

    atlas = convsight.mine(gated, folder, ["conv1"], k=2, crop="effective", progress=False)
    out = write_report(atlas, tmp_path / "r.html", net=gated, detail_units=1, trust=False,
                       max_units=4, progress=False)
    text = out.read_text()
    assert "<th>patches cut by</th>" in text
    assert "<td>effective box (Luo et al. 2016)</td>" in text
    assert "cut by the effective box (Luo et al. 2016), strongest first" in text
