"""End-to-end training throughput: ``ccl train`` (real loop, loader, logging) vs the step alone.

Makes H.264 videos at UCF101's size (320x240, 25 fps, ``--frames`` frames each), converts
them with ``prepare_videos`` into HDF5 frame stores as ``ccl prepare videos`` does, writes
random non-negative audio embeddings (the CCL-A/-AI input; the teacher's values do not matter
for speed), then for each method runs ``ccl train`` in a fresh process for
``--epochs x --steps`` steps and reads its metrics.jsonl:

* ``e2e clips/s``: steady state, from the wall-clock stamps of the step records after the
  first ``--warmup`` steps of the last epoch (loader waits, host-to-device copies,
  normalisation, logging included);
* ``epoch clips/s``: the last epoch's own figure (worker start-up included);
* ``step-only clips/s``: ``benchmarks/train_step.py`` at the same batch, clip, arch and mode
  (random clips already on the device: the bound the loop can reach).

Prints, per method, ``method=<m> e2e_clips_per_s=<x> epoch_clips_per_s=<x>
step_only_clips_per_s=<x> ratio=<e2e/step-only> gpu_util_mean=<percent|n/a>``. The goal on
a GPU is ratio >= 0.9 (the loader and loop never starve the device). GPU utilisation is
sampled with ``nvidia-smi`` every 200 ms while training, when it exists.

Usage (GPU): ``python benchmarks/train_e2e.py --device cuda --precision bf16 --batch 32``
Smoke run (CPU): ``python benchmarks/train_e2e.py --device cpu --precision fp32 --videos 16
--frames 40 --batch 2 --clip-frames 4 --size 32 --steps 6 --warmup 2 --workers 1``
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

import numpy as np

from ccl.objectives.registry import MAIN_RUNS

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from data_loading import make_stores  # noqa: E402 - a sibling benchmark script

PRESETS = {name: f"ucf51-{name}" for name in MAIN_RUNS}  # the four main runs


def make_dataset(root: Path, videos: int, frames: int) -> tuple[Path, Path, Path]:
    """(annotations, frames_dir, audio_dir) for ``videos`` 320x240 H.264 videos."""
    ann = make_stores(root, videos, frames)
    data = json.loads(ann.read_text())
    audio = root / "audio"
    rng = np.random.default_rng(0)
    for vid, entry in data["database"].items():
        label = entry["annotations"]["label"]
        (audio / label).mkdir(parents=True, exist_ok=True)
        np.save(audio / label / f"{vid}.npy", rng.random(512, dtype=np.float32) * 2)
    # a few validation videos so the annotation file is complete; validation is off below
    for vid in list(data["database"])[:2]:
        data["database"][vid]["subset"] = "validation"
    ann.write_text(json.dumps(data))
    return ann, root / "frames", audio


class GpuSampler:
    """``nvidia-smi`` utilisation samples while a block runs (none without nvidia-smi)."""

    def __init__(self) -> None:
        self.samples: list[float] = []
        self._proc: subprocess.Popen | None = None
        self._thread: threading.Thread | None = None

    def __enter__(self) -> GpuSampler:
        if shutil.which("nvidia-smi"):
            self._proc = subprocess.Popen(
                [
                    "nvidia-smi",
                    "--query-gpu=utilization.gpu",
                    "--format=csv,noheader,nounits",
                    "-lms",
                    "200",
                    "-i",
                    os.environ.get("CUDA_VISIBLE_DEVICES", "0").split(",")[0],
                ],
                stdout=subprocess.PIPE,
                stderr=subprocess.DEVNULL,
                text=True,
            )
            self._thread = threading.Thread(target=self._read, daemon=True)
            self._thread.start()
        return self

    def _read(self) -> None:
        assert self._proc is not None and self._proc.stdout is not None
        for line in self._proc.stdout:
            try:
                self.samples.append(float(line.strip()))
            except ValueError:
                pass

    def __exit__(self, *exc: object) -> None:
        if self._proc is not None:
            self._proc.terminate()
            self._proc.wait()

    def mean(self) -> str:
        # the first and last second are process start-up and shutdown, not training
        busy = self.samples[5:-5] if len(self.samples) > 20 else self.samples
        return f"{statistics.mean(busy):.0f}" if busy else "n/a"


def run_train(
    args: argparse.Namespace, method: str, data: tuple[Path, Path, Path], out: Path
) -> dict[str, str]:
    ann, frames_dir, audio = data
    overrides = [
        f"data.annotations={ann}",
        f"data.frames_dir={frames_dir}",
        f"data.audio_dir={audio}",
        f"data.workers={args.workers}",
        f"data.batch_size={args.batch}",
        f"data.clip_frames={args.clip_frames}",
        f"data.size={args.size}",
        f"student.arch={args.arch}",
        "image_teacher.allow_random=true",
        f"train.device={args.device}",
        f"train.precision={args.precision}",
        f"train.channels_last={str(args.channels_last).lower()}",
        f"train.compile={str(args.compile).lower()}",
        f"train.epochs={args.epochs}",
        f"train.max_steps_per_epoch={args.steps}",
        "train.val_every=0",
        "train.save_every=0",
        "train.log_every=1",
        "train.progress=false",
        f"train.out_dir={out}",
        f"train.name={method}",
    ]
    cmd = [sys.executable, "-m", "ccl.cli", "train", "--preset", PRESETS[method], *overrides]
    with GpuSampler() as gpu:
        proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode:
        raise SystemExit(f"ccl train failed for {method}:\n{proc.stderr[-3000:]}")
    records = [json.loads(line) for line in (out / method / "metrics.jsonl").open()]
    last_epoch = max(r["epoch"] for r in records if r["type"] == "epoch")
    steps = [r for r in records if r["type"] == "step" and r["epoch"] == last_epoch]
    timed = steps[args.warmup :]
    if len(timed) < 2 or "time" not in timed[0]:
        raise SystemExit("too few timed step records: raise --steps or lower --warmup")
    clips = args.batch * (len(timed) - 1)  # clips of the steps between the first and last stamp
    epoch = next(r for r in records if r["type"] == "epoch" and r["epoch"] == last_epoch)
    return {
        "e2e": f"{clips / (timed[-1]['time'] - timed[0]['time']):.2f}",
        "epoch": f"{epoch['clips_per_s']:.2f}",
        "gpu": gpu.mean(),
    }


def step_only(args: argparse.Namespace, methods: list[str]) -> dict[str, str]:
    cmd = [
        sys.executable,
        str(HERE / "train_step.py"),
        "--device",
        args.device,
        "--batch",
        str(args.batch),
        "--frames",
        str(args.clip_frames),
        "--size",
        str(args.size),
        "--arch",
        args.arch,
        "--precision",
        args.precision,
        "--steps",
        str(args.steps),
        "--warmup",
        str(args.warmup),
        "--methods",
        ",".join(["baseline", *methods]),
    ]
    if args.channels_last:
        cmd.append("--channels-last")
    if args.compile:
        cmd.append("--compile")
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode:
        raise SystemExit(f"train_step.py failed:\n{proc.stderr[-3000:]}")
    rates = {}
    for line in proc.stdout.splitlines():
        if line.startswith("throughput method="):
            method, value = line.split()[1:3]
            rates[method.split("=")[1]] = value.split("=")[1]
    return rates


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--videos", type=int, default=64)
    parser.add_argument("--frames", type=int, default=150, help="frames per video (25 fps)")
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--clip-frames", type=int, default=16)
    parser.add_argument("--size", type=int, default=112)
    parser.add_argument("--arch", default="r2plus1d-10")
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--precision", default="bf16", choices=["fp32", "bf16"])
    parser.add_argument("--channels-last", action="store_true")
    parser.add_argument("--compile", action="store_true")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 2)
    parser.add_argument("--epochs", type=int, default=2, help="the last one is measured")
    parser.add_argument("--steps", type=int, default=40, help="steps per epoch")
    parser.add_argument("--warmup", type=int, default=5, help="steps of the last epoch not timed")
    parser.add_argument("--methods", default="baseline,ccl-ai")
    parser.add_argument("--keep", default=None, help="folder to keep the data and runs in")
    args = parser.parse_args()
    methods = [m for m in args.methods.split(",") if m]
    if set(methods) - set(PRESETS):
        parser.error(f"--methods must be among {sorted(PRESETS)}")

    root = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="ccl_e2e_"))
    try:
        data = make_dataset(root / "data", args.videos, args.frames)
        print(
            f"device={args.device} batch={args.batch} clip=3x{args.clip_frames}x{args.size}x"
            f"{args.size} arch={args.arch} precision={args.precision} "
            f"channels_last={args.channels_last} compile={args.compile} workers={args.workers} "
            f"videos={args.videos}x{args.frames} frames (320x240 H.264 -> prepare_videos)",
            flush=True,
        )
        e2e = {m: run_train(args, m, data, root / "runs") for m in methods}
        alone = step_only(args, methods)
        for m in methods:
            ratio = float(e2e[m]["e2e"]) / float(alone[m])
            print(
                f"method={m} e2e_clips_per_s={e2e[m]['e2e']} "
                f"epoch_clips_per_s={e2e[m]['epoch']} step_only_clips_per_s={alone[m]} "
                f"ratio={ratio:.3f} gpu_util_mean={e2e[m]['gpu']}"
            )
    finally:
        if not args.keep:
            shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
