"""Time of one optimizer step over a student's parameters: torch's fused kernels
(``optim.fused=true``, the default) against the loop of small ops (``optim.fused=false``),
for AdamW and SGD, interleaved round by round so load drifts hit both alike. Prints:

    preset=<name> optimizer=<adamw|sgd> loop_ms=<ms> fused_ms=<ms> speedup=<x>

    python benchmarks/optimizer_step.py --presets demo-baseline ucf51-baseline
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from ccl.config import preset
from ccl.models import build_model


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--presets", nargs="+", default=["demo-baseline"])
    parser.add_argument("--rounds", type=int, default=30)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    for name in args.presets:
        cfg = preset(name)
        for kind in ("adamw", "sgd"):
            steps = {}
            for fused in (False, True):
                params = list(build_model(cfg.student, 51).parameters())
                for p in params:
                    p.grad = torch.randn_like(p)
                if kind == "adamw":
                    opt = torch.optim.AdamW(params, lr=1e-3, weight_decay=1e-4, fused=fused)
                else:
                    opt = torch.optim.SGD(
                        params, lr=0.1, momentum=0.9, weight_decay=5e-4, fused=fused
                    )
                opt.step()  # warm-up: the optimizer's state is created here
                steps[fused] = opt
            times: dict[bool, list[float]] = {False: [], True: []}
            for _ in range(args.rounds):
                for fused, opt in steps.items():
                    t0 = time.perf_counter()
                    opt.step()
                    times[fused].append(time.perf_counter() - t0)
            loop, fused = (1000 * statistics.median(times[k]) for k in (False, True))
            print(
                f"preset={name} optimizer={kind} loop_ms={loop:.2f} fused_ms={fused:.2f} "
                f"speedup={loop / fused:.2f}"
            )


if __name__ == "__main__":
    main()
