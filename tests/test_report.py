"""The static report: one HTML file (or HTML plus a folder) that needs no server or network."""

from __future__ import annotations

import base64
import io
import re

import numpy as np
import pytest
from PIL import Image

import convsight

from .web.support import WIDE, atlas_patch_clipped, tiny_atlas_dir


@pytest.fixture(scope="module")
def atlas():
    return convsight.Atlas.open(tiny_atlas_dir())


def decode(data_uri: str) -> np.ndarray:
    head, payload = data_uri.split(",", 1)
    assert head in ("data:image/jpeg;base64", "data:image/png;base64")
    return np.asarray(Image.open(io.BytesIO(base64.b64decode(payload))).convert("RGB"))


def test_inline_report_is_self_contained(atlas, tmp_path):
    from convsight.report import write_report

    out = write_report(atlas, tmp_path / "r.html", max_units=40, detail_units=1, progress=False,
                       layers=["blocks.2", WIDE])
    text = out.read_text(encoding="utf-8")
    assert list(tmp_path.iterdir()) == [out]  # nothing beside it
    sources = re.findall(r"<img src='([^']*)'", text)
    assert sources and all(s.startswith("data:image/") for s in sources)
    assert "http://" not in text and "https://" not in text and "<script" not in text
    cells = re.findall(r"class='unit'", text)
    assert len(cells) == 24 + 40  # blocks.2, first 40 of blocks.9
    for layer in ["blocks.2", WIDE]:
        assert f"id='layer-{layer.replace('.', '-')}'" in text
        assert f"id='layer-{layer.replace('.', '-')}-0'" in text  # one detailed unit each
    # the first cell of blocks.9 is unit 0's montage: its top-left patch is the unit's best patch
    first = re.search(r"id='layer-blocks-9'.*?<img src='([^']*)' alt='unit 0'", text, re.S).group(1)
    montage = decode(first).astype(np.float32)
    assert montage.shape == (124, 124, 3)
    best = atlas_patch_clipped(atlas, WIDE, 0, 0, atlas.network(), 40)
    assert np.abs(montage[1:41, 1:41] - best).mean() < 8


def test_report_with_a_sibling_folder(atlas, tmp_path):
    from convsight.report import write_report

    out = write_report(atlas, tmp_path / "atlas.html", layers=["blocks.2"], detail_units=0,
                       inline=False, progress=False)
    text = out.read_text(encoding="utf-8")
    sources = re.findall(r"<img src='([^']*)'", text)
    assert len(sources) == 24
    for src in sources:
        assert src.startswith("atlas_files/") and (tmp_path / src).is_file()
    assert "data:image" not in text


@pytest.mark.parametrize("name", ["p' onerror='alert(1)' y='", 'a"b <i>', "my #1 report?", "été"])
def test_the_sibling_folder_name_is_escaped_and_url_encoded(atlas, tmp_path, name):
    """A report named ``p' onerror='...' y='.html`` put its folder's name into src='...' as it
    was, so opening the page ran script (issue 23); '#', '?' and spaces broke the links."""
    from html.parser import HTMLParser
    from urllib.parse import unquote

    from convsight.report import write_report

    out = write_report(atlas, tmp_path / f"{name}.html", layers=["blocks.2"], detail_units=0,
                       max_units=3, inline=False, progress=False, trust=False)

    class Images(HTMLParser):
        seen: list[list[tuple[str, str | None]]] = []

        def handle_starttag(self, tag, attrs):
            if tag == "img":
                self.seen.append(attrs)

    parser = Images()
    parser.feed(out.read_text(encoding="utf-8"))
    assert len(parser.seen) == 3
    for attrs in parser.seen:
        names = [k for k, _ in attrs]
        assert names == ["src", "alt"], attrs  # no attribute smuggled in
        src = dict(attrs)["src"]
        assert not set(src) & set("#? '\"<>"), src
        assert (tmp_path / unquote(src)).is_file(), src


def test_report_refuses_unknown_layers(atlas, tmp_path):
    from convsight.report import write_report

    with pytest.raises(convsight.UnknownLayerError, match="blocks.7"):
        write_report(atlas, tmp_path / "x.html", layers=["blocks.7"], progress=False)
    assert not (tmp_path / "x.html").exists()


def test_report_command(tmp_path, capsys):
    from convsight.cli import main

    out = tmp_path / "sub" / "report.html"
    assert main(["report", str(tiny_atlas_dir()), "-o", str(out), "--layers", "conv_stem",
                 "--details", "0"]) == 0
    assert out.is_file() and "report written" in capsys.readouterr().out
    assert main(["report", str(tmp_path / "missing"), "-o", str(out)]) == 2
    assert "no atlas at" in capsys.readouterr().err
