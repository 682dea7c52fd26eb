"""How fast the Live page is: `convsight live` on the default model at 224 px, a fake camera.

Starts ``convsight live`` in a child process (its memory is read from /proc), opens /live in
headless Chromium whose camera plays a clip made from the sample photos, and measures on the page
(``window.convsightLive``):

- sustained frames per second drawn, and the 50th / 95th percentile latency from capture (the
  page grabbing the frame) to drawn (the answer drawn on the page), with the activation view only
  and then with guided backpropagation of a unit on;
- the limits they approach, measured in this process with the server idle: the bare forward pass
  (batch 1, the whole network, as the page with its top classes) and forward + backward (guided
  backprop of one unit of the layer, the whole forward pass);
- the server's resident memory after the warm-up and every ``--rss-every`` frames (``--frames``
  frames in all, half in each phase), and the server's own time per frame (decode, model,
  encode).

The fake camera runs at ``--camera-fps`` (60) frames a second, faster than the model, so that
the model and not the camera is the limit (a 30 fps webcam caps the page at 30). The bench
prints the tables of docs/live.md in the form they have there.

Targets (issue 21): activations >= 10 frames/s with p95 <= 150 ms; guided >= 4 frames/s; each
within 80 % of its bare limit.

    .venv/bin/python bench/live.py [--frames 2000] [--threads 1] [--layer blocks.9]
                                   [--camera-fps 60] [--rss-every 500] [--screenshot docs/live.png]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

import convsight
from convsight.attribute import rectifier_rule
from convsight.capture import capture
from convsight.cpu import keep_freed_memory

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from tests.web.fake_camera import camera_args, write_y4m  # noqa: E402

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run"]
MB = 2**20


def rate(fn, seconds: float = 6.0, least: int = 5) -> tuple[float, float]:
    """(calls per second, CPU milliseconds per call) of ``fn`` after two warm-up calls, over
    about ``seconds``. The CPU time does not grow when other jobs share the cores."""
    fn()
    fn()
    n, start, cpu = 0, time.perf_counter(), time.process_time()
    while n < least or time.perf_counter() - start < seconds:
        fn()
        n += 1
    return n / (time.perf_counter() - start), (time.process_time() - cpu) * 1000 / n


def bare_limits(layer: str, unit: int = 0) -> dict[str, tuple[float, float]]:
    net = convsight.load_model()
    module = net.module.eval().requires_grad_(False)
    x = net.preprocess(convsight.sample_images()["chelsea"])

    def forward() -> None:
        with torch.inference_mode():
            module(x)

    def forward_backward() -> None:
        xg = x.clone().requires_grad_(True)
        with torch.enable_grad(), rectifier_rule("guided"), \
                capture(module, [layer], detach=False, eval=False) as found:
            module(xg)
        torch.autograd.grad(found[layer][0, unit].mean(), xg)

    return {"forward": rate(forward), "guided": rate(forward_backward)}


class Server:
    """``convsight live --port 0`` in a child process."""

    def __init__(self, cache: Path, threads: int) -> None:
        src = Path(__file__).resolve().parents[1] / "src"
        env = {**os.environ, "PYTHONPATH": str(src), "OMP_NUM_THREADS": str(threads)}
        # --threads: the command's own default ("auto") would set the count itself
        self.proc = subprocess.Popen([sys.executable, "-m", "convsight", "live", "--port", "0",
                                      "--threads", str(threads), "--cache", str(cache)],
                                     stdout=subprocess.PIPE, env=env, text=True)
        line = self.proc.stdout.readline()
        if "http://" not in line:
            self.proc.kill()
            raise RuntimeError(f"convsight live did not start: {line!r}")
        self.url = line.split()[2]

    def rss(self) -> int:
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
        raise KeyError("VmRSS")

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(timeout=30)


def cpu_seconds(server: "Server") -> tuple[float, float]:
    """CPU seconds used so far by the server and by the browser's processes (children of this
    process named chrom*), from /proc."""
    def used(pid: int) -> float:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    browser = 0.0
    for pid in _descendants(os.getpid()):
        try:
            if Path(f"/proc/{pid}/comm").read_text().startswith("chrom"):
                browser += used(pid)
        except OSError:  # gone meanwhile
            pass
    return used(server.proc.pid), browser


def _descendants(pid: int) -> list[int]:
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        try:
            kids = [int(k) for t in Path(f"/proc/{p}/task").iterdir()
                    for k in (t / "children").read_text().split()]
        except OSError:
            kids = []
        out += kids
        todo += kids
    return out


def phase(page, frames: int, warmup: int, memory: "Memory") -> dict[str, float]:
    """Wait for ``warmup`` frames, reset the page's counters, and measure ``frames`` frames (also
    the CPU time the server and the browser used per frame), noting the server's RSS at the
    start and every ``memory.every`` frames."""
    page.wait_for_function(f"() => convsightLive.drawn >= {warmup}", timeout=600_000)
    cpu0 = cpu_seconds(memory.server)
    page.evaluate("() => convsightLive.reset()")
    memory.note(0)
    dropped = page.evaluate("() => convsightLive.dropped")
    for at in [*range(memory.every, frames, memory.every), frames]:
        page.wait_for_function(f"() => convsightLive.drawn >= {at}",
                               timeout=max(600_000, at * 2_000), polling=250)
        memory.note(at)
    s = page.evaluate("""() => ({times: convsightLive.times, latencies: convsightLive.latencies,
        drawn: convsightLive.drawn, dropped: convsightLive.dropped, server: convsightLive.server})""")
    cpu1 = cpu_seconds(memory.server)
    memory.done += s["drawn"]
    times, lat = s["times"], sorted(s["latencies"])
    return {"cpu_server": (cpu1[0] - cpu0[0]) / s["drawn"] * 1000,
            "cpu_browser": (cpu1[1] - cpu0[1]) / s["drawn"] * 1000,
            "fps": (len(times) - 1) / ((times[-1] - times[0]) / 1000),
            "p50": statistics.median(lat), "p95": lat[min(len(lat) - 1, int(0.95 * len(lat)))],
            "dropped": s["dropped"] - dropped, "frames": s["drawn"],
            **{f"server_{k}": v / s["drawn"] for k, v in s["server"].items()}}


class Memory:
    """The server's RSS at points of the run: (frames measured so far, bytes, phase)."""

    def __init__(self, server: "Server", every: int) -> None:
        self.server, self.every, self.done = server, every, 0
        self.points: list[tuple[int, int, str]] = []
        self.phase = ""

    def note(self, at: int) -> None:
        self.points.append((self.done + at, self.server.rss(), self.phase))


