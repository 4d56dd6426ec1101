"""``ccl demo --compare``: the paper's comparison table (docs/METHOD.md §7) on the demo.

Every distillation method of :mod:`ccl.objectives.registry` with the audio, the image and
both teachers, against the baseline: test top-1 of the last checkpoint, mean +- sd over the
seeds, then each method's paired difference to the baseline of the same seed with its 95 %
t interval over the seeds (:mod:`ccl.demo.tables`). Every cell trains its ``demo-*``
preset, which holds the setting chosen on validation (:data:`ccl.config.DEMO_CHOSEN`,
``ccl demo --tune``), or with ``--settings reference`` the papers' weights
(``demo-reference-*``); the runs keep the presets' names, so a comparison over the folder
of ``ccl demo --seeds`` reuses its baseline and CCL runs. A method that diverges is a
result ("diverged"), not a reason to lose the other runs.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ccl.atomic import write_text_atomic
from ccl.config import Config, describe_settings, preset
from ccl.demo.jobs import run_jobs
from ccl.demo.paths import DemoPaths
from ccl.demo.pipeline import (
    DemoScale,
    demo_scale,
    prepare_seeds,
    train_and_evaluate,
    train_unless_diverged,
)
from ccl.demo.tables import Hits, Replicate, cell, difference, video_hits
from ccl.objectives import registry
from ccl.objectives.registry import BASELINE, CCL
from ccl.report import build_report

COMPARED = (CCL, *registry.KD_METHODS)
TEACHER_SETTINGS = {short.upper(): t for short, t in registry.TEACHER_SETS.items()}  # A, I, AI
METHOD_NAMES = {m: registry.METHODS[m].label for m in COMPARED}


@dataclass(frozen=True)
class CompareSpec:
    """One training of the comparison: ``method`` (the baseline or one of :data:`COMPARED`)
    with the teachers of ``column`` (a :data:`TEACHER_SETTINGS` key) on one seed's folder."""

    method: str
    column: str
    seed: int
    paths: DemoPaths
    scale: DemoScale
    overrides: tuple[str, ...] = ()


@dataclass(frozen=True)
class CompareResult:
    """One training's cell: test top-1 of its last checkpoint (NaN: it diverged), its run
    folder and the per-video hits of that evaluation (None: diverged)."""

    method: str
    column: str
    seed: int
    top1: float
    run_dir: Path
    hits: Hits | None


def cell_run(method: str, column: str) -> str:
    """The run name of a cell (its preset's suffix): ``baseline``, ``ccl-a``, ``pkt-ai``."""
    return BASELINE if method == BASELINE else f"{method}-{column.lower()}"


def compare_config(spec: CompareSpec) -> Config:
    """The training config of one cell: the demo's preset of that run (``demo-pkt-ai``:
    the setting chosen on validation; ``demo-reference-pkt-ai`` with ``--settings
    reference``) in its setting's run folder, so that with the same --out a comparison
    reuses the runs of ``ccl demo --seeds ...`` and ``--tune`` instead of repeating them."""
    prefix = demo_scale(spec.scale).presets
    cfg = preset(f"{prefix}-{cell_run(spec.method, spec.column)}")
    cfg.train.out_dir = str(spec.paths.runs)
    cfg.train.seed = spec.seed
    return cfg


def compare_run(spec: CompareSpec) -> CompareResult:
    """Train and test one cell of the comparison (also the body of a worker job)."""
    cfg = compare_config(spec)
    label = f"{cfg.train.name} (seed {spec.seed})"
    trained = train_unless_diverged(
        spec.paths.runs / cfg.train.name,
        label,
        lambda: train_and_evaluate(
            cfg,
            spec.paths,
            label=label,
            scale=spec.scale,
            overrides=spec.overrides,
            checkpoints=("last",),
            retrieval=(),
        ),
    )
    hits = None if trained.diverged else video_hits(trained.evaluations["last"])
    return CompareResult(
        spec.method, spec.column, spec.seed, trained.test_top1(), trained.run_dir, hits
    )


