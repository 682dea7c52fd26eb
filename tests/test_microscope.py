"""convsight.visualize_layer: a synthesis per channel, batched; stored in an atlas, resumed after a
kill with identical images; bad channel lists; the command line."""

from __future__ import annotations

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
from convsight.capture import capture
from convsight.cli import main

from .tinynets import tiny_net
from .untouched import untouched

ROOT = Path(__file__).resolve().parents[1]
FAST = dict(preset="lucid", steps=6, size=32, upsample=False, progress=False)


pytestmark = pytest.mark.usefixtures("one_thread")  # tiny passes: 1 thread is far faster

def _net() -> convsight.Network:
    return convsight.Network(tiny_net(), input_size=(32, 32))


def _atlas(net, folder: Path) -> convsight.Atlas:
    rng = np.random.default_rng(0)
    images = [rng.random((36, 40, 3)) for _ in range(4)]
    return convsight.mine(net, images, ["conv2", "conv3"], k=2, batch_size=2, out=folder,
                          progress=False)


def _channel_means(net, images: torch.Tensor, layer: str) -> torch.Tensor:
    """Independent oracle: the mean over positions of every channel, from a plain captured pass."""
    with capture(net.module, [layer]) as acts, torch.no_grad():
        net.module(net.normalize(images))
    return acts[layer].mean(dim=(2, 3))


def test_one_unit_and_all_units():
    net = _net()
    with untouched(net.module):
        one = convsight.visualize_layer(net, "conv3", [5], **FAST)
        every = convsight.visualize_layer(net, "conv3", batch_size=6, **FAST)
    assert one.images.shape == (1, 3, 32, 32) and one.channels == [5] and one.computed == [5]
    assert every.images.shape == (16, 3, 32, 32) and every.channels == list(range(16))
    means = _channel_means(net, every.images, "conv3")
    assert torch.allclose(every.values, means[torch.arange(16), torch.arange(16)], atol=1e-5)
    assert torch.equal(every.image(7), every.images[7])


def test_a_batch_gives_the_same_images_whatever_ran_before():
    net = _net()
    first = convsight.visualize_layer(net, "conv3", range(6), batch_size=3, **FAST)
    later = convsight.visualize_layer(net, "conv3", [3, 4, 5], batch_size=3, **FAST)
    assert torch.equal(first.images[3:], later.images)
    other_seed = convsight.visualize_layer(net, "conv3", [3, 4, 5], batch_size=3, seed=1, **FAST)
    assert not torch.equal(later.images, other_seed.images)


@pytest.mark.parametrize("channels, words", [
    ([16], "channel 16 out of range: valid channels of conv3 are 0..15"),
    ([-1, 3, 40], "channels -1, 40 out of range: valid channels of conv3 are 0..15"),
    ([], "no channels given: valid channels of conv3 are 0..15"),
    ([2, 2], "channel 2 is listed more than once"),
    ([1.5], "channel 1.5 is not a whole number: valid channels of conv3 are 0..15"),
    (["3"], "channel '3' is not a whole number"),
])
def test_bad_channel_lists_name_the_valid_range(channels, words):
    net = _net()
    with untouched(net.module), pytest.raises(convsight.UnitError) as err:
        convsight.visualize_layer(net, "conv3", channels, **FAST)
    assert words in str(err.value)


def test_bad_layer_and_batch_size():
    net = _net()
    with pytest.raises(convsight.UnknownLayerError, match="conv3"):
        convsight.visualize_layer(net, "conv33", **FAST)
    with pytest.raises(convsight.ConvsightError, match="batch_size=0 is not valid"):
        convsight.visualize_layer(net, "conv3", batch_size=0, **FAST)


