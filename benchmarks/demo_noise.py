"""The demo's training noise, read from a finished ``ccl demo --runs N`` folder (or the
``seed_S`` folders of ``ccl demo --seeds ...``): per method, the spread of test top-1 over
the runs, the validation curves (mean over runs per epoch, the gain over the last epochs),
and how the best-on-validation epoch compares with the last one on validation. Example
(8 training seeds on benchmark seed 1, then 8 benchmark seeds):

    ccl demo --runs 8 --out demo_noise && python benchmarks/demo_noise.py demo_noise
    ccl demo --seeds 1 2 3 4 5 6 7 8 --out demo_seeds
    python benchmarks/demo_noise.py demo_seeds/seed_* --runs 1

Prints one block per method; numbers in %.
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path

METHODS = {"baseline": "baseline", "ccl-a": "CCL-A", "ccl-i": "CCL-I", "ccl-ai": "CCL-AI"}


def method_of(run_dir: Path) -> str | None:
    name = run_dir.name.removeprefix("demo-").split("-run")[0]
    return METHODS.get(name)


def run_index(run_dir: Path) -> int:
    """1 for ``demo-<m>``, k for ``demo-<m>-run<k>``."""
    _, sep, k = run_dir.name.partition("-run")
    return int(k) if sep and k.isdigit() else 1


def read_run(run_dir: Path) -> dict | None:
    last = run_dir / "eval_test_last.json"
    if not last.is_file():
        return None
    epochs = {}
    for line in (run_dir / "metrics.jsonl").read_text().splitlines():
        record = json.loads(line)
        if record.get("type") == "epoch" and "val/top1" in record:
            epochs[record["epoch"]] = record["val/top1"]
    best = run_dir / "eval_test.json"
    return {
        "test_last": json.loads(last.read_text())["recognition"]["top1"],
        "test_best": json.loads(best.read_text())["recognition"]["top1"]
        if best.is_file()
        else None,
        "val": [epochs[e] for e in sorted(epochs)],
        "seed": json.loads((run_dir / "config.json").read_text())["train"]["seed"],
    }


def sd(values: list[float]) -> float:
    return statistics.stdev(values) if len(values) > 1 else float("nan")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("folders", nargs="+", type=Path, help="demo folders (with runs/)")
    parser.add_argument("--last-epochs", type=int, default=3, help="window for the val gain")
    parser.add_argument("--runs", type=int, default=None,
                        help="only runs 1..N of each folder (e.g. 1: one per benchmark seed)")
    args = parser.parse_args()
    runs: dict[str, list[dict]] = {label: [] for label in METHODS.values()}
    for folder in args.folders:
        for run_dir in sorted((folder / "runs").iterdir()):
            label = method_of(run_dir)
            if args.runs is not None and run_index(run_dir) > args.runs:
                continue
            found = read_run(run_dir) if label else None
            if found:
                runs[label].append(found)
    for label, found in runs.items():
        if not found:
            continue
        last = [100 * r["test_last"] for r in found]
        best = [100 * r["test_best"] for r in found if r["test_best"] is not None]
        epochs = min(len(r["val"]) for r in found)
        curve = [statistics.mean(100 * r["val"][e] for r in found) for e in range(epochs)]
        k = min(args.last_epochs, epochs - 1)
        gain = (curve[-1] - curve[-1 - k]) / k if k > 0 else float("nan")
        jumps = [
            abs(r["val"][e] - r["val"][e - 1]) * 100 for r in found for e in range(1, epochs)
        ]
        best_epoch = [max(range(epochs), key=lambda e, r=r: r["val"][e]) + 1 for r in found]
        val_gap = [100 * (max(r["val"]) - r["val"][-1]) for r in found]
        print(f"{label}: {len(found)} runs")
        print(f"  test top-1, last checkpoint: mean {statistics.mean(last):.1f} sd {sd(last):.1f}"
              f" (min {min(last):.1f}, max {max(last):.1f})")
        if best:
            print(f"  test top-1, best-on-val:     mean {statistics.mean(best):.1f} "
                  f"sd {sd(best):.1f}")
        print("  validation top-1 per epoch, mean over runs: "
              + " ".join(f"{v:.1f}" for v in curve))
        print(f"  validation gain per epoch over the last {k}: {gain:+.1f} points; "
              f"epoch-to-epoch change: median {statistics.median(jumps):.1f}, "
              f"max {max(jumps):.1f}")
        print(f"  best validation epoch != last in {sum(e != epochs for e in best_epoch)} of "
              f"{len(found)} runs (epochs {sorted(best_epoch)}); best minus last on "
              f"validation: mean {statistics.mean(val_gap):.1f}, max {max(val_gap):.1f}")


if __name__ == "__main__":
    main()
