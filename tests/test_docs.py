"""Every code block of README.md and docs/*.md runs, and shows the output it claims.

The blocks of one file, Python and shell alike, run in document order in one folder and (Python)
one namespace, as a reader would run them: a guide builds on its earlier blocks. The folder holds
what the docs say to make (``convsight samples -o .``: ``chelsea.jpg``, ``coffee.jpg``; a
``photos/`` folder) and the reader's own files they name (``r18.pth``, ``my.pth``, ``b0.pth``: state dicts).
A Python line ``expression   # value`` whose comment is a Python literal must evaluate to that
value; a shell line ``$ convsight ...`` followed by lines of output must print those lines; every
other ``convsight`` line must exit 0 (``--device cuda`` on a machine without a GPU: the one-line
error, exit 2). Long work is shrunk for the test (fewer steps, photos and units), never the code
paths. The example notebook's text must name the preset its code runs.
"""

from __future__ import annotations

import ast
import functools
import json
import numbers
import os
import re
import shlex
import shutil
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

import convsight
from convsight.cli import main

ROOT = Path(__file__).resolve().parents[1]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
FENCE = re.compile(r"^```python\n(.*?)^```", re.S | re.M)
ANY_FENCE = re.compile(r"^```(\w*)\n(.*?)^```", re.S | re.M)
SHELL = ("", "bash", "sh", "console", "shell")
TOUR = ROOT / "examples" / "tour.ipynb"


def python_blocks(path: Path) -> list[tuple[int, str]]:
    """(first line number, code) of each ```python block."""
    text = path.read_text(encoding="utf-8")
    return [(text[:m.start()].count("\n") + 2, m.group(1)) for m in FENCE.finditer(text)]


def doc_blocks(path: Path) -> list[tuple[int, str, str]]:
    """(first line number, "python" or "shell", code) of each block that runs, in order."""
    text = path.read_text(encoding="utf-8")
    blocks = []
    for m in ANY_FENCE.finditer(text):
        kind = "python" if m.group(1) == "python" else "shell" if m.group(1) in SHELL else None
        if kind == "shell" and not shell_commands(m.group(2)):
            kind = None  # a layout, a table, a file listing
        if kind:
            blocks.append((text[:m.start()].count("\n") + 2, kind, m.group(2)))
    return blocks


def shell_commands(code: str) -> list[tuple[str, list[str] | None]]:
    """Each ``convsight``/``torchrun`` command of a shell block, without its comment, and the
    output lines shown under it (``$ `` blocks; None when none are shown)."""
    commands: list[tuple[str, list[str] | None]] = []
    prompt = False
    for line in re.sub(r"\s*\\\n\s*", " ", code).splitlines():
        prompt = prompt or line.startswith("$ ")
        text = line[2:] if line.startswith("$ ") else line
        if re.match(r"(convsight|torchrun) ", text):
            commands.append((text.split("  #")[0].strip(), [] if prompt else None))
        elif commands and commands[-1][1] is not None and line.strip():
            commands[-1][1].append(line.rstrip())
    return [(c, out or None) for c, out in commands]


def expand_optional(command: str) -> str:
    """``convsight layers [--model resnet18] [--json]`` -> every optional part included, except
    those naming a placeholder (``[--layer L]``)."""
    def part(m: re.Match) -> str:
        return "" if re.search(r"(^|\s)[A-Z]+(\s|$)", m.group(1)) else m.group(1)
    return re.sub(r"\s+", " ", re.sub(r"\[([^\]]*)\]", part, command)).strip()


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
        def small_visualize_layer(model, layer, channels=None, **kwargs):
            kwargs["steps"] = min(kwargs.get("steps") or 4, 4)
            kwargs.setdefault("progress", False)
            channels = range(16) if channels is None else channels  # every unit: the first 16
            return visualize_layer(model, layer, channels, **kwargs)

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
    convsight.mine(lite0, root / "photos", ["blocks.3", "blocks.10"], k=9,  # as docs/mining.md
                   out=root / "atlas", progress=False)
    return root