def live_run(url: str, clip: Path, layer: str, frames: int, warmup: int, memory: Memory,
             screenshot: Path | None) -> tuple[dict, dict]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS + camera_args(clip))
        page = browser.new_page(viewport={"width": 1400, "height": 950})
        page.goto(url)
        page.wait_for_function("() => window.convsightLive && convsightLive.drawn > 0",
                               timeout=300_000)
        page.select_option("#layer", layer)
        page.wait_for_function(f"() => convsightLive.head.settings.layer === '{layer}'")
        memory.phase = "activations"
        acts = phase(page, frames // 2, warmup, memory)
        page.click("#views button[data-view=guided]")
        page.wait_for_function("() => convsightLive.head.settings.view === 'guided'")
        memory.phase = "guided"
        guided = phase(page, frames - frames // 2, 5, memory)
        if screenshot is not None:
            take_screenshot(page, screenshot)
        browser.close()
    return acts, guided


def take_screenshot(page, path: Path, layer: str = "blocks.4") -> None:
    """The page on a layer whose tiles show the photo, with the unit that fires most on the
    cat photo chosen (found here with the model), guided backprop on."""
    net = convsight.load_model()
    with torch.no_grad(), capture(net.module, [layer]) as found:
        net.module(net.preprocess(convsight.sample_images()["chelsea"]))
    unit = int(found[layer][0].amax(dim=(1, 2)).argmax())
    page.select_option("#layer", layer)
    page.wait_for_function(f"() => convsightLive.head.settings.layer === '{layer}'")
    head = page.evaluate("() => convsightLive.head")
    c, h, w = head["shape"]
    box = page.locator("#tiles").bounding_box()
    scale = box["width"] / (1 + head["ncols"] * (w + 1))
    row, col = divmod(unit, head["ncols"])
    page.click("#tiles", position={"x": (1 + col * (w + 1) + w / 2) * scale,
                                   "y": (1 + row * (h + 1) + h / 2) * scale})
    page.wait_for_function(f"() => convsightLive.head.settings.unit === {unit}")
    page.click("#pause")
    time.sleep(1.5)  # the frames on their way come back
    for _ in range(60):  # single steps until the camera shows the cat
        if "cat" in page.evaluate("() => convsightLive.head.classes[0][1]"):
            break
        drawn = page.evaluate("() => convsightLive.drawn")
        page.click("#step")
        page.wait_for_function(f"() => convsightLive.drawn > {drawn}")
        time.sleep(0.1)
    page.screenshot(path=str(path))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=2000, help="frames in all (half a phase)")
    parser.add_argument("--warmup", type=int, default=20)
    parser.add_argument("--threads", type=int, default=1, help="torch threads (server and bare)")
    parser.add_argument("--layer", default="blocks.9")
    parser.add_argument("--camera-fps", type=int, default=60,
                        help="the fake camera's frame rate (above the model's, so that the "
                             "model is the limit)")
    parser.add_argument("--rss-every", type=int, default=500, help="frames between RSS notes")
    parser.add_argument("--screenshot", type=Path, default=None)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    keep_freed_memory()  # as the server's command does: the limits get the same allocator
    load = os.getloadavg()[0]
    root = Path(tempfile.mkdtemp(prefix="cs-bench-live-"))
    clip = write_y4m(root / "camera.y4m", fps=args.camera_fps)
    server = Server(root / "cache", args.threads)
    memory = Memory(server, args.rss_every)
    try:
        before = bare_limits(args.layer)  # the server is idle meanwhile
        acts, guided = live_run(server.url, clip, args.layer, args.frames, args.warmup, memory,
                                args.screenshot)
        after = bare_limits(args.layer)  # once more: the machine's load drifts
    finally:
        server.stop()
    print(f"\nLive page, default model at 224 px, layer {args.layer}, {args.threads} torch "
          f"thread(s), {os.cpu_count()} cores, fake camera {args.camera_fps} frames/s, "
          f"{args.frames} frames; load average {load:.1f} at the start, "
          f"{os.getloadavg()[0]:.1f} at the end")
    report(before, after, acts, guided, memory)


def report(before: dict, after: dict, acts: dict, guided: dict, memory: Memory) -> None:
    """The tables of docs/live.md (speed, then memory), and the verdicts against the targets."""
    bare = {k: (before[k][0] + after[k][0]) / 2 for k in before}
    bare_cpu = {k: (before[k][1] + after[k][1]) / 2 for k in before}
    print("bare limits (before / after the page's run): " + ", ".join(
        f"{k} {before[k][0]:.1f} / {after[k][0]:.1f} per s ({bare_cpu[k]:.0f} CPU ms a pass)"
        for k in before))
    print("\n| view | frames/s | p50 latency | p95 latency | bare limit | of the limit | dropped "
          "| server ms (decode / model / encode) | CPU ms per frame (server / browser) |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    rows = [("activations", acts, "forward", 10, 150),
            ("guided backprop", guided, "guided", 4, None)]
    verdicts = []
    for name, r, kind, target_fps, target_p95 in rows:
        share = r["fps"] / bare[kind]
        print(f"| {name} | {r['fps']:.1f} | {r['p50']:.0f} ms | {r['p95']:.0f} ms | "
              f"{bare[kind]:.1f} /s | {share:.0%} | {r['dropped']} of "
              f"{r['frames'] + r['dropped']} | {r['server_decode']:.1f} / "
              f"{r['server_model']:.1f} / {r['server_encode']:.1f} | "
              f"{r['cpu_server']:.0f} / {r['cpu_browser']:.0f} |")
        verdicts.append(f"{name}: {r['fps']:.1f} fps (target {target_fps}) "
                        f"{'ok' if r['fps'] >= target_fps else 'MISSED'}"
                        + (f", p95 {r['p95']:.0f} ms (target {target_p95}) "
                           f"{'ok' if r['p95'] <= target_p95 else 'MISSED'}" if target_p95 else "")
                        + f", {share:.0%} of the bare limit (target 80%) "
                        f"{'ok' if share >= 0.8 else 'MISSED'}")
    print("\nCPU time per frame, which the load of other jobs does not inflate: server / bare "
          "pass = " + ", ".join(f"{name} {r['cpu_server'] / bare_cpu[kind]:.2f}"
                                for name, r, kind, *_ in rows)
          + "; the server's worker thread alone: " + ", ".join(
              f"{name} {r['server_cpu']:.1f} ms" for name, r, *_ in rows))
    points = memory.points
    print("\n| frames | " + " | ".join(f"{n} ({'guided' if ph == 'guided' else 'acts'})"
                                        for n, _, ph in points) + " |")
    print("| --- |" + " --- |" * len(points))
    print("| server RSS | " + " | ".join(f"{b / MB:.0f} MB" for _, b, _ in points) + " |")
    verdicts.append(memory_verdict(points))
    print("\n" + "\n".join(verdicts))


def memory_verdict(points: list[tuple[int, int, str]]) -> str:
    """Flat: within each phase, the RSS after its first ``--rss-every`` frames (the first
    backward passes settle what they allocate) grows by at most 1 % to the phase's end."""
    parts, flat = [], True
    for ph in ("activations", "guided"):
        rss = [b for _, b, p in points if p == ph]
        if len(rss) < 3:
            continue
        flat = flat and rss[-1] - rss[1] <= 0.01 * rss[1]
        parts.append(f"{ph} {(rss[1] - rss[0]) / MB:+.0f} MB in its first notes, then "
                     f"{(rss[-1] - rss[1]) / MB:+.0f} MB")
    first, last = points[0], points[-1]
    return (f"memory: {first[1] / MB:.0f} MB -> {last[1] / MB:.0f} MB over {last[0]} frames; "
            + "; ".join(parts) + f" (target flat, within 1 % after the first notes) "
            + ("ok" if flat and parts else "MISSED"))


if __name__ == "__main__":
    main()
