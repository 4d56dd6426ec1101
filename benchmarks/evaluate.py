"""Evaluation throughput: windows per second of the batched, video-interleaved forward pass
(`ccl.evaluation.forward_windows`) on in-memory clips (no decoding; see data_loading.py for
the loader). Ends with `eval windows_per_s=<value> batch=<b> arch=<arch> device=<device>`.
"""

from __future__ import annotations

import argparse
import time

import torch

from ccl.config import preset
from ccl.data.toy import ToyClipDataset
from ccl.evaluation import forward_windows
from ccl.models import build_model
from ccl.runtime import resolve_device, stats_tensor


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--windows", type=int, default=64)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--frames", type=int, default=16)
    parser.add_argument("--size", type=int, default=112)
    parser.add_argument("--arch", default="r2plus1d-10")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--precision", default="fp32", choices=["fp32", "bf16"])
    parser.add_argument("--workers", type=int, default=0)
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    cfg = preset("ucf51-baseline")
    cfg.student.arch = args.arch
    student = build_model(cfg.student, 51).to(device)
    data = ToyClipDataset(args.windows, 16, frames=args.frames, size=args.size, audio_dim=8)
    mean, std = stats_tensor(cfg.data.mean, device), stats_tensor(cfg.data.std, device)

    def once() -> float:
        if device.type == "cuda":
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        forward_windows(
            student,
            data,
            batch_size=args.batch,
            workers=args.workers,
            device=device,
            mean=mean,
            std=std,
            precision=args.precision,
        )
        if device.type == "cuda":
            torch.cuda.synchronize()
        return time.perf_counter() - t0

    once()  # warm-up
    seconds = min(once() for _ in range(2))
    print(
        f"eval windows_per_s={args.windows / seconds:.2f} batch={args.batch} arch={args.arch} "
        f"device={device} precision={args.precision} clip=3x{args.frames}x{args.size}x{args.size}"
    )


if __name__ == "__main__":
    main()
