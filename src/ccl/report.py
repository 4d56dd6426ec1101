"""``ccl report``: compare finished runs in one Markdown table with figures.

:func:`build_report` reads each run folder (``config.json``, ``metrics.jsonl``, the
``eval_<split>.json`` written by ``ccl evaluate`` and, when present, ``eval_<split>_last.json``
and the saved test features) and writes into one output folder:

- ``report.md``: a table with one row per run (method, teachers, top-1/top-5 of the best and
  last checkpoints, retrieval recall@k and mAP, epochs, wall time, checkpoint), notes on
  missing or incomplete evaluations, the figure list and the figures that were skipped;
- ``report.json``: the same data, accuracies as fractions;
- PNG figures: ``curves_<run>.png`` (every logged loss term and accuracy per epoch),
  ``confusion_<run>.png`` (row-normalised confusion matrix), ``tsne_<run>.png`` (t-SNE of the
  test features), ``per_class_<run>.png`` (per-class accuracy against the baseline run) and
  ``compare_curves.png`` (validation top-1 of all runs).

Checkpoints are listed (path, size, modification time), never loaded. Matplotlib is used
through :class:`matplotlib.figure.Figure` only (no pyplot, no global backend switch).
"""

from __future__ import annotations

import argparse
import json
import math
import re
import sys
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from ccl.atomic import write_text_atomic
from ccl.errors import ReportError

RECALL_KS = ("1", "5", "10", "20", "50")
DPI = 120
TSNE_MAX_POINTS = 4000
LEGEND_MAX_CLASSES = 20



