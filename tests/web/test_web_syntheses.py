"""The explorer shows the syntheses stored in the atlas (``visualize_layer(..., atlas=...)``).

A tiny network mined on a few photos at 32 px, with syntheses stored for some units of three
layers: ``conv2`` (mined, units 0-2, one image each), ``conv3`` (mined, units 1 and 4, three
facets each) and ``pool`` (not mined, every unit). ``conv1`` is mined and has none. Expected
pictures and values come from the atlas's files and from running the network on them, never from
the web code.
"""

from __future__ import annotations

import io
import re

import numpy as np
import pytest
import torch
from PIL import Image

import convsight
from convsight import mining
from convsight.capture import capture

from .test_web import fetch, page
from .support import start_server
from ..tinynets import tiny_net
from ..untouched import untouched

FAST = dict(preset="lucid", steps=6, size=32, upsample=False, progress=False)
K = 3  # facets per unit of conv3


def _network(seed: int = 0) -> convsight.Network:
    return convsight.Network(tiny_net(seed), input_size=(32, 32))


def _atlas(folder, photos) -> convsight.Atlas:
    """Mine conv1-conv3 of the tiny network and store syntheses for some units."""
    net = _network()
    atlas = convsight.mine(net, photos, ["conv1", "conv2", "conv3"], k=4, batch_size=4,
                           out=folder, progress=False)
    convsight.visualize_layer(net, "conv2", [0, 1, 2], atlas=atlas, **FAST)
    convsight.visualize_layer(net, "conv3", [1, 4], atlas=atlas, copies=K, diversity=0.5, **FAST)
    convsight.visualize_layer(net, "pool", atlas=atlas, **FAST)
    return atlas


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
    folder = tmp_path_factory.mktemp("photos")
    mining.photo_folder(folder, n=6, seed=0, min_side=40, max_side=64)
    return folder


@pytest.fixture(scope="module")
def atlas(tmp_path_factory, photos):
    return _atlas(tmp_path_factory.mktemp("synth-atlas") / "atlas", photos)


@pytest.fixture(scope="module")
def server(atlas, tmp_path_factory):
    srv = start_server(tmp_path_factory.mktemp("synth-cache"), atlas=atlas.path,
                       model=_network())
    yield srv
    srv.stop()


def _picture(server, path: str, kind: str) -> bytes:
    status, headers, body = fetch(server.url + path)
    assert status == 200, (path, status, body[:200])
    assert headers["content-type"] == f"image/{kind}"
    return body


def _cell(html: str, channel: int) -> str:
    return re.search(rf'<a class="unit" [^>]*id="u{channel}">.*?</a>', html, re.S).group(0)


def test_layer_grid_shows_each_stored_synthesis_left_of_the_patches(server, atlas):
    html = page(server, "/layer/conv2")
    assert "preset lucid, 6 steps, 32 px, seed 0" in html and "3 of 16 units" in html
    for c in range(16):
        cell = _cell(html, c)
        tile = f'src="/img/tile/conv2/{c}.jpg"'
        assert tile in cell
        if c < 3:
            synth = f'src="/img/atlas-synth-tile/conv2/{c}.jpg"'
            assert synth in cell and cell.index(synth) < cell.index(tile)
        else:
            assert "atlas-synth" not in cell and "no synthesis" in cell
    # the cell's picture is the stored image, enlarged to the tile (oracle: PIL's own resize)
    stored = [np.asarray(atlas.synthesis("conv2", c).convert("RGB").resize((124, 124),
                                                                          Image.BICUBIC), float)
              for c in range(3)]
    for c in range(3):
        shown = np.asarray(Image.open(io.BytesIO(_picture(
            server, f"/img/atlas-synth-tile/conv2/{c}.jpg", "jpeg"))).convert("RGB"), float)
        assert shown.shape == (124, 124, 3)
        errors = [np.abs(shown - s).mean() for s in stored]
        assert errors[c] < 4 and errors[c] == min(errors), errors


def test_layers_without_syntheses_look_as_before_and_unmined_ones_show_them(server):
    html = page(server, "/layer/conv1")
    assert "atlas-synth" not in html and "no synthesis" not in html and "synth-recipe" not in html
    html = page(server, "/layer/pool")  # not mined: the syntheses alone
    for c in range(16):
        cell = _cell(html, c)
        assert f'src="/img/atlas-synth-tile/pool/{c}.jpg"' in cell and "/img/tile/" not in cell
    _picture(server, "/img/atlas-synth-tile/pool/15.jpg", "jpeg")
    listing = page(server, "/")
    marked = re.findall(r'<tr [^>]*data-name="(\S+) [^"]*">(?:(?!</tr>).)*synth-badge', listing,
                        re.S)
    assert sorted(marked) == ["conv2", "conv3", "pool"]


