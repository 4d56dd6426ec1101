"""Throughput of the PANNs Cnn14_emb512 audio teacher on 10-second 32 kHz clips.

Builds a randomly initialised model (speed does not depend on the weights), runs one warm-up
pass per batch size, then times ``--repeats`` forward passes. The last lines read
``model=cnn14_emb512 batch=<b> clips_per_s=<v>``, one per batch size.

    python benchmarks/audio_extract.py                 # CPU, one thread, batches 1 and 8
    python benchmarks/audio_extract.py --device cuda --threads 4
"""

from __future__ import annotations

import argparse
import time

import torch

from ccl.data.media import SAMPLE_RATE
from ccl.models.panns import Cnn14Emb512


def measure(
    model: Cnn14Emb512, batch: int, samples: int, repeats: int, device: torch.device
) -> float:
    """Clips per second for ``repeats`` timed forward passes of ``batch`` clips."""
    x = torch.randn(batch, samples, device=device) * 0.1
    with torch.inference_mode():
        model(x)  # warm-up (allocator, kernels)
        if device.type == "cuda":
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        for _ in range(repeats):
            model(x)
        if device.type == "cuda":
            torch.cuda.synchronize()
        elapsed = time.perf_counter() - t0
    return batch * repeats / elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 8])
    parser.add_argument("--seconds", type=float, default=10.0, help="clip length")
    parser.add_argument("--repeats", type=int, default=3, help="timed passes per batch size")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    device = torch.device(args.device)
    model = Cnn14Emb512().eval().to(device)
    samples = int(args.seconds * SAMPLE_RATE)
    print(
        f"device={device} threads={torch.get_num_threads()} clip={args.seconds:g}s "
        f"({samples} samples) repeats={args.repeats} torch={torch.__version__}"
    )
    results = []
    for batch in args.batch_sizes:
        rate = measure(model, batch, samples, args.repeats, device)
        print(
            f"batch {batch}: {rate:.2f} clips/s ({rate * args.seconds:.1f}x real time)", flush=True
        )
        results.append((batch, rate))
    for batch, rate in results:
        print(f"model=cnn14_emb512 batch={batch} clips_per_s={rate:.3f}")


if __name__ == "__main__":
    main()
