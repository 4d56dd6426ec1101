"""The demo's tables: each method's numbers, their spread over training runs or seeds, the
difference to the baseline with an interval over runs or seeds, and the teachers'
linear-probe rows (docs/DEMO.md, "How the tables are computed").

The unit of every comparison is a *replicate*: one training of each method on one
benchmark (a benchmark seed's videos and teachers) with one training seed. A method's
difference to the baseline in a replicate is paired (the same test videos, the same
benchmark, the same training seed). Two trainings of one method differ by several points
(training noise), so the interval is taken over replicates, not over test videos: with
several benchmark seeds the unit is the seed (its runs averaged first), with one benchmark
it is the training run. :func:`ccl.stats.seed_interval` gives the Student t interval.

Everything here works on values: test evaluations (``ccl evaluate``'s report dicts) of the
last checkpoint (the table's numbers) and of the best-on-validation checkpoint (beside it).
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ccl.objectives.registry import BASELINE
from ccl.stats import SeedInterval, paired_differences, seed_interval

TABLE_COLUMNS = (
    ("top1", "top-1"),
    ("top5", "top-5"),
    ("top1_related", "top-1 related audio"),
    ("top1_unrelated", "top-1 unrelated audio"),
    ("r1", "R@1"),
    ("r5", "R@5"),
    ("map", "mAP"),
    ("top1_best", "top-1 best-on-val"),
)
DELTA_COLUMNS = (("top1", "Δ top-1 vs baseline [95 % CI]"), ("r1", "Δ R@1 vs baseline [95 % CI]"))
PROBE_ROWS = (("audio", "audio teacher, linear probe"), ("image", "image teacher, linear probe"))
# Test top-1 of one method from benchmark seed to benchmark seed (other videos, teachers and
# training seed): the standard deviation over 5 seeds, per method, at the settings the
# demo-* presets hold (docs/DEMO.md, "Results"); quoted under a table that has one run per
# method, which cannot separate methods.
RUN_TO_RUN_SD = "3.3-7.9"

Hits = dict[str, dict[str, float] | None]
"""Per test video, 1.0 / 0.0 under ``top1`` and ``r1`` (:func:`video_hits`)."""


@dataclass(frozen=True)
class Replicate:
    """One training of each compared method on benchmark ``seed`` with training run ``run``
    (1, 2, ...): per method label, the table's numbers (:func:`method_numbers`, NaN for a
    run that diverged) and the per-video hits of its last checkpoint (absent: diverged)."""

    seed: int
    run: int
    numbers: Mapping[str, Mapping[str, float | None]]
    hits: Mapping[str, Hits]


def cell(values: Sequence[float]) -> str:
    """A table cell: "-" without values, the value alone for one, else mean +- sample
    standard deviation (``ddof=1``) over them; runs that diverged (NaN) are counted, not
    averaged."""
    if not values:
        return "-"
    finite = [v for v in values if not math.isnan(v)]
    if len(finite) < len(values):
        if not finite:
            return "diverged"
        return f"{cell(finite)} ({len(values) - len(finite)} of {len(values)} diverged)"
    if len(values) == 1:
        return f"{values[0]:.1f}"
    return f"{statistics.mean(values):.1f} +- {statistics.stdev(values):.1f}"


def numbers_of(
    last: Mapping[str, Any] | None,
    best: Mapping[str, Any] | None,
    unrelated_audio: Collection[str],
) -> dict[str, float | None]:
    """The table's numbers of one run as fractions (None: not measured; NaN everywhere: the
    run diverged, ``last`` is None). From the last checkpoint's test evaluation ``last``:
    top-1/5, R@1/5, mAP, and the mean per-class top-1 over the classes whose soundtrack is
    (``top1_related``) / is not (``top1_unrelated``, ``unrelated_audio``) tied to them; from
    the best-on-validation checkpoint's ``best``: ``top1_best``."""
    if last is None:
        return {key: math.nan for key, _ in TABLE_COLUMNS}
    unrelated = set(unrelated_audio)
    groups: dict[bool, list[float]] = {True: [], False: []}
    for name, acc in zip(last["classes"], last["recognition"]["per_class_accuracy"]):
        if acc is not None:
            groups[name in unrelated].append(acc)
    mean = {k: (sum(v) / len(v) if v else None) for k, v in groups.items()}
    retrieval = last.get("retrieval") or {}
    recall = retrieval.get("recall") or {}
    return {
        "top1": last["recognition"]["top1"],
        "top5": last["recognition"]["top5"],
        "top1_related": mean[False],
        "top1_unrelated": mean[True],
        "r1": recall.get("1"),
        "r5": recall.get("5"),
        "map": retrieval.get("map"),
        "top1_best": best["recognition"]["top1"] if best is not None else None,
    }


