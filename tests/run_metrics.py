"""What a run wrote to ``metrics.jsonl``, as series: the reference the logging sinks'
tests (TensorBoard, W&B) compare their records with."""

from __future__ import annotations

import json
from pathlib import Path


def metrics_series(run_dir: Path) -> dict[str, list[tuple[int, float]]]:
    """{name: [(step, value), ...]} of the numeric fields of ``run_dir/metrics.jsonl``."""
    out: dict[str, list[tuple[int, float]]] = {}
    for line in (run_dir / "metrics.jsonl").read_text().splitlines():
        record = json.loads(line)
        for key, value in record.items():
            if key not in ("type", "step", "time") and isinstance(value, (int, float)):
                out.setdefault(key, []).append((record["step"], float(value)))
    return out
