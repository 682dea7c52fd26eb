"""One fact in one place: the synthesis recipe (checked once, used by the CLI and the explorer),
the atomic write and the weights fingerprint."""

from __future__ import annotations

import hashlib
import os
import stat
import threading
from pathlib import Path

import pytest
import torch
from torch import nn

import convsight
from convsight import optimize
from convsight.cli import main
from convsight.files import write_atomic
from convsight.models import weights_fingerprint
from convsight.optimize import MAX_SIZE, MIN_SIZE, Recipe, parse_knobs, settings_for


def _error_line(capsys) -> str:
    err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(err) == 1 and err[0].startswith("convsight: error: "), err
    return err[0]


@pytest.fixture
def no_listening(monkeypatch):
    """Fail the test if serve gets as far as binding a port or loading a model."""
    def never(*args, **kwargs):
        raise AssertionError("reached binding or loading")

    monkeypatch.setattr("convsight.web.server.bind", never)
    monkeypatch.setattr("convsight.models.load_model", never)


@pytest.mark.parametrize("flags, said", [
    (["--synth-preset", "lucd"], "--synth-preset: unknown preset 'lucd'. Did you mean 'lucid'?"),
    (["--synth-size", str(MIN_SIZE - 1)], f"--synth-size: size={MIN_SIZE - 1} is not valid: use "
                                          f"a whole number of pixels from {MIN_SIZE} to {MAX_SIZE}"),
    (["--synth-size", str(MAX_SIZE + 1)], "--synth-size: size="),
    (["--synth-steps", "0"], "--synth-steps: steps=0 is not valid"),
])
def test_serve_refuses_a_bad_recipe_before_it_listens(no_listening, capsys, flags, said):
    assert main(["serve", "--model", "efficientnet_lite0", "--port", "0", *flags]) == 2
    assert said in _error_line(capsys)


def test_serve_builds_one_checked_recipe_at_start(monkeypatch):
    """The recipe serve hands the explorer is an ``optimize.Recipe``, at the presets' range:
    the smallest size the presets take is taken (serve once refused anything under 16)."""
    got = {}
    monkeypatch.setattr("convsight.web.server.bind", lambda host, port: type(
        "Sock", (), {"close": lambda self: None})())
    monkeypatch.setattr("convsight.web.serve", lambda *a, **kw: got.update(kw))
    assert main(["serve", "--model", "efficientnet_lite0", "--port", "0",
                 "--synth-size", str(MIN_SIZE), "--synth-preset", "yosinski-3"]) == 0
    recipe = got["synthesis"]
    assert isinstance(recipe, Recipe) and isinstance(recipe, convsight.web.SynthesisSettings)
    assert (recipe.preset, recipe.steps, recipe.size, recipe.seed) == ("yosinski-3", 64, MIN_SIZE, 0)
    assert recipe.settings == settings_for("yosinski-3", steps=64, size=MIN_SIZE)


def test_the_programmatic_server_refuses_what_is_not_a_recipe(no_listening):
    from convsight.web import serve

    with pytest.raises(convsight.ConvsightError, match="synthesis=.* is not valid"):
        serve(model="efficientnet_lite0", synthesis={"preset": "lucid"})


def test_maximize_cli_reads_the_recipe_before_loading_the_model(no_listening, capsys):
    assert main(["maximize", "--target", "class:1", "--size", str(MIN_SIZE - 1)]) == 2
    assert f"from {MIN_SIZE} to {MAX_SIZE}" in _error_line(capsys)
    assert main(["maximize", "--target", "class:1", "--set", "lr=x"]) == 2
    assert "cannot read --set 'lr=x': lr needs a float value" in _error_line(capsys)


def test_the_maximize_cli_passes_the_recipe_as_it_is(monkeypatch, tmp_path):
    got = {}

    def fake(net, targets, **kw):
        got.update(kw, targets=targets)
        raise convsight.ConvsightError("stop here")

    monkeypatch.setattr("convsight.maximize", fake)
    main(["maximize", "--target", "class:1", "--preset", "yosinski-3", "--steps", "7",
          "--seed", "3", "--set", "blur_radius=0.5", "-o", str(tmp_path / "m.png")])
    recipe = Recipe("yosinski-3", steps=7, seed=3, knobs={"blur_radius": 0.5})
    assert {k: got[k] for k in recipe.arguments()} == recipe.arguments()
    assert [str(t) for t in got["targets"]] == ["class:1"]


def test_a_recipe_is_checked_when_built():
    r = Recipe("lucid", steps=10, size=64, seed=2, knobs=(("lr", 0.1),))
    assert r.settings == settings_for("lucid", steps=10, size=64, lr=0.1)
    assert r == Recipe("lucid", 10, 64, 2, {"lr": 0.1}) and hash(r) == hash(Recipe(
        "lucid", 10, 64, 2, {"lr": 0.1}))
    for bad, said in [({"preset": "lucd"}, "unknown preset"), ({"size": 7}, "size=7"),
                      ({"seed": -1}, "seed=-1"), ({"knobs": {"lrr": 1}}, "unknown setting 'lrr'"),
                      ({"knobs": {"decay": 0.1}}, "decay works on pixels")]:
        with pytest.raises(convsight.ConvsightError, match=said):
            Recipe(**bad)


