"""The demo's tables: the numbers of each method, their cells over seeds, the paired
differences to the baseline with bootstrap intervals (:mod:`ccl.stats`) and the teachers'
linear-probe rows (docs/DEMO.md, "How the table is computed").

Everything here works on values: a ``ccl report`` of the runs (its JSON data) and the test
evaluations of their best-on-validation checkpoints, in the report's run order.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Collection, Mapping, Sequence
from typing import Any

from ccl.stats import paired_bootstrap

TABLE_COLUMNS = (
    ("top1", "top-1"),
    ("top5", "top-5"),
    ("top1_related", "top-1 related audio"),
    ("top1_unrelated", "top-1 unrelated audio"),
    ("r1", "R@1"),
    ("r5", "R@5"),
    ("map", "mAP"),
)
DELTA_COLUMNS = (("top1", "Δ top-1 vs baseline [95 % CI]"), ("r1", "Δ R@1 vs baseline [95 % CI]"))
PROBE_ROWS = (("audio", "audio teacher, linear probe"), ("image", "image teacher, linear probe"))
BOOTSTRAP_RESAMPLES = 10_000

Hits = dict[str, dict[str, float] | None]
"""Per test video, 1.0 / 0.0 under ``top1`` and ``r1`` (:func:`video_hits`)."""


def cell(values: list[float]) -> str:
    """A table cell: "-" without values, the value alone for one, else mean +- std
    (population std) over them; runs that diverged (NaN) are counted, not averaged."""
    if not values:
        return "-"
    finite = [v for v in values if not math.isnan(v)]
    if len(finite) < len(values):
        if not finite:
            return "diverged"
        return f"{cell(finite)} ({len(values) - len(finite)} of {len(values)} diverged)"
    if len(values) == 1:
        return f"{values[0]:.1f}"
    return f"{statistics.mean(values):.1f} +- {statistics.pstdev(values):.1f}"


def method_numbers(
    report: Mapping[str, Any],
    evaluations: Sequence[Mapping[str, Any] | None],
    unrelated_audio: Collection[str],
) -> dict[str, dict[str, Any]]:
    """Per method (report order): the demo table's numbers as fractions (None if absent),
    from the best-on-validation checkpoint on the test split. ``evaluations``: each report
    run's test evaluation of that checkpoint (None: not evaluated). "related / unrelated
    audio" is the mean per-class top-1 over the classes whose soundtrack is / is not tied
    to them (``unrelated_audio``: the benchmark's ``unrelated_audio_classes``)."""
    unrelated = set(unrelated_audio)
    out: dict[str, dict[str, Any]] = {}
    for run, ev in zip(report.get("runs", []), evaluations, strict=True):
        best = run.get("best") or {}
        retrieval = run.get("retrieval") or {}
        recall = retrieval.get("recall") or {}
        groups: dict[bool, list[float]] = {True: [], False: []}
        if ev is not None:
            for name, acc in zip(ev["classes"], ev["recognition"]["per_class_accuracy"]):
                if acc is not None:
                    groups[name in unrelated].append(acc)
        mean = {k: (sum(v) / len(v) if v else None) for k, v in groups.items()}
        out[str(run.get("method"))] = {
            "top1": best.get("top1"),
            "top5": best.get("top5"),
            "top1_related": mean[False],
            "top1_unrelated": mean[True],
            "r1": recall.get("1"),
            "r5": recall.get("5"),
            "map": retrieval.get("map"),
        }
    return out


def video_hits(evaluation: Mapping[str, Any]) -> Hits:
    """Per test video of an evaluation, 1.0 / 0.0: ``top1`` (the top class is the label)
    and ``r1`` (the nearest training video has the label; None for evaluations written
    before they stored ranks). Videos that could not be evaluated count as misses."""
    top1: dict[str, float] = {}
    r1: dict[str, float] | None = {}
    for video in evaluation.get("videos", []):
        vid = video["video_id"]
        top1[vid] = float(bool(video["top5"]) and video["top5"][0] == video["label"])
        if r1 is not None and "retrieval_rank" in video:
            r1[vid] = float(video["retrieval_rank"] == 0)
        else:
            r1 = None
    for miss in evaluation.get("missing", []):
        top1[miss["video_id"]] = 0.0
        if r1 is not None:
            r1[miss["video_id"]] = 0.0
    return {"top1": top1, "r1": r1 if evaluation.get("retrieval") else None}


def method_hits(
    report: Mapping[str, Any], evaluations: Sequence[Mapping[str, Any] | None]
) -> dict[str, Hits]:
    """Per method of a report: :func:`video_hits` of its run's evaluation (``evaluations``
    as in :func:`method_numbers`; runs without one are left out)."""
    out: dict[str, Hits] = {}
    for run, ev in zip(report.get("runs", []), evaluations, strict=True):
        if ev is not None:
            out[str(run.get("method"))] = video_hits(ev)
    return out


def paired_cells(hits: list[dict[str, Any]], seeds: list[int]) -> dict[str, dict[str, str]]:
    """Per non-baseline method, per :data:`DELTA_COLUMNS` key: "+d [lo, hi]" in points, the
    mean paired difference to the baseline of the same seed over the (seed, video) pairs of
    every seed that has both, with its bootstrap interval (:func:`ccl.stats.paired_bootstrap`,
    fixed generator seed: the same runs give the same table). ``hits``: per seed, the
    :func:`video_hits` of each method."""
    methods = dict.fromkeys(m for h in hits for m in h if m != "baseline")
    cells: dict[str, dict[str, str]] = {}
    for method in methods:
        for key, _ in DELTA_COLUMNS:
            a: dict[tuple[int, str], float] = {}
            b: dict[tuple[int, str], float] = {}
            for seed, per_method in zip(seeds, hits):
                mine = (per_method.get(method) or {}).get(key)
                base = (per_method.get("baseline") or {}).get(key)
                if mine is None or base is None:
                    continue
                a.update({(seed, vid): hit for vid, hit in mine.items()})
                b.update({(seed, vid): hit for vid, hit in base.items()})
            if not a and not b:
                continue
            try:
                mean, lo, hi = paired_bootstrap(a, b, resamples=BOOTSTRAP_RESAMPLES, seed=0)
            except ValueError as err:
                raise ValueError(f"{method} vs baseline ({key}): {err}") from err
            cells.setdefault(method, {})[key] = (
                f"{100 * mean:+.1f} [{100 * lo:+.1f}, {100 * hi:+.1f}]"
            )
    return cells


def format_table(
    per_seed: list[dict[str, dict[str, Any]]],
    hits: list[dict[str, Hits]] | None = None,
    probes: list[dict[str, Any] | None] | None = None,
    seeds: list[int] | None = None,
) -> str:
    """Markdown table of :func:`method_numbers` in %: the value for one seed, mean +- std
    (population) over several; then the paired differences to the baseline (:func:`method_hits`
    of each seed, pooled; "-" without them) and the teachers' linear-probe rows (the
    teachers' probes of each seed), with notes on how they are computed."""
    seeds = list(seeds) if seeds is not None else list(range(1, len(per_seed) + 1))
    deltas = paired_cells(hits, seeds) if hits else {}
    names = [name for _, name in TABLE_COLUMNS] + [name for _, name in DELTA_COLUMNS]
    header = "| method | " + " | ".join(names) + " |"
    lines = [header, "|---" * (len(names) + 1) + "|"]
    for method in per_seed[0]:
        cells = []
        for key, _ in TABLE_COLUMNS:
            values = [m[method][key] for m in per_seed if m.get(method, {}).get(key) is not None]
            cells.append(cell([100 * v for v in values]))
        cells += [deltas.get(method, {}).get(key, "-") for key, _ in DELTA_COLUMNS]
        lines.append(f"| {method} | " + " | ".join(cells) + " |")
    found = [p for p in probes or [] if p]
    for teacher, name in PROBE_ROWS:
        results = [p[teacher] for p in found if p.get(teacher)]
        cells = [
            cell([100 * r[key] for r in results]) if key in ("top1", "top5") else "-"
            for key, _ in TABLE_COLUMNS
        ]
        lines.append(f"| {name} | " + " | ".join(cells + ["-"] * len(DELTA_COLUMNS)) + " |")
    lines += ["", *_table_notes(hits, found)]
    return "\n".join(lines)


def _table_notes(hits: list[dict[str, Hits]] | None, probes: list[dict[str, Any]]) -> list[str]:
    """The lines under the table saying how its added columns and rows were computed."""
    notes = []
    if hits:
        pairs = sum(len((h.get("baseline") or {}).get("top1") or {}) for h in hits)
        notes.append(
            f"Δ: paired difference to the baseline in points over the {pairs} (seed, test "
            f"video) pairs, mean [95 % percentile bootstrap interval, {BOOTSTRAP_RESAMPLES:,} "
            "resamples of the pairs]."
        )
    if probes:
        audio = [p["audio"] for p in probes if p.get("audio")]
        missing = sum(r["test_missing"] for r in audio)
        total = sum(r["test_videos"] for r in audio)
        notes.append(
            "Linear probes: logistic regression on the frozen teachers' standardised features "
            "of the training videos (audio embedding; image teacher on the centre frame), "
            f"tested on the test videos; audio: {missing} of {total} test videos without a "
            "soundtrack embedding, counted wrong."
        )
    return notes
