"""Reading images of every odd kind, and clear errors for the unreadable."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

import convsight
from convsight.images import list_images, load_image, to_tensor


@pytest.fixture()
def rgb() -> np.ndarray:
    rng = np.random.default_rng(0)
    return rng.integers(0, 256, (40, 60, 3), dtype=np.uint8)


def _check_rgb(im: Image.Image, size=(60, 40)):
    assert im.mode == "RGB" and im.size == size
    return np.asarray(im)


def test_modes_from_files(tmp_path, rgb):
    gray = Image.fromarray(rgb[..., 0])
    gray.save(tmp_path / "gray.png")
    a = _check_rgb(load_image(tmp_path / "gray.png"))
    assert (a[..., 0] == rgb[..., 0]).all() and (a[..., 1] == a[..., 2]).all()

    rgba = np.dstack([rgb, np.zeros((40, 60), np.uint8)])
    rgba[:20, :, 3] = 255
    Image.fromarray(rgba, "RGBA").save(tmp_path / "rgba.png")
    a = _check_rgb(load_image(tmp_path / "rgba.png"))
    assert (a[:20] == rgb[:20]).all() and (a[20:] == 255).all()  # transparent -> white

    Image.fromarray(rgb).convert("P", palette=Image.ADAPTIVE, colors=16).save(tmp_path / "pal.png")
    _check_rgb(load_image(tmp_path / "pal.png"))
    Image.fromarray(rgb).convert("CMYK").save(tmp_path / "cmyk.jpg")
    a = _check_rgb(load_image(tmp_path / "cmyk.jpg"))
    assert np.abs(a.astype(int) - rgb).mean() < 20

    sixteen = (rgb[..., 0].astype(np.uint16) * 257)
    Image.fromarray(sixteen).save(tmp_path / "g16.png")
    im16 = Image.open(tmp_path / "g16.png")
    assert im16.mode.startswith("I")
    a = _check_rgb(load_image(tmp_path / "g16.png"))
    assert np.abs(a[..., 0].astype(int) - rgb[..., 0]).max() <= 1

    Image.fromarray(rgb).convert("LA").save(tmp_path / "la.png")
    _check_rgb(load_image(tmp_path / "la.png"))


def test_exif_rotation(tmp_path):
    blocks = np.zeros((40, 60, 3), np.uint8)
    blocks[:20, :30] = (255, 0, 0)  # red top-left quarter, blue bottom-right quarter
    blocks[20:, 30:] = (0, 0, 255)
    im = Image.fromarray(blocks)
    exif = im.getexif()
    exif[0x0112] = 6  # orientation: rotate 90 degrees clockwise to display
    im.save(tmp_path / "rot.jpg", exif=exif, quality=95)
    out = np.asarray(load_image(tmp_path / "rot.jpg")).astype(int)
    assert out.shape == (60, 40, 3)  # width and height swapped
    expected = np.rot90(blocks, k=-1).astype(int)
    assert np.abs(out - expected).mean() < 8
    assert np.abs(out - np.rot90(blocks, k=1).astype(int)).mean() > 50  # not the other way


def test_arrays_and_pil(rgb):
    _check_rgb(load_image(rgb))
    _check_rgb(load_image(rgb[..., 0]))
    _check_rgb(load_image(rgb.astype(np.float32) / 255))
    a = _check_rgb(load_image((rgb.astype(np.uint16) * 257)))
    assert (a == rgb).all()
    _check_rgb(load_image(np.moveaxis(rgb, -1, 0)))  # CHW
    _check_rgb(load_image(Image.fromarray(rgb).convert("L")))
    with pytest.raises(convsight.ImageError, match="shape"):
        load_image(np.zeros((5, 5, 5)))
    with pytest.raises(convsight.ImageError, match="file path"):
        load_image(12)


def test_truncated_and_non_images(tmp_path, rgb):
    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, "JPEG")
    (tmp_path / "cut.jpg").write_bytes(buf.getvalue()[: len(buf.getvalue()) // 2])
    with pytest.raises(convsight.ImageError, match="cut.jpg.*truncated"):
        load_image(tmp_path / "cut.jpg")
    (tmp_path / "text.jpg").write_text("hello, I am not a JPEG")
    with pytest.raises(convsight.ImageError, match="text.jpg is not an image"):
        load_image(tmp_path / "text.jpg")
    with pytest.raises(convsight.ImageError, match="not found"):
        load_image(tmp_path / "nope.png")
    with pytest.raises(convsight.ImageError, match="folder"):
        load_image(tmp_path)


def test_huge_image_refused(tmp_path, monkeypatch):
    Image.new("L", (300, 300)).save(tmp_path / "big.png")
    monkeypatch.setattr(convsight.images, "MAX_PIXELS", 10_000)
    with pytest.raises(convsight.ImageError, match="big.png.*300x300"):
        load_image(tmp_path / "big.png")


def test_to_tensor_and_listing(tmp_path, rgb):
    t = to_tensor(Image.fromarray(rgb), (32, 32))
    assert t.shape == (3, 32, 32) and 0 <= float(t.min()) and float(t.max()) <= 1
    (tmp_path / "a").mkdir()
    Image.fromarray(rgb).save(tmp_path / "a" / "x.PNG")
    (tmp_path / "notes.txt").write_text("x")
    assert [p.name for p in list_images(tmp_path)] == ["x.PNG"]


def test_sample_photos():
    photos = convsight.sample_images()
    assert set(photos) == {"chelsea", "coffee", "astronaut", "rocket", "motorcycle"}
    assert all(p.mode == "RGB" and min(p.size) >= 256 for p in photos.values())
