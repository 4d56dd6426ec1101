"""Wall time of whole demo trainings, two settings side by side.

Each setting trains one demo method on a prepared demo folder (``ccl demo --out DIR`` or
``ccl.demo.prepare_demo_data``) in its own process with one thread, all settings at the same
time, so that whatever else loads the machine slows them alike; the ratio of their wall times
is the speed-up. Also prints each run's validation top-1 per epoch, so a faster setting that
learns worse shows it. Example (today's demo setting against a faster one):

    python benchmarks/demo_training.py --demo-dir demo_runs --method baseline \\
        --setting reference= --setting fast=train.precision=bf16,train.channels_last=true

A setting is ``NAME=key=value,key=value`` (empty: the preset as it is). ``--code NAME=DIR``
runs that setting with the package of another checkout (its ``src``), e.g. an older commit
in a git worktree, to time today's code against it side by side:

    git worktree add /tmp/old <commit>
    python benchmarks/demo_training.py --demo-dir demo_runs --method ccl-ai \\
        --setting old= --setting new= --code old=/tmp/old
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def data_overrides(demo_dir: Path) -> list[str]:
    return [
        f"data.annotations={demo_dir / 'annotations.json'}",
        f"data.frames_dir={demo_dir / 'frames'}",
        f"data.audio_dir={demo_dir / 'audio_features'}",
        f"image_teacher.weights={demo_dir / 'teachers' / 'image.pth'}",
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--demo-dir", type=Path, required=True)
    parser.add_argument("--method", default="baseline", help="baseline, ccl-a, ccl-i, ccl-ai")
    parser.add_argument("--preset-prefix", default="demo")
    parser.add_argument("--setting", action="append", required=True, metavar="NAME=OVERRIDES")
    parser.add_argument("--code", action="append", default=[], metavar="NAME=CHECKOUT",
                        help="run setting NAME with CHECKOUT/src instead of this checkout's")
    parser.add_argument("--out", type=Path, default=None, help="default: a temporary folder")
    args = parser.parse_args()
    code = dict(c.split("=", 1) for c in args.code)
    out = args.out or Path(tempfile.mkdtemp(prefix="demo_training_"))
    out.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    procs = {}
    for setting in args.setting:
        name, _, overrides = setting.partition("=")
        extra = [o for o in overrides.split(",") if o]
        cmd = [
            sys.executable, "-m", "ccl.cli", "train", "--preset",
            f"{args.preset_prefix}-{args.method}", *data_overrides(args.demo_dir),
            f"train.out_dir={out}", f"train.name={name}", "train.progress=false", *extra,
        ]
        run_env = env
        if name in code:
            src = str(Path(code[name]).resolve() / "src")
            run_env = {**env, "PYTHONPATH": os.pathsep.join([src, env.get("PYTHONPATH", "")])}
        log = open(out / f"{name}.log", "w")  # noqa: SIM115 - closed below
        procs[name] = (subprocess.Popen(cmd, env=run_env, stdout=log, stderr=subprocess.STDOUT),
                       time.perf_counter(), log)
    walls: dict[str, float] = {}
    while len(walls) < len(procs):  # poll, so that each wall time ends when its run does
        for name, (proc, start, log) in procs.items():
            if name in walls or proc.poll() is None:
                continue
            walls[name] = time.perf_counter() - start
            log.close()
            if proc.returncode:
                sys.exit(f"{name} failed (rc {proc.returncode}): see {out / (name + '.log')}")
        time.sleep(0.2)
    walls = {name: walls[name] for name in procs}
    first = next(iter(walls))
    print(f"method={args.method} runs in {out}")
    for name, wall in walls.items():
        records = [json.loads(line) for line in (out / name / "metrics.jsonl").open()]
        epochs = [r for r in records if r.get("type") == "epoch"]
        curve = " ".join(f"{100 * r['val/top1']:.1f}" for r in epochs if "val/top1" in r)
        print(f"setting={name} wall_s={wall:.1f} speedup_vs_{first}={walls[first] / wall:.2f} "
              f"train_s={sum(r['epoch_s'] for r in epochs):.1f} val_top1_per_epoch=[{curve}]")


if __name__ == "__main__":
    main()
