"""The Atlas split of issue 19: data (``AtlasData``), model and image access (``AtlasAccess``) and
pictures (``convsight.figures``) apart; the explorer's routes take its parts directly.

``tests/data/atlas_v1`` was saved, and ``tests/data/atlas_v1_drawn`` drawn, by the code before the
split (``tests/data/make_atlas_v1.py``, run on commit 101cd62): it must open, give the same
hits, boxes and crop rules, draw the same pictures and save the same files.
"""

from __future__ import annotations

import ast
import inspect
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import convsight
from convsight.atlas import Atlas
from convsight.atlas_access import AtlasAccess
from convsight.atlas_data import AtlasData
from convsight.pictures import save_png

ROOT = next(p for p in Path(__file__).resolve().parents if (p / "pyproject.toml").is_file())
DATA = next(ROOT.joinpath("tests").rglob("atlas_v1")).parent  # wherever tests/ keeps its data
OLD, DRAWN = DATA / "atlas_v1", DATA / "atlas_v1_drawn"
SRC = ROOT / "src" / "convsight"


@pytest.fixture(scope="module")
def old(tmp_path_factory):
    folder = tmp_path_factory.mktemp("old") / "atlas"
    shutil.copytree(OLD, folder)  # the pictures read nothing but the copy
    return Atlas.open(folder), json.loads((DRAWN / "expected.json").read_text())


def _pixels(path: Path) -> np.ndarray:
    return np.asarray(Image.open(path))


def _same_png(array: np.ndarray, expected: Path, tmp_path: Path) -> None:
    save_png(array, tmp_path / expected.name)
    assert np.array_equal(_pixels(tmp_path / expected.name), _pixels(expected)), expected.name


def test_an_atlas_saved_before_the_split_gives_the_same_hits_and_boxes(old):
    atlas, expected = old
    assert atlas.layers == list(expected["layers"])
    for layer, want in expected["layers"].items():
        assert [[h.image, h.y, h.x, h.value] for h in atlas.top(layer, 1)] == \
            [[int(i), int(y), int(x), v] for i, y, x, v in want["top"]]
        assert atlas.crop_rule(layer) == want["crop_rule"]
        assert list(atlas.box(layer, 1, 0)) == want["box"]
        assert list(atlas.box(layer, 1, 0, crop="effective")) == want["effective"]
        access = AtlasAccess(atlas)  # the same answers without the conveniences
        assert list(access.box(layer, 1, 0, crop="effective")) == want["effective"]


def test_an_atlas_saved_before_the_split_draws_the_same_pictures(old, tmp_path):
    atlas, expected = old
    for layer in expected["layers"]:
        patch = np.asarray(atlas.patch(layer, 1, 0))
        assert np.array_equal(patch, _pixels(DRAWN / f"patch-{layer}.png")), layer
        _same_png(atlas.layer_grid(layer, max_units=4), DRAWN / f"grid-{layer}.png", tmp_path)
        # the figure called directly, on the bare data (it makes an access of its own)
        data = AtlasData.open(atlas.path)
        assert type(data) is AtlasData
        _same_png(convsight.figures.layer_grid(data, layer, max_units=4, labels=True),
                  DRAWN / f"grid-{layer}.png", tmp_path)
    _same_png(atlas.unit_figure("blocks.2", 1, method="guided"), DRAWN / "unit-blocks.2.png",
              tmp_path)


def test_an_atlas_saved_before_the_split_saves_the_same_files(tmp_path):
    atlas = Atlas.open(OLD)
    atlas.save(tmp_path / "again")
    for name in ("atlas.json", "images.json"):
        assert json.loads((tmp_path / "again" / name).read_text()) == \
            json.loads((OLD / name).read_text()), name
    with np.load(OLD / "top.npz") as before, np.load(tmp_path / "again" / "top.npz") as after:
        assert sorted(before.files) == sorted(after.files)
        for key in before.files:
            assert np.array_equal(before[key], after[key]) and before[key].dtype == after[key].dtype


def _imports(path: Path) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            found.add(("." * node.level) + (node.module or ""))
        elif isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
    return found


