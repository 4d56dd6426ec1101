"""Does ``ccl demo`` train faster with its methods side by side? The demo's ``demo-*``
presets (the narrow student, batch 16, 8x32x32 clips, the ResNet-18 image teacher) with
every CPU thread in one process, one method after another, against ``--jobs`` processes
with a share of the threads each, running at the same time.

* default: the training step alone (``benchmarks/train_step.py --presets demo``, random
  clips), each configuration ``--rounds`` times, alternating; every process a fresh one.
  Lines ``jobs=<n> threads=<t> method=<m> clips_per_s=<aggregate>`` (best round) and
  ``speedup_<method>=<jobs=N over jobs=1>``.
* ``--demo-dir DIR`` (a finished ``ccl demo --out DIR``): ``ccl train`` itself, loader,
  validation and logging included, for baseline and CCL-AI (``--epochs`` each) on that
  demo's frames, annotations, audio embeddings and image teacher; lines
  ``serial_threads=<t> s=<x>``, ``jobs=<n> threads=<t> s=<y>`` and ``speedup=<x/y>``.

Usage: ``python benchmarks/demo_jobs.py [--jobs 2] [--rounds 2] [--steps 12]``
       ``python benchmarks/demo_jobs.py --demo-dir demo_runs [--epochs 2]``
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

STEP = Path(__file__).with_name("train_step.py")
SHAPE = ["--presets", "demo", "--batch", "16", "--frames", "8", "--size", "32", "--classes", "12"]
# one `ccl train` of a demo preset on a prepared demo (argv: preset demo_dir out threads epochs)
TRAIN = """
import sys
import torch
from ccl.config import apply_overrides, preset
from ccl.demo.paths import demo_paths, use_demo_data
from ccl.engine import train
name, demo, out, threads, epochs = sys.argv[1:6]
torch.set_num_threads(int(threads))
cfg = use_demo_data(preset(name), demo_paths(demo))
cfg.train.out_dir = out
cfg.train.progress = False
apply_overrides(cfg, [f"train.epochs={epochs}", f"optim.milestones={epochs}", "train.device=cpu"])
train(cfg)
"""


def _launch(threads: int, method: str, steps: int) -> subprocess.Popen:
    cmd = [sys.executable, str(STEP), *SHAPE, "--device", "cpu", "--threads", str(threads)]
    cmd += ["--steps", str(steps), "--warmup", "2", "--methods", f"baseline,{method}"]
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)


def _clips_per_s(out: str) -> dict[str, float]:
    return {m: float(v) for m, v in re.findall(r"method=(\S+) clips_per_s=(\S+)", out)}


def step_only(args: argparse.Namespace, configs: list[tuple[int, int]]) -> None:
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
            key = best.setdefault((jobs, threads), {})
            for method, rate in total.items():
                key[method] = max(key.get(method, 0.0), rate)
    for (jobs, threads), rates in best.items():
        for method, rate in rates.items():
            print(f"jobs={jobs} threads={threads} method={method} clips_per_s={rate:.1f}")
    one, many = best[configs[0]], best[configs[1]]
    for method in one:
        print(f"speedup_{method}={many[method] / one[method]:.2f}")


def end_to_end(args: argparse.Namespace, configs: list[tuple[int, int]]) -> None:
    presets = ["demo-baseline", f"demo-{args.method}"]
    demo = str(Path(args.demo_dir).resolve())

    def train(name: str, out: str, threads: int) -> subprocess.Popen:
        argv = [name, demo, out, str(threads), str(args.epochs)]
        return subprocess.Popen([sys.executable, "-c", TRAIN, *argv], stdout=subprocess.DEVNULL)

    seconds = {}
    with tempfile.TemporaryDirectory() as tmp:
        for jobs, threads in configs:
            out = f"{tmp}/jobs{jobs}"
            t0 = time.perf_counter()
            for i in range(0, len(presets), jobs):  # `jobs` trainings at a time
                procs = [train(name, out, threads) for name in presets[i : i + jobs]]
                if any(p.wait() for p in procs):
                    sys.exit("a training failed")
            seconds[jobs, threads] = time.perf_counter() - t0
    (one, t_one), (many, t_many) = configs
    print(f"serial_threads={t_one} s={seconds[configs[0]]:.1f}")
    print(f"jobs={many} threads={t_many} s={seconds[configs[1]]:.1f}")
    print(f"speedup={seconds[configs[0]] / seconds[configs[1]]:.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=2, help="processes side by side")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--steps", type=int, default=12, help="timed steps per method")
    parser.add_argument("--method", default="ccl-ai", help="measured with the baseline")
    parser.add_argument("--demo-dir", help="a finished `ccl demo --out DIR`: time ccl train")
    parser.add_argument("--epochs", type=int, default=2, help="with --demo-dir")
    args = parser.parse_args()
    cores = os.cpu_count() or 1
    configs = [(1, cores), (args.jobs, max(1, cores // args.jobs))]
    if args.demo_dir:
        end_to_end(args, configs)
    else:
        step_only(args, configs)


if __name__ == "__main__":
    main()
