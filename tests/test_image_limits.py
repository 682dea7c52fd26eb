"""Memory bounds that follow bytes, not pixels: odd images cost what their result costs.

Peak memory is read in a fresh subprocess (``ru_maxrss`` after the call minus before it), so
other tests' allocations do not blur it.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap

import numpy as np
import pytest
from PIL import Image

import convsight
from convsight.images import decoded_bytes, load_image, resize_center_crop, sample_images

PEAK = textwrap.dedent("""
    import resource, sys
    from convsight.images import load_image, to_tensor
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    x = to_tensor(load_image(sys.argv[1]), (224, 224))
    assert tuple(x.shape) == (3, 224, 224), x.shape
    print((resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024)
""")


def peak_mb(path) -> float:
    out = subprocess.run([sys.executable, "-c", PEAK, str(path)], capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0, out.stderr
    return float(out.stdout.strip().splitlines()[-1])


def test_a_thin_image_never_materialises_its_long_side(tmp_path):
    """86 bytes, 1 x 3000 pixels: scaling its short side to 256 px used to make a 256 x 768000
    image (about 800 MB)."""
    path = tmp_path / "thin.png"
    Image.fromarray(np.zeros((3000, 1), np.uint8)).save(path)
    assert path.stat().st_size < 200
    assert peak_mb(path) < 100


@pytest.mark.slow
def test_a_16_bit_image_is_converted_without_float64_copies(tmp_path):
    """A 6000 x 6000 16-bit PNG (a few hundred kB) used to take about 1 GB to load."""
    path = tmp_path / "deep.png"
    a = (np.arange(6000 * 6000, dtype=np.uint32) % 65536).astype(np.uint16).reshape(6000, 6000)
    Image.fromarray(a).save(path)
    assert peak_mb(path) < 450


def test_sixteen_bit_values_are_rounded_like_division_by_257(tmp_path):
    a = np.array([[0, 128, 129, 257, 385, 386, 65535]], dtype=np.uint16)
    Image.fromarray(a).save(tmp_path / "v.png")
    got = np.asarray(load_image(tmp_path / "v.png"))[0, :, 0]
    assert got.tolist() == np.round(a[0] / 257.0).astype(int).tolist()


def test_decoded_size_limits_follow_bit_depth(tmp_path, monkeypatch):
    assert decoded_bytes(100, 100, "I;16") == 2 * decoded_bytes(100, 100, "L")
    assert decoded_bytes(100, 100, "RGBA") == 4 * decoded_bytes(100, 100, "L")
    monkeypatch.setattr(convsight.images, "MAX_DECODED_BYTES", 30_000)
    Image.fromarray(np.zeros((100, 120), np.uint16)).save(tmp_path / "deep.png")  # 24 000 B
    Image.fromarray(np.zeros((100, 120, 3), np.uint8)).save(tmp_path / "rgb.png")  # 36 000 B
    load_image(tmp_path / "deep.png")
    with pytest.raises(convsight.ImageError, match="MiB to decode"):
        load_image(tmp_path / "rgb.png")
    monkeypatch.setattr(convsight.images, "MAX_SIDE", 100)
    with pytest.raises(convsight.ImageError, match="side over"):
        load_image(tmp_path / "deep.png")


def test_the_crop_equals_resizing_the_whole_image():
    """Computing only the crop gives the pixels of resize-then-crop, up to rounding."""
    im = sample_images()["chelsea"]
    for size, ratio in (((224, 224), 256 / 224), ((96, 128), 1.0), ((299, 299), 342 / 299)):
        h, w = size
        scale = max(h, w) * ratio / min(im.width, im.height)
        new_w, new_h = max(w, round(im.width * scale)), max(h, round(im.height * scale))
        left, top = (new_w - w) // 2, (new_h - h) // 2
        whole = im.resize((new_w, new_h), Image.BICUBIC).crop((left, top, left + w, top + h))
        diff = np.abs(np.asarray(whole, int) - np.asarray(resize_center_crop(im, size, ratio), int))
        assert diff.max() <= 2 and diff.mean() < 0.01


def _varied(mode: str, size=(700, 280)) -> Image.Image:
    """Smooth ramps, blocks and two levels of alpha (no pixel noise, which two filters of the
    same quality would still render differently)."""
    rgba = np.zeros((size[1], size[0], 4), np.uint8)
    rgba[..., 0] = np.linspace(0, 255, size[0])[None]
    rgba[..., 1] = np.linspace(255, 0, size[1])[:, None]
    rgba[..., 2] = ((np.arange(size[1])[:, None] // 50 + np.arange(size[0])[None] // 50) % 2) * 200
    rgba[..., 3] = np.where(np.arange(size[0])[None] < size[0] // 2, 255, 60)
    image = Image.fromarray(rgba, "RGBA")
    if mode == "1":
        return Image.fromarray(rgba[..., 2] > 100)
    if mode in ("P", "P+trns"):
        return image.convert("RGB").quantize(64, dither=Image.Dither.NONE)
    return image.convert(mode) if mode != "RGBA" else image


@pytest.mark.parametrize("mode", ["1", "L", "LA", "P", "P+trns", "PA", "RGB", "RGBA", "CMYK"])
def test_shrink_in_bands_matches_converting_the_whole_image_first(mode):
    """``images.shrink`` (what the explorer does to uploads, a band at a time) gives the picture
    that converting the whole image with load_image, then Pillow's thumbnail, gives (with
    ``reducing_gap=1``, Pillow box-reduces by the whole factor first, as shrink does: a box
    then bicubic filter draws edges a little softer than bicubic alone; sizes that are
    multiples of the factor, so that both reduce the same blocks)."""
    from convsight.images import BAND_BYTES, shrink

    image = _varied(mode)
    if mode == "P+trns":
        image.info["transparency"] = 3
    assert 4 * image.width * 3 < BAND_BYTES  # many rows a band; the next test takes thin bands
    want = load_image(image)
    want.thumbnail((100, 100), Image.Resampling.BICUBIC, reducing_gap=1.0)
    got = shrink(image, 100)
    assert got.mode == "RGB" and got.size == want.size == (100, 40)
    diff = np.abs(np.asarray(got, np.int16) - np.asarray(want, np.int16))
    assert diff.mean() < 1.0 and np.percentile(diff, 99) <= 6, (diff.mean(), diff.max())


def test_shrink_with_one_band_per_step_and_exif_rotation(monkeypatch):
    import convsight.images as images

    monkeypatch.setattr(images, "BAND_BYTES", 1)  # bands of `factor` rows
    image = _varied("P+trns", (560, 210))
    image.info["transparency"] = 5
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise to show
    image.info["exif"] = exif.tobytes()
    want = load_image(image)
    assert want.size == (210, 560)
    want.thumbnail((80, 80), Image.Resampling.BICUBIC, reducing_gap=1.0)
    got = images.shrink(image, 80)
    assert got.size == want.size
    diff = np.abs(np.asarray(got, np.int16) - np.asarray(want, np.int16))
    assert diff.mean() < 1.0, diff.mean()