def video_hits(evaluation: Mapping[str, Any]) -> Hits:
    """Per test video of an evaluation, 1.0 / 0.0: ``top1`` (the top class is the label)
    and ``r1`` (the nearest gallery video has the label; None when the evaluation has no
    retrieval or stores no ranks). Videos that could not be evaluated count as misses."""
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


@dataclass(frozen=True)
class Difference:
    """A method minus the baseline over replicates: ``interval`` over the ``units`` ("seed"
    or "run"; None when no replicate has both), each unit's mean paired difference in
    ``interval.deltas``; ``left_out``: replicates without both (a run diverged)."""

    interval: SeedInterval | None
    unit: str
    left_out: int

    def cell(self) -> str:
        """"+d [lo, hi]" in points; one unit: "+d (1 run)" / "+d (1 seed)", no interval."""
        if self.interval is None:
            return "-"
        i = self.interval
        text = f"{100 * i.mean:+.1f}"
        if i.seeds == 1:
            text += f" (1 {self.unit})"
        else:
            text += f" [{100 * i.lo:+.1f}, {100 * i.hi:+.1f}]"
        if self.left_out:
            text += f" ({self.left_out} diverged left out)"
        return text


def unit_of(replicates: Sequence[Replicate]) -> str:
    """"seed" when the replicates span several benchmark seeds, else "run"."""
    return "seed" if len({r.seed for r in replicates}) > 1 else "run"


def difference(
    replicates: Sequence[Replicate], method: str, key: str, baseline: str = BASELINE
) -> Difference:
    """``method`` minus ``baseline`` on the per-video hits ``key`` (``top1``, ``r1``): in each
    replicate the mean over its test videos of the paired differences (the same videos on
    both sides, else ValueError naming the first one only one side has); per unit (seed:
    its runs' mean; run: itself) then the mean and 95 % t interval over units."""
    unit = unit_of(replicates)
    per_unit: dict[int, list[float]] = {}
    left_out = 0
    for rep in replicates:
        mine = (rep.hits.get(method) or {}).get(key)
        base = (rep.hits.get(baseline) or {}).get(key)
        if mine is None or base is None:
            # both trained in this replicate, one without hits: it diverged
            left_out += method in rep.numbers and baseline in rep.numbers
            continue
        try:
            _, diffs = paired_differences(mine, base)
        except ValueError as err:
            raise ValueError(
                f"{method} vs {baseline} ({key}), seed {rep.seed} run {rep.run}: {err}"
            ) from err
        per_unit.setdefault(rep.seed if unit == "seed" else rep.run, []).append(
            float(np.mean(diffs))
        )
    if not per_unit:
        return Difference(None, unit, left_out)
    deltas = [statistics.mean(per_unit[u]) for u in sorted(per_unit)]
    return Difference(seed_interval(deltas), unit, left_out)


def versus_table(replicates: Sequence[Replicate], pairs: Sequence[tuple[str, str]]) -> list[str]:
    """The lines of a table with one row per ``(method, other)`` pair: ``method`` minus
    ``other`` on the per-video hits of :data:`DELTA_COLUMNS`, paired as :func:`difference`
    pairs a method with the baseline (the same seed's test videos), with the 95 % t interval
    over the units. Empty without pairs."""
    if not pairs:
        return []
    unit = unit_of(replicates)
    names = [name.replace(" vs baseline", "") for _, name in DELTA_COLUMNS]
    lines = [
        f"Paired differences between methods (points): each row's first method minus its "
        f"second, trained on the same benchmark with the same training seed, mean over the "
        f"test videos, then over the {unit}s [95 % Student t interval over the {unit}s]; an "
        "interval above 0 shows the first ahead.",
        "",
        "| methods | " + " | ".join(names) + " |",
        "|---" * (len(names) + 1) + "|",
    ]
    for method, other in pairs:
        cells = [difference(replicates, method, key, other).cell() for key, _ in DELTA_COLUMNS]
        lines.append(f"| {method} minus {other} | " + " | ".join(cells) + " |")
    return lines


