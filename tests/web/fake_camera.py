"""A clip for Chromium's fake camera, made from the sample photos (no tests of its own).

Chromium plays a Y4M file as the camera with ``--use-fake-device-for-media-stream
--use-fake-ui-for-media-stream --use-file-for-fake-video-capture=FILE.y4m`` (looping it). The
clip pans slowly across each sample photo in turn, so that consecutive frames differ a little
and photos change every ``hold`` frames. Used by tests/web/test_live_browser.py and bench/live.py.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

import convsight

FAKE_CAMERA_ARGS = ["--use-fake-device-for-media-stream", "--use-fake-ui-for-media-stream"]


def write_y4m(path: Path, width: int = 320, height: int = 240, hold: int = 20, fps: int = 30,
              photos: tuple[str, ...] = ("chelsea", "coffee", "astronaut")) -> Path:
    """Write a 4:2:0 Y4M clip (BT.601 full-range YCbCr, as ``C420jpeg`` says) and return it."""
    from PIL import Image

    samples = convsight.sample_images()
    path = Path(path)
    with path.open("wb") as f:
        f.write(f"YUV4MPEG2 W{width} H{height} F{fps}:1 Ip A1:1 C420jpeg\n".encode())
        for name in photos:
            photo = samples[name].convert("RGB")
            scale = max(width * 1.25 / photo.width, height * 1.25 / photo.height)
            big = photo.resize((round(photo.width * scale), round(photo.height * scale)),
                               Image.BILINEAR)
            for i in range(hold):
                left = round((big.width - width) * i / max(hold - 1, 1))
                top = (big.height - height) // 2
                frame = big.crop((left, top, left + width, top + height)).convert("YCbCr")
                y, cb, cr = (np.asarray(c) for c in frame.split())
                f.write(b"FRAME\n")
                f.write(y.tobytes())
                for c in (cb, cr):  # 2x2 means, as 4:2:0 subsampling
                    small = c.reshape(height // 2, 2, width // 2, 2).mean(axis=(1, 3))
                    f.write(np.round(small).astype(np.uint8).tobytes())
    return path


def camera_args(clip: Path) -> list[str]:
    return [*FAKE_CAMERA_ARGS, f"--use-file-for-fake-video-capture={clip}"]