def _mean_activation(net: convsight.Network, image: Image.Image, layer: str, channel: int) -> float:
    """Independent oracle: the channel's mean activation on the decoded image."""
    x = torch.from_numpy(np.asarray(image.convert("RGB"), np.float32) / 255).permute(2, 0, 1)
    with capture(net.module, [layer]) as acts, torch.no_grad():
        net.module(net.normalize(x[None]))
    return float(acts[layer][0, channel].mean())


def test_unit_page_shows_the_k_facets_with_their_values_and_recipe(server, atlas):
    html = page(server, "/unit/conv3/4")
    assert "preset lucid, 6 steps, 32 px, seed 0, 3 facets per unit, diversity 0.5" in html
    assert 'id="synth-start"' not in html  # stored: no on-demand button
    facets = re.findall(r'<figure class="facet">.*?</figure>', html, re.S)
    assert len(facets) == K
    net = _network()
    for k, facet in enumerate(facets):
        url = f"/img/atlas-synth/conv3/4/{k}.png"
        assert f'src="{url}"' in facet and f"facet {k + 1}" in facet
        shown = float(re.search(r"mean (-?[0-9.e+-]+)", facet).group(1))
        image = Image.open(io.BytesIO(_picture(server, url, "png")))
        assert shown == pytest.approx(_mean_activation(net, image, "conv3", 4), rel=1e-3, abs=1e-4)
    # the facets sit beside the top patches, which are still all there
    assert html.index('id="stored-synth"') < html.index('class="patches"')
    assert len(re.findall(r'<figure class="hit">', html)) == atlas.k


def test_stored_png_is_served_byte_for_byte_and_cached(server, atlas):
    cache = server.server.config.app.state.explorer.cache
    url = "/img/atlas-synth/conv3/1/2.png"
    before = cache.computed
    body = _picture(server, url, "png")
    assert body == (atlas.path / "syntheses" / "conv3" / "unit1-copy2.png").read_bytes()
    assert cache.computed == before + 1
    status, headers, again = fetch(server.url + url)
    assert again == body and cache.computed == before + 1  # the second visit reads the cache
    assert "max-age" in headers["cache-control"] and headers["x-content-type-options"] == "nosniff"


def test_units_without_a_stored_synthesis_keep_the_on_demand_button(server):
    html = page(server, "/unit/conv3/0")  # the layer has syntheses, this unit none
    assert 'id="synth-start"' in html and "none of this unit" in html and "facet" not in html
    html = page(server, "/unit/conv1/0")  # a layer without syntheses: as before
    assert 'id="synth-start"' in html and "none of this unit" not in html
    assert "other weights" not in html


@pytest.mark.parametrize("path, words", [
    ("/img/atlas-synth/conv3/4/3.png", "copy 3 does not exist: layer conv3 has 3 stored "
                                       "syntheses per unit (copies 0..2)"),
    ("/img/atlas-synth/conv3/16/0.png", "valid units are 0..15"),
    ("/img/atlas-synth/conv3/0/0.png", "unit conv3:0 has no stored synthesis"),
    ("/img/atlas-synth/conv1/0/0.png", "no syntheses of layer conv1"),
    ("/img/atlas-synth-tile/conv2/3.jpg", "unit conv2:3 has no stored synthesis"),
    ("/img/atlas-synth-tile/conv2/99.jpg", "valid units are 0..15"),
    ("/img/atlas-synth/conv9/0/0.png", "unknown layer 'conv9'"),
    ("/img/atlas-synth/conv3/1/x.png", "nothing at"),
])
def test_bad_unit_or_copy_is_a_404_that_says_what_exists(server, path, words):
    status, headers, body = fetch(server.url + path)
    assert status == 404 and headers["content-type"].startswith("text/plain")
    assert words in body.decode()


def test_syntheses_of_other_weights_are_not_shown(atlas, tmp_path):
    retrained = _network(seed=1)  # same name ("custom"), other weights
    srv = start_server(tmp_path / "cache", atlas=atlas.path, model=retrained)
    try:
        with untouched(retrained.module):
            grid, unit = page(srv, "/layer/conv3"), page(srv, "/unit/conv3/4")
            assert "atlas-synth" not in grid and "made by other weights" in grid
            assert "facet" not in unit and 'id="synth-start"' in unit
            assert "made by other weights (custom, fingerprint" in unit
            assert "synth-badge" not in page(srv, "/")
            status, _, body = fetch(srv.url + "/img/atlas-synth/conv3/4/0.png")
            assert status == 404 and b"no syntheses of layer conv3" in body
    finally:
        srv.stop()


