"""An atlas folder survives kills mid-save, and every damaged file is refused in one line."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
import zipfile

import numpy as np
import pytest
import torch
from PIL import Image

import convsight
from convsight.atlas import Atlas


def small_atlas(k: int, fill: float, images: int = 5) -> Atlas:
    """Two layers of (channels, k) hits; ``fill`` makes the two versions easy to tell apart."""
    arrays = {}
    for name, channels in (("a", 3), ("b", 4)):
        arrays[name] = {"value": np.full((channels, k), fill, np.float32),
                        "image": np.arange(channels * k, dtype=np.int64).reshape(channels, k) % images,
                        "y": np.zeros((channels, k), np.int32), "x": np.zeros((channels, k), np.int32)}
    shapes = {"a": (3, 4, 4), "b": (4, 2, 2)}
    return Atlas(arrays, shapes, k, [f"img{i}.png" for i in range(images)], [],
                 model_name="resnet18", input_size=(32, 32))


def same(a: Atlas, b: Atlas) -> bool:
    return a.k == b.k and a.layers == b.layers and a.image_paths == b.image_paths and all(
        np.array_equal(a.arrays(n)[key], b.arrays(n)[key]) for n in a.layers
        for key in ("value", "image", "y", "x"))


SAVER = textwrap.dedent("""
    import sys
    sys.path.insert(0, sys.argv[2])
    from test_atlas_files import small_atlas
    one, two = small_atlas(2, 1.0), small_atlas(1, 2.0, images=7)
    print("ready", flush=True)
    i = 0
    while True:
        (one if i % 2 else two).save(sys.argv[1])
        i += 1
""")


def test_a_kill_at_any_moment_leaves_the_old_or_the_new_atlas(tmp_path):
    """A real process saves two different atlases in turn into one folder and is killed (-9) at
    12 random moments; each time what is left opens as one of the two, whole, and the leftovers
    of the cut-short save are gone."""
    folder = tmp_path / "atlas"
    one, two = small_atlas(2, 1.0), small_atlas(1, 2.0, images=7)
    one.save(folder)
    seen = {"one": 0, "two": 0}
    rng = np.random.default_rng(0)
    here = os.path.dirname(__file__)
    for _ in range(12):
        proc = subprocess.Popen([sys.executable, "-c", SAVER, str(folder), here],
                                stdout=subprocess.PIPE, text=True)
        assert proc.stdout.readline().strip() == "ready"
        time.sleep(float(rng.uniform(0.0, 0.05)))
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        opened = Atlas.open(folder)
        assert same(opened, one) or same(opened, two), f"a torn atlas opened (so far {seen})"
        seen["one" if same(opened, one) else "two"] += 1
        leftovers = [p.name for p in folder.iterdir() if p.name.endswith((".tmp", ".new"))]
        assert not leftovers, leftovers
    print("kills that left each version:", seen)


def test_a_committed_save_cut_short_is_finished_on_open(tmp_path):
    """Killed after the new manifest was committed but before the renames: open rolls forward."""
    folder = tmp_path / "atlas"
    small_atlas(2, 1.0).save(folder)
    new = small_atlas(1, 2.0, images=7)
    new.save(tmp_path / "staging")
    for name in ("top.npz", "images.json", "atlas.json"):
        (folder / f"{name}.new").write_bytes((tmp_path / "staging" / name).read_bytes())
    os.replace(folder / "top.npz.new", folder / "top.npz")  # one rename done, two to go
    assert same(Atlas.open(folder), new)


def test_uncommitted_new_files_are_dropped(tmp_path):
    folder = tmp_path / "atlas"
    old = small_atlas(2, 1.0)
    old.save(folder)
    (folder / "top.npz.new").write_bytes(b"half")  # killed before the manifest was committed
    (folder / ".top.npz.999999999.tmp").write_bytes(b"half")  # a temp file of a dead writer
    assert same(Atlas.open(folder), old)
    assert sorted(p.name for p in folder.iterdir()) == ["atlas.json", "images.json", "top.npz"]


def test_a_reader_during_a_save_leaves_the_writer_its_files(tmp_path):
    """`serve` or `report` opening the folder while `mine` saves into it: the reader sees the old
    atlas and must not delete the writer's uncommitted files, so the save still commits whole."""
    from convsight.atlas_store import SAVING, _roll_forward

    folder = tmp_path / "atlas"
    old, new = small_atlas(2, 1.0), small_atlas(1, 2.0, images=7)
    old.save(folder)
    new.save(tmp_path / "staging")
    lock = folder / f"{SAVING}{os.getpid()}"  # a live writer (this process) is saving
    lock.touch()
    for name in ("top.npz", "images.json"):  # step 1 done: the new data files are written
        (folder / f"{name}.new").write_bytes((tmp_path / "staging" / name).read_bytes())
    assert same(Atlas.open(folder), old)  # a reader in between
    assert (folder / "top.npz.new").exists() and (folder / "images.json.new").exists()
    (folder / "atlas.json.new").write_bytes((tmp_path / "staging" / "atlas.json").read_bytes())
    _roll_forward(folder)  # the writer commits and finishes
    lock.unlink()
    assert same(Atlas.open(folder), new)