def test_stored_in_the_atlas_and_read_back(tmp_path):
    net = _net()
    atlas = _atlas(net, tmp_path / "atlas")
    assert atlas.synthesis("conv3", 0) is None and atlas.synthesized_layers() == []
    out = convsight.visualize_layer(net, "conv3", [1, 4], atlas=atlas, copies=2, **FAST)
    again = convsight.Atlas.open(tmp_path / "atlas")
    assert again.synthesized_layers() == ["conv3"]
    info = again.synthesis_info("conv3")
    assert info["copies"] == 2 and info["settings"]["steps"] == 6 and info["seed"] == 0
    for i, (c, k) in enumerate([(1, 0), (1, 1), (4, 0), (4, 1)]):
        pixels = np.asarray(again.synthesis("conv3", c, k), dtype=np.float32) / 255
        assert np.array_equal(pixels, out.images[i].permute(1, 2, 0).numpy())
        assert again.synthesis_value("conv3", c, k) == pytest.approx(float(out.values[i]))
    assert again.synthesis("conv3", 2) is None            # not synthesised
    assert again.synthesis("conv2", 0) is None            # a layer without syntheses
    with pytest.raises(convsight.UnitError, match="0..15"):
        again.synthesis("conv3", 16)
    # stored values are the units' values on the stored 8-bit images (independent oracle)
    means = _channel_means(net, out.images, "conv3")
    assert torch.allclose(out.values, means[torch.arange(4), torch.tensor([1, 1, 4, 4])], atol=1e-5)
    # a second call reads them back instead of computing
    back = convsight.visualize_layer(net, "conv3", [1, 4], atlas=tmp_path / "atlas", copies=2, **FAST)
    assert back.computed == [] and torch.equal(back.images, out.images)
    # other settings for the same layer are refused (naming the difference) unless overwrite
    with pytest.raises(convsight.ConvsightError, match="steps was 6, now 7"):
        convsight.visualize_layer(net, "conv3", [1], atlas=atlas, copies=2, **{**FAST, "steps": 7})
    convsight.visualize_layer(net, "conv3", [1], atlas=atlas, overwrite=True, **{**FAST, "steps": 7})
    assert again.synthesis("conv3", 4) is None and again.synthesis_info("conv3")["copies"] == 1
    # the mining files are untouched and the grid shows the syntheses beside the patches
    assert again.top("conv3", 1) == atlas.top("conv3", 1)
    again.source = atlas.source  # mined from in-memory images
    plain = again.layer_grid("conv3", [1, 4], net=net, tile=16, syntheses=False)
    paired = again.layer_grid("conv3", [1, 4], net=net, tile=16)
    assert paired.shape[0] == plain.shape[0] and paired.shape[1] > plain.shape[1]


def test_an_atlas_of_another_model_is_refused(tmp_path):
    net = _net()
    _atlas(net, tmp_path / "atlas")
    other = convsight.Network(tiny_net(), input_size=(32, 32), name="resnet18")
    with pytest.raises(convsight.ConvsightError, match="mined from custom, not resnet18"):
        convsight.visualize_layer(other, "conv3", [0], atlas=tmp_path / "atlas", **FAST)
    unsaved = convsight.mine(net, [np.zeros((32, 32, 3))], ["conv3"], k=1, progress=False)
    with pytest.raises(convsight.ConvsightError, match="no folder yet"):
        convsight.visualize_layer(net, "conv3", [0], atlas=unsaved, **FAST)


RUN = dict(batch_size=2, preset="lucid", steps=8, size=32, upsample=False)
def test_syntheses_of_other_weights_are_refused_and_of_another_model_not_shown(tmp_path):
    import json

    net = _net()
    _atlas(net, tmp_path / "atlas")
    convsight.visualize_layer(net, "conv3", [0], atlas=tmp_path / "atlas", **FAST)
    retrained = convsight.Network(tiny_net(seed=1), input_size=(32, 32))
    with pytest.raises(convsight.ConvsightError, match="model fingerprint was"):
        convsight.visualize_layer(retrained, "conv3", [0], atlas=tmp_path / "atlas", **FAST)
    info_file = tmp_path / "atlas" / "syntheses" / "conv3" / "synthesis.json"
    info = json.loads(info_file.read_text())
    info["model"]["name"] = "resnet18"   # as if the folder had been re-mined with another model
    info_file.write_text(json.dumps(info))
    atlas = convsight.Atlas.open(tmp_path / "atlas")
    assert atlas.synthesis("conv3", 0) is None and atlas.synthesized_layers() == []