def test_atlas_data_runs_no_model_reads_no_image_draws_nothing():
    imports = _imports(SRC / "atlas_data.py")
    assert not imports & {"torch", ".models", ".images", ".receptive", ".figures", ".pictures",
                          ".atlas_access", "PIL"}, imports
    methods = {name for name, v in vars(AtlasData).items() if callable(v) or
               isinstance(v, (property, classmethod, staticmethod))}
    assert methods == {"__init__", "__repr__", "image_count", "_layer", "channels", "arrays",
                       "top", "hit", "_syntheses", "synthesis", "synthesis_value",
                       "synthesis_info", "synthesized_layers", "metadata", "save", "open"}


def test_atlas_adds_only_documented_one_line_conveniences():
    """Each method ``Atlas`` adds to its data is one call of its access or of a figure, and is
    named in the docs (docs/mining.md lists them)."""
    tree = ast.parse(inspect.getsource(Atlas))
    docs = (ROOT / "docs" / "mining.md").read_text()
    added = [n for n in tree.body[0].body if isinstance(n, ast.FunctionDef)]
    assert {n.name for n in added} == {"access", "_repr_html_", "network", "image", "crop_rule",
                                       "hit_box", "box", "patch", "layer_grid", "unit_figure"}
    for node in added:
        body = node.body[1:] if isinstance(node.body[0], ast.Expr) else node.body
        if node.name == "access":
            continue  # the one access of this atlas, made when first asked
        assert len(body) == 1 and isinstance(body[0], ast.Return), node.name
        assert node.name.startswith("_") or f"atlas.{node.name}(" in docs, node.name


def test_the_figures_of_an_atlas_take_typed_arguments():
    from convsight.figures import atlas as figures

    for function in (figures.layer_grid, figures.unit_figure, figures.atlas_html,
                     figures.default_tile, figures.PatchCutter):
        annotation = str(inspect.signature(function).parameters["atlas"].annotation)
        assert annotation == "AtlasData | AtlasAccess", (function, annotation)
    assert str(inspect.signature(figures.synthesis_facets).parameters["atlas"].annotation) == \
        "AtlasData"
    assert "without an import circle" not in (SRC / "figures" / "atlas.py").read_text()


def test_a_copy_of_an_atlas_reads_its_own_images(tmp_path):
    """``atlas.access`` belongs to one atlas: a copy moved elsewhere reads from its own folder."""
    import copy

    atlas = Atlas.open(OLD)
    atlas.network()  # the original's access is made (and keeps its model)
    moved = tmp_path / "moved"
    shutil.copytree(OLD, moved)
    other = copy.copy(atlas)
    other.path = moved
    shutil.rmtree(moved / "photos" / "retina")
    retina = next(i for i, p in enumerate(atlas.image_paths) if "retina" in p)
    assert atlas.image(retina).shape[1:] == (64, 64)
    with pytest.raises(convsight.ImageError):
        other.image(retina)
    assert other.access is not atlas.access and other.access.atlas is other


def test_the_explorer_has_no_forwarders_and_one_name_per_part():
    from convsight.web.attributions import Attributions
    from convsight.web.explorer import Explorer
    from convsight.web.inputs import InputImages
    from convsight.web.layers import Layers
    from convsight.web.syntheses import StoredSyntheses

    assert [n for n, v in vars(Explorer).items() if callable(v) or isinstance(v, property)] == \
        ["__init__"]
    init = inspect.getsource(Explorer.__init__)
    for name, part in (("layers", Layers), ("input_images", InputImages),
                       ("attributions", Attributions), ("stored_syntheses", StoredSyntheses)):
        assert f"self.{name} = {part.__name__}(" in init, name
    routes = "".join(p.read_text() for p in (SRC / "web" / "routes").glob("*.py"))
    assert "unit_part" not in routes and "_part" not in init


def test_the_floors_in_the_docs_are_the_floors_the_tests_enforce():
    import importlib.util

    path = next(ROOT.joinpath("tests").rglob("test_architecture.py"))
    spec = importlib.util.spec_from_file_location("architecture_rules", path)
    rules = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(rules)
    FLOORS = rules.FLOORS
    text = (ROOT / "docs" / "architecture.md").read_text()
    drawn = {}
    for line in text.split("```")[1].splitlines():
        words = line.split()
        if len(words) > 2 and words[0] == "floor":
            for word in words[2:]:
                room = word.rstrip("/").removesuffix(".py")
                if room.replace("_", "").isalnum() and (word.endswith((".py", "/"))):
                    drawn[room] = int(words[1])
    enforced = {room: i for i, rooms in enumerate(FLOORS) for room in rooms
                if room not in ("__init__", "__main__")}
    assert drawn == enforced
