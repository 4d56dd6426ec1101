"""Median full training-step time (forward, backward, optimizer step) of each method.

All methods run in one process on the same random batch, interleaved round by round so
that drifts in machine load hit every method alike; ratios are to the baseline of the same
run. Ends with one line per method:

    method=<name> median_s=<seconds> ratio_to_baseline=<ratio>

Example: python benchmarks/train_step.py --batch 8 --frames 16
--size 112 --arch r2plus1d-10 --steps 5

``--compile`` compiles the student alone; ``--compile-step`` compiles what ``train.compile``
does, the whole forward (student, image teacher, objective) as one graph.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from ccl.config import apply_overrides, preset
from ccl.engine import TrainModule, build_optimizer, compile_step
from ccl.models import build_model
from ccl.objectives import Batch, build_objective
from ccl.objectives.registry import BASELINE, MAIN_RUNS
from ccl.runtime import resolve_device

METHODS = tuple(MAIN_RUNS)  # baseline, ccl-a, ccl-i, ccl-ai


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--frames", type=int, default=16)
    parser.add_argument("--size", type=int, default=112)
    parser.add_argument("--steps", type=int, default=5, help="timed steps per method")
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--arch", default="r2plus1d-10")
    parser.add_argument("--classes", type=int, default=51)
    parser.add_argument("--image-teacher", default="resnet34")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--precision", default="fp32", choices=["fp32", "bf16"])
    parser.add_argument("--channels-last", action="store_true", help="channels_last_3d student")
    parser.add_argument("--compile", action="store_true", help="torch.compile the student")
    parser.add_argument(
        "--compile-step",
        action="store_true",
        help="torch.compile student, teacher and objective as one graph (train.compile)",
    )
    parser.add_argument(
        "--compile-backend", default="inductor", help="aot_eager: a quick check on a CPU"
    )
    parser.add_argument("--methods", default=",".join(METHODS), help="comma-separated subset")
    parser.add_argument(
        "--presets",
        choices=("ucf51", "demo"),
        default="ucf51",
        help="demo: the demo's narrow student and ResNet-18 teacher (give its clip shape: "
        "--batch 16 --frames 8 --size 32 --classes 12); --arch and --image-teacher apply to "
        "ucf51 only",
    )
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    torch.manual_seed(0)
    b = args.batch
    clip = torch.randn(b, 3, args.frames, args.size, args.size, device=device)
    label = torch.arange(b, device=device) % max(2, args.classes // 8)
    audio = torch.rand(b, 512, device=device)
    available = torch.ones(b, dtype=torch.bool, device=device)
    available[0] = False  # the masked path, as with real data
    batch = Batch(clip, label, audio, available)

    methods = [m for m in args.methods.split(",") if m]
    if BASELINE not in methods or set(methods) - set(METHODS):
        parser.error(f"--methods must include baseline and be among {METHODS}")
    if args.compile and args.compile_step:
        parser.error("--compile and --compile-step are alternatives")
    steps = {}
    for method in methods:
        cfg = preset(f"{args.presets}-{method}")
        archs = [f"student.arch={args.arch}", f"image_teacher.arch={args.image_teacher}"]
        apply_overrides(
            cfg, [*(archs if args.presets == "ucf51" else []), "image_teacher.allow_random=true"]
        )
        student = build_model(cfg.student, args.classes).to(device)
        if args.channels_last:
            student = student.to(memory_format=torch.channels_last_3d)
        objective = build_objective(
            cfg.objective,
            cfg.image_teacher,
            cfg.data,
            num_classes=args.classes,
            feature_dim=student.feature_dim,
            seed=cfg.train.seed,
        ).to(device)
        if args.channels_last:  # the image teacher too, as in training
            objective = objective.to(memory_format=torch.channels_last)
        optimizer, _ = build_optimizer(cfg, student, objective)
        module: torch.nn.Module = TrainModule(
            torch.compile(student, backend=args.compile_backend) if args.compile else student,
            objective,
        )
        if args.compile_step:
            module = compile_step(module, backend=args.compile_backend)
        steps[method] = (module, optimizer)

    def run_step(method: str) -> float:
        module, optimizer = steps[method]
        if device.type == "cuda":
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        dtype = torch.bfloat16 if args.precision == "bf16" else torch.float32
        with torch.autocast(device.type, dtype=dtype, enabled=args.precision != "fp32"):
            loss = module(batch)[1].loss
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if device.type == "cuda":
            torch.cuda.synchronize()
        return time.perf_counter() - t0

    times: dict[str, list[float]] = {m: [] for m in methods}
    for _ in range(args.warmup):
        for method in methods:
            run_step(method)
    for _ in range(args.steps):
        for method in methods:
            times[method].append(run_step(method))

    print(
        f"device={device} threads={torch.get_num_threads()} batch={b} "
        f"clip=3x{args.frames}x{args.size}x{args.size} arch={cfg.student.arch} "
        f"classes={args.classes} image_teacher={cfg.image_teacher.arch} steps={args.steps} "
        f"precision={args.precision} presets={args.presets} "
        f"compile={'step' if args.compile_step else 'student' if args.compile else 'none'}"
    )
    base = statistics.median(times[BASELINE])
    for method in methods:
        print(f"throughput method={method} clips_per_s={b / statistics.median(times[method]):.2f}")
    if device.type == "cuda":
        print(f"peak_gpu_memory_gib={torch.cuda.max_memory_allocated() / 2**30:.2f}")
    for method in methods:
        med = statistics.median(times[method])
        print(f"method={method} median_s={med:.4f} ratio_to_baseline={med / base:.3f}")


if __name__ == "__main__":
    main()
