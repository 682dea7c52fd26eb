"""Every Python code block of README.md and docs/*.md runs, and shows the output it claims.

The blocks of one file run in order in one namespace (a guide builds on its earlier blocks), in a
folder that holds the files the docs name (``photo.jpg``, ``cat.jpg``, ``r18.pth``, ...). A line
``expression   # value`` whose comment is a Python literal must evaluate to that value, so the
docs cannot drift from the code. Long work is shrunk for the test (fewer steps, fewer photos),
never the code paths; shell blocks are covered by the CLI tests.
"""

from __future__ import annotations

import ast
import functools
import numbers
import shutil
import re
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

import convsight

ROOT = Path(__file__).resolve().parents[1]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
FENCE = re.compile(r"^```python\n(.*?)^```", re.S | re.M)


def python_blocks(path: Path) -> list[tuple[int, str]]:
    """(first line number, code) of each ```python block."""
    text = path.read_text(encoding="utf-8")
    return [(text[:m.start()].count("\n") + 2, m.group(1)) for m in FENCE.finditer(text)]


def claimed_value(line: str):
    """The literal after ``#`` on a code line, if the comment starts with one (else None)."""
    code, sep, comment = line.partition("  #")
    if not sep:
        return None
    text = comment.strip()
    for end in range(len(text), 0, -1):  # the longest prefix that is a literal: "(1, 2): note"
        try:
            value = ast.literal_eval(text[:end])
        except (ValueError, SyntaxError, MemoryError, RecursionError):
            continue
        return value if isinstance(value, (tuple, list, int, float, bool, str)) else None
    return None


def same(value, claim) -> bool:
    if isinstance(claim, (tuple, list)):
        value = tuple(value) if isinstance(value, (tuple, list, torch.Size)) else value
        return isinstance(value, tuple) and len(value) == len(claim) and \
            all(same(v, c) for v, c in zip(value, claim))
    if isinstance(claim, float):
        return isinstance(value, numbers.Real) and abs(value - claim) <= 0.05 * max(1, abs(claim))
    if isinstance(claim, str) and not isinstance(value, str):
        return False
    return bool(value == claim)


def run_block(code: str, namespace: dict, where: str) -> None:
    """Run a block statement by statement; check ``expr  # literal`` lines against the literal."""
    lines = code.splitlines()
    for node in ast.parse(code).body:
        source = ast.get_source_segment(code, node)
        if isinstance(node, ast.Expr):
            value = eval(compile(ast.Expression(node.value), where, "eval"), namespace)
            claim = claimed_value(lines[node.end_lineno - 1])
            if claim is not None:
                shown = repr(value) if len(repr(value)) < 200 else repr(value)[:200] + "..."
                assert same(value, claim), (f"{where} line {node.lineno}: {source} gives "
                                            f"{shown}, the docs say {claim!r}")
        else:
            exec(compile(ast.Module([node], []), where, "exec"), namespace)
        serve = namespace.get("serve")
        if serve is not None and getattr(serve, "__module__", "").startswith("convsight.web"):
            namespace["serve"] = not_serving


class Shrunk:
    """Public calls with their long work made small: same code paths, fewer steps and photos."""

    def __init__(self, monkeypatch) -> None:
        from convsight import mining

        maximize = convsight.maximize

        @functools.wraps(maximize)
        def small_maximize(*args, **kwargs):
            kwargs["steps"] = min(kwargs.get("steps") or 4, 4)
            if kwargs.get("every"):
                kwargs["every"] = 2
            kwargs.setdefault("progress", False)
            return maximize(*args, **kwargs)

        visualize_layer = convsight.visualize_layer

        @functools.wraps(visualize_layer)
        def small_visualize_layer(*args, **kwargs):
            kwargs["steps"] = min(kwargs.get("steps") or 4, 4)
            kwargs.setdefault("progress", False)
            return visualize_layer(*args, **kwargs)

        photo_folder = mining.photo_folder

        @functools.wraps(photo_folder)
        def small_folder(folder, n=300, **kwargs):
            return photo_folder(folder, n=min(n, 16), **kwargs)

        monkeypatch.setattr(convsight, "maximize", small_maximize)
        monkeypatch.setattr(convsight, "visualize_layer", small_visualize_layer)
        monkeypatch.setattr(mining, "photo_folder", small_folder)


def not_serving(atlas=None, model=None, **kwargs):
    """``serve`` would block until Ctrl-C: build the same app instead."""
    from convsight.web import create_app

    create_app(atlas, model, cache_dir=kwargs.get("cache_dir"))


@pytest.fixture(scope="module")
def mined(tmp_path_factory, lite0):
    """A small atlas of the default model, for the guides that start from one."""
    from convsight.mining import photo_folder

    root = tmp_path_factory.mktemp("mined")
    photo_folder(root / "photos", n=16, seed=3)
    convsight.mine(lite0, root / "photos", ["blocks.3", "blocks.5", "blocks.10"], k=9,
                   out=root / "atlas", progress=False)
    return root


@pytest.fixture()
def folder(tmp_path, monkeypatch, photos, mined):
    """A working folder with the files the docs name, and the names they take as given."""
    monkeypatch.chdir(tmp_path)
    shutil.copytree(mined / "photos", tmp_path / "photos")
    shutil.copytree(mined / "atlas", tmp_path / "atlas")
    photos["chelsea"].save(tmp_path / "cat.jpg")
    photos["coffee"].save(tmp_path / "photo.jpg")
    torch.save(__import__("torchvision").models.resnet18().state_dict(), tmp_path / "r18.pth")
    try:
        import timm

        torch.save(timm.create_model("resnet50").state_dict(), tmp_path / "r50.pth")
    except ImportError:
        pass
    Shrunk(monkeypatch)
    return tmp_path


def given_names() -> dict:
    """Names the docs use as the reader's own: a module, an image tensor."""
    module = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3, padding=1), torch.nn.ReLU(),
                                 torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(),
                                 torch.nn.Linear(8, 4))
    return {"my_module": module, "image_tensor": torch.rand(3, 224, 224)}


@pytest.mark.slow
@pytest.mark.parametrize("doc", [d for d in DOCS if python_blocks(d)],
                         ids=lambda d: d.relative_to(ROOT).as_posix())
def test_python_blocks_run_and_show_their_output(doc, folder):
    namespace = {"__name__": "__docs__", **given_names()}
    for line, code in python_blocks(doc):
        where = f"{doc.relative_to(ROOT)}:{line}"
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # random-weight notices
            try:
                run_block(code, namespace, where)
            except AssertionError:
                raise
            except Exception as exc:
                pytest.fail(f"{where}: {type(exc).__name__}: {exc}")


def test_claims_are_read_as_literals():
    assert claimed_value("rf.size   # (83, 83)") == (83, 83)
    assert claimed_value("x.shape   # (1, 3, 224, 224) in [0, 1]") == (1, 3, 224, 224)
    assert claimed_value("fields['fc'].is_global   # True: global pooling") is True
    assert claimed_value("out.images   # images in [0, 1]") is None
    assert same((83, 83), (83, 83)) and not same((83, 84), (83, 83))
    assert same(torch.Size([1, 3]), (1, 3)) and same(np.float32(7.9), 7.9)
