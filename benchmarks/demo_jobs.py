"""Does ``ccl demo`` train faster with its methods side by side? The demo's training step
(its ``demo-*`` presets: the narrow student, batch 16, 8x32x32 clips, the ResNet-18 image
teacher) in one process with every CPU thread against ``--jobs`` processes with a share of
the threads each, running at the same time. Each configuration runs ``--rounds`` times,
alternating; every process is a fresh ``benchmarks/train_step.py``.

Ends with lines ``jobs=<n> threads=<t> method=<m> clips_per_s=<aggregate>`` (the best
round) and ``speedup_<method>=<jobs=N over jobs=1>``.

Usage: ``python benchmarks/demo_jobs.py [--jobs 2] [--rounds 2] [--steps 12]``
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
from pathlib import Path

STEP = Path(__file__).with_name("train_step.py")
SHAPE = ["--presets", "demo", "--batch", "16", "--frames", "8", "--size", "32", "--classes", "12"]


def _launch(threads: int, method: str, steps: int) -> subprocess.Popen:
    cmd = [sys.executable, str(STEP), *SHAPE, "--device", "cpu", "--threads", str(threads)]
    cmd += ["--steps", str(steps), "--warmup", "2", "--methods", f"baseline,{method}"]
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)


def _clips_per_s(out: str) -> dict[str, float]:
    return {m: float(v) for m, v in re.findall(r"method=(\S+) clips_per_s=(\S+)", out)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=2, help="processes side by side")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--steps", type=int, default=12, help="timed steps per method")
    parser.add_argument("--method", default="ccl-ai", help="measured with the baseline")
    args = parser.parse_args()
    cores = os.cpu_count() or 1
    configs = [(1, cores), (args.jobs, max(1, cores // args.jobs))]
    best: dict[tuple[int, int], dict[str, float]] = {}
    for _ in range(args.rounds):
        for jobs, threads in configs:
            procs = [_launch(threads, args.method, args.steps) for _ in range(jobs)]
            outs = [p.communicate()[0] for p in procs]
            if any(p.returncode for p in procs):
                sys.exit(f"train_step.py failed:\n{outs}")
            total: dict[str, float] = {}
            for out in outs:  # the processes ran at the same time: their rates add up
                for method, rate in _clips_per_s(out).items():
                    total[method] = total.get(method, 0.0) + rate
            for method, rate in total.items():
                key = best.setdefault((jobs, threads), {})
                key[method] = max(key.get(method, 0.0), rate)
    for (jobs, threads), rates in best.items():
        for method, rate in rates.items():
            print(f"jobs={jobs} threads={threads} method={method} clips_per_s={rate:.1f}")
    one, many = best[configs[0]], best[configs[1]]
    for method in one:
        print(f"speedup_{method}={many[method] / one[method]:.2f}")


if __name__ == "__main__":
    main()
