"""How fast the explorer's layer view is: a layer of 100+ units, from the atlas, cold and warm.

Mines 112-unit ``blocks.9`` and 1280-unit ``conv_head`` of the default model over real photo crops
at 224 px, serves the atlas on a free local port and measures (medians of several runs):

- the layer page's HTML (server side), for 112 units and for a 128-unit page of conv_head;
- all 112 unit tiles computed cold (empty cache) by 6 parallel clients, and read warm;
- in Chromium (if installed): time to the page and to every tile on screen, cold and warm;
- the baseline: ``atlas.layer_grid`` drawing the same 112 units into one picture.

    .venv/bin/python bench/web.py [--images 120]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import convsight
from convsight.mining import photo_folder
from convsight.web import create_app
from convsight.web.server import BackgroundServer

LAYER = "blocks.9"


def get(url: str) -> bytes:
    with urllib.request.urlopen(url, timeout=300) as r:
        return r.read()


def median_time(fn, repeat: int = 5) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def browser_times(url: str, repeat: int = 3) -> dict[str, float] | None:
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        return None
    if not Path("/usr/bin/chromium").is_file():
        return None
    visible = """() => { const h = innerHeight; const imgs = [...document.querySelectorAll('#units img')]
      .filter(i => { const r = i.getBoundingClientRect(); return r.bottom > 0 && r.top < h; });
      return imgs.length > 0 && imgs.every(i => i.complete && i.naturalWidth > 0); }"""
    out: dict[str, list[float]] = {"dom": [], "tiles": []}
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path="/usr/bin/chromium", args=[
            "--no-sandbox", "--disable-gpu", "--disable-background-networking",
            "--disable-component-update", "--disable-sync", "--no-first-run"])
        for _ in range(repeat):
            context = browser.new_context(viewport={"width": 1280, "height": 900})
            page = context.new_page()
            start = time.perf_counter()
            page.goto(url, wait_until="domcontentloaded")
            out["dom"].append(time.perf_counter() - start)
            page.wait_for_function(visible, timeout=300_000)
            out["tiles"].append(time.perf_counter() - start)
            context.close()
        browser.close()
    return {k: statistics.median(v) for k, v in out.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=120)
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="cs-bench-web-"))
    photo_folder(root / "photos", n=args.images)
    net = convsight.load_model()
    start = time.perf_counter()
    atlas = convsight.mine(net, root / "photos", [LAYER, "conv_head"], out=root / "atlas",
                           progress=False)
    print(f"mined {args.images} images, {LAYER} and conv_head, in {time.perf_counter() - start:.1f} s")
    n = atlas.channels(LAYER)

    grid_s = median_time(lambda: atlas.layer_grid(LAYER, max_units=n, net=net), repeat=3)

    app = create_app(root / "atlas", net, cache_dir=root / "cache")
    with BackgroundServer(app) as server:
        base = server.url
        get(f"{base}/")  # layer table and receptive fields, computed once at the first visit
        html_s = median_time(lambda: get(f"{base}/layer/{LAYER}"))
        wide_s = median_time(lambda: get(f"{base}/layer/conv_head?page=3"))
        tiles = [f"{base}/img/tile/{LAYER}/{c}.jpg" for c in range(n)]
        start = time.perf_counter()
        with ThreadPoolExecutor(6) as pool:
            list(pool.map(get, tiles))
        cold_s = time.perf_counter() - start
        with ThreadPoolExecutor(6) as pool:
            warm_s = median_time(lambda: list(pool.map(get, tiles)), repeat=3)
        print(f"layer page HTML, {n} units:            {html_s * 1000:7.1f} ms (median of 5)")
        print(f"layer page HTML, 128 of 1280 units:    {wide_s * 1000:7.1f} ms")
        print(f"all {n} tiles, cold (6 clients):        {cold_s * 1000:7.1f} ms")
        print(f"all {n} tiles, warm (6 clients):        {warm_s * 1000:7.1f} ms (median of 3)")
        print(f"baseline atlas.layer_grid, {n} units:   {grid_s * 1000:7.1f} ms (median of 3)")
        print(f"ratio cold tiles / layer_grid:          {cold_s / grid_s:7.2f}")
        print(f"ratio warm tiles / layer_grid:          {warm_s / grid_s:7.2f}")

        app2 = create_app(root / "atlas", net, cache_dir=root / "cache-browser")
        with BackgroundServer(app2) as cold_server:
            cold = browser_times(f"{cold_server.url}/layer/{LAYER}", repeat=1)
        warm = browser_times(f"{base}/layer/{LAYER}", repeat=3)
        if warm is None:
            print("browser: skipped (no playwright or no /usr/bin/chromium)")
        else:
            print(f"browser, cold cache: page {cold['dom'] * 1000:.0f} ms, visible tiles "
                  f"{cold['tiles'] * 1000:.0f} ms")
            print(f"browser, warm cache: page {warm['dom'] * 1000:.0f} ms, visible tiles "
                  f"{warm['tiles'] * 1000:.0f} ms (median of 3)")


if __name__ == "__main__":
    main()
