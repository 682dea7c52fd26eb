"""How much memory the explorer's server takes for hostile uploads and junk URLs.

Each case runs against a fresh server in its own process (``tests/web/web_process.py``: a tiny model,
so the numbers are the web layer's own) and prints the server's resident memory above its
settled baseline: the peak (VmHWM) for uploads, what stays (VmRSS) after junk URLs.

- one 16-bit 6000x6000 PNG (82 KB on the wire, 72 MB decoded);
- four 36-megapixel 8-bit PNGs uploaded at the same time;
- four 40 KB palette PNGs with transparency (6300x6300) at the same time: peak, and what the
  server keeps after them (issue 23: +1.29 GB peak, +862 MB kept before the band-wise shrink);
- 8000 requests for random upload ids that do not exist (404s through the picture cache).

``--src`` runs another checkout's code in the server, e.g. the original one, to compare:

    .venv/bin/python bench/web_memory.py                  # this checkout
    .venv/bin/python bench/web_memory.py --src /work/base/src
"""

from __future__ import annotations

import argparse
import io
import sys
import tempfile
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from tests.web.web_process import ServerProcess  # noqa: E402

MB = 2**20
HEADERS = {"X-Convsight": "1"}  # what the page's own script sends (ignored by older servers)


def png(image: Image.Image) -> bytes:
    buf = io.BytesIO()
    image.save(buf, format="PNG")
    return buf.getvalue()


def sixteen_bit(side: int = 6000) -> bytes:
    return png(Image.fromarray(np.full((side, side), 40_000, np.uint16)))


def eight_bit(colour: int, side: int = 6000) -> bytes:
    return png(Image.new("RGB", (side, side), (colour, 90, 200)))


def upload(srv: ServerProcess, payload: bytes) -> int:
    boundary = uuid.uuid4().hex
    body = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"image\"; filename=\"a.png\""
            "\r\nContent-Type: image/png\r\n\r\n").encode() + payload + \
        f"\r\n--{boundary}--\r\n".encode()
    headers = {**HEADERS, "Content-Type": f"multipart/form-data; boundary={boundary}"}
    return srv.request("POST", "/images", body, headers)[0]


def settle(srv: ServerProcess) -> int:
    """Warm the upload path once (imports, Pillow's PNG plugin), then the resident baseline."""
    upload(srv, png(Image.new("RGB", (64, 64), (1, 2, 3))))
    srv.reset_peak()
    return srv.rss()


def peak_of_uploads(src: Path | None, payloads: list[bytes]) -> tuple[float, list[int]]:
    with tempfile.TemporaryDirectory() as tmp, ServerProcess(Path(tmp), src=src) as srv:
        base = settle(srv)
        with ThreadPoolExecutor(len(payloads)) as pool:
            statuses = list(pool.map(lambda p: upload(srv, p), payloads))
        return (srv.peak() - base) / MB, statuses


def palette(transparent: int, side: int = 6300) -> bytes:
    image = Image.new("P", (side, side), 0)
    image.putpalette([(i * 7) % 256 for i in range(768)])
    buf = io.BytesIO()
    image.save(buf, format="PNG", transparency=transparent)
    return buf.getvalue()


def peak_and_kept(src: Path | None, payloads: list[bytes]) -> tuple[float, float, list[int]]:
    """(peak, kept after, statuses) in MB above the settled baseline."""
    with tempfile.TemporaryDirectory() as tmp, ServerProcess(Path(tmp), src=src) as srv:
        base = settle(srv)
        with ThreadPoolExecutor(len(payloads)) as pool:
            statuses = list(pool.map(lambda p: upload(srv, p), payloads))
        return (srv.peak() - base) / MB, (srv.rss() - base) / MB, statuses


def growth_after_404s(src: Path | None, n: int) -> tuple[float, set[int]]:
    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory() as tmp, ServerProcess(Path(tmp), src=src) as srv:
        paths = [f"/img/{kind}/u-{rng.integers(2**63):016x}.{ext}"
                 for kind, ext in [("thumb", "jpg"), ("input", "png")] * (n // 2)]
        statuses = {srv.request("GET", p)[0] for p in paths[:500]}  # warm-up: allocator, caches
        base = srv.rss()
        with ThreadPoolExecutor(4) as pool:
            statuses |= set(pool.map(lambda p: srv.request("GET", p)[0], paths[500:]))
        return (srv.rss() - base) / MB, statuses


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--src", type=Path, default=None, help="the checkout's src/ folder to serve")
    ap.add_argument("--junk", type=int, default=8000, help="random 404 requests")
    args = ap.parse_args()
    print(f"server code: {args.src or 'this checkout'}")
    wide = sixteen_bit()
    peak, statuses = peak_of_uploads(args.src, [wide])
    print(f"16-bit 6000x6000 PNG ({len(wide) / 1024:.0f} KB): peak +{peak:.0f} MB, "
          f"HTTP {statuses}")
    four = [eight_bit(c) for c in (10, 60, 110, 160)]
    peak, statuses = peak_of_uploads(args.src, four)
    print(f"four 36-megapixel 8-bit PNGs at once ({sum(map(len, four)) / 1024:.0f} KB): "
          f"peak +{peak:.0f} MB, HTTP {statuses}")
    tiny = [palette(t) for t in range(4)]
    peak, kept, statuses = peak_and_kept(args.src, tiny)
    print(f"four 6300x6300 palette PNGs with transparency at once "
          f"({sum(map(len, tiny)) / 1024:.0f} KB): peak +{peak:.0f} MB, kept +{kept:.0f} MB, "
          f"HTTP {statuses}")
    grown, codes = growth_after_404s(args.src, args.junk)
    print(f"{args.junk} random 404 URLs: resident memory +{grown:.1f} MB "
          f"({grown * MB / max(1, args.junk - 500) / 1024:.1f} KB a request), HTTP {sorted(codes)}")


if __name__ == "__main__":
    main()