@pytest.fixture()
def folder(tmp_path, monkeypatch, photos, mined):
    """A working folder with the files the docs name, and the names they take as given."""
    monkeypatch.chdir(tmp_path)
    shutil.copytree(mined / "photos", tmp_path / "photos")
    shutil.copytree(mined / "atlas", tmp_path / "atlas")
    assert main(["samples", "-o", str(tmp_path)]) == 0  # the docs' chelsea.jpg, coffee.jpg, ...
    for name in ("r18.pth", "my.pth", "w.pth"):  # the reader's own trained ResNet-18
        torch.save(__import__("torchvision").models.resnet18().state_dict(), tmp_path / name)
    try:
        import timm

        torch.save(timm.create_model("resnet50").state_dict(), tmp_path / "r50.pth")
        torch.save(timm.create_model("efficientnet_b0").state_dict(), tmp_path / "b0.pth")
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


@pytest.fixture()
def not_listening(monkeypatch, tmp_path):
    """``convsight serve`` builds its app and returns instead of binding a port and serving."""
    import convsight.web
    import convsight.web.server

    class Socket:
        def close(self) -> None:
            pass

    def build(atlas=None, model=None, **kwargs):
        not_serving(atlas, model, cache_dir=kwargs.get("cache_dir") or tmp_path / "cache")

    monkeypatch.setattr(convsight.web.server, "bind", lambda host, port: Socket())
    monkeypatch.setattr(convsight.web, "serve", build)


# shrunk as the Python calls are: same code paths, fewer points, windows and detailed units
SHRINK = {"check": ["--steps", "4", "--group", "all", "--window", "64", "--stride", "64"],
          "report": ["--details", "1"]}
SKIP = {"demo": "tests/cli/test_cli.py::test_demo_quick runs it"}


def run_command(command: str, shown: list[str] | None, where: str, capsys) -> None:
    """Run one documented command as the reader would; check its exit status and output."""
    words = shlex.split(expand_optional(command))
    torchrun = words[0] == "torchrun"
    if torchrun:
        nproc = int(next(w for w in words if w.startswith("--nproc_per_node=")).split("=")[1])
        words = words[words.index("convsight.cli") + 1:]
    else:
        words = words[1:]
    if words[0] in SKIP:
        return
    device = words[words.index("--device") + 1] if "--device" in words else "cpu"
    gpus = torch.cuda.device_count() if torch.cuda.is_available() else 0
    if device.startswith("cuda") and gpus == 0:  # the documented one-line refusal
        assert main(words) == 2, f"{where}: {command}"
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and "no CUDA GPU" in err[0], (where, err)
        return
    if torchrun:
        if device.startswith("cuda") and gpus < nproc:
            return  # needs nproc GPUs
        env = dict(os.environ, OMP_NUM_THREADS="1", CONVSIGHT_DIST_TIMEOUT="120",
                   PYTHONPATH=str(ROOT / "src"))
        r = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone",
                            f"--nproc_per_node={nproc}", "-m", "convsight.cli", *words], env=env,
                           capture_output=True, text=True, timeout=300)
        assert r.returncode == 0, f"{where}: {command}\n{r.stderr[-2000:]}"
        return
    code = main(words + SHRINK.get(words[0], []))
    out, err = capsys.readouterr()
    assert code == 0, f"{where}: {command} exited {code}: {err[-1000:]}"
    if shown is not None:
        assert [line.rstrip() for line in out.strip().splitlines()] == shown, \
            f"{where}: {command} printed\n{out}\nthe docs show\n" + "\n".join(shown)


@pytest.mark.slow
@pytest.mark.parametrize("doc", [d for d in DOCS if doc_blocks(d)],
                         ids=lambda d: d.relative_to(ROOT).as_posix())
