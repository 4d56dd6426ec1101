"""The figures of ``ccl report``: PNG files drawn from :class:`ccl.runs.Run` records.

- ``curves_<run>.png``: every logged loss term and accuracy per epoch;
- ``confusion_<run>.png``: row-normalised confusion matrix of the best checkpoint;
- ``tsne_<run>.png``: t-SNE of the saved test features;
- ``per_class_<run>.png``: per-class accuracy against the baseline run;
- ``compare_curves.png``: validation top-1 of all runs.

:func:`draw_figures` draws all of them for a list of runs and says which were skipped and
why. Matplotlib is used through :class:`matplotlib.figure.Figure` only (no pyplot, no global
backend switch) and imported only when drawing; scikit-learn only for t-SNE.
"""

from __future__ import annotations

import math
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ccl.atomic import atomic_write
from ccl.runs import Run, eval_path, is_number

DPI = 120
TSNE_MAX_POINTS = 4000
LEGEND_MAX_CLASSES = 20


def _new_figure(width: float, height: float) -> Any:
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), dpi=DPI, layout="constrained")


def _save(fig: Any, path: Path) -> Path:
    """Write the figure atomically (:func:`ccl.atomic.atomic_write`): a failure (full disk)
    names ``path`` and leaves neither a partial nor an empty file."""
    with atomic_write(path, what="figure") as f:
        fig.savefig(f, dpi=DPI, format=path.suffix.lstrip(".") or "png")
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
            if k.startswith(("train/", "val/", "lr/")) and is_number(v) and k not in keys:
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
            pts = [(int(r["epoch"]), float(r[k])) for r in run.epochs if is_number(r.get(k))]
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
    rec = run.recognition
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
    top1 = rec.get("top1")
    top1_shown = f"{100 * top1:.1f}" if is_number(top1) else "-"
    ax.set_title(
        f"{run.name} ({run.method}): confusion matrix, row-normalised (top-1 {top1_shown}%)"
    )
    return _save(fig, path)


def plot_tsne(
    run: Run, path: Path, split: str = "test", max_points: int = TSNE_MAX_POINTS
) -> Path | None:
    """2-D t-SNE of the saved test features coloured by class; None when no features.

    More than ``max_points`` videos are subsampled (fixed seed) to bound the run time."""
    fpath = run.saved_features(split)
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
    a = baseline.recognition.get("per_class_accuracy")
    b = run.recognition.get("per_class_accuracy")
    if not a or not b or len(a) != len(b):
        return None
    classes = list((run.eval_best or {}).get("classes") or [str(i) for i in range(len(a))])
    keep = [i for i in range(len(a)) if is_number(a[i]) and is_number(b[i])]
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
            if is_number(r.get("val/top1"))
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


@dataclass
class Figures:
    """The figures :func:`draw_figures` wrote (file name in the output folder, caption) and
    the ones it skipped (``"<file name>: <why>"``)."""

    made: list[tuple[str, str]] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)


def draw_figures(
    runs: Sequence[Run], out: Path, split: str = "test", tsne_max_points: int = TSNE_MAX_POINTS
) -> Figures:
    """Draw every figure of ``runs`` into the folder ``out``: per run its curves, confusion
    matrix, t-SNE and (a run with teachers, against the first evaluated baseline run)
    per-class accuracies, then the validation curves of all runs. A figure without data, or
    without matplotlib or scikit-learn installed, is listed as skipped with the reason."""
    figures = Figures()
    made, skipped = figures.made, figures.skipped
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        skipped.append("all figures: matplotlib is not installed")
        return figures

    eval_name = eval_path(".", split).name
    baseline = next((r for r in runs if r.is_baseline and r.eval_best), None)
    for run in runs:
        stem = run.file_stem
        if plot_curves(run, out / f"curves_{stem}.png"):
            made.append((f"curves_{stem}.png", f"{run.name}: training curves"))
        else:
            skipped.append(f"curves_{stem}.png: no epoch records in metrics.jsonl")
        if plot_confusion(run, out / f"confusion_{stem}.png"):
            made.append((f"confusion_{stem}.png", f"{run.name}: confusion matrix"))
        else:
            skipped.append(f"confusion_{stem}.png: no confusion matrix (no {eval_name})")
        try:
            tsne = plot_tsne(run, out / f"tsne_{stem}.png", split, tsne_max_points)
        except ImportError:
            skipped.append(f"tsne_{stem}.png: scikit-learn is not installed")
        except ValueError as err:  # a corrupt features file
            skipped.append(f"tsne_{stem}.png: {err}")
        else:
            if tsne:
                made.append((f"tsne_{stem}.png", f"{run.name}: t-SNE of {split} features"))
            else:
                skipped.append(f"tsne_{stem}.png: no saved {split} features (or < 5 videos)")
        if run.is_baseline:
            continue
        if run.eval_best is None:
            skipped.append(f"per_class_{stem}.png: {run.name} has no {eval_name}")
        elif baseline is None:
            skipped.append(f"per_class_{stem}.png: no evaluated baseline run among the inputs")
        elif plot_per_class(run, baseline, out / f"per_class_{stem}.png"):
            made.append(
                (f"per_class_{stem}.png", f"{run.name} vs {baseline.name}: per-class accuracy")
            )
        else:
            skipped.append(
                f"per_class_{stem}.png: no per-class accuracies (or classes differ from "
                f"{baseline.name})"
            )
    if plot_compare(runs, out / "compare_curves.png"):
        made.append(("compare_curves.png", "validation top-1 of all runs"))
    else:
        skipped.append("compare_curves.png: no run logged val/top1")
    return figures