def test_syntheses_made_again_are_shown_at_once(photos, tmp_path):
    atlas = _atlas(tmp_path / "atlas", photos)
    net = _network()
    srv = start_server(tmp_path / "cache", atlas=atlas.path, model=net)
    try:
        with untouched(net.module):
            first = _picture(srv, "/img/atlas-synth/conv2/1/0.png", "png")
            tile = _picture(srv, "/img/atlas-synth-tile/conv2/1.jpg", "jpeg")
            convsight.visualize_layer(net, "conv2", [1], atlas=atlas, overwrite=True,
                                      **{**FAST, "steps": 9})
            again = _picture(srv, "/img/atlas-synth/conv2/1/0.png", "png")
            assert again != first
            assert again == (atlas.path / "syntheses" / "conv2" / "unit1.png").read_bytes()
            assert _picture(srv, "/img/atlas-synth-tile/conv2/1.jpg", "jpeg") != tile
            assert "9 steps" in page(srv, "/unit/conv2/1")
            assert "no synthesis" in _cell(page(srv, "/layer/conv2"), 0)  # overwritten: gone
    finally:
        srv.stop()


# ----- a shared atlas may hold anything: bad indexes and files are notes and 404s, never 500s --
@pytest.fixture
def small(photos, tmp_path):
    """A fresh atlas (conv2 mined, syntheses of units 0 and 1) and a server over it."""
    net = _network()
    atlas = convsight.mine(net, photos, ["conv2"], k=2, batch_size=4, out=tmp_path / "atlas",
                           progress=False)
    convsight.visualize_layer(net, "conv2", [0, 1], atlas=atlas, **{**FAST, "steps": 3})
    srv = start_server(tmp_path / "cache", atlas=atlas.path, model=_network())
    yield srv, atlas.path / "syntheses" / "conv2"
    srv.stop()


def test_a_malformed_synthesis_index_is_a_note_not_a_crash(small):
    import json
    import time

    srv, folder = small
    index = folder / "synthesis.json"
    good = json.loads(index.read_text())
    assert "atlas-synth/conv2/0/0.png" in page(srv, "/unit/conv2/0")
    for field, bad in [("copies", "x"), ("copies", 10**6), ("settings", []), ("model", "str"),
                       ("seed", "0"), ("settings", {**good["settings"], "size": "big"})]:
        index.write_text(json.dumps({**good, field: bad}))
        start = time.monotonic()
        for path in ("/layer/conv2", "/unit/conv2/0"):
            assert "the atlas's synthesis index of this layer cannot be read" in page(srv, path)
        assert "synth-badge" not in page(srv, "/")
        assert time.monotonic() - start < 30  # a million copies are not looked for
        status, _, body = fetch(srv.url + "/img/atlas-synth/conv2/0/0.png")
        assert status == 404, (field, bad, body[:200])
    index.write_text(json.dumps(good))
    assert "atlas-synth/conv2/0/0.png" in page(srv, "/unit/conv2/0")


def test_a_stored_synthesis_with_a_text_bomb_is_a_404_and_the_pages_still_show(small):
    from ..test_microscope import _with_text_bomb

    srv, folder = small
    png = folder / "unit1.png"
    png.write_bytes(_with_text_bomb(png.read_bytes()))
    for path in ("/img/atlas-synth/conv2/1/0.png", "/img/atlas-synth-tile/conv2/1.jpg"):
        status, _, body = fetch(srv.url + path)
        assert status == 404 and body.decode() == ("cannot read the stored synthesis unit1.png: "
                                                   "ValueError"), (path, status, body[:200])
    assert "/img/atlas-synth/conv2/1/0.png" in page(srv, "/unit/conv2/1")  # its value: unknown
    assert "/img/atlas-synth-tile/conv2/1.jpg" in page(srv, "/layer/conv2")
    _picture(srv, "/img/atlas-synth/conv2/0/0.png", "png")  # the other unit is still served


def test_a_stored_synthesis_over_the_size_cap_is_not_served_or_cached(small):
    from convsight.web.syntheses import MAX_FILE_BYTES

    srv, folder = small
    cache = srv.server.config.app.state.explorer.cache
    png = folder / "unit0.png"
    data = png.read_bytes()
    padded = data + b"\0" * 4096  # trailing bytes after IEND: PIL still reads it
    png.write_bytes(padded)
    assert _picture(srv, "/img/atlas-synth/conv2/0/0.png", "png") == padded
    png.write_bytes(data + b"\0" * (MAX_FILE_BYTES + 1 - len(data)))
    before = cache.computed
    status, _, body = fetch(srv.url + "/img/atlas-synth/conv2/0/0.png")
    assert status == 404 and b"over 32 MiB" in body and len(body) < 1000
    status, _, body = fetch(srv.url + "/img/atlas-synth-tile/conv2/0.jpg")
    assert status == 404 and b"over 32 MiB" in body
    assert cache.computed == before  # nothing was made, so nothing was stored in the cache