def run_compare(
    out: str | Path,
    *,
    seeds: tuple[int, ...] = (1,),
    scale: str | DemoScale = "demo",
    overrides: list[str] | None = None,
    methods: tuple[str, ...] = COMPARED,
    jobs: int = 1,
) -> str:
    """The comparison on the demo: every method with the audio, image and both teachers,
    test top-1 of the last checkpoint, mean +- sd over ``seeds`` (each seed
    its own benchmark, teachers and runs under ``out/seed_S``). ``jobs`` > 1 prepares the
    seeds and runs the trainings in that many processes at once (each with its share of
    the CPU threads; the runs are the same as one at a time, only their output
    interleaves). Writes ``out/compare_table.md`` and ``out/compare.json``; returns the
    table."""
    out = Path(out)
    scale = demo_scale(scale)
    jobs = max(1, int(jobs))
    prepared = prepare_seeds(out, seeds, scale, jobs)
    specs = [
        CompareSpec(method, column, seed, prepared[seed].paths, scale, tuple(overrides or ()))
        for seed in seeds
        for method in (BASELINE, *methods)
        for column in TEACHER_SETTINGS
        if method != BASELINE or column == "A"  # one baseline serves every column
    ]
    done = run_jobs(compare_run, specs, jobs)
    results: dict[tuple[str, str], list[float]] = {}
    hits: dict[int, dict[str, Any]] = {seed: {} for seed in seeds}  # per seed, per run
    for run in done:
        for col in TEACHER_SETTINGS if run.method == BASELINE else (run.column,):
            results.setdefault((run.method, col), []).append(run.top1)
        if run.hits is not None:
            key = BASELINE if run.method == BASELINE else f"{run.method}/{run.column}"
            hits[run.seed][key] = run.hits
    for seed in seeds:
        # diverged runs (NaN) have no checkpoint to report
        runs = [run.run_dir for run in done if run.seed == seed and not math.isnan(run.top1)]
        build_report(runs, prepared[seed].paths.report)
    table = compare_table(results, (BASELINE, *methods), seeds, [hits[s] for s in seeds])
    runs_compared = [BASELINE] + [cell_run(m, c) for m in methods for c in TEACHER_SETTINGS]
    table = f"{describe_settings(scale.settings, runs_compared)}\n\n{table}"
    write_text_atomic(out / "compare_table.md", table + "\n")
    compared = {f"{m}/{c}": v for (m, c), v in results.items()}
    write_text_atomic(out / "compare.json", json.dumps(compared, indent=1) + "\n")
    print(table)
    return table


def compare_table(
    results: dict[tuple[str, str], list[float]],
    methods: tuple[str, ...],
    seeds: tuple[int, ...],
    hits: list[dict[str, Any]] | None = None,
) -> str:
    """Rows: methods; columns: A, I, AI (the paper's layout); cells: mean +- sample sd of
    test top-1 in % over the seeds (a single seed shows the value alone). With ``hits`` (per
    seed, :func:`ccl.demo.tables.video_hits` of each run keyed "baseline" or
    "<method>/<column>"), a second table in the same layout: each method's paired difference
    to the baseline of the same seed, mean over the seeds with its 95 % t interval over them
    (:func:`ccl.demo.tables.difference`); and a third: CCL minus each other method of
    ``methods`` in each column, paired the same way."""

    def name(method: str) -> str:
        return "baseline (no distillation)" if method == BASELINE else METHOD_NAMES[method]

    head = ["| method | A | I | AI |", "|---|---|---|---|"]
    lines = [
        f"Test top-1 (%), last checkpoint, seeds {', '.join(map(str, seeds))}",
        "",
        *head,
    ]
    for method in methods:
        cells = []
        for column in TEACHER_SETTINGS:
            cells.append(cell([100 * v for v in results.get((method, column), [])]))
        lines.append(f"| {name(method)} | " + " | ".join(cells) + " |")
    if not hits:
        return "\n".join(lines)
    replicates = [
        Replicate(seed, 1, {key: {} for key in per_seed}, per_seed)
        for seed, per_seed in zip(seeds, hits)
    ]
    one = len(seeds) == 1
    lines += [
        "",
        "Δ test top-1 vs the baseline of the same seed (points): mean over the seeds of the "
        "mean paired difference over the seed's test videos"
        + (
            "; one seed: no interval, it cannot separate methods (docs/DEMO.md, "
            "\"Training noise\")"
            if one
            else " [95 % Student t interval over the seeds]"
        )
        + "; a seed whose run diverged is left out",
        "",
        *head,
    ]
    for method in methods:
        if method == BASELINE:
            continue
        cells = []
        for column in TEACHER_SETTINGS:
            key = f"{method}/{column}"
            diverged = sum(map(math.isnan, results.get((method, column), [])))
            found = difference(replicates, key, "top1")
            if found.interval is None:
                cells.append("diverged" if diverged else "-")
            else:
                cells.append(found.cell() + (f" ({diverged} diverged)" if diverged else ""))
        lines.append(f"| {name(method)} | " + " | ".join(cells) + " |")
    others = [m for m in methods if m not in (BASELINE, CCL)] if CCL in methods else []
    if others:
        lines += [
            "",
            "Δ test top-1, CCL minus each other distillation method with the same teachers "
            "(points): paired on the same seed's test videos as above"
            + ("" if one else " [95 % Student t interval over the seeds]")
            + "; an interval above 0 shows CCL ahead",
            "",
            *head,
        ]
        for method in others:
            cells = [
                difference(replicates, f"{CCL}/{c}", "top1", f"{method}/{c}").cell()
                for c in TEACHER_SETTINGS
            ]
            lines.append(f"| CCL minus {name(method)} | " + " | ".join(cells) + " |")
    return "\n".join(lines)
