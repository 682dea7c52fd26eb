"""Mining against brute force: every activation of every image kept, maxima taken and sorted by hand."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import convsight
import convsight.images
from convsight.capture import capture
from convsight.mining import TopK, channel_maxima, photo_folder

LAYERS = ["blocks.1", "blocks.5", "conv_head", "fc"]  # 56x56 ... 2x2 maps at 64 px, and a 2-D output
K = 5


def small_network(lite0: convsight.Network, size: int = 64) -> convsight.Network:
    """The default model fed 64 px images (same module, so nothing is loaded twice)."""
    return convsight.Network(lite0.module, mean=lite0.mean, std=lite0.std, input_size=(size, size),
                             class_names=lite0.class_names, name=lite0.name, info=dict(lite0.info))


def brute_force(net: convsight.Network, paths: list, layers: list[str]) -> dict[str, np.ndarray]:
    """Each layer's full output for every image, one image at a time: {layer: (N, C, H*W)}."""
    acts: dict[str, list] = {name: [] for name in layers}
    for p in paths:
        x = net.preprocess(p)
        with capture(net.module, layers) as a, torch.no_grad():
            net.module(x)
        for name in layers:
            acts[name].append(a[name][0].reshape(a[name].shape[1], -1).numpy())
    return {name: np.stack(v) for name, v in acts.items()}


def expected_top(flat: np.ndarray, channel: int, k: int, ids: np.ndarray | None = None) -> list[int]:
    """Image ids of a channel's k best maxima: value descending, then lower id first."""
    values = flat[:, channel].max(axis=1)
    ids = np.arange(len(values)) if ids is None else ids
    return [int(ids[i]) for i in np.lexsort((ids, -values))[:k]]


def assert_matches(atlas: convsight.Atlas, oracle: dict[str, np.ndarray], layers: list[str],
                   k: int, id_of_row: np.ndarray | None = None, rtol: float = 1e-4) -> None:
    """Every hit is the oracle's: same image (up to float noise between near-equal maxima), same
    value, and (y, x) is the first position of the image's maximum."""
    rows = {int(i): r for r, i in enumerate(id_of_row)} if id_of_row is not None else None
    for name in layers:
        flat = oracle[name]
        width = atlas.shapes[name][-1] if len(atlas.shapes[name]) >= 2 else 1
        assert atlas.channels(name) == flat.shape[1]
        mismatched = 0
        for c in range(flat.shape[1]):
            hits = atlas.top(name, c)
            want = expected_top(flat, c, k, id_of_row)
            assert len(hits) == min(k, len(flat))
            for hit, want_id in zip(hits, want):
                row = rows[hit.image] if rows is not None else hit.image
                want_row = rows[want_id] if rows is not None else want_id
                best = float(flat[row, c].max())
                tol = rtol * (1 + abs(best))
                assert hit.value == pytest.approx(best, abs=tol), (name, c, hit)
                if hit.image != want_id:  # allowed only between maxima equal up to float noise
                    mismatched += 1
                    assert abs(best - flat[want_row, c].max()) <= 2 * tol, (name, c, hit, want_id)
                first = int(np.argmax(flat[row, c]))
                pos = hit.y * width + hit.x
                assert flat[row, c, pos] >= best - tol, (name, c, hit)
                if not np.any(np.abs(flat[row, c, :first] - best) <= tol):
                    assert pos == first, (name, c, hit, first)
        assert mismatched <= flat.shape[1] * k // 100, f"{name}: {mismatched} near-tie swaps"


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("photos")
    photo_folder(root, n=36, seed=3, min_side=64, max_side=128)
    return root


@pytest.fixture(scope="module")
def net(lite0) -> convsight.Network:
    return small_network(lite0)


@pytest.fixture(scope="module")
def oracle(net, folder) -> dict[str, np.ndarray]:
    return brute_force(net, convsight.images.list_images(folder), LAYERS)


# ---- the streaming top-k on its own ---------------------------------------------------------------

def test_channel_maxima_takes_first_position_of_ties():
    act = torch.zeros(1, 2, 3, 4)
    act[0, 0, 1, 2] = act[0, 0, 2, 1] = 5.0  # two maxima: (1, 2) comes first in row-major order
    act[0, 1] = -1.0
    act[0, 1, 2, 3] = float("nan")  # NaN never wins
    values, y, x = channel_maxima(act)
    assert values.tolist() == [[5.0, -1.0]]
    assert (y.tolist(), x.tolist()) == ([[1, 0]], [[2, 0]])