def describe_replicates(replicates: Sequence[Replicate]) -> str:
    """Words for a table's title: which benchmark seeds and how many training runs."""
    seeds = sorted({r.seed for r in replicates})
    runs = len({r.run for r in replicates})
    where = f"benchmark seed {seeds[0]}" if len(seeds) == 1 else (
        f"benchmark seeds {', '.join(map(str, seeds))}"
    )
    return f"{where}, {runs} training run{'s' if runs > 1 else ''} per method" + (
        " and seed" if len(seeds) > 1 else ""
    )


def format_table(
    replicates: Sequence[Replicate],
    probes: Sequence[Mapping[str, Any] | None] = (),
    *,
    methods: Sequence[str] | None = None,
) -> str:
    """Markdown table in %: per method (``methods``, default the first replicate's order)
    its :data:`TABLE_COLUMNS` as mean +- sd over the replicates, its :func:`difference` to
    the baseline, then the teachers' linear-probe rows (``probes``: one per benchmark), and
    notes saying how each part is computed."""
    if not replicates:
        raise ValueError("a table needs at least one replicate")
    methods = list(methods or replicates[0].numbers)
    names = [name for _, name in TABLE_COLUMNS] + [name for _, name in DELTA_COLUMNS]
    lines = ["| method | " + " | ".join(names) + " |", "|---" * (len(names) + 1) + "|"]
    differences: dict[str, dict[str, Difference]] = {}
    for method in methods:
        cells = []
        for key, _ in TABLE_COLUMNS:
            values = [
                float(v)
                for r in replicates
                if (v := (r.numbers.get(method) or {}).get(key)) is not None
            ]
            cells.append(cell([100 * v for v in values]))
        if method == BASELINE:
            cells += ["-"] * len(DELTA_COLUMNS)
        else:
            differences[method] = {
                key: difference(replicates, method, key) for key, _ in DELTA_COLUMNS
            }
            cells += [differences[method][key].cell() for key, _ in DELTA_COLUMNS]
        lines.append(f"| {method} | " + " | ".join(cells) + " |")
    found = [p for p in probes if p]
    for teacher, name in PROBE_ROWS:
        results = [p[teacher] for p in found if p.get(teacher)]
        cells = [
            cell([100 * r[key] for r in results]) if key in ("top1", "top5") else "-"
            for key, _ in TABLE_COLUMNS
        ]
        lines.append(f"| {name} | " + " | ".join(cells + ["-"] * len(DELTA_COLUMNS)) + " |")
    lines += ["", *table_notes(replicates, found)]
    return "\n".join(lines)


def table_notes(replicates: Sequence[Replicate], probes: Sequence[Mapping[str, Any]]) -> list[str]:
    """The lines under a table saying what its numbers are and how the intervals are taken."""
    unit = unit_of(replicates)
    units = len({r.seed if unit == "seed" else r.run for r in replicates})
    videos = {len((r.hits.get(BASELINE) or {}).get("top1") or {}) for r in replicates}
    varies = (
        "each seed has its own videos, teachers and training seed, so the interval holds data "
        "and training noise"
        if unit == "seed"
        else "the runs share one benchmark (videos and teachers) and differ in the training "
        "seed only, so the interval holds training noise and not the spread between benchmarks"
    )
    notes = [
        f"Numbers: test split ({'/'.join(map(str, sorted(videos)))} videos), the last "
        f"epoch's checkpoint; mean +- sample sd over the {units} {unit}s. top-1 best-on-val: "
        "the checkpoint of the best validation epoch, for comparison.",
        f"Δ: each method minus the baseline trained on the same benchmark with the same "
        f"training seed, mean over the test videos, then over the {units} {unit}s, in points "
        f"[95 % Student t interval over the {unit}s]; {varies}. An interval that holds 0 "
        "shows no effect.",
    ]
    if units == 1:
        notes.append(
            f"One {unit} per method: these differences cannot separate methods. The test "
            f"top-1 of one method moves by {RUN_TO_RUN_SD} points between runs (standard "
            "deviation over 5 benchmark seeds, docs/DEMO.md); run `ccl demo --runs N` or "
            "`--seeds ...` for intervals."
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
