"""Training step of the demo's student alone: how it reaches the teachers' 512-d feature
(a 512-wide last stage, or a 128-wide one and a 1x1x1 expansion) and in which memory
format (contiguous or channels_last_3d).

One forward and backward of the student (batch 16 of 3x8x32x32, 12 classes, as the demo
presets train it), one thread by default, the settings interleaved step by step so that
whatever else loads the machine slows them alike; prints the median step per setting and
its speed-up over the first (the demo's former setting):

    python benchmarks/demo_student.py --steps 20
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from ccl.models import build_student

SETTINGS = {  # name: (feature_layer, channels_last)
    "last-stage": ("last-stage", False),
    "last-stage+channels-last": ("last-stage", True),
    "expand": ("expand", False),
    "expand+channels-last": ("expand", True),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--batch", type=int, default=16)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    clip = torch.randn(args.batch, 3, 8, 32, 32)
    models = {}
    for name, (layer, channels_last) in SETTINGS.items():
        model = build_student("r2plus1d-10", 12, width=0.25, feature_dim=512, feature_layer=layer)
        if channels_last:
            model = model.to(memory_format=torch.channels_last_3d)
        models[name] = model
    weights = torch.randn(args.batch, 512)
    times: dict[str, list[float]] = {name: [] for name in SETTINGS}
    for step in range(args.warmup + args.steps):
        for name, model in models.items():
            model.zero_grad(set_to_none=True)
            start = time.perf_counter()
            out = model(clip)
            (out.logits.logsumexp(1).mean() + (out.feature * weights).mean()).backward()
            if step >= args.warmup:
                times[name].append(time.perf_counter() - start)
    first = statistics.median(times[next(iter(SETTINGS))])
    for name, model in models.items():
        median = statistics.median(times[name])
        params = sum(p.numel() for p in model.parameters())
        print(f"setting={name} params={params} median_step_ms={1000 * median:.1f} "
              f"speedup={first / median:.2f}")


if __name__ == "__main__":
    main()