def test_topk_breaks_ties_by_image_order_whatever_the_arrival_order():
    gen = torch.Generator().manual_seed(1)
    scores = torch.randint(0, 4, (50, 6), generator=gen).float()  # many exact ties
    want = [[int(i) for i in np.lexsort((np.arange(50), -scores[:, c].numpy()))[:7]] for c in range(6)]
    for seed in range(3):
        order = torch.randperm(50, generator=torch.Generator().manual_seed(seed))
        top = TopK(6, 7)
        for chunk in order.split([3, 11, 1, 20, 15]):
            top.update(chunk, scores[chunk], torch.zeros(len(chunk), 6), torch.zeros(len(chunk), 6))
        assert top.image.tolist() == want
        assert torch.equal(top.value, torch.gather(scores.T, 1, top.image))


def test_topk_merge_of_shards_equals_single_pass():
    scores = torch.randint(0, 5, (40, 3)).float()
    whole, even, odd = TopK(3, 9), TopK(3, 9), TopK(3, 9)
    ids = torch.arange(40)
    zeros = torch.zeros(40, 3)
    whole.update(ids, scores, zeros, zeros)
    even.update(ids[0::2], scores[0::2], zeros[0::2], zeros[0::2])
    odd.update(ids[1::2], scores[1::2], zeros[1::2], zeros[1::2])
    odd.merge(even)
    assert torch.equal(odd.image, whole.image) and torch.equal(odd.value, whole.value)


# ---- mining a real photo folder ------------------------------------------------------------------

@pytest.mark.parametrize("batch_size,workers", [(1, 0), (7, 0), (16, 2)])
def test_mine_matches_brute_force(net, folder, oracle, batch_size, workers):
    atlas = convsight.mine(net, folder, LAYERS, k=K, batch_size=batch_size, workers=workers,
                           progress=False)
    assert atlas.layers == LAYERS and atlas.k == K and atlas.image_count == 36
    assert [Path(p).name for p in atlas.image_paths] == [p.name for p in convsight.images.list_images(folder)]
    assert atlas.shapes["blocks.5"] == (80, 4, 4) and atlas.shapes["fc"] == (1000,)
    assert_matches(atlas, oracle, LAYERS, K)


def test_results_do_not_depend_on_batch_size_or_workers(net, folder):
    a = convsight.mine(net, folder, ["blocks.5", "fc"], k=K, batch_size=5, progress=False)
    b = convsight.mine(net, folder, ["blocks.5", "fc"], k=K, batch_size=12, workers=2, progress=False)
    for name in ("blocks.5", "fc"):
        for key in ("image", "y", "x"):
            assert np.array_equal(a.arrays(name)[key], b.arrays(name)[key]), (name, key)
        np.testing.assert_allclose(a.arrays(name)["value"], b.arrays(name)["value"], rtol=1e-5, atol=1e-5)


def test_list_of_paths_and_dataset_give_the_same_atlas(net, folder):
    paths = convsight.images.list_images(folder)[:10]
    from_list = convsight.mine(net, paths, ["blocks.5"], k=3, batch_size=4, progress=False)

    class Pairs(torch.utils.data.Dataset):  # (image, label) pairs, PIL images and arrays mixed
        def __len__(self):
            return len(paths)

        def __getitem__(self, i):
            im = Image.open(paths[i]).convert("RGB")
            return (np.asarray(im) if i % 2 else im), i % 3

    from_dataset = convsight.mine(net, Pairs(), ["blocks.5"], k=3, batch_size=4, progress=False)
    assert from_dataset.image_paths[0] == "dataset[0]"
    for key in ("image", "y", "x", "value"):
        assert np.array_equal(from_list.arrays("blocks.5")[key], from_dataset.arrays("blocks.5")[key])


def test_fewer_images_than_k_leaves_slots_empty(net, folder):
    paths = convsight.images.list_images(folder)[:3]
    atlas = convsight.mine(net, paths, ["blocks.5"], k=9, progress=False)
    assert all(len(atlas.top("blocks.5", c)) == 3 for c in range(80))
    assert (atlas.arrays("blocks.5")["image"][:, 3:] == -1).all()


