"""``ccl report``: compare finished runs in one Markdown table with figures.

:func:`build_report` reads each run folder with :func:`ccl.runs.load_run` (``config.json``,
``metrics.jsonl``, the ``eval_<split>.json`` written by ``ccl evaluate`` and, when present,
``eval_<split>_last.json`` and the saved test features) and writes into one output folder:

- ``report.md``: a table with one row per run (method, teachers, top-1/top-5 of the best and
  last checkpoints, retrieval recall@k and mAP, epochs, wall time, checkpoint), notes on
  missing or incomplete evaluations, the gradient norms of the loss parts when logged, the
  figure list and the figures that were skipped;
- ``report.json``: the same data, accuracies as fractions;
- the PNG figures of :mod:`ccl.plots`.

Checkpoints are listed (path, size, modification time), never loaded.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from ccl.atomic import write_text_atomic
from ccl.errors import ReportError
from ccl.plots import TSNE_MAX_POINTS, draw_figures
from ccl.runs import Run, eval_path, is_number, load_run, split_file_name

RECALL_KS = ("1", "5", "10", "20", "50")


# --------------------------------------------------------------------------- tables


def pct(x: Any) -> str:
    """A fraction as a percentage with one decimal, ``-`` when absent."""
    return f"{100 * x:.1f}" if is_number(x) else "-"


def human_duration(seconds: float | None) -> str:
    """``45 s``, ``12 min 03 s``, ``3 h 05 min``, ``2 d 04 h``; ``-`` when unknown."""
    if seconds is None or not math.isfinite(seconds):
        return "-"
    s = int(round(seconds))
    if s < 60:
        return f"{s} s"
    if s < 3600:
        return f"{s // 60} min {s % 60:02d} s"
    if s < 86400:
        return f"{s // 3600} h {s % 3600 // 60:02d} min"
    return f"{s // 86400} d {s % 86400 // 3600:02d} h"


def _md(text: Any) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def _checkpoint_cell(run: Run) -> str:
    if run.eval_best and run.eval_best.get("checkpoint"):
        ckpt = str(run.eval_best["checkpoint"])
        epoch = run.eval_best.get("epoch")
        return f"`{ckpt}`" + (f" (epoch {epoch})" if epoch is not None else "")
    for kind in ("best.pt", "last.pt"):
        p = run.path / "checkpoints" / kind
        if p.is_file():
            return f"`{p}` (not evaluated)"
    return "-"


def run_summary(run: Run) -> dict[str, Any]:
    """The JSON-ready record of one run (accuracies as fractions)."""
    rec, rec_last, ret = run.recognition, run.last_recognition, run.retrieval
    return {
        "name": run.name,
        "path": str(run.path),
        "method": run.method,
        "teachers": run.teachers,
        "arch": (run.config.get("student", {}) or {}).get("arch"),
        "epochs_trained": run.epochs_trained,
        "epochs_configured": run.epochs_configured,
        "wall_time_s": run.wall_s,
        "best": None
        if run.eval_best is None
        else {
            "eval_file": str(run.eval_best_path),
            "checkpoint": run.eval_best.get("checkpoint"),
            "checkpoint_sha256": run.eval_best.get("checkpoint_sha256"),
            "epoch": run.eval_best.get("epoch"),
            "top1": rec.get("top1"),
            "top5": rec.get("top5"),
            "mean_class_accuracy": rec.get("mean_class_accuracy"),
            "videos_expected": run.eval_best.get("videos_expected"),
            "videos_evaluated": run.eval_best.get("videos_evaluated"),
        },
        "last": None
        if run.eval_last is None
        else {
            "checkpoint": run.eval_last.get("checkpoint"),
            "epoch": run.eval_last.get("epoch"),
            "top1": rec_last.get("top1"),
            "top5": rec_last.get("top5"),
            "mean_class_accuracy": rec_last.get("mean_class_accuracy"),
        },
        "retrieval": None
        if not ret
        else {
            "gallery": ret.get("gallery"),
            "gallery_size": ret.get("gallery_size"),
            "recall": {k: (ret.get("recall") or {}).get(k) for k in RECALL_KS},
            "map": ret.get("map"),
        },
        "checkpoints": run.checkpoints,
        "notes": run.notes,
    }


TABLE_HEADER = [
    "Run",
    "Method",
    "Teachers",
    "Top-1",
    "Top-5",
    "Mean class",
    "Top-1 (last)",
    "Top-5 (last)",
    *(f"R@{k}" for k in RECALL_KS),
    "mAP",
    "Epochs",
    "Wall time",
    "Checkpoint",
]


def table_rows(runs: Sequence[Run]) -> list[list[str]]:
    """The Markdown table cells, one list per run, in :data:`TABLE_HEADER` order."""
    rows = []
    for run in runs:
        rec, rec_last, ret = run.recognition, run.last_recognition, run.retrieval
        recall = ret.get("recall") or {}
        configured = run.epochs_configured if run.epochs_configured is not None else "?"
        rows.append(
            [
                _md(run.name),
                run.method,
                "+".join(run.teachers) or "-",
                pct(rec.get("top1")),
                pct(rec.get("top5")),
                pct(rec.get("mean_class_accuracy")),
                pct(rec_last.get("top1")),
                pct(rec_last.get("top5")),
                *(pct(recall.get(k)) for k in RECALL_KS),
                pct(ret.get("map")),
                f"{run.epochs_trained}/{configured}",
                human_duration(run.wall_s),
                _md(_checkpoint_cell(run)),
            ]
        )
    return rows


# --------------------------------------------------------------------------- report


def grad_norm_section(runs: Sequence[Run]) -> list[str]:
    """Markdown: per run that logged ``train.grad_norm_every``, the epoch mean of the gradient
    norm of each part of the student's loss on the student's parameters (which part drives
    the student), one row per epoch; nothing when no run logged them."""
    lines: list[str] = []
    for run in runs:
        parts = sorted(
            {k[len("train/grad/") :] for r in run.epochs for k in r if k.startswith("train/grad/")}
        )
        if not parts:
            continue
        if not lines:
            lines += [
                "## Gradient norms of the student's loss parts",
                "",
                "Epoch mean of ||d part / d student parameters|| (`train.grad_norm_every`).",
                "",
            ]
        lines += [
            f"### {_md(run.name)}",
            "",
            "| epoch | " + " | ".join(parts) + " |",
            "|---:|" + "---:|" * len(parts),
        ]
        for r in run.epochs:
            cells = [r.get(f"train/grad/{p}") for p in parts]
            shown = [f"{c:.3g}" if is_number(c) else "-" for c in cells]
            lines.append(f"| {r['epoch']} | " + " | ".join(shown) + " |")
        lines.append("")
    return lines


def _unique_names(paths: Sequence[Path]) -> list[str]:
    names: list[str] = []
    for p in paths:
        base = Path(p).resolve().name or "run"
        name, i = base, 2
        while name in names:
            name, i = f"{base}-{i}", i + 1
        names.append(name)
    return names


@dataclass
class Report:
    """What :func:`build_report` wrote: the paths of ``report.md`` and ``report.json``, the
    content of ``report.json`` (``data``: ``generated``, ``split``, ``runs`` (one
    :func:`run_summary` each), ``notes``, ``warnings``, ``figures``, ``skipped_figures``),
    the paths of the figures and the runs as read."""

    md_path: Path
    json_path: Path
    data: dict[str, Any]
    figure_paths: list[Path] = field(default_factory=list)
    runs: list[Run] = field(default_factory=list)


def report_markdown(
    runs: Sequence[Run],
    split: str,
    generated: str,
    figures: Sequence[tuple[str, str]],
    skipped: Sequence[str],
) -> str:
    """The text of ``report.md``: the table, notes, warnings, gradient norms, the figures
    ``(file name, caption)`` and the skipped ones, the checkpoints."""
    notes = [n for r in runs for n in r.notes]
    warn = [w for r in runs for w in r.warnings]
    last_name = eval_path(".", split, "last").name
    lines = [
        f"# CCL run report ({split} split)",
        "",
        f"Generated {generated} from {len(runs)} run(s). Accuracies in %, one decimal; "
        "Top-1/Top-5/Mean class and retrieval use the best checkpoint, '(last)' the last-epoch "
        f"checkpoint (`{last_name}`). Epochs: trained/configured; wall time: sum "
        "of the logged epoch times.",
        "",
        "| " + " | ".join(TABLE_HEADER) + " |",
        "|"
        + "|".join(
            "---" if i < 3 or i == len(TABLE_HEADER) - 1 else "---:"
            for i in range(len(TABLE_HEADER))
        )
        + "|",
    ]
    lines += ["| " + " | ".join(row) + " |" for row in table_rows(runs)]
    lines.append("")
    if notes:
        lines += ["## Notes", "", *(f"- {_md(n)}" for n in notes), ""]
    if warn:
        lines += ["## Warnings", "", *(f"- {_md(w)}" for w in warn), ""]
    lines += grad_norm_section(runs)
    lines += ["## Figures", ""]
    for fname, caption in figures:
        lines += [f"### {caption}", "", f"![{caption}]({fname})", ""]
    if not figures:
        lines += ["No figures.", ""]
    if skipped:
        lines += ["### Skipped figures", "", *(f"- {_md(s)}" for s in skipped), ""]
    lines += ["## Checkpoints", ""]
    for run in runs:
        if not run.checkpoints:
            lines.append(f"- {_md(run.name)}: none")
        for c in run.checkpoints:
            lines.append(
                f"- {_md(run.name)}: `{c['path']}` ({c['size_bytes'] / 2**20:.1f} MiB, "
                f"modified {c['mtime']})"
            )
    lines.append("")
    return "\n".join(lines)


def build_report(
    run_dirs: Sequence[str | Path],
    out_dir: str | Path,
    split: str = "test",
    *,
    tsne_max_points: int = TSNE_MAX_POINTS,
) -> Report:
    """Write ``report.md``, ``report.json`` and the figures into ``out_dir``; returns what
    it wrote (:class:`Report`, ``report.json``'s content included).

    ``tsne_max_points`` caps the videos per t-SNE plot (subsampled with a fixed seed).
    Raises :class:`ReportError` when a run folder does not exist or has no ``config.json``.
    """
    if not run_dirs:
        raise ReportError("no run folders given")
    split = split_file_name(split)
    paths = [Path(p) for p in run_dirs]
    runs = [load_run(p, split, name) for p, name in zip(paths, _unique_names(paths))]
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)

    figures = draw_figures(runs, out, split, tsne_max_points)
    generated = datetime.now(timezone.utc).isoformat(timespec="seconds")
    md_path = out / "report.md"
    write_text_atomic(
        md_path, report_markdown(runs, split, generated, figures.made, figures.skipped)
    )
    data = {
        "generated": generated,
        "split": split,
        "runs": [run_summary(r) for r in runs],
        "notes": [n for r in runs for n in r.notes],
        "warnings": [w for r in runs for w in r.warnings],
        "figures": [f for f, _ in figures.made],
        "skipped_figures": figures.skipped,
    }
    json_path = out / "report.json"
    write_text_atomic(json_path, json.dumps(data, indent=1) + "\n")
    return Report(
        md_path=md_path,
        json_path=json_path,
        data=data,
        figure_paths=[out / f for f, _ in figures.made],
        runs=runs,
    )
