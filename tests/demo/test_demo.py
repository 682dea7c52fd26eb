"""The demo's driver (named steps, estimates, timings, where to go next) and its choices of units,
on hand-built data; the sections themselves run in test_cli (the quick demo), test_maximize,
test_microscope and test_grayscale."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

import convsight
from convsight.atlas import Atlas
from convsight.demo import EXPECTED, _estimate, demo, next_steps
from convsight.demo.filters import SAME, distinct_units
from convsight.demo.mining import informative_units
from convsight.faces import FaceNet

STEP = "drawing nothing in particular"


def first(net, out, quick, progress=False):
    (out / "first.txt").write_text("1")
    return "<h2>first</h2>"


def second(net, out, quick):  # an old-style section, without a progress argument
    return f"<h2>second {quick}</h2>"


def _atlas(images_of_units: list[list[int]], photos: list[str]) -> Atlas:
    """A one-layer atlas: unit c's hits are images ``images_of_units[c]``; image i is a crop of
    photo ``photos[i]`` (its folder)."""
    k = max(len(row) for row in images_of_units)
    image = np.full((len(images_of_units), k), -1, np.int64)
    for c, row in enumerate(images_of_units):
        image[c, :len(row)] = row
    arrays = {"layer": {"value": np.ones(image.shape, np.float32), "image": image,
                        "y": np.zeros(image.shape, np.int32), "x": np.zeros(image.shape, np.int32)}}
    return Atlas(arrays, {"layer": (len(images_of_units), 2, 2)}, k,
                 [f"photos/{p}/{i:04d}.png" for i, p in enumerate(photos)], [])


def test_informative_units_prefer_many_photos_and_skip_repeats():
    # images 0-5 come from photos a, a, b, c, d, e
    photos = ["a", "a", "b", "c", "d", "e"]
    units = [[0, 1],        # 0: one photo (a)
             [0, 2, 3],     # 1: three photos (a, b, c)
             [2, 3, 4, 5],  # 2: four photos
             [2, 3, 4],     # 3: three photos, but all of its images are unit 2's
             [1, 5],        # 4: two photos (a, e)
             [0, 1, 4]]     # 5: two photos (a, d)
    atlas = _atlas(units, photos)
    # by photos: 2 (4), then 1 and 3 (3 each, by channel), 4 and 5 (2), 0 (1)
    assert informative_units(atlas, "layer", 1) == [2]
    # 1 shares {2, 3} = 2 of its 3 images with unit 2: skipped; 3 shares 3 of 3: skipped; 4
    # shares {5}, 1 of its 2 (half): skipped; 5 shares {4}, 1 of 3: kept
    assert informative_units(atlas, "layer", 2) == [2, 5]
    # then 0 shares {0, 1}, 2 of 2, with unit 5: skipped. Only two units qualify.
    assert informative_units(atlas, "layer", 6) == [2, 5]


def _face_net(hidden_weights: torch.Tensor, out_weights: torch.Tensor) -> convsight.Network:
    model = FaceNet(hidden_weights.shape[0])
    with torch.no_grad():
        model.hidden.weight.copy_(hidden_weights)
        model.out.weight.copy_(out_weights)
    return convsight.Network(model, mean=(0.0,), std=(1.0,), input_size=(25, 25),
                             class_names=["non-face", "face"], name="faces")


def test_distinct_units_by_hand():
    g = torch.Generator().manual_seed(0)
    a, b, c = (torch.randn(625, generator=g) for _ in range(3))
    hidden = torch.stack([a, 2 * a + 0.01 * b, b, c, -a, c])
    # votes (face minus non-face) times weight norms: unit 1 moves the score most (about twice
    # unit 0), unit 5 under a tenth of that
    out = torch.tensor([[0.0, 0.0, 0.0, 0.0, 0.0, 0.0], [1.0, 1.0, 0.5, 0.3, 0.4, 0.001]])
    chosen, influence, cos = distinct_units(_face_net(hidden, out), n=8)
    assert int(influence.argmax()) == 1 and influence[5] < 0.1 * influence[1]
    # 1 first; then b (unit 2) and c (unit 3) are far from it and from each other; unit 0 and
    # unit 4 (the same template, negated) are copies of unit 1; unit 5 (c again) is weak
    assert chosen[0] == 1 and sorted(chosen) == [1, 2, 3]
    assert float(cos[0, 1]) > SAME and float(cos[4, 1]) > SAME and float(cos[2, 3]) < 0.2
    two = distinct_units(_face_net(hidden, out), n=2)[0]
    assert two[0] == 1 and two[1] in (2, 3)


def test_estimate_scales_the_expected_seconds_by_the_speed_so_far():
    def sec(name):
        def fn(net, out, quick):
            return ""
        fn.__module__ = f"convsight.demo.{name}"  # the section's name is its module's
        return fn

    chosen = [sec("mining"), sec("microscope"), sec("synthesis")]
    full = [EXPECTED[n][1] for n in ("mining", "microscope", "synthesis")]
    assert _estimate(chosen, 0, 0.0, quick=False) == pytest.approx(sum(full))
    # the first section took twice its expected time: the rest is expected to as well
    assert _estimate(chosen, 1, 2.0 * full[0], quick=False) == pytest.approx(2 * sum(full[1:]))
    assert _estimate(chosen, 3, 99.0, quick=False) == 0


def test_demo_names_each_step_and_records_its_seconds(tmp_path, capsys):
    net = convsight.Network(torch.nn.Conv2d(3, 2, 3), mean=(0.5,) * 3, std=(0.5,) * 3,
                            input_size=(8, 8), name="tiny")
    index = demo(tmp_path / "d", model=net, sections=[first, second], progress=True)
    err = capsys.readouterr().err.splitlines()
    assert err[0].startswith(f"[1/2] {STEP} (demo: about ") and err[0].endswith(" s left)")
    assert err[1].startswith(f"[2/2] {STEP} (demo: about ")
    timings = json.loads((tmp_path / "d" / "timings.json").read_text())
    assert [t["section"] for t in timings["sections"]] == ["test_demo", "test_demo"]
    assert all(t["seconds"] >= 0 and t["step"] == STEP for t in timings["sections"])
    page = index.read_text()
    assert page.count("this section took") == 2 and "<h2>second False</h2>" in page
    assert "convsight live" in page and "convsight serve" not in page  # no atlas was mined
    calls = []
    demo(tmp_path / "q", model=net, sections=[first], progress=lambda done, total:
         calls.append((done, total)))
    assert calls == [(1, 1)] and capsys.readouterr().err == ""


def test_next_steps_name_the_atlas_when_there_is_one(tmp_path):
    assert [c for c, _ in next_steps(tmp_path)] == ["convsight live"]
    (tmp_path / "atlas").mkdir()
    (tmp_path / "atlas" / "atlas.json").write_text("{}")
    assert [c for c, _ in next_steps(tmp_path)] == ["convsight live",
                                                    f"convsight serve {tmp_path / 'atlas'}"]


def test_merged_randomisation_steps_and_their_names():
    from convsight.demo.sanity import _merged, _span
    from convsight.trust import randomization_steps

    from ..tinynets import tiny_net

    assert _span("blocks.15", "blocks.13") == "blocks.15..13"
    assert _span("fc", "conv_head") == "fc..conv_head"
    assert _span("blocks.0", "conv_stem") == "blocks.0..conv_stem"
    assert _span("fc", "fc") == "fc"
    net = convsight.Network(tiny_net(), input_size=(32, 32))
    x = torch.rand(1, 3, 32, 32)
    steps = randomization_steps(net, x, "block")  # fc, conv3, conv2, bn1, conv1 (output first)
    group, deepest = _merged(net, x, 2)
    size = -(-len(steps) // 2)
    names = [group(m) for _, members in steps for m in members]
    assert len(set(names)) == 2 and names[0] == _span(steps[0][0], steps[size - 1][0])
    assert deepest[names[0]] == steps[size - 1][0] and deepest[names[-1]] == steps[-1][0]


def test_summary_names_the_program_as_it_was_started(monkeypatch):
    import shutil

    from convsight.cli import demo as cli_demo

    monkeypatch.setattr(shutil, "which", lambda name: None)  # not on PATH (after `make demo`)
    monkeypatch.setattr("sys.argv", [".venv/bin/convsight", "demo"])
    assert cli_demo._program() == ".venv/bin/convsight"
    monkeypatch.setattr("sys.argv", ["/x/convsight/__main__.py", "demo"])  # python -m convsight
    assert cli_demo._program() == "convsight"
    monkeypatch.setattr(shutil, "which", lambda name: "/usr/bin/convsight")
    monkeypatch.setattr("sys.argv", [".venv/bin/convsight", "demo"])
    assert cli_demo._program() == "convsight"