def test_unreadable_files_are_skipped_and_listed(net, folder, tmp_path):
    good = convsight.images.list_images(folder)[:5]
    for i, p in enumerate(good):
        (tmp_path / "ok").mkdir(exist_ok=True)
        (tmp_path / "ok" / f"{i}{p.suffix}").write_bytes(p.read_bytes())
    jpeg = next(p for p in convsight.images.list_images(folder) if p.suffix == ".jpg").read_bytes()
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "truncated.jpg").write_bytes(jpeg[: len(jpeg) // 2])
    (tmp_path / "bad" / "notes.jpg").write_text("this is a text file, not a JPEG\n")
    gray = Image.fromarray((np.arange(80 * 90).reshape(80, 90) % 251).astype(np.uint8), "L")
    gray.save(tmp_path / "bad" / "gray.png")
    atlas = convsight.mine(net, tmp_path, ["blocks.5", "fc"], k=3, batch_size=3, progress=False)
    skipped = {Path(p).name: reason for p, reason in atlas.skipped}
    assert set(skipped) == {"truncated.jpg", "notes.jpg"}
    assert "truncated" in skipped["truncated.jpg"] and "not an image" in skipped["notes.jpg"]
    assert atlas.image_count == 6 and len(atlas.image_paths) == 8
    readable = [p for p in atlas.image_paths if Path(p).name not in skipped]
    rows = np.array([atlas.image_paths.index(p) for p in readable])
    assert_matches(atlas, brute_force(net, readable, ["blocks.5", "fc"]), ["blocks.5", "fc"], 3, rows)
    hits = {h.image for c in range(80) for h in atlas.top("blocks.5", c)}
    assert atlas.image_paths.index(str((tmp_path / "bad" / "gray.png").resolve())) in hits


@pytest.mark.parametrize("call,error,words", [
    (lambda n, f: convsight.mine(n, f, ["blocks.55"]), convsight.UnknownLayerError, "blocks.5"),
    (lambda n, f: convsight.mine(n, f, []), convsight.ConvsightError, "no layers"),
    (lambda n, f: convsight.mine(n, f, ["blocks.5"], k=0), convsight.ConvsightError, "k must be"),
    (lambda n, f: convsight.mine(n, f / "nowhere", ["blocks.5"]), convsight.ConvsightError, "not found"),
    (lambda n, f: convsight.mine(n, f, ["blocks.5"], resume=True), convsight.ConvsightError, "out="),
    (lambda n, f: convsight.mine(n, 42, ["blocks.5"]), convsight.ConvsightError, "int"),
])
def test_bad_input_is_named(net, folder, call, error, words):
    with pytest.raises(error, match=words):
        call(net, folder)


def test_empty_folder(net, tmp_path):
    with pytest.raises(convsight.ConvsightError, match="no images found"):
        convsight.mine(net, tmp_path, ["blocks.5"])


def test_photo_folder_is_reproducible(tmp_path):
    a = photo_folder(tmp_path / "a", n=6, seed=5)
    b = photo_folder(tmp_path / "b", n=6, seed=5)
    assert [p.relative_to(tmp_path / "a") for p in a] == [p.relative_to(tmp_path / "b") for p in b]
    assert all(x.read_bytes() == y.read_bytes() for x, y in zip(a, b))
    assert len({p.parent.name for p in photo_folder(tmp_path / "c", n=40)}) >= 5  # class folders


def test_all_images_unreadable_is_an_error(net, tmp_path):
    for i in range(3):
        (tmp_path / f"{i}.png").write_bytes(b"not a png")
    with pytest.raises(convsight.ConvsightError, match="none of the 3 images could be read"):
        convsight.mine(net, tmp_path, ["blocks.5"], progress=False)


def test_one_forward_pass_per_batch_that_stops_after_the_deepest_layer(net, folder):
    calls = {"model": 0, "conv_head": 0}
    hooks = [net.module.register_forward_pre_hook(lambda m, i: calls.__setitem__("model", calls["model"] + 1)),
             net.module.conv_head.register_forward_pre_hook(
                 lambda m, i: calls.__setitem__("conv_head", calls["conv_head"] + 1))]
    try:
        convsight.mine(net, folder, ["blocks.1", "blocks.3", "blocks.5"], batch_size=16, progress=False)
    finally:
        for h in hooks:
            h.remove()
    # a shape probe, then 36 images in 3 batches, then the receptive-field trace of the stored crop
    # boxes (on zeros; it too stops after the deepest layer)
    assert calls == {"model": 1 + 3 + 1, "conv_head": 0}
