"""convsight's thread policy against PyTorch's default, on a quiet machine and beside a busy core.

Backward-heavy calls (an attribution of 8 photos, 16 synthesis steps, one trust score) are timed
in fresh processes:

- ``torch default``: one thread per core, always, as PyTorch runs (and convsight's library and
  batch commands, for results that repeat bit for bit);
- ``convsight``: ``--threads auto`` (``convsight.cpu``; the default of ``demo``, ``serve`` and
  ``live``): as many threads as other programs leave cores free, measured while it works;
- ``1 thread``: the speed one core gives, the floor when another program holds the other core.

Each runs on a quiet machine and beside a one-core busy loop that this script starts and stops.
Targets (issue 18): under load at most 1.2x the quiet time; quiet within 10 % of torch's default.
With a core taken, one thread's time is a floor: the bench also prints busy time / that floor.

    .venv/bin/python bench/threads.py [--repeats 5] [--only attribution,trust]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

CHILD = r"""
import json, os, statistics, sys, time
policy, workload, repeats = sys.argv[1], sys.argv[2], int(sys.argv[3])
import convsight
import torch
convsight.set_threads({"torch default": None, "convsight": "auto", "1 thread": 1}[policy])
net = convsight.load_model()
photos = convsight.sample_images()
x = torch.cat([net.preprocess(photos[k]) for k in sorted(photos)[:8]])
if workload == "attribution":
    def run():
        convsight.attribute(net, x, method="gradient")
elif workload == "synthesis":
    def run():  # 16 steps of the default preset
        convsight.maximize(net, "class:130", steps=16, progress=False)
elif workload == "trust":
    def run():
        convsight.trust.trust_score(net, x[:1], method="gradient", steps=20)
for _ in range(3):  # warm-up, and the policy's first looks at the load
    run()
times = []
for _ in range(repeats):
    start = time.perf_counter()
    run()
    times.append(time.perf_counter() - start)
print(json.dumps({"median": statistics.median(times), "runs": times,
                  "policy": convsight.thread_policy()}))
"""

POLICIES = ["torch default", "convsight", "1 thread"]
WORKLOADS = ["attribution", "synthesis", "trust"]


def child(policy: str, workload: str, repeats: int) -> dict:
    env = {k: v for k, v in os.environ.items()
           if k not in ("OMP_WAIT_POLICY", "OMP_NUM_THREADS", "GOMP_SPINCOUNT")}
    out = subprocess.run([sys.executable, "-c", CHILD, policy, workload, str(repeats)],
                         capture_output=True, text=True, env=env, check=False)
    if out.returncode:
        sys.exit(f"{policy} / {workload} failed:\n{out.stderr}")
    return json.loads(out.stdout.strip().splitlines()[-1])


class BusyCore:
    """A one-core busy loop beside the measurement, as another program on a laptop would be."""

    def __enter__(self):
        self.proc = subprocess.Popen([sys.executable, "-c", "while True: pass"])
        time.sleep(0.5)
        return self

    def __exit__(self, *exc):
        self.proc.kill()
        self.proc.wait()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--only", default=",".join(WORKLOADS),
                   help=f"comma-separated workloads of {WORKLOADS}")
    args = p.parse_args()
    print(f"{os.cpu_count()} cores; medians of {args.repeats} runs (s), each in a fresh process")
    print(f"{'workload':<12} {'policy':<14} {'quiet':>7} {'busy':>7} {'busy/quiet':>10} "
          f"{'quiet/torch quiet':>18} {'busy/1-thread busy':>19}")
    for workload in args.only.split(","):
        quiet = {p_: child(p_, workload, args.repeats)["median"] for p_ in POLICIES}
        with BusyCore():
            busy = {p_: child(p_, workload, args.repeats)["median"] for p_ in POLICIES}
        for p_ in POLICIES:
            print(f"{workload:<12} {p_:<14} {quiet[p_]:7.3f} {busy[p_]:7.3f} "
                  f"{busy[p_] / quiet[p_]:9.2f}x {quiet[p_] / quiet['torch default']:17.2f}x "
                  f"{busy[p_] / busy['1 thread']:18.2f}x")
        ours = "convsight"
        verdict = ("met" if busy[ours] <= 1.2 * quiet[ours]
                   and quiet[ours] <= 1.1 * quiet["torch default"] else "NOT met")
        print(f"{'':<12} targets (busy <= 1.2x quiet, quiet <= 1.1x torch default): {verdict}")


if __name__ == "__main__":
    main()