def test_files_from_two_runs_are_refused(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    small_atlas(2, 1.0).save(a)
    small_atlas(1, 2.0).save(b)
    (a / "top.npz").write_bytes((b / "top.npz").read_bytes())
    with pytest.raises(convsight.ConvsightError, match="top.npz does not match atlas.json"):
        Atlas.open(a)


def _damage(folder, how):
    meta = json.loads((folder / "atlas.json").read_text())
    meta.pop("checksums")  # an atlas written by convsight 0.1 has none: the checks still apply
    if how == "truncated npz":
        data = (folder / "top.npz").read_bytes()
        (folder / "top.npz").write_bytes(data[: len(data) // 2])
    elif how == "empty npz":
        (folder / "top.npz").write_bytes(b"")
    elif how == "json list":
        meta = [meta]
    elif how == "missing key":
        del meta["layers"]
    elif how == "image id out of range":
        top = dict(np.load(folder / "top.npz"))
        top["layer0_image"] = top["layer0_image"] + 50
        with zipfile.ZipFile(folder / "top.npz", "w") as z:
            for key, value in top.items():
                with z.open(f"{key}.npy", "w") as f:
                    np.lib.format.write_array(f, value)
    elif how == "k mismatch":
        meta["k"] = 3
    elif how == "bad json":
        (folder / "atlas.json").write_text("{not json")
        return
    (folder / "atlas.json").write_text(json.dumps(meta))


@pytest.mark.parametrize("how, message", [
    ("truncated npz", "top.npz is damaged"), ("empty npz", "top.npz is damaged"),
    ("json list", "not a convsight atlas"), ("missing key", "no valid 'layers'"),
    ("image id out of range", "image ids outside 0..4"), ("k mismatch", "do not match"),
    ("bad json", "not valid JSON")])
def test_damaged_files_give_one_line(tmp_path, how, message):
    folder = tmp_path / "atlas"
    small_atlas(2, 1.0).save(folder)
    _damage(folder, how)
    with pytest.raises(convsight.ConvsightError, match=message) as err:
        Atlas.open(folder)
    assert "\n" not in str(err.value) and str(folder) in str(err.value)


@pytest.mark.parametrize("how", ["truncated npz", "json list", "image id out of range"])
def test_cli_report_says_one_line_and_exits_2(tmp_path, how):
    folder = tmp_path / "atlas"
    small_atlas(2, 1.0).save(folder)
    _damage(folder, how)
    out = subprocess.run([sys.executable, "-m", "convsight.cli", "report", str(folder), "-o",
                          str(tmp_path / "r.html")], capture_output=True, text=True, timeout=120)
    assert out.returncode == 2
    assert "Traceback" not in out.stderr and out.stderr.count("\n") == 1, out.stderr


def test_report_escapes_every_string_from_the_atlas(tmp_path):
    """An atlas is a file people share: its layer names and shapes must not become markup."""
    from convsight.report import write_report

    atlas = small_atlas(2, 1.0)
    evil = "a'><script>alert(1)</script>"
    atlas._arrays = {evil: atlas._arrays["a"], 'b" onmouseover="x': atlas._arrays["b"]}
    atlas.layers = list(atlas._arrays)
    atlas.shapes = {evil: (3, 4, 4), 'b" onmouseover="x': (4, 2, 2)}
    atlas.model_name = "<b>m</b>"
    folder = tmp_path / "atlas"
    atlas.save(folder)
    for i in range(5):
        Image.fromarray(np.full((40, 40, 3), 40 * i, np.uint8)).save(folder / f"img{i}.png")
    model = torch.nn.Sequential()
    model.add_module(evil, torch.nn.Conv2d(3, 3, 3, stride=8, padding=1))
    model.add_module('b" onmouseover="x', torch.nn.Conv2d(3, 4, 3, stride=2, padding=1))
    net = convsight.Network(model, input_size=(32, 32))
    page = write_report(Atlas.open(folder), tmp_path / "r.html", detail_units=0, progress=False,
                        inline=True, net=net).read_text()
    assert "<script" not in page and "<b>m</b>" not in page
    assert "&lt;script&gt;" in page and "onmouseover=&quot;x" in page
    atlas.shapes[evil] = ("<script>", 4, 4)
    atlas.save(folder)
    with pytest.raises(convsight.ConvsightError, match="a shape is a list of whole numbers"):
        Atlas.open(folder)
    for attribute in __import__("re").findall(r"(?:id|href)='([^']*)'", page):
        assert __import__("re").fullmatch(r"#?[A-Za-z0-9_-]+", attribute), attribute


@pytest.mark.parametrize("content", [b"", b"PK\x03\x04 truncated zip", b"not a checkpoint"])
def test_a_damaged_checkpoint_on_resume_is_one_line(tmp_path, content):
    from convsight.mining import photo_folder

    photos = tmp_path / "photos"
    photo_folder(photos, n=3, seed=1, min_side=40, max_side=60)
    out = tmp_path / "atlas"
    out.mkdir()
    (out / "checkpoint.npz").write_bytes(content)
    run = subprocess.run([sys.executable, "-m", "convsight.cli", "mine", str(photos), "--layers",
                          "blocks.1", "-o", str(out), "--resume", "--quiet"],
                         capture_output=True, text=True, timeout=300)
    assert run.returncode == 2, run.stderr
    assert "Traceback" not in run.stderr and run.stderr.count("\n") == 1, run.stderr
    assert "checkpoint" in run.stderr and "Delete it" in run.stderr


@pytest.mark.parametrize("content, reason", [
    (b"", "the file is empty"), (b"hello world", "not a PyTorch weights file"),
    ("truncated", "truncated or damaged"), ("whole", "holds Python objects besides tensors")])
def test_weights_files_that_do_not_load_say_why(tmp_path, content, reason):
    path = tmp_path / "w.pth"
    model = torch.nn.Linear(2, 2)
    if content == "truncated":
        torch.save(model.state_dict(), path)
        path.write_bytes(path.read_bytes()[:200])
    elif content == "whole":
        torch.save(model, path)
    else:
        path.write_bytes(content)
    with pytest.raises(convsight.WeightsError, match=reason):
        convsight.load_model("resnet18", weights=path)


def test_sizes_that_would_take_tens_of_gigabytes_are_refused(tmp_path):
    with pytest.raises(convsight.ConvsightError, match="use 1 to 2048 pixels"):
        convsight.Network(torch.nn.Conv2d(3, 3, 3), input_size=50000)
    net = convsight.Network(torch.nn.Sequential(torch.nn.Conv2d(3, 3, 3)), input_size=32)
    net.input_size = (50000, 50000)  # set after the fact: mine checks again
    with pytest.raises(convsight.ConvsightError, match="use 1 to 2048 pixels"):
        convsight.mine(net, [np.zeros((8, 8, 3))], ["0"], progress=False)


def _deep(depth: int) -> str:
    return "[" * depth + "]" * depth


@pytest.mark.parametrize("key, value, message", [
    ("input_size", [224], "input_size"), ("input_size", [0, 0], "input_size"),
    ("input_size", [-1, -1], "input_size"), ("input_size", [4096, 224], "input_size"),
    ("input_size", [224.5, 224], "input_size"), ("input_size", [True, 224], "input_size"),
    ("resize_ratio", 1e308, "resize_ratio"), ("resize_ratio", 0, "resize_ratio"),
    ("resize_ratio", -1.5, "resize_ratio"), ("resize_ratio", float("nan"), "resize_ratio"),
    ("k", 0, "k=0"), ("mean", [0.5, "x", 0.5], "mean"), ("std", [0.2, 0.0, 0.2], "std"),
    ("mean", [0.5, 0.5], "mean"),
])
def test_values_out_of_range_are_refused_at_open(tmp_path, key, value, message):
    """Values were type-checked only: input_size [0, 0] made every page a 500, [224] a
    traceback at start, resize_ratio 1e308 500s on tiles (issue 23)."""
    folder = tmp_path / "atlas"
    small_atlas(2, 1.0).save(folder)
    meta = json.loads((folder / "atlas.json").read_text())
    meta[key] = value
    (folder / "atlas.json").write_text(json.dumps(meta))
    with pytest.raises(convsight.ConvsightError, match=message) as err:
        Atlas.open(folder)
    assert "\n" not in str(err.value) and len(str(err.value)) < 400


@pytest.mark.parametrize("where", ["info", "layers"])
def test_a_deeply_nested_atlas_json_is_one_line(tmp_path, where):
    folder = tmp_path / "atlas"
    small_atlas(2, 1.0).save(folder)
    body = json.loads((folder / "atlas.json").read_text())
    text = json.dumps(dict(body, **{where: "@@DEEP@@"}))
    (folder / "atlas.json").write_text(text.replace('"@@DEEP@@"', _deep(100_000)))
    with pytest.raises(convsight.ConvsightError, match="nested") as err:
        Atlas.open(folder)
    assert "\n" not in str(err.value)
    meta = dict(body, info={"a": json.loads(_deep(40))})  # parses, but deeper than any atlas
    (folder / "atlas.json").write_text(json.dumps(meta))
    with pytest.raises(convsight.ConvsightError, match="nested"):
        Atlas.open(folder)


@pytest.mark.parametrize("axis, value", [("y", 4), ("x", 7), ("y", -1)])
def test_positions_outside_the_layer_are_refused_at_open(tmp_path, axis, value):
    """Layer "a" is 3 x 4 x 4: a position 4 (or -1) is outside its maps; they gave 500s on
    tiles and patches."""
    atlas = small_atlas(2, 1.0)
    atlas.arrays("a")[axis][1, 0] = value
    folder = atlas.save(tmp_path / "atlas")
    with pytest.raises(convsight.ConvsightError, match=f"positions outside") as err:
        Atlas.open(folder)
    assert "layer a" in str(err.value) and "\n" not in str(err.value)


def test_a_deeply_nested_synthesis_index_is_one_line(tmp_path):
    from convsight.syntheses import SynthesisStore, layer_folder

    folder = layer_folder(tmp_path, "a")
    folder.mkdir(parents=True)
    (folder / "synthesis.json").write_text('{"format": ' + _deep(100_000) + "}")
    store = SynthesisStore(tmp_path)
    with pytest.raises(convsight.ConvsightError, match="nested") as err:
        store.info("a")
    assert "\n" not in str(err.value)
    assert store.layers() == []