def test_blocks_run_and_show_their_output(doc, folder, not_listening, capsys):
    namespace = {"__name__": "__docs__", **given_names()}
    for line, kind, code in doc_blocks(doc):
        where = f"{doc.relative_to(ROOT)}:{line}"
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # random-weight notices
            try:
                if kind == "python":
                    run_block(code, namespace, where)
                else:
                    for command, shown in shell_commands(code):
                        run_command(command, shown, where, capsys)
            except AssertionError:
                raise
            except Exception as exc:
                pytest.fail(f"{where}: {type(exc).__name__}: {exc}")


def test_shell_commands_are_read_as_written():
    code = "$ convsight rf blocks.5 --unit 1@2,3\nsize     83 x 83\n\n$ convsight layers   # note\n"
    assert shell_commands(code) == [("convsight rf blocks.5 --unit 1@2,3", ["size     83 x 83"]),
                                    ("convsight layers", None)]
    code = ("convsight attribute a.jpg --target class:1 \\\n    --methods gradient -o f.png\n"
            "torchrun --nproc_per_node=2 -m convsight.cli mine p/ -o a   # CPU\n")
    assert shell_commands(code) == [("convsight attribute a.jpg --target class:1 --methods "
                                     "gradient -o f.png", None),
                                    ("torchrun --nproc_per_node=2 -m convsight.cli mine p/ -o a",
                                     None)]
    assert shell_commands("ATLAS/syntheses/x.png   a file\n") == []
    assert expand_optional("convsight filters [--layer L] [--units 0,1,2] -o f.png [--json]") == \
        "convsight filters --units 0,1,2 -o f.png --json"


def preset_claims(nb: dict) -> list[tuple[str, str]]:
    """(preset the text says it uses, the next code cell) for each markdown cell of a notebook
    that names one as ``preset `NAME```."""
    cells = nb["cells"]
    claims = []
    for i, cell in enumerate(cells):
        text = "".join(cell["source"])
        for name in re.findall(r"preset `([\w-]+)`", text) if cell["cell_type"] == "markdown" else []:
            code = next("".join(c["source"]) for c in cells[i + 1:] if c["cell_type"] == "code")
            claims.append((name, code))
    return claims


def presets_run(code: str) -> list[str]:
    """The preset of each maximize / visualize_layer call of a cell (the default when none)."""
    from convsight.optimize import DEFAULT_PRESET

    runs = []
    for node in ast.walk(ast.parse(code)):
        if isinstance(node, ast.Call) and getattr(node.func, "attr", getattr(node.func, "id", "")) \
                in ("maximize", "visualize_layer"):
            given = [k.value for k in node.keywords if k.arg == "preset"]
            runs.append(ast.literal_eval(given[0]) if given else DEFAULT_PRESET)
    return runs


def test_notebook_text_names_the_preset_its_code_runs():
    claims = preset_claims(json.loads(TOUR.read_text(encoding="utf-8")))
    assert claims, "the tour's synthesis section names its preset"
    for name, code in claims:
        assert presets_run(code) and set(presets_run(code)) == {name}, (name, code)
    wrong = {"cells": [{"cell_type": "markdown", "source": ["uses preset `yosinski-3`"]},
                       {"cell_type": "code", "source": ["convsight.maximize(net, 'class:1')"]}]}
    (name, code), = preset_claims(wrong)
    assert presets_run(code) != [name]  # the check above can fail


def test_claims_are_read_as_literals():
    assert claimed_value("rf.size   # (83, 83)") == (83, 83)
    assert claimed_value("x.shape   # (1, 3, 224, 224) in [0, 1]") == (1, 3, 224, 224)
    assert claimed_value("fields['fc'].is_global   # True: global pooling") is True
    assert claimed_value("out.images   # images in [0, 1]") is None
    assert same((83, 83), (83, 83)) and not same((83, 84), (83, 83))
    assert same(torch.Size([1, 3]), (1, 3)) and same(np.float32(7.9), 7.9)
