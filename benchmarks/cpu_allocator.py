"""CPU training-step time with the system's malloc settings and with ccl's (ccl.cpu_allocator).

Every measurement runs in its own fresh Python process (malloc settings are per process and
a process's heap remembers its past), the two settings alternating, methods interleaved, so
that drifts in machine load hit both alike. Each process times ``--steps`` full training
steps (forward, backward, SGD) of one method after ``--warmup`` steps, and counts the minor
page faults of those steps (``getrusage``: the kernel zero-filling freshly mapped pages).
Ends with one line per setting and method, then the CCL-AI speed-up:

    allocator=<system|ours> method=<m> median_s=<x> minor_faults_per_step=<n> max_rss_gib=<g>
    speedup_ccl_ai=<system median / ours median>

The full measurement (about 15 minutes on 2 cores; run it on an otherwise idle machine):

    python benchmarks/cpu_allocator.py --batch 8 --frames 16 --size 112 --arch r2plus1d-10 \
        --threads 2 --steps 3 --warmup 1 --rounds 3
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch

METHODS = ("baseline", "ccl-ai")


def _child(args: argparse.Namespace) -> None:
    """One process, one setting, one method: print a JSON line of step times and faults."""
    from ccl.cpu_allocator import configure_cpu_allocator

    if args.child == "ours" and not configure_cpu_allocator():
        raise SystemExit("ccl's allocator settings could not be applied (not glibc?)")
    torch.set_num_threads(args.threads)
    from ccl.config import apply_overrides, preset
    from ccl.engine import TrainModule, build_model, build_objective, build_optimizer
    from ccl.objectives import Batch

    random.seed(0)  # the image teacher's frames
    torch.manual_seed(0)
    b = args.batch
    clip = torch.randn(b, 3, args.frames, args.size, args.size)
    label = torch.arange(b) % max(2, args.classes // 8)
    available = torch.ones(b, dtype=torch.bool)
    available[0] = False  # the masked path, as with real data
    batch = Batch(clip, label, torch.rand(b, 512), available)
    cfg = apply_overrides(
        preset(f"ucf51-{args.method}"),
        [
            f"student.arch={args.arch}",
            f"image_teacher.arch={args.image_teacher}",
            "image_teacher.allow_random=true",
        ],
    )
    student = build_model(cfg.student, args.classes)
    objective = build_objective(
        cfg.objective,
        cfg.image_teacher,
        cfg.data,
        num_classes=args.classes,
        feature_dim=student.feature_dim,
        seed=cfg.train.seed,
    )
    optimizer, _ = build_optimizer(cfg, student, objective)
    module = TrainModule(student, objective)
    times, faults, losses = [], [], []
    for i in range(args.warmup + args.steps):
        f0, t0 = resource.getrusage(resource.RUSAGE_SELF).ru_minflt, time.perf_counter()
        loss = module(batch)[1].loss
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        t1, f1 = time.perf_counter(), resource.getrusage(resource.RUSAGE_SELF).ru_minflt
        losses.append(loss.item())
        if i >= args.warmup:
            times.append(t1 - t0)
            faults.append(f1 - f0)
    max_rss_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(json.dumps({"times": times, "faults": faults, "losses": losses, "rss": max_rss_kib}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--frames", type=int, default=16)
    parser.add_argument("--size", type=int, default=112)
    parser.add_argument("--arch", default="r2plus1d-10")
    parser.add_argument("--classes", type=int, default=51)
    parser.add_argument("--image-teacher", default="resnet34")
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    parser.add_argument("--steps", type=int, default=3, help="timed steps per process")
    parser.add_argument("--warmup", type=int, default=1, help="untimed steps per process first")
    parser.add_argument("--rounds", type=int, default=3, help="processes per setting and method")
    parser.add_argument("--child", choices=["system", "ours"], help=argparse.SUPPRESS)
    parser.add_argument("--method", choices=METHODS, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        _child(args)
        return

    src = str(Path(__file__).resolve().parent.parent / "src")
    path = os.pathsep.join(filter(None, [src, os.environ.get("PYTHONPATH")]))
    env = {**os.environ, "PYTHONPATH": path}
    env.pop("CCL_SYSTEM_MALLOC", None)
    results: dict[tuple[str, str], list[dict]] = {}
    for r in range(args.rounds):
        order = ("system", "ours") if r % 2 == 0 else ("ours", "system")
        for method in METHODS:
            for allocator in order:
                child = ["--child", allocator, "--method", method]
                out = subprocess.run(
                    [sys.executable, __file__, *sys.argv[1:], *child],
                    env=env,
                    check=True,
                    capture_output=True,
                    text=True,
                ).stdout
                record = json.loads(out.strip().splitlines()[-1])
                results.setdefault((allocator, method), []).append(record)
                print(
                    f"round {r + 1}/{args.rounds} allocator={allocator} method={method} "
                    f"steps_s={' '.join(f'{t:.2f}' for t in record['times'])}",
                    flush=True,
                )

    print(
        f"threads={args.threads} batch={args.batch} clip=3x{args.frames}x{args.size}x{args.size} "
        f"arch={args.arch} image_teacher={args.image_teacher} steps={args.steps} "
        f"warmup={args.warmup} rounds={args.rounds}"
    )
    medians = {}
    for method in METHODS:
        losses = {a: results[(a, method)][0]["losses"] for a in ("system", "ours")}
        same = max(abs(x - y) for x, y in zip(losses["system"], losses["ours"]))
        print(f"method={method} max_loss_difference={same:.3g}")
        for allocator in ("system", "ours"):
            records = results[(allocator, method)]
            times = [t for rec in records for t in rec["times"]]
            faults = [f for rec in records for f in rec["faults"]]
            medians[allocator, method] = statistics.median(times)
            print(
                f"allocator={allocator} method={method} "
                f"median_s={medians[allocator, method]:.3f} "
                f"minor_faults_per_step={statistics.median(faults):.0f} "
                f"max_rss_gib={max(rec['rss'] for rec in records) / 2**20:.2f}"
            )
    print(f"speedup_baseline={medians['system', 'baseline'] / medians['ours', 'baseline']:.3f}")
    print(f"speedup_ccl_ai={medians['system', 'ccl-ai'] / medians['ours', 'ccl-ai']:.3f}")


if __name__ == "__main__":
    main()