def test_the_stored_syntheses_recipe_is_the_same_recipe():
    from convsight.web.syntheses import Recipe as Stored

    stored = Stored.of({"preset": "lucid", "settings": {"steps": 20, "size": None}, "seed": 1,
                        "copies": 2, "diversity": 0.5})
    assert isinstance(stored, Recipe) and stored.settings.steps == 20
    assert stored.text() == ("preset lucid, 20 steps, the network's input size, seed 1, "
                             "2 facets per unit, diversity 0.5")
    with pytest.raises(convsight.ConvsightError, match="unknown preset"):
        Stored.of({"preset": "gone", "settings": {"steps": 20}, "seed": 1, "copies": 1,
                   "diversity": 0})


def test_knobs_are_read_beside_the_presets():
    assert parse_knobs(["lr=0.1", "clip=false", "blur-every=3", "transforms=standard"]) == {
        "lr": 0.1, "clip": False, "blur_every": 3, "transforms": "standard"}
    with pytest.raises(convsight.ConvsightError, match="Did you mean: lr"):
        parse_knobs(["lrr=1"])
    assert optimize.presets.parse_knobs is parse_knobs


# ----- one atomic write ---------------------------------------------------------------------
def test_the_web_cache_and_uploads_use_the_one_atomic_write():
    from convsight.web import cache, inputs

    assert not hasattr(cache, "atomic_write")
    assert cache.write_atomic is write_atomic and inputs.write_atomic is write_atomic


def test_atomic_writes_from_threads_to_one_path(tmp_path):
    """Threads of one process writing one path each have their own temporary file (the one
    named by the process id alone would be shared); the file keeps the usual permissions."""
    path = tmp_path / "f.bin"
    payloads = [bytes([i]) * 200_000 for i in range(6)]
    errors = []

    def write(data):
        try:
            for _ in range(10):
                write_atomic(path, data)
        except Exception as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=write, args=(p,)) for p in payloads]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors and path.read_bytes() in payloads
    assert sorted(p.name for p in tmp_path.iterdir()) == ["f.bin"]
    umask = os.umask(0)
    os.umask(umask)
    assert stat.S_IMODE(path.stat().st_mode) == 0o666 & ~umask


# ----- one fingerprint ----------------------------------------------------------------------
def _by_hand(module: nn.Module) -> str:
    """The fingerprint atlases have recorded: name and bytes of each state-dict entry, bfloat16
    as float32."""
    h = hashlib.sha256()
    for name, t in module.state_dict().items():
        h.update(name.encode())
        t = t.float() if t.dtype == torch.bfloat16 else t
        h.update(bytes(t.detach().contiguous().view(-1).view(torch.uint8).tolist()))
    return h.hexdigest()[:16]


def test_one_fingerprint_for_every_dtype():
    torch.manual_seed(0)
    module = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4))
    net = convsight.Network(module)
    assert weights_fingerprint(net) == weights_fingerprint(module) == _by_hand(module)
    half = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4)).to(torch.bfloat16)
    half.load_state_dict({k: v.to(torch.bfloat16) if v.is_floating_point() else v
                          for k, v in module.state_dict().items()})
    assert weights_fingerprint(half) == _by_hand(half) != weights_fingerprint(module)
    if hasattr(torch, "float8_e4m3fn"):
        eight = nn.Linear(2, 2).to(torch.float8_e4m3fn)
        assert len(weights_fingerprint(eight)) == 16
    other = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4))
    assert weights_fingerprint(other) != weights_fingerprint(module)


def test_the_explorer_and_visualize_layer_share_the_fingerprint():
    import convsight.microscope as microscope
    from convsight.web import syntheses, workbench

    assert not hasattr(microscope, "model_fingerprint")
    assert syntheses.weights_fingerprint is weights_fingerprint
    assert workbench.weights_fingerprint is weights_fingerprint
    assert microscope.weights_fingerprint is weights_fingerprint


def test_every_name_in_the_names_section_exists():
    """docs/architecture.md's "Names" section points at real objects."""
    import importlib
    import re

    text = (Path(__file__).resolve().parents[1] / "docs" / "architecture.md").read_text()
    section = text.split("## Names", 1)[1]
    names = set(re.findall(r"`([a-z_]+(?:\.[a-z_]+)*\.[A-Za-z_]+)`", section))
    assert {"optimize.Recipe", "models.weights_fingerprint", "files.write_atomic",
            "targets.check_target", "web.SynthesisSettings"} <= names
    for name in sorted(names):
        module, _, attr = name.rpartition(".")
        assert hasattr(importlib.import_module(f"convsight.{module}"), attr), name
