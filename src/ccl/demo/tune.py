"""``ccl demo --tune``: CCL's loss weight and temperature chosen on the demo's validation groups.

The demo trains CCL with the reference's settings (loss weight 1, or 0.5 with both teachers;
temperature 0.5 for the audio teacher, 0.1 for the image teacher; docs/METHOD.md). On the
demo those terms pull the student harder than its cross-entropy does (docs/DEMO.md, "Why the
distilled students fit worse"). Here each CCL method is trained with the reference's setting
and a few weaker ones (:data:`CANDIDATES`) on every seed; one setting per method is chosen by
the mean over the seeds of the last epoch's validation top-1 (the demo reports the last
checkpoint), and only the chosen runs and the baseline are then evaluated on the test
groups, in the demo's table with paired differences to the baseline. The test groups play
no part in the choice: the other candidates are never evaluated on them. A candidate that
diverges on a seed is never chosen; its run folder keeps a ``DIVERGED`` file, as in the
comparison, so a rerun does not train it again.

Writes ``out/tune_validation.md`` (every candidate's validation numbers and the choice),
``out/tuned_table.md`` (the test table) and ``out/tuning.json``; the runs live under
``out/seed_S/runs`` next to the demo's (the reference candidate *is* the demo's run).
"""

from __future__ import annotations

import json
import math
import statistics
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ccl.atomic import write_text_atomic
from ccl.config import Config
from ccl.demo.jobs import run_jobs
from ccl.demo.pipeline import (
    DemoScale,
    RunSpec,
    demo_config,
    demo_scale,
    prepare_seeds,
    report_runs,
    teacher_probes,
    train_and_evaluate,
    train_unless_diverged,
)
from ccl.demo.tables import Replicate, format_table, numbers_of, video_hits
from ccl.objectives.registry import BASELINE


@dataclass(frozen=True)
class Candidate:
    """One setting of a CCL method's objective: a short tag for run names, the overrides,
    and the words for tables."""

    tag: str
    overrides: tuple[str, ...]
    what: str


REFERENCE = Candidate("reference", (), "the reference's setting")
CANDIDATES: dict[str, tuple[Candidate, ...]] = {
    # the contrastive terms' weight a quarter of the reference's (1 with one teacher, 0.5
    # with both); for the image teacher also its temperature at the audio teacher's 0.5,
    # which softens the contrastive pull without changing the weight of the divergence term
    "ccl-a": (REFERENCE, Candidate("w0.25", ("objective.loss_weight=0.25",), "loss weight 0.25")),
    "ccl-i": (
        REFERENCE,
        Candidate("w0.25", ("objective.loss_weight=0.25",), "loss weight 0.25"),
        Candidate("t0.5", ("objective.image_temperature=0.5",), "image temperature 0.5"),
    ),
    "ccl-ai": (
        REFERENCE,
        Candidate("w0.125", ("objective.loss_weight=0.125",), "loss weight 0.125"),
        Candidate("t0.5", ("objective.image_temperature=0.5",), "image temperature 0.5"),
    ),
}


def run_name(prefix: str, method: str, candidate: Candidate) -> str:
    """The run folder's name: the demo's own for the reference setting (its run is reused)."""
    base = f"{prefix}-{method}"
    return base if candidate == REFERENCE else f"{base}-{candidate.tag}"


def choose(validation: dict[str, list[float]]) -> str:
    """The candidate (tag) with the highest mean over seeds of its last validation top-1; a
    tie goes to the earlier one (the reference's setting comes first). A candidate that
    diverged on any seed (NaN) is not chosen."""
    finite = {tag: v for tag, v in validation.items() if not any(map(math.isnan, v))}
    means = {tag: statistics.mean(v) for tag, v in finite.items()}
    if not means:
        raise ValueError(f"every candidate diverged on some seed: {sorted(validation)}")
    order = list(validation)
    return max(means, key=lambda tag: (means[tag], -order.index(tag)))


@dataclass(frozen=True)
class CandidateSpec:
    """One training of the tuning: a CCL method (or the baseline) of the demo with one
    candidate setting on one seed; ``test``: evaluate it on the test groups too."""

    run: RunSpec
    candidate: Candidate
    test: bool


@dataclass(frozen=True)
class CandidateResult:
    """One training's outcome: its last epoch's validation top-1 (NaN: diverged), its run
    folder and, when it was tested, the test evaluations of its checkpoints (``last``,
    ``best``; empty when not tested or diverged)."""

    method: str
    tag: str
    seed: int
    val_top1: float
    run_dir: Path
    evaluations: dict[str, dict[str, Any]]


def candidate_config(spec: CandidateSpec) -> Config:
    """The demo's config of the method, in the candidate's run folder (:func:`run_name`);
    the candidate's overrides are applied by :func:`train_candidate`."""
    cfg = demo_config(spec.run)
    cfg.train.name = run_name(demo_scale(spec.run.scale).presets, spec.run.method, spec.candidate)
    return cfg


def train_candidate(spec: CandidateSpec) -> CandidateResult:
    """Train one candidate (also the body of a worker job); evaluate it on the test groups
    only if ``spec.test``. A setting that diverges is a result of the tuning (never chosen),
    not a reason to lose the other runs."""
    run, candidate = spec.run, spec.candidate
    cfg = candidate_config(spec)
    label = f"{cfg.train.name} (seed {run.seed})"
    trained = train_unless_diverged(
        run.paths.runs / cfg.train.name,
        label,
        lambda: train_and_evaluate(
            cfg,
            run.paths,
            label=label,
            scale=run.scale,
            overrides=[*candidate.overrides, *run.overrides],
            checkpoints=("last", "best") if spec.test else (),
        ),
        tag="tune",
    )
    return CandidateResult(
        run.method,
        candidate.tag,
        run.seed,
        trained.last_validation_top1(),
        trained.run_dir,
        trained.evaluations,
    )


