"""Which files the explorer reads, and what its errors say about them (issue 23).

Atlas images are read only inside the atlas folder and the image folders recorded when it was
mined, symbolic links followed; stored syntheses only inside the atlas folder; ``allow_outside``
(``serve --allow-outside``) lifts both. Errors name files relative to the atlas, never where the
user keeps them, and a synthesis that fails keeps its exception text in the server's log.
"""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

import pytest

import convsight
from convsight.models import weights_fingerprint as model_fingerprint
from convsight.syntheses import FORMAT, VERSION, image_png, layer_folder

from .test_web_security import request
from .support import start_server, start_tiny_server, tiny_atlas_dir

LAYER = "blocks.2"


def _synthesis_index(net) -> dict:
    return {"format": FORMAT, "version": VERSION, "layer": LAYER,
            "model": {"name": net.name, "fingerprint": model_fingerprint(net)},
            "preset": "lucid", "settings": {"steps": 4, "size": 32}, "seed": 0, "copies": 1,
            "diversity": 0.0, "diversity_layer": None, "channels": 24, "batch_size": 8,
            "seeding": "per image: seed, layer, channel, copy"}


@pytest.fixture(scope="module")
def shared(tmp_path_factory):
    """An atlas whose image 0 is an absolute path outside its folders, image 1 a photo that is
    a symbolic link to elsewhere, image 2 a photo moved away; unit 0's stored synthesis a link
    to a PNG outside the atlas, unit 1's a real file."""
    root = tmp_path_factory.mktemp("shared")
    original = convsight.Atlas.open(tiny_atlas_dir())
    photos, outside = root / "photos", root / "outside"
    photos.mkdir()
    outside.mkdir()
    paths = []
    for i, p in enumerate(original.image_paths):
        src = Path(p)
        if i == 0:
            paths.append(str(shutil.copy(src, outside / f"private{src.suffix}")))
            continue
        target = photos / src.name
        if i == 1:
            target.symlink_to(shutil.copy(src, outside / f"linked{src.suffix}"))
        elif i != 2:
            shutil.copy(src, target)
        paths.append(str(target))
    atlas = convsight.Atlas(
        {n: original.arrays(n) for n in original.layers}, original.shapes, original.k, paths, [],
        model_name=original.model_name, mean=original.mean, std=original.std,
        input_size=original.input_size, resize_ratio=original.resize_ratio,
        info={"image_folders": [str(photos)]})
    folder = atlas.save(root / "atlas")
    net = original.network()
    store = layer_folder(folder, LAYER)
    store.mkdir(parents=True)
    (store / "synthesis.json").write_text(json.dumps(_synthesis_index(net)))
    import torch

    png = image_png(torch.rand(3, 32, 32), 1.5)[0]
    (outside / "secret.png").write_bytes(png)
    (store / "unit0.png").symlink_to(outside / "secret.png")
    (store / "unit1.png").write_bytes(png)
    strict = start_server(root / "cache-strict", atlas=folder)
    loose = start_server(root / "cache-loose", atlas=folder, allow_outside=True)
    yield strict, loose, root
    strict.stop()
    loose.stop()


def test_mining_records_the_folder_it_read(tmp_path):
    atlas = convsight.Atlas.open(tiny_atlas_dir())
    assert atlas.info["image_folders"] == [str((tiny_atlas_dir().parent / "photos").resolve())]


@pytest.mark.parametrize("index, what", [(0, "absolute path elsewhere"), (1, "symlinked photo")])
def test_images_outside_the_recorded_folders_are_not_read(shared, index, what):
    """Both were served as thumbnails (issue 23)."""
    strict, loose, root = shared
    status, _, body = request(strict, "GET", f"/img/thumb/a-{index}.jpg")
    assert status == 404, (what, status, body)
    assert b"outside the atlas folder and the image folders" in body and b"--allow-outside" in body
    assert str(root).encode() not in body
    status, headers, _ = request(loose, "GET", f"/img/thumb/a-{index}.jpg")
    assert status == 200 and headers["content-type"] == "image/jpeg"
    status, _, _ = request(strict, "GET", "/img/thumb/a-3.jpg")  # inside: served
    assert status == 200


def test_patches_of_images_outside_are_not_cut(shared):
    strict, loose, root = shared
    atlas = strict.server.config.app.state.explorer.atlas
    unit, rank = next((c, r) for c in range(24) for r, hit in enumerate(atlas.top(LAYER, c))
                      if hit.image == 0)
    status, _, body = request(strict, "GET", f"/img/patch/{LAYER}/{unit}/{rank}.jpg")
    assert 400 <= status < 500 and b"outside" in body and str(root).encode() not in body
    assert request(loose, "GET", f"/img/patch/{LAYER}/{unit}/{rank}.jpg")[0] == 200


def test_a_link_in_syntheses_to_a_file_outside_is_not_served(shared):
    """It was served byte for byte (issue 23)."""
    strict, loose, root = shared
    status, _, body = request(strict, "GET", f"/img/atlas-synth/{LAYER}/0/0.png")
    assert status == 404 and b"outside the atlas folder" in body, body
    assert str(root).encode() not in body
    assert request(strict, "GET", f"/img/atlas-synth/{LAYER}/1/0.png")[0] == 200
    assert request(loose, "GET", f"/img/atlas-synth/{LAYER}/0/0.png")[0] == 200


def test_a_moved_photo_is_named_from_the_atlas_not_by_its_full_path(shared):
    """It said '400 image file not found: /full/path/...' (issue 23)."""
    strict, loose, root = shared
    atlas = strict.server.config.app.state.explorer.atlas
    name = Path(atlas.image_paths[2]).name
    unit, rank = next((c, r) for c in range(24) for r, hit in enumerate(atlas.top(LAYER, c))
                      if hit.image == 2)
    for path in ["/img/thumb/a-2.jpg", f"/img/patch/{LAYER}/{unit}/{rank}.jpg",
                 f"/img/tile/{LAYER}/{unit}.jpg", "/image/a-2"]:
        status, _, body = request(strict, "GET", path)
        assert 400 <= status < 500, (path, status)
        assert name.encode() in body and b"not found" in body, (path, body[:300])
        assert str(root).encode() not in body and b"/tmp" not in body, (path, body[:300])


def test_a_synthesis_that_cannot_be_saved_keeps_the_path_in_the_log(tmp_path, monkeypatch):
    """/api/synth answered the exception text, cache path included (issue 23)."""
    srv = start_tiny_server(tmp_path / "cache")
    try:
        cache = srv.server.config.app.state.jobs.cache
        real_put = cache.put

        def put(key, data):
            if key.startswith("synth/"):
                raise PermissionError(13, "Permission denied", str(cache.root / key))
            real_put(key, data)

        monkeypatch.setattr(cache, "put", put)
        headers = {"X-Convsight": "1"}
        assert request(srv, "POST", "/api/synth/conv2/3", headers, b"")[0] == 202
        deadline = time.time() + 120
        while time.time() < deadline:
            state = json.loads(request(srv, "GET", "/api/synth/conv2/3")[2])
            if state["state"] == "error":
                break
            time.sleep(0.2)
        assert state["state"] == "error", state
        assert "PermissionError" in state["error"] and "log" in state["error"]
        assert str(tmp_path) not in state["error"] and "/" not in state["error"], state
    finally:
        srv.stop()
