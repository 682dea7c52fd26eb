"""The explorer's crop rules: a unit page says which rule cut its patches and switches between
them; each patch's box shows on its whole image; unknown rules are refused. Expected pictures come
from the atlas (``Atlas.patch``), not from the web code."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

import convsight
from convsight.pictures import fit_square

from .test_web import fetch, page
from .support import WIDE, start_server, tiny_atlas_dir


@pytest.fixture(scope="module")
def atlas():
    return convsight.Atlas.open(tiny_atlas_dir())


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    srv = start_server(tmp_path_factory.mktemp("web-cache"), atlas=tiny_atlas_dir())
    yield srv
    srv.stop()


def test_unit_page_names_the_rule_and_switches(server, atlas):
    html = page(server, f"/unit/{WIDE}/5")
    assert atlas.crop_rule(WIDE) == "exact"  # the default model has finite exact fields
    assert 'class="on" title="its receptive field' in html and "(the one it was mined with)" in html
    assert f"/img/patch/{WIDE}/5/0.jpg?crop=exact" in html
    assert f"/img/context/{WIDE}/5/0.jpg?crop=exact" in html
    html = page(server, f"/unit/{WIDE}/5?crop=effective")
    assert f"/img/patch/{WIDE}/5/0.jpg?crop=effective" in html
    assert "(the one it was mined with)" not in html
    assert f'href="/unit/{WIDE}/6?method=guided&crop=effective"' in html  # the rule is kept


def test_effective_patch_and_its_box_on_the_whole_image(server, atlas):
    net = atlas.network()
    status, _, body = fetch(server.url + f"/img/patch/{WIDE}/5/0.jpg?crop=effective")
    assert status == 200
    got = np.asarray(Image.open(io.BytesIO(body)).convert("RGB"), dtype=np.float32)
    want = np.asarray(fit_square(atlas.patch(WIDE, 5, 0, net=net, crop="effective", clip=True),
                                 160), dtype=np.float32)
    assert np.abs(got - want).mean() < 8
    eff, exact = atlas.box(WIDE, 5, 0, net=net, crop="effective"), atlas.box(WIDE, 5, 0, net=net)
    area = (eff[2] - eff[0] + 1) * (eff[3] - eff[1] + 1)
    assert area < (exact[2] - exact[0] + 1) * (exact[3] - exact[1] + 1)
    status, _, body = fetch(server.url + f"/img/context/{WIDE}/5/0.jpg?crop=effective")
    assert status == 200
    context = np.asarray(Image.open(io.BytesIO(body)).convert("RGB")).astype(int)
    assert context.shape == (160, 160, 3)
    red = (context[..., 0] > 180) & (context[..., 1] < 90) & (context[..., 2] < 90)
    rows, cols = np.nonzero(red)
    scale = 160 / atlas.input_size[0]  # the outline sits just outside the box, scaled to the tile
    assert abs(rows.min() - eff[0] * scale) <= 4 and abs(cols.max() - eff[3] * scale) <= 4


def test_unknown_crop_rule_is_refused(server):
    status, _, body = fetch(server.url + f"/img/patch/{WIDE}/5/0.jpg?crop=whole")
    assert status == 404 and b"unknown crop rule 'whole'" in body
    status, _, body = fetch(server.url + f"/unit/{WIDE}/5?crop=whole")
    assert status == 404 and "unknown crop rule 'whole'" in body.decode()