def run_tuning(
    out: str | Path,
    *,
    seeds: tuple[int, ...] = (1,),
    scale: str | DemoScale = "demo",
    overrides: list[str] | None = None,
    candidates: dict[str, tuple[Candidate, ...]] | None = None,
    jobs: int = 1,
) -> str:
    """Train every candidate of every CCL method (and the baseline) on each seed, choose one
    per method on validation (:func:`choose`), evaluate the chosen runs and the baseline on
    the test groups; returns the test table. ``jobs`` trainings run at once in separate
    processes, each with its share of the CPU threads."""
    out = Path(out)
    scale = demo_scale(scale)
    candidates = CANDIDATES if candidates is None else candidates
    jobs = max(1, int(jobs))
    prepared = prepare_seeds(out, seeds, scale, jobs)
    user = tuple(overrides or ())

    def spec(seed: int, method: str, candidate: Candidate, test: bool) -> CandidateSpec:
        run = RunSpec(method, seed, prepared[seed].paths, scale, user)
        return CandidateSpec(run, candidate, test)

    def run_all(what: str, specs: list[CandidateSpec]) -> list[CandidateResult]:
        at_once = f", {jobs} at once (progress in {out}/seed_S/logs/<run>.log)" if jobs > 1 else ""
        print(f"[tune] {what}: {len(specs)} runs{at_once}", flush=True)
        logs = [s.run.paths.log(candidate_config(s).train.name) for s in specs]
        return run_jobs(train_candidate, specs, jobs, logs=logs)

    # 1. train: the baseline and every candidate, validation only
    trained = run_all(
        "train the baseline and every candidate (validation only)",
        [spec(seed, BASELINE, REFERENCE, False) for seed in seeds]
        + [
            spec(seed, method, candidate, False)
            for seed in seeds
            for method, options in candidates.items()
            for candidate in options
        ],
    )
    validation: dict[str, dict[str, list[float]]] = {}
    for result in trained:
        validation.setdefault(result.method, {}).setdefault(result.tag, []).append(
            result.val_top1
        )
    # 2. choose on validation
    chosen = {
        method: next(c for c in options if c.tag == choose(validation[method]))
        for method, options in candidates.items()
    }
    # 3. only then: the chosen runs and the baseline on the test groups
    tested = run_all(
        "evaluate the baseline and the chosen runs on the test groups",
        [
            spec(seed, method, candidate, True)
            for seed in seeds
            for method, candidate in [(BASELINE, REFERENCE), *chosen.items()]
        ],
    )
    names = {m: f"{m.upper()}, {c.what}" for m, c in chosen.items()}  # table labels
    replicates, probes = [], []
    for seed in seeds:
        here = prepared[seed]
        runs = [result for result in tested if result.seed == seed]
        report_runs(
            [r.run_dir for r in runs if r.evaluations], here.paths.root / "tuned_report"
        )
        numbers, hits = {}, {}
        for r in runs:
            label = names.get(r.method, r.method)
            last, best = r.evaluations.get("last"), r.evaluations.get("best")
            numbers[label] = numbers_of(last, best, here.unrelated_audio_classes)
            if last is not None:
                hits[label] = video_hits(last)
        replicates.append(Replicate(seed, 1, numbers, hits))
        probes.append(teacher_probes(here.paths, scale=scale, overrides=overrides))
    listed = ", ".join(map(str, seeds))
    table = (
        f"Test split, seeds {listed}; each CCL method with its setting chosen on the "
        "validation groups (tune_validation.md)\n\n" + format_table(replicates, probes)
    )
    validation_table = _validation_table(validation, candidates, chosen, seeds)
    write_text_atomic(out / "tuned_table.md", table + "\n")
    write_text_atomic(out / "tune_validation.md", validation_table)
    record = {
        "seeds": list(seeds),
        "validation_last_top1": validation,
        "chosen": {m: {"tag": c.tag, "overrides": list(c.overrides)} for m, c in chosen.items()},
        "test": {str(r.seed): r.numbers for r in replicates},
    }
    write_text_atomic(out / "tuning.json", json.dumps(record, indent=1) + "\n")
    print(validation_table)
    print(table)
    return table


def _validation_table(
    validation: dict[str, dict[str, list[float]]],
    candidates: dict[str, tuple[Candidate, ...]],
    chosen: dict[str, Candidate],
    seeds: tuple[int, ...],
) -> str:
    """Markdown: per method and candidate, the last epoch's validation top-1 (%) per seed and
    their mean, the chosen candidate marked; the baseline's row for scale."""
    lines = [
        "Last epoch's validation top-1 (%) per seed (the demo reports the last checkpoint); "
        "per CCL method the candidate with the highest mean is chosen (a tie: the earlier)",
        "",
        "| run | setting | " + " | ".join(f"seed {s}" for s in seeds) + " | mean | chosen |",
        "|---|---|" + "---|" * (len(seeds) + 2),
    ]

    def row(name: str, what: str, values: list[float], mark: str) -> str:
        cells = [
            "diverged" if math.isnan(v) else f"{100 * v:.1f}"
            for v in [*values, statistics.mean(values)]
        ]
        return f"| {name} | {what} | " + " | ".join(cells) + f" | {mark} |"

    lines.append(row(BASELINE, "-", validation[BASELINE][REFERENCE.tag], ""))
    for method, options in candidates.items():
        for c in options:
            mark = "yes" if chosen[method] == c else ""
            what = f"{c.what} ({' '.join(c.overrides) or 'as in the demo'})"
            lines.append(row(method.upper(), what, validation[method][c.tag], mark))
    return "\n".join(lines) + "\n"
