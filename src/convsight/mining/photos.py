"""A folder of real photos to mine, made offline from the photos inside scikit-image.

Random crops (with flips, small rotations of 90 degrees and rescaling) of scikit-image's sample
photos, written as JPEG and PNG files into one subfolder per photo (like a class-per-folder
dataset). Used by the demo, the tests and the benchmark.

>>> paths = photo_folder("photos", n=300)       # photos/coffee/0007.jpg, ...
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

PHOTOS = ("chelsea", "coffee", "astronaut", "rocket", "motorcycle", "hubble_deep_field",
          "immunohistochemistry", "retina", "colorwheel")


def _photos() -> dict[str, np.ndarray]:
    from skimage import data

    out = {}
    for name in PHOTOS:
        if name == "motorcycle":
            out[name] = data.stereo_motorcycle()[0]
        else:
            out[name] = getattr(data, name)()
    return {name: a[..., :3] for name, a in out.items()}


def photo_folder(path: str | Path, n: int = 300, seed: int = 0, min_side: int = 96,
                 max_side: int = 256) -> list[Path]:
    """Write ``n`` random crops of real photos under ``path``; return their paths (sorted).

    Each file is a crop covering 20 to 90 percent of a photo's shorter side, randomly flipped
    and turned, resized so that its longer side is between ``min_side`` and ``max_side`` pixels,
    saved as JPEG (quality 90) or PNG. The same ``seed`` gives the same files.
    """
    rng = np.random.default_rng(seed)
    photos = _photos()
    names = sorted(photos)
    root = Path(path)
    written = []
    for i in range(n):
        name = names[int(rng.integers(len(names)))]
        a = photos[name]
        h, w = a.shape[:2]
        side = int(min(h, w) * rng.uniform(0.2, 0.9))
        ch = side
        cw = int(np.clip(side * rng.uniform(0.75, 1.33), 16, w))
        top, left = int(rng.integers(0, h - ch + 1)), int(rng.integers(0, w - cw + 1))
        crop = a[top:top + ch, left:left + cw]
        if rng.random() < 0.5:
            crop = crop[:, ::-1]
        crop = np.rot90(crop, int(rng.integers(4)) if rng.random() < 0.2 else 0)
        im = Image.fromarray(np.ascontiguousarray(crop))
        longer = int(rng.integers(min_side, max_side + 1))
        scale = longer / max(im.size)
        im = im.resize((max(8, round(im.width * scale)), max(8, round(im.height * scale))),
                       Image.BICUBIC)
        folder = root / name
        folder.mkdir(parents=True, exist_ok=True)
        if rng.random() < 0.75:
            file = folder / f"{i:04d}.jpg"
            im.save(file, quality=90)
        else:
            file = folder / f"{i:04d}.png"
            im.save(file)
        written.append(file)
    return sorted(written)