@dataclass
class Run:
    """Everything the report needs from one run folder."""

    name: str
    path: Path
    config: dict[str, Any]
    method: str
    teachers: list[str]
    epochs: list[dict[str, Any]] = field(default_factory=list)
    epochs_configured: int | None = None
    eval_best: dict[str, Any] | None = None
    eval_last: dict[str, Any] | None = None
    eval_best_path: Path | None = None
    checkpoints: list[dict[str, Any]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    @property
    def is_baseline(self) -> bool:
        """True for a run trained without teachers by the baseline objective."""
        return self.method == "baseline"

    @property
    def epochs_trained(self) -> int:
        """Highest epoch with an epoch record in ``metrics.jsonl`` (0 when none)."""
        return max((int(r["epoch"]) for r in self.epochs), default=0)

    @property
    def wall_s(self) -> float | None:
        """Sum of ``epoch_s`` over the logged epochs, None when nothing was logged."""
        times = [float(r["epoch_s"]) for r in self.epochs if _is_number(r.get("epoch_s"))]
        return sum(times) if times else None

    @property
    def file_stem(self) -> str:
        """The run name made safe for a file name."""
        return re.sub(r"[^A-Za-z0-9._-]+", "_", self.name).strip("_") or "run"


# --------------------------------------------------------------------------- loading


def method_label(objective: dict[str, Any]) -> str:
    """``baseline``, ``CCL-A``, ``CCL-I`` or ``CCL-AI`` from an ``objective`` config section."""
    method = str(objective.get("method", "baseline")).lower()
    teachers = [str(t).lower() for t in objective.get("teachers", []) or []]
    if method == "baseline":
        return "baseline"
    if method.startswith("ccl-") and not teachers:  # tolerate "ccl-ai" style names
        return method.upper()
    letters = "".join(t[0].upper() for t in ("audio", "image") if t in teachers)
    letters += "".join(t[0].upper() for t in teachers if t not in ("audio", "image"))
    return f"{method.upper()}-{letters}" if letters else method.upper()


def read_metrics(path: Path) -> tuple[list[dict[str, Any]], list[str]]:
    """Epoch records of a ``metrics.jsonl`` (one per epoch, the last written wins, sorted).

    Corrupt lines are skipped with a :mod:`warnings` warning naming the file and line; the
    messages are returned too.
    """
    messages: list[str] = []
    by_epoch: dict[int, dict[str, Any]] = {}
    with path.open(encoding="utf-8", errors="replace") as fh:
        for lineno, line in enumerate(fh, start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
                if not isinstance(record, dict):
                    raise ValueError("not a JSON object")
            except ValueError as err:
                msg = f"{path}:{lineno}: skipped corrupt metrics line ({err})"
                warnings.warn(msg, stacklevel=2)
                messages.append(msg)
                continue
            if record.get("type") == "epoch" and _is_number(record.get("epoch")):
                by_epoch[int(record["epoch"])] = record
    return [by_epoch[e] for e in sorted(by_epoch)], messages


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        raise ReportError(f"{path}: cannot read JSON ({err})") from err
    if not isinstance(data, dict):
        raise ReportError(f"{path}: expected a JSON object")
    return data


def load_run(path: Path, split: str = "test", name: str | None = None) -> Run:
    """Read one run folder. Raises :class:`ReportError` when it or its config is missing."""
    path = Path(path)
    if not path.is_dir():
        raise ReportError(f"run folder {path} does not exist")
    cfg_path = path / "config.json"
    if not cfg_path.is_file():
        raise ReportError(f"run folder {path} has no config.json (is it a training run?)")
    config = _read_json(cfg_path)
    objective = config.get("objective", {}) or {}
    run = Run(
        name=name or path.resolve().name,
        path=path,
        config=config,
        method=method_label(objective),
        teachers=[str(t) for t in objective.get("teachers", []) or []],
        epochs_configured=(config.get("train", {}) or {}).get("epochs"),
    )

    metrics_path = path / "metrics.jsonl"
    if metrics_path.is_file():
        run.epochs, run.warnings = read_metrics(metrics_path)
        if not run.epochs:
            run.notes.append(f"run {run.name}: metrics.jsonl has no epoch records")
    else:
        run.notes.append(f"run {run.name}: no metrics.jsonl")
    if (
        run.epochs
        and isinstance(run.epochs_configured, int)
        and run.epochs_trained < run.epochs_configured
    ):
        run.notes.append(
            f"run {run.name}: trained {run.epochs_trained} of {run.epochs_configured} "
            "configured epochs (unfinished or stopped early)"
        )

    ckpt_dir = path / "checkpoints"
    if ckpt_dir.is_dir():
        for ckpt in sorted(ckpt_dir.glob("*.pt")):
            stat = ckpt.stat()
            run.checkpoints.append(
                {
                    "path": str(ckpt),
                    "size_bytes": stat.st_size,
                    "mtime": datetime.fromtimestamp(stat.st_mtime, timezone.utc).isoformat(
                        timespec="seconds"
                    ),
                }
            )

    best_path = path / f"eval_{split}.json"
    if best_path.is_file():
        run.eval_best = _read_json(best_path)
        run.eval_best_path = best_path
        _check_eval(run, run.eval_best, best_path)
    else:
        run.notes.append(f"run {run.name}: no {best_path.name} (run `ccl evaluate {path}`)")
    last_path = path / f"eval_{split}_last.json"
    if last_path.is_file():
        run.eval_last = _read_json(last_path)
        _check_eval(run, run.eval_last, last_path)
    return run


def _check_eval(run: Run, ev: dict[str, Any], path: Path) -> None:
    """Notes for incomplete or stale evaluations."""
    expected, evaluated = ev.get("videos_expected"), ev.get("videos_evaluated")
    if _is_number(expected) and _is_number(evaluated) and evaluated < expected:
        missing = ev.get("missing") or []
        shown = ", ".join(f"{m.get('video_id', '?')} ({m.get('reason', '?')})" for m in missing[:3])
        more = f", ... {len(missing) - 3} more" if len(missing) > 3 else ""
        run.notes.append(
            f"run {run.name}: {path.name} evaluated {evaluated} of {expected} videos "
            f"({expected - evaluated} missing, counted as wrong)"
            + (f": {shown}{more}" if shown else "")
        )
    ckpt = ev.get("checkpoint")
    if ckpt:
        ckpt_path = Path(ckpt)
        if not ckpt_path.is_absolute() and not ckpt_path.exists():
            ckpt_path = run.path / ckpt_path
        if ckpt_path.is_file() and ckpt_path.stat().st_mtime > path.stat().st_mtime:
            run.notes.append(
                f"run {run.name}: {ckpt_path.name} is newer than {path.name}; "
                f"the evaluation may be stale (rerun `ccl evaluate {run.path}`)"
            )


# --------------------------------------------------------------------------- formatting


def _is_number(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


def pct(x: Any) -> str:
    """A fraction as a percentage with one decimal, ``-`` when absent."""
    return f"{100 * x:.1f}" if _is_number(x) else "-"


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


def _recognition(ev: dict[str, Any] | None) -> dict[str, Any]:
    return (ev or {}).get("recognition") or {}


def _retrieval(ev: dict[str, Any] | None) -> dict[str, Any]:
    return (ev or {}).get("retrieval") or {}


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
    rec, rec_last, ret = (
        _recognition(run.eval_best),
        _recognition(run.eval_last),
        _retrieval(run.eval_best),
    )
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
        rec, rec_last, ret = (
            _recognition(run.eval_best),
            _recognition(run.eval_last),
            _retrieval(run.eval_best),
        )
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


# --------------------------------------------------------------------------- figures


def _new_figure(width: float, height: float) -> Any:
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), dpi=DPI, layout="constrained")


def _save(fig: Any, path: Path) -> Path:
    fig.savefig(path, dpi=DPI)
    return path


def _accuracy_keys(keys: Sequence[str]) -> list[str]:
    return [k for k in ("train/acc", "val/top1", "val/top5") if k in keys]


def plot_curves(run: Run, path: Path) -> Path | None:
    """Grid of per-epoch curves: one panel per ``train/*``/``val/*`` key, accuracies together,
    learning rates together. None when there is nothing to plot."""
    from matplotlib.ticker import MaxNLocator

    keys: list[str] = []
    for r in run.epochs:
        for k, v in r.items():
            if k.startswith(("train/", "val/", "lr/")) and _is_number(v) and k not in keys:
                keys.append(k)
    if "train/data/skipped" in keys and not any(r.get("train/data/skipped") for r in run.epochs):
        keys.remove("train/data/skipped")
    if not keys:
        return None
    acc = _accuracy_keys(keys)
    lrs = [k for k in keys if k.startswith("lr/")]
    panels: list[tuple[str, list[str], str]] = []
    if acc:
        panels.append(("accuracy", acc, "accuracy (%)"))
    for k in keys:
        if k not in acc and k not in lrs:
            ylabel = "count" if k.endswith("skipped") else "loss"
            panels.append((k, [k], ylabel))
    if lrs:
        panels.append(("learning rate", lrs, "learning rate"))

    ncols = min(4, len(panels))
    nrows = math.ceil(len(panels) / ncols)
    fig = _new_figure(4.0 * ncols, 3.2 * nrows + 0.6)
    axes = fig.subplots(nrows, ncols, squeeze=False)
    for ax, (title, series, ylabel) in zip(axes.flat, panels):
        for k in series:
            pts = [(int(r["epoch"]), float(r[k])) for r in run.epochs if _is_number(r.get(k))]
            if not pts:
                continue
            xs, ys = zip(*pts)
            if title == "accuracy":
                ys = tuple(100 * y for y in ys)
            ax.plot(xs, ys, marker="o" if len(xs) <= 30 else None, markersize=3, label=k)
        ax.set_title(title, fontsize=10)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_xlabel("epoch")
        ax.set_ylabel(ylabel)
        ax.grid(alpha=0.3)
        if title == "learning rate":
            ax.ticklabel_format(axis="y", style="sci", scilimits=(-2, 2))
        if len(series) > 1:
            ax.legend(fontsize=7)
    for ax in list(axes.flat)[len(panels) :]:
        ax.set_visible(False)
    fig.suptitle(f"{run.name} ({run.method}): training curves")
    return _save(fig, path)


def _class_font(n: int, span_in: float) -> float:
    """Font size (points) for ``n`` class labels spread over ``span_in`` inches."""
    return float(np.clip(0.6 * span_in * 72 / max(n, 1), 3.0, 9.0))


def plot_confusion(run: Run, path: Path) -> Path | None:
    """Row-normalised confusion-matrix heatmap with class names on both axes."""
    rec = _recognition(run.eval_best)
    cm = rec.get("confusion_matrix")
    if not cm:
        return None
    mat = np.asarray(cm, dtype=np.float64)
    n = mat.shape[0]
    classes = list((run.eval_best or {}).get("classes") or [str(i) for i in range(n)])
    if len(classes) != n:
        classes = [str(i) for i in range(n)]
    rows = mat.sum(axis=1, keepdims=True)
    norm = np.divide(mat, rows, out=np.zeros_like(mat), where=rows > 0)

    side = float(np.clip(3.0 + 0.2 * n, 6.0, 36.0))
    fig = _new_figure(side + 1.5, side)
    ax = fig.subplots()
    im = ax.imshow(norm, cmap="Blues", vmin=0.0, vmax=1.0, interpolation="nearest")
    font = _class_font(n, 0.75 * side)
    ax.set_xticks(range(n))
    ax.set_yticks(range(n))
    ax.set_xticklabels(
        classes, rotation=90 if n > 8 else 45, ha="center" if n > 8 else "right", fontsize=font
    )
    ax.set_yticklabels(classes, fontsize=font)
    if n <= 15:
        for i in range(n):
            for j in range(n):
                if mat[i, j]:
                    ax.text(
                        j,
                        i,
                        f"{norm[i, j]:.2f}",
                        ha="center",
                        va="center",
                        fontsize=7,
                        color="white" if norm[i, j] > 0.5 else "black",
                    )
    ax.set_xlabel("predicted class")
    ax.set_ylabel("true class")
    cbar = fig.colorbar(im, ax=ax, shrink=0.8)
    cbar.set_label("fraction of the true class")
    ax.set_title(
        f"{run.name} ({run.method}): confusion matrix, row-normalised "
        f"(top-1 {pct(rec.get('top1'))}%)"
    )
    return _save(fig, path)


def _features_path(run: Run, split: str) -> Path | None:
    ev = run.eval_best or {}
    name = ev.get("features_file", f"eval_{split}_features.npz") if ev else None
    if not name:
        return None
    p = Path(name)
    p = p if p.is_absolute() else run.path / p
    return p if p.is_file() else None


def plot_tsne(
    run: Run, path: Path, split: str = "test", max_points: int = TSNE_MAX_POINTS
) -> Path | None:
    """2-D t-SNE of the saved test features coloured by class; None when no features.

    More than ``max_points`` videos are subsampled (fixed seed) to bound the run time."""
    fpath = _features_path(run, split)
    if fpath is None:
        return None
    from sklearn.manifold import TSNE

    try:
        with np.load(fpath, allow_pickle=False) as data:
            feats = np.asarray(data["features"], dtype=np.float32)
            labels = np.asarray(data["labels"]).astype(np.int64)
    except Exception as err:  # noqa: BLE001 - any unreadable file: one message naming it
        raise ValueError(
            f"cannot read saved features {fpath}: {type(err).__name__}: {err}"
        ) from err
    n = len(feats)
    if n < 5:
        return None
    subsampled = ""
    if n > max_points > 0:
        idx = np.sort(np.random.default_rng(0).choice(n, max_points, replace=False))
        feats, labels, subsampled = feats[idx], labels[idx], f" of {n}, subsampled"
        n = max_points
    if n > 1000:
        print(f"ccl report: t-SNE of {n} {split} features of {run.name} ...", file=sys.stderr)
    emb = TSNE(
        n_components=2, init="pca", random_state=0, perplexity=min(30.0, (n - 1) / 3)
    ).fit_transform(feats)

    classes = list((run.eval_best or {}).get("classes") or [])
    present = np.unique(labels)
    fig = _new_figure(8.5 if len(present) <= LEGEND_MAX_CLASSES else 7.5, 6.5)
    ax = fig.subplots()
    if len(present) <= LEGEND_MAX_CLASSES:
        from matplotlib import colormaps

        cmap = colormaps["tab10" if len(present) <= 10 else "tab20"]
        for i, c in enumerate(present):
            sel = labels == c
            name = classes[c] if 0 <= c < len(classes) else str(c)
            ax.scatter(emb[sel, 0], emb[sel, 1], s=14, color=cmap(i), label=name, alpha=0.85)
        ax.legend(title="class", fontsize=7, loc="center left", bbox_to_anchor=(1.01, 0.5))
    else:
        sc = ax.scatter(emb[:, 0], emb[:, 1], s=6, c=labels, cmap="nipy_spectral", alpha=0.8)
        fig.colorbar(sc, ax=ax, label="class index")
    ax.set_xlabel("t-SNE 1")
    ax.set_ylabel("t-SNE 2")
    ax.set_title(f"{run.name} ({run.method}): t-SNE of {split} features ({n} videos{subsampled})")
    return _save(fig, path)


def plot_per_class(run: Run, baseline: Run, path: Path) -> Path | None:
    """Per-class accuracy of ``run`` against ``baseline``: scatter with the diagonal and the
    per-class differences as bars sorted by delta. None when either lacks per-class numbers."""
    a = _recognition(baseline.eval_best).get("per_class_accuracy")
    b = _recognition(run.eval_best).get("per_class_accuracy")
    if not a or not b or len(a) != len(b):
        return None
    classes = list((run.eval_best or {}).get("classes") or [str(i) for i in range(len(a))])
    keep = [i for i in range(len(a)) if _is_number(a[i]) and _is_number(b[i])]
    if not keep:
        return None
    base = np.array([100 * a[i] for i in keep])
    new = np.array([100 * b[i] for i in keep])
    names = [classes[i] if i < len(classes) else str(i) for i in keep]
    delta = new - base
    order = np.argsort(delta)
    n = len(keep)
    height = float(np.clip(0.16 * n + 1.5, 5.0, 36.0))
    font = _class_font(n, height - 1.5)
    fig = _new_figure(14.0, height)
    ax1, ax2 = fig.subplots(1, 2, gridspec_kw={"width_ratios": [1, 1]})

    colors = np.where(delta > 0, "tab:green", np.where(delta < 0, "tab:red", "tab:gray"))
    ax1.scatter(base, new, s=18, c=colors, alpha=0.8)
    ax1.plot([0, 100], [0, 100], color="black", linewidth=0.8, linestyle="--", label="y = x")
    labelled = order if n <= 30 else np.concatenate([order[:5], order[-5:]])
    spots: dict[tuple[float, float], list[str]] = {}  # classes on the same point share a label
    for i in labelled:
        spots.setdefault((round(base[i], 1), round(new[i], 1)), []).append(names[i])
    for (x, y), group in spots.items():
        text = ", ".join(group[:4]) + (f" +{len(group) - 4}" if len(group) > 4 else "")
        ax1.annotate(text, (x, y), fontsize=6, xytext=(3, 2), textcoords="offset points")
    ax1.set_xlim(-3, 103)
    ax1.set_ylim(-3, 103)
    ax1.set_aspect("equal")
    ax1.set_anchor("N")  # a tall figure (many classes): keep the square scatter at the top
    ax1.set_xlabel(f"{baseline.name} (baseline) per-class accuracy (%)")
    ax1.set_ylabel(f"{run.name} ({run.method}) per-class accuracy (%)")
    ax1.set_title(f"per-class accuracy: {sum(delta > 0)} up, {sum(delta < 0)} down")
    ax1.grid(alpha=0.3)
    ax1.legend(fontsize=8, loc="lower right")

    ax2.barh(range(n), delta[order], color=colors[order])
    ax2.set_yticks(range(n))
    ax2.set_yticklabels([names[i] for i in order], fontsize=font)
    ax2.axvline(0, color="black", linewidth=0.8)
    ax2.set_ylim(-0.6, n - 0.4)
    ax2.set_xlabel("accuracy difference (percentage points)")
    ax2.set_ylabel("class (sorted by difference)")
    ax2.set_title(f"{run.method} minus baseline, mean {delta.mean():+.1f} points")
    ax2.grid(axis="x", alpha=0.3)
    fig.suptitle(f"{run.name} vs {baseline.name}: per-class {_split_word(run)} accuracy")
    return _save(fig, path)


def _split_word(run: Run) -> str:
    return str((run.eval_best or {}).get("split", "test"))


def plot_compare(runs: Sequence[Run], path: Path) -> Path | None:
    """Validation top-1 per epoch of every run; None when no run logged ``val/top1``."""
    series = []
    for run in runs:
        pts = [
            (int(r["epoch"]), 100 * float(r["val/top1"]))
            for r in run.epochs
            if _is_number(r.get("val/top1"))
        ]
        if pts:
            series.append((run, pts))
    if not series:
        return None
    fig = _new_figure(8.0, 5.0)
    ax = fig.subplots()
    for run, pts in series:
        xs, ys = zip(*pts)
        ax.plot(
            xs,
            ys,
            marker="o" if len(xs) <= 30 else None,
            markersize=3,
            label=f"{run.name} ({run.method})",
        )
    ax.set_xlabel("epoch")
    ax.set_ylabel("validation top-1 (%)")
    ax.set_title("validation top-1 per epoch")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return _save(fig, path)


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
            shown = [f"{c:.3g}" if _is_number(c) else "-" for c in cells]
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


def build_report(
    run_dirs: Sequence[str | Path],
    out_dir: str | Path,
    split: str = "test",
    *,
    tsne_max_points: int = TSNE_MAX_POINTS,
) -> Path:
    """Write ``report.md``, ``report.json`` and the figures into ``out_dir``.

    ``tsne_max_points`` caps the videos per t-SNE plot (subsampled with a fixed seed).

    Returns the path of ``report.md``. Raises :class:`ReportError` when a run folder does not
    exist or has no ``config.json``.
    """
    if not run_dirs:
        raise ReportError("no run folders given")
    split = split.replace("testing", "test")
    paths = [Path(p) for p in run_dirs]
    runs = [load_run(p, split, name) for p, name in zip(paths, _unique_names(paths))]
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)

    figures: list[tuple[str, str]] = []  # (file name, caption)
    skipped: list[str] = []
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        skipped.append("all figures: matplotlib is not installed")
        plotting = False
    else:
        plotting = True

    baseline = next((r for r in runs if r.is_baseline and r.eval_best), None)
    if plotting:
        for run in runs:
            stem = run.file_stem
            if plot_curves(run, out / f"curves_{stem}.png"):
                figures.append((f"curves_{stem}.png", f"{run.name}: training curves"))
            else:
                skipped.append(f"curves_{stem}.png: no epoch records in metrics.jsonl")
            if plot_confusion(run, out / f"confusion_{stem}.png"):
                figures.append((f"confusion_{stem}.png", f"{run.name}: confusion matrix"))
            else:
                skipped.append(f"confusion_{stem}.png: no confusion matrix (no eval_{split}.json)")
            try:
                tsne = plot_tsne(run, out / f"tsne_{stem}.png", split, tsne_max_points)
            except ImportError:
                skipped.append(f"tsne_{stem}.png: scikit-learn is not installed")
            except ValueError as err:  # a corrupt features file
                skipped.append(f"tsne_{stem}.png: {err}")
            else:
                if tsne:
                    figures.append((f"tsne_{stem}.png", f"{run.name}: t-SNE of {split} features"))
                else:
                    skipped.append(f"tsne_{stem}.png: no saved {split} features (or < 5 videos)")
            if run.is_baseline:
                continue
            if run.eval_best is None:
                skipped.append(f"per_class_{stem}.png: {run.name} has no eval_{split}.json")
            elif baseline is None:
                skipped.append(f"per_class_{stem}.png: no evaluated baseline run among the inputs")
            elif plot_per_class(run, baseline, out / f"per_class_{stem}.png"):
                figures.append(
                    (f"per_class_{stem}.png", f"{run.name} vs {baseline.name}: per-class accuracy")
                )
            else:
                skipped.append(
                    f"per_class_{stem}.png: no per-class accuracies (or classes differ from "
                    f"{baseline.name})"
                )
        if plot_compare(runs, out / "compare_curves.png"):
            figures.append(("compare_curves.png", "validation top-1 of all runs"))
        else:
            skipped.append("compare_curves.png: no run logged val/top1")

    notes = [n for r in runs for n in r.notes]
    warn = [w for r in runs for w in r.warnings]
    generated = datetime.now(timezone.utc).isoformat(timespec="seconds")

    lines = [
        f"# CCL run report ({split} split)",
        "",
        f"Generated {generated} from {len(runs)} run(s). Accuracies in %, one decimal; "
        "Top-1/Top-5/Mean class and retrieval use the best checkpoint, '(last)' the last-epoch "
        f"checkpoint (`eval_{split}_last.json`). Epochs: trained/configured; wall time: sum "
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

    md_path = out / "report.md"
    write_text_atomic(md_path, "\n".join(lines))
    payload = {
        "generated": generated,
        "split": split,
        "runs": [run_summary(r) for r in runs],
        "notes": notes,
        "warnings": warn,
        "figures": [f for f, _ in figures],
        "skipped_figures": skipped,
    }
    write_text_atomic(out / "report.json", json.dumps(payload, indent=1) + "\n")
    return md_path


# --------------------------------------------------------------------------- CLI


def _cmd_report(args: argparse.Namespace) -> int:
    # an unwritable --out (OSError) ends as one line in ccl.cli.main
    try:
        path = build_report(
            args.run_dirs, args.out, split=args.split, tsne_max_points=args.tsne_max_points
        )
    except ReportError as err:
        print(f"ccl report: error: {err}", file=sys.stderr)
        return 2
    print(f"report written to {path}")
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``report RUN_DIR... --out DIR [--split test]`` to the ``ccl`` sub-parsers."""
    p = subparsers.add_parser(
        "report",
        help="compare evaluated runs: Markdown table, JSON and figures",
        description="Read run folders (config.json, metrics.jsonl, eval_<split>.json from "
        "`ccl evaluate`) and write report.md, report.json and PNG figures into --out.",
    )
    p.add_argument("run_dirs", nargs="+", type=Path, metavar="RUN_DIR", help="run folders")
    p.add_argument("--out", required=True, type=Path, help="output folder")
    p.add_argument(
        "--split", default="test", help="evaluated split: reads eval_<split>.json (default test)"
    )
    p.add_argument(
        "--tsne-max-points",
        type=int,
        default=TSNE_MAX_POINTS,
        help=f"subsample larger test sets for the t-SNE plots (default {TSNE_MAX_POINTS})",
    )
    p.set_defaults(func=_cmd_report)


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m ccl.report RUN_DIR... --out DIR`` (= ``ccl report``)."""
    from ccl.cli import main as cli_main

    return cli_main(["report", *(sys.argv[1:] if argv is None else argv)])


if __name__ == "__main__":
    sys.exit(main())