SCRIPT = """
import sys, time, torch
torch.set_num_threads(1)
sys.path.insert(0, {root!r})
import convsight
from tests.tinynets import tiny_net
net = convsight.Network(tiny_net(), input_size=(32, 32))
convsight.visualize_layer(net, "conv3", atlas=sys.argv[1], **{run!r},
                          progress=lambda done, total: time.sleep(0.05))
"""


def _pngs(atlas: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in (atlas / "syntheses" / "conv3").glob("unit*.png")}


def test_killed_run_resumes_with_identical_images(tmp_path):
    net = _net()
    for name in ("whole", "killed"):
        _atlas(net, tmp_path / name)
    script = tmp_path / "run.py"
    script.write_text(SCRIPT.format(root=str(ROOT), run=RUN))
    # a real process, slowed down (8 batches of 8 steps, 0.05 s a step), killed mid-run
    killed = subprocess.Popen([sys.executable, str(script), str(tmp_path / "killed")],
                              env={**os.environ, "PYTHONPATH": str(ROOT / "src")},
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 180
    while len(_pngs(tmp_path / "killed")) < 4 and time.time() < deadline and killed.poll() is None:
        time.sleep(0.02)
    killed.send_signal(signal.SIGKILL)
    err = killed.communicate()[1]
    stored = _pngs(tmp_path / "killed")
    assert 4 <= len(stored) < 16, f"the kill did not land mid-run ({len(stored)} of 16): {err}"
    assert not list((tmp_path / "killed" / "syntheses" / "conv3").glob(".*tmp"))
    resumed = convsight.visualize_layer(net, "conv3", atlas=tmp_path / "killed", progress=False,
                                        **RUN)
    # only units not stored before come from this call (the rest are read back)
    assert resumed.computed == [c for c in range(16) if f"unit{c}.png" not in stored]
    whole = convsight.visualize_layer(net, "conv3", atlas=tmp_path / "whole", progress=False, **RUN)
    assert len(whole.computed) == 16 and torch.equal(resumed.images, whole.images)
    assert _pngs(tmp_path / "killed") == _pngs(tmp_path / "whole")


class _Stop(Exception):
    pass


def _stop_after(steps: int):
    def report(done, total):
        if done >= steps:
            raise _Stop
    return report


def _interrupted(net, folder: Path, channels, batch_size: int, after: int) -> None:
    """A visualize_layer call into ``folder`` cut short after ``after`` steps."""
    with pytest.raises(_Stop):
        convsight.visualize_layer(net, "conv3", channels, atlas=folder, batch_size=batch_size,
                                  **{**FAST, "progress": _stop_after(after)})


def test_resuming_with_another_batch_size_is_refused_and_the_same_call_gives_the_same_images(
        tmp_path):
    net = _net()
    for name in ("whole", "cut"):
        _atlas(net, tmp_path / name)
    whole = convsight.visualize_layer(net, "conv3", range(8), atlas=tmp_path / "whole",
                                      batch_size=2, **FAST)
    _interrupted(net, tmp_path / "cut", range(8), 2, after=2 * FAST["steps"] + 1)  # in batch 3
    assert sorted(_pngs(tmp_path / "cut")) == [f"unit{c}.png" for c in range(4)]
    with pytest.raises(convsight.ConvsightError, match="batch_size was 2, now 4: batches of "
                                                       "another size can round"):
        convsight.visualize_layer(net, "conv3", range(8), atlas=tmp_path / "cut", batch_size=4,
                                  **FAST)
    resumed = convsight.visualize_layer(net, "conv3", range(8), atlas=tmp_path / "cut",
                                        batch_size=2, **FAST)
    assert resumed.computed == [4, 5, 6, 7] and torch.equal(resumed.images, whole.images)
    assert _pngs(tmp_path / "cut") == _pngs(tmp_path / "whole")


def test_a_channels_random_start_depends_on_seed_layer_channel_and_copy_only():
    net = _net()
    # one step: the image returned is the random start itself (the loop stops before updating)
    for preset in ("lucid", "yosinski-3"):
        one = dict(FAST, preset=preset, steps=1, copies=2)
        a = convsight.visualize_layer(net, "conv3", range(8), batch_size=3, **one)
        b = convsight.visualize_layer(net, "conv3", [6, 2, 5], batch_size=1, **one)
        c = convsight.visualize_layer(net, "conv3", [5, 2], batch_size=2, **one)
        for ch in (2, 5):
            for k in range(2):
                assert torch.equal(a.image(ch, k), b.image(ch, k))
                assert torch.equal(a.image(ch, k), c.image(ch, k))
        assert not torch.equal(a.image(2, 0), a.image(2, 1))  # each copy its own start
        other = convsight.visualize_layer(net, "conv2", [2], **one)  # another layer: another start
        assert not torch.equal(a.image(2, 0), other.image(2, 0))


def test_images_stored_by_a_call_cut_short_are_kept_and_returned(tmp_path):
    net = _net()
    _atlas(net, tmp_path / "atlas")
    convsight.visualize_layer(net, "conv3", range(3), atlas=tmp_path / "atlas", batch_size=2,
                              **FAST)  # batches [0, 1], [2]
    stored = _pngs(tmp_path / "atlas")
    out = convsight.visualize_layer(net, "conv3", range(4), atlas=tmp_path / "atlas",
                                    batch_size=2, **FAST)  # batches [0, 1] (done), [2, 3]
    assert out.computed == [3] and {k: _pngs(tmp_path / "atlas")[k] for k in stored} == stored
    pixels = np.asarray(convsight.Atlas.open(tmp_path / "atlas").synthesis("conv3", 2),
                        np.float32) / 255
    assert np.array_equal(out.image(2).permute(1, 2, 0).numpy(), pixels)


def test_copies_above_the_cap_are_refused():
    from convsight.syntheses import MAX_COPIES

    with pytest.raises(convsight.ConvsightError, match=f"copies=65 is too many: use at most "
                                                       f"{MAX_COPIES}"):
        convsight.visualize_layer(_net(), "conv3", [0], copies=65, **FAST)


@pytest.mark.parametrize("field, bad", [
    ("copies", "x"), ("copies", 10**6), ("copies", 0), ("copies", True), ("model", "custom"),
    ("model", {"name": 3, "fingerprint": "f"}), ("settings", []), ("settings", {"steps": "x"}),
    ("settings", {"steps": 6, "size": 10**6}), ("seed", -1), ("seed", 1.5), ("channels", 0),
    ("diversity", "x"), ("preset", None), ("layer", "conv2"), ("diversity_layer", 3),
])
def test_a_malformed_synthesis_index_is_a_one_line_error(tmp_path, field, bad):
    import json

    net = _net()
    _atlas(net, tmp_path / "atlas")
    convsight.visualize_layer(net, "conv3", [0], atlas=tmp_path / "atlas", **FAST)
    index = tmp_path / "atlas" / "syntheses" / "conv3" / "synthesis.json"
    index.write_text(json.dumps({**json.loads(index.read_text()), field: bad}))
    atlas = convsight.Atlas.open(tmp_path / "atlas")
    with pytest.raises(convsight.ConvsightError, match=f"not a valid synthesis index: {field}=") \
            as err:
        atlas.synthesis_info("conv3")
    assert "\n" not in str(err.value)
    with pytest.raises(convsight.ConvsightError, match=f"{field}="):
        atlas.synthesis("conv3", 0)
    assert atlas.synthesized_layers() == []  # not listed
    # continuing is refused (pointing at overwrite); overwrite works although the index is bad
    with pytest.raises(convsight.ConvsightError, match="use overwrite=True"):
        convsight.visualize_layer(net, "conv3", [0], atlas=atlas, **FAST)
    convsight.visualize_layer(net, "conv3", [0], atlas=atlas, overwrite=True, **FAST)
    assert atlas.synthesized_layers() == ["conv3"] and atlas.synthesis("conv3", 0) is not None


def _with_text_bomb(png: bytes) -> bytes:
    """The PNG with a zTXt chunk that inflates to 4 MiB (PIL refuses text over 1 MiB) after IHDR."""
    import struct
    import zlib

    body = b"junk\x00\x00" + zlib.compress(b"a" * (4 << 20))
    chunk = struct.pack(">I", len(body)) + b"zTXt" + body + \
        struct.pack(">I", zlib.crc32(b"zTXt" + body) & 0xFFFFFFFF)
    return png[:33] + chunk + png[33:]


def test_a_stored_synthesis_with_a_text_bomb_is_a_one_line_error(tmp_path):
    net = _net()
    _atlas(net, tmp_path / "atlas")
    convsight.visualize_layer(net, "conv3", [0], atlas=tmp_path / "atlas", **FAST)
    png = tmp_path / "atlas" / "syntheses" / "conv3" / "unit0.png"
    png.write_bytes(_with_text_bomb(png.read_bytes()))
    atlas = convsight.Atlas.open(tmp_path / "atlas")
    with pytest.raises(convsight.ConvsightError, match="cannot read the synthesis .*unit0.png: "
                                                       "Decompressed data too large"):
        atlas.synthesis("conv3", 0)


def test_cli_layer_into_an_atlas_and_bad_units(lite0, tmp_path, capsys):
    atlas = convsight.mine(lite0, [np.random.default_rng(0).random((64, 64, 3))] * 2, ["blocks.1"],
                           k=1, out=tmp_path / "atlas", progress=False)
    rc = main(["maximize", "--layer", "blocks.1", "--units", "0-1,5", "--steps", "2", "--size",
               "32", "--atlas", str(tmp_path / "atlas"), "--preset", "lucid"])
    assert rc == 0 and "3 units, 3 synthesised now" in capsys.readouterr().out
    assert atlas.synthesis("blocks.1", 5).size == (32, 32) and atlas.synthesis("blocks.1", 2) is None
    rc = main(["maximize", "--layer", "blocks.1", "--units", "0-99", "--steps", "2",
               "-o", str(tmp_path / "x.png")])
    err = capsys.readouterr().err
    assert rc == 2 and "valid channels of blocks.1 are 0..23" in err and "Traceback" not in err
    rc = main(["maximize", "--layer", "blocks.1", "--units", "3-x", "-o", str(tmp_path / "x.png")])
    err = capsys.readouterr().err
    assert rc == 2 and "argument --units: cannot read '3-x'" in err and len(err.splitlines()) == 1


def test_demo_section_quick_shows_syntheses_beside_patches(lite0, tmp_path, monkeypatch):
    from convsight.demo import microscope
    from convsight.demo.microscope import LAYER, section, settings
    from convsight.demo.mining import informative_units

    html = section(lite0, tmp_path, quick=True)
    assert "microscope.png" in html and (tmp_path / "microscope.png").is_file()
    atlas = convsight.Atlas.open(tmp_path / "microscope_atlas")
    units = informative_units(atlas, LAYER, settings(True)[0])
    assert len(units) == 4 and f"Units {', '.join(map(str, units))}:" in html
    assert [c for c in range(atlas.channels(LAYER)) if atlas.synthesis(LAYER, c) is not None] \
        == units
    # a second run into the same folder with other settings replaces the syntheses, not refused
    monkeypatch.setattr(microscope, "settings", lambda quick: (3, 2, 32))
    section(lite0, tmp_path, quick=True)
    assert [c for c in range(atlas.channels(LAYER)) if atlas.synthesis(LAYER, c) is not None] \
        == informative_units(atlas, LAYER, 3)


def test_cli_mine_synthesize(lite0, tmp_path, capsys):
    from PIL import Image

    folder = tmp_path / "photos"
    folder.mkdir()
    for i in range(2):
        Image.fromarray((np.random.default_rng(i).random((60, 70, 3)) * 255).astype(np.uint8)).save(
            folder / f"{i}.png")
    rc = main(["mine", str(folder), "--layers", "blocks.1", "-o", str(tmp_path / "atlas"), "--k", "1",
               "--synthesize", "2-4", "--synthesis-steps", "2", "--quiet"])
    assert rc == 0 and "blocks.1: syntheses of 3 units stored (3 made now)" in capsys.readouterr().out
    atlas = convsight.Atlas.open(tmp_path / "atlas")
    assert [atlas.synthesis("blocks.1", c) is not None for c in range(6)] == [False, False, True,
                                                                              True, True, False]
    assert atlas.synthesis_info("blocks.1")["preset"] == convsight.optimize.DEFAULT_PRESET
