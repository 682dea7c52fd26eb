"""Reading images of any mode into RGB, and turning them into network input.

``load_image`` accepts a path, a PIL image or a NumPy array and returns an 8-bit RGB PIL image:
EXIF rotation applied; grayscale, palette, CMYK and 16-bit/float images converted; transparency
composited on white. Unreadable, truncated and over-large files raise ``ImageError`` naming the file.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image, ImageFile, ImageOps

from .errors import ImageError

# Limits that bound the memory one image can take, whatever its file size: the pixel count and
# the bytes Pillow needs to decode it (16-bit and float images take 2-4 times the bytes of 8-bit).
MAX_PIXELS = 64_000_000
MAX_DECODED_BYTES = 256 * 2**20
MAX_SIDE = 32_768
_BITS = {"1": 1, "I;16": 16, "I;16B": 16, "I;16L": 16, "I;16N": 16, "I": 32, "F": 32}
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm",
                  ".pgm", ".pbm", ".jfif"}


def _from_array(array: np.ndarray) -> Image.Image:
    a = np.asarray(array)
    if a.ndim == 3 and a.shape[0] in (1, 3, 4) and a.shape[-1] not in (1, 3, 4):
        a = np.moveaxis(a, 0, -1)  # CHW -> HWC
    if a.ndim == 3 and a.shape[-1] == 1:
        a = a[..., 0]
    if a.ndim not in (2, 3) or (a.ndim == 3 and a.shape[-1] not in (3, 4)):
        raise ImageError(f"cannot use an array of shape {a.shape} as an image: expected (H, W), "
                         "(H, W, 3) or (H, W, 4)")
    if a.dtype == np.uint8:
        pass
    elif a.dtype == np.uint16:
        a = _sixteen_to_eight(a)
    elif a.dtype == bool:
        a = a.astype(np.uint8) * 255
    elif np.issubdtype(a.dtype, np.floating):
        if not np.isfinite(a).all():
            raise ImageError("image array holds NaN or infinite values")
        if a.min() < 0 or a.max() > 1:  # floats outside [0, 1]: stretch to the full range
            a = (a - a.min()) / max(float(a.max() - a.min()), 1e-12)
        a = (a * 255).round().astype(np.uint8)
    elif np.issubdtype(a.dtype, np.integer):
        a = np.clip(a, 0, 255).astype(np.uint8)
    else:
        raise ImageError(f"cannot use an array of dtype {a.dtype} as an image")
    return Image.fromarray(a)


def _sixteen_to_eight(a: np.ndarray) -> np.ndarray:
    """16-bit values -> 8-bit, rounded (v / 257), a block of rows at a time so that the 32-bit
    temporaries stay small whatever the image size."""
    out = np.empty(a.shape, dtype=np.uint8)
    rows = max(1, 2**20 // max(1, a[0].size))
    for start in range(0, a.shape[0], rows):
        block = a[start:start + rows].astype(np.uint32)
        out[start:start + rows] = (block + 128) // 257
    return out


def decoded_bytes(width: int, height: int, mode: str) -> int:
    """Bytes Pillow holds for a decoded image of this size and mode."""
    try:
        bands = Image.getmodebands(mode)
    except (KeyError, ValueError):
        bands = 4
    bits = _BITS.get(mode, 8)
    return width * height * max(1, bands * bits // 8)


def check_size(width: int, height: int, mode: str, name: str) -> None:
    """Raise ``ImageError`` if an image of this size and mode would take too much memory."""
    if width > MAX_SIDE or height > MAX_SIDE:
        raise ImageError(f"{name}: {width}x{height} pixels has a side over the {MAX_SIDE:,} "
                         "allowed")
    if width * height > MAX_PIXELS:
        raise ImageError(f"{name}: {width}x{height} pixels is more than the {MAX_PIXELS:,} "
                         "allowed")
    need = decoded_bytes(width, height, mode)
    if need > MAX_DECODED_BYTES:
        raise ImageError(f"{name}: a {width}x{height} {mode} image takes {need / 2**20:,.0f} MiB "
                         f"to decode; the limit is {MAX_DECODED_BYTES / 2**20:,.0f} MiB")


def _to_rgb(im: Image.Image) -> Image.Image:
    """Any PIL mode -> 8-bit RGB."""
    if im.mode.startswith("I;16"):
        im = Image.fromarray(_sixteen_to_eight(np.asarray(im)), "L")
    if im.mode in ("I", "F"):
        a = np.asarray(im, dtype=np.float32)
        if a.max() > 255 or a.min() < 0:
            hi = 65535.0 if a.max() <= 65535 and a.min() >= 0 else float(a.max() - a.min()) or 1.0
            a = (a - (a.min() if hi != 65535.0 else 0)) / hi * 255.0
        elif im.mode == "F" and a.max() <= 1.0:
            a = a * 255.0
        im = Image.fromarray(np.clip(a, 0, 255).round().astype(np.uint8), "L")
    if im.mode == "P":
        im = im.convert("RGBA" if "transparency" in im.info else "RGB")
    if im.mode in ("LA", "La", "PA"):
        im = im.convert("RGBA")
    if im.mode in ("RGBA", "RGBa"):
        background = Image.new("RGBA", im.size, (255, 255, 255, 255))
        im = Image.alpha_composite(background, im.convert("RGBA"))
    if im.mode != "RGB":
        im = im.convert("RGB")  # L, 1, CMYK, YCbCr, LAB, HSV
    return im


# modes whose conversion to 8 bits needs the whole image's value range (see ``_to_rgb``)
WIDE_MODES = ("I;16", "I;16B", "I;16L", "I;16N", "I", "F")
_ORIENTATION = {2: Image.Transpose.FLIP_LEFT_RIGHT, 3: Image.Transpose.ROTATE_180,
                4: Image.Transpose.FLIP_TOP_BOTTOM, 5: Image.Transpose.TRANSPOSE,
                6: Image.Transpose.ROTATE_270, 7: Image.Transpose.TRANSVERSE,
                8: Image.Transpose.ROTATE_90}
BAND_BYTES = 4 * 2**20  # a band converted at a time (Pillow keeps 4 bytes a pixel of RGB(A))


def shrink(im: Image.Image, side: int) -> Image.Image:
    """A decoded image of an 8-bit mode (1, L, P, PA, LA, RGB, RGBA, CMYK, YCbCr...) -> RGB at
    most ``side`` px a side, EXIF rotation applied, without a full-size converted copy.

    Bands of rows are converted (to L, RGB, or RGBA when there is transparency), box-reduced by
    a whole factor and put on white one at a time, which equals doing so to the whole image (up
    to rounding); the reduced image (``side`` to twice ``side`` a side) is then resized as
    ``thumbnail`` does. Memory: the decoded image as it is, a band (``BAND_BYTES``), the reduced
    image (at most ``(2 side)^2`` pixels of 4 bytes).
    """
    if im.mode in WIDE_MODES:
        raise ImageError(f"shrink takes 8-bit images; convert a {im.mode} image with load_image")
    alpha = "A" in im.getbands() or "transparency" in im.info
    target = "RGBA" if alpha else "L" if im.mode in ("1", "L") else "RGB"
    w, h = im.size
    factor = max(1, max(w, h) // side)
    rows = max(1, BAND_BYTES // (4 * w * factor)) * factor
    out = Image.new("RGB", (-(-w // factor), -(-h // factor)))
    for top in range(0, h, rows):
        band = im.crop((0, top, w, min(h, top + rows))).convert(target)
        if factor > 1:  # (RGBA is averaged with its colours weighted by alpha)
            band = band.reduce(factor)
        out.paste(_to_rgb(band), (0, top // factor))  # transparency on white, as load_image
        del band
    turn = _ORIENTATION.get(im.getexif().get(0x0112))
    if turn is not None:
        out = out.transpose(turn)
    out.thumbnail((side, side), Image.Resampling.BICUBIC)
    return out


def load_image(source: Any) -> Image.Image:
    """A path, PIL image or NumPy array -> RGB PIL image (see the module docstring)."""
    if isinstance(source, Image.Image):
        return _to_rgb(ImageOps.exif_transpose(source) or source)
    if isinstance(source, np.ndarray):
        return _to_rgb(_from_array(source))
    if isinstance(source, torch.Tensor):
        return _to_rgb(_from_array(source.detach().cpu().numpy()))
    if not isinstance(source, (str, Path)):
        raise ImageError(f"cannot read an image from a {type(source).__name__}: pass a file path, "
                         "a PIL image or a NumPy array")
    path = Path(source)
    if not path.exists():
        raise ImageError(f"image file not found: {path}")
    if path.is_dir():
        raise ImageError(f"{path} is a folder, not an image file")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as im:
                check_size(im.width, im.height, im.mode, str(path))
                previous = ImageFile.LOAD_TRUNCATED_IMAGES
                ImageFile.LOAD_TRUNCATED_IMAGES = False
                try:
                    im.load()
                finally:
                    ImageFile.LOAD_TRUNCATED_IMAGES = previous
                im = ImageOps.exif_transpose(im) or im
                return _to_rgb(im)
    except ImageError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise ImageError(f"{path}: image too large ({exc})") from None
    except Image.UnidentifiedImageError:
        raise ImageError(f"{path} is not an image Pillow can read (JPEG, PNG, TIFF, BMP, "
                         "GIF, WebP...)") from None
    except (OSError, SyntaxError, ValueError) as exc:
        raise ImageError(f"{path}: cannot read the image, it may be truncated or corrupt "
                         f"({exc})") from None


def resize_center_crop(im: Image.Image, size: tuple[int, int], ratio: float = 256 / 224) -> Image.Image:
    """Scale so the crop of ``size`` takes 1/ratio of the shorter side, then crop the centre.

    Only the crop is computed (Pillow resamples the source box under it), so a very thin image
    never materialises its scaled-up long side; the result equals resizing the whole image and
    cropping, up to rounding.
    """
    h, w = size
    scale = max(h, w) * ratio / min(im.width, im.height)
    new_w, new_h = max(w, round(im.width * scale)), max(h, round(im.height * scale))
    left, top = (new_w - w) // 2, (new_h - h) // 2
    sx, sy = im.width / new_w, im.height / new_h
    box = (left * sx, top * sy, (left + w) * sx, (top + h) * sy)
    return im.resize((w, h), Image.BICUBIC, box=box)


def to_tensor(im: Image.Image, size: tuple[int, int] | None = None,
              ratio: float = 256 / 224, channels: int = 3) -> torch.Tensor:
    """RGB PIL image -> float tensor (C, H, W) in [0, 1], resized and centre-cropped to ``size``.

    ``channels``: 3 for RGB, 1 for gray (ITU-R BT.601 luma, as PIL's ``convert("L")``). Photos
    have no other channel counts: networks that take them need tensors made by hand.
    """
    if channels not in (1, 3):
        raise ImageError(f"the network takes {channels} input channels, but image files give "
                         "1 (gray) or 3 (RGB); pass it normalised tensors (N, "
                         f"{channels}, H, W) instead of images")
    if size is not None:
        im = resize_center_crop(im, size, ratio)
    if channels == 1:
        im = im.convert("L")
    a = np.asarray(im, dtype=np.float32) / 255.0
    if a.ndim == 2:
        return torch.from_numpy(a.copy())[None].contiguous()
    return torch.from_numpy(a.copy()).permute(2, 0, 1).contiguous()


def to_pil(x: torch.Tensor) -> Image.Image:
    """Tensor (C, H, W) or (1, C, H, W) in [0, 1], C = 1 or 3 -> PIL image ("L" or "RGB"), clipped."""
    if x.dim() == 4:
        x = x[0]
    a = (x.detach().float().clamp(0, 1).cpu().permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
    return Image.fromarray(a[..., 0] if a.shape[-1] == 1 else a)


SAMPLE_PHOTOS = ("chelsea", "coffee", "astronaut", "rocket", "motorcycle")


def sample_images() -> dict[str, Image.Image]:
    """Real photos shipped inside scikit-image: a cat (chelsea), coffee, astronaut, rocket, motorcycle."""
    from skimage import data

    loaders = {"chelsea": data.chelsea, "coffee": data.coffee, "astronaut": data.astronaut,
               "rocket": data.rocket, "motorcycle": lambda: data.stereo_motorcycle()[0]}
    return {name: load_image(loaders[name]()) for name in SAMPLE_PHOTOS}


def list_images(folder: str | Path) -> list[Path]:
    """Image files under ``folder`` (recursive, sorted), by suffix."""
    folder = Path(folder)
    if not folder.is_dir():
        raise ImageError(f"not a folder: {folder}")
    return sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)


def gaussian_blur(x: torch.Tensor, kernel: int = 11, sigma: float = 5.0) -> torch.Tensor:
    """Blur a batch (N, C, H, W) with a Gaussian of ``sigma`` truncated to ``kernel`` taps.

    The defaults are RISE's (Petsiuk et al. 2018: kernel 11, sigma 5). The kernel is normalised to
    sum 1 and the borders reflect the image, so the blur works in any affine colour space: blurring
    a normalised image equals normalising the blurred image.
    """
    if not isinstance(kernel, int) or kernel < 1 or kernel % 2 == 0:
        raise ImageError(f"blur kernel must be a positive odd number of pixels, got {kernel!r}")
    if not sigma > 0:
        raise ImageError(f"blur sigma must be positive, got {sigma!r}")
    if x.dim() != 4:
        raise ImageError(f"gaussian_blur needs a batch (N, C, H, W), got shape {tuple(x.shape)}")
    r = kernel // 2
    t = torch.arange(-r, r + 1, dtype=x.dtype, device=x.device)
    g = torch.exp(-(t * t) / (2 * sigma * sigma))
    g = g / g.sum()
    c = x.shape[1]
    # reflect padding needs r < size; replicate the edge where the image is too small for it
    mode = "reflect" if min(x.shape[-2:]) > r else "replicate"
    y = torch.nn.functional.pad(x, (r, r, 0, 0), mode=mode)
    y = torch.nn.functional.conv2d(y, g.view(1, 1, 1, -1).expand(c, 1, 1, kernel), groups=c)
    y = torch.nn.functional.pad(y, (0, 0, r, r), mode=mode)
    return torch.nn.functional.conv2d(y, g.view(1, 1, -1, 1).expand(c, 1, kernel, 1), groups=c)
