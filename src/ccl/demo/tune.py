"""``ccl demo --tune``: every method's setting chosen on the demo's validation groups, with
the same budget for each.

Every run of the comparison (:data:`ccl.objectives.registry.COMPARISON_RUNS`: the baseline,
CCL with each teacher setting, each other distillation method with each) has the same
number of candidate settings (:data:`CANDIDATES`, three each): the first is the reference's
(the ``<presets>-reference-*`` presets: the demo's optimiser, the papers' loss weights and
temperatures), the others vary the method's own knobs: the baseline's learning rate and
weight decay, CCL's loss weight and image temperature, each other method's loss weight
from its paper's value down to where its gradient is of the cross-entropy's order
(docs/DEMO.md). Each candidate is trained on every seed; one per run is chosen by the mean
over the seeds of the last epoch's validation top-1 (the demo reports the last checkpoint,
:func:`choose`), and only the chosen runs are then evaluated on the test groups, in the
demo's table with paired differences to the chosen baseline. The test groups play no part
in the choice: the other candidates are never evaluated on them. A candidate that diverges
on a seed is never chosen; its run folder keeps a ``DIVERGED`` file, as in the comparison,
so a rerun does not train it again.

Writes ``out/tune_validation.md`` (every candidate's validation numbers, the choice, and
whether the ``demo-*`` presets hold it: :data:`ccl.config.DEMO_CHOSEN`),
``out/tuned_table.md`` (the test table) and ``out/tuning.json``. The runs live under
``out/seed_S/runs``, each in its setting's folder (:func:`ccl.config.demo_run_name`): the
reference candidate in ``<presets>-<run>``, the others in ``<presets>-<run>-<tag>``. A
``demo-*`` preset with the same setting trains in the same folder, so over the same
``--out`` the tuning, ``ccl demo --seeds`` and ``--compare`` reuse each other's runs.
"""

from __future__ import annotations

import inspect
import json
import math
import statistics
import textwrap
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ccl.atomic import write_text_atomic
from ccl.config import DEMO_CHOSEN, Config, demo_run_name, preset, setting_tag
from ccl.demo.jobs import run_jobs
from ccl.demo.pipeline import (
    DEMO_SCALES,
    DemoScale,
    RunSpec,
    demo_scale,
    prepare_seeds,
    report_runs,
    teacher_probes,
    train_and_evaluate,
    train_unless_diverged,
)
from ccl.demo.tables import Replicate, format_table, numbers_of, versus_table, video_hits
from ccl.objectives.kd import KD_LOSSES
from ccl.objectives.registry import BASELINE, CCL, COMPARISON_RUNS, KD_METHODS, METHODS


@dataclass(frozen=True)
class Candidate:
    """One setting of a run's objective or optimiser: the overrides (on top of the
    reference's setting) and the words for tables. Its tag (:func:`ccl.config.setting_tag`)
    names its run folder, as the ``demo-*`` presets name theirs: a candidate and a preset
    with the same setting share one run."""

    overrides: tuple[str, ...]
    what: str

    @property
    def tag(self) -> str:
        """``reference``, ``w0.25``, ``lr0.002``, ...: short, unique within a run's set."""
        return setting_tag(self.overrides)


REFERENCE = Candidate((), "the reference's setting")


def _weight(value: float) -> Candidate:
    return Candidate((f"objective.loss_weight={value:g}",), f"loss weight {value:g}")


def _image_temperature(value: float) -> Candidate:
    return Candidate((f"objective.image_temperature={value:g}",), f"image temperature {value:g}")


# Distillation gradient / cross-entropy gradient on the student in epoch 10 of the demo, at
# the paper's weights (docs/results/2026-12-04-demo-compare.md, "Why FitNet, PKT and RKD
# collapse"): FitNet 8-72, PKT 2-9, RKD 3-5, CMC 0.9-1.9, CRD 0.1-0.5, CC < 0.02. Each
# method's weight goes from its paper's towards where that ratio is about 1: FitNet's down
# two decades (0.08-0.7), PKT's and RKD's one (0.2-0.9, 0.3-0.5); CMC and CRD, already of
# the cross-entropy's order, down as far (does less pull fit better in 10 epochs, as it did
# for CCL?); CC's gradient is far below the cross-entropy's, so lowering its weight would
# only bring it nearer the baseline: it goes up instead, to about 0.2 and 1.
KD_FACTORS: dict[str, tuple[float, float]] = {"fitnet": (0.1, 0.01), "cc": (10.0, 50.0)}
KD_DEFAULT_FACTORS = (0.3, 0.1)


def paper_weight(method: str) -> float:
    """The weight a distillation method's loss module uses by default (its paper's)."""
    return float(inspect.signature(KD_LOSSES[method]).parameters["weight"].default)


def _kd_candidates(method: str) -> tuple[Candidate, ...]:
    paper = paper_weight(method)
    weights = [float(f"{paper * f:.3g}") for f in KD_FACTORS.get(method, KD_DEFAULT_FACTORS)]
    return (
        Candidate((), f"its paper's weight {paper:g}"),
        *(Candidate((f"objective.kd_weight={w:g}",), f"weight {w:g}") for w in weights),
    )


CANDIDATES: dict[str, tuple[Candidate, ...]] = {
    # the demo's AdamW (lr 1e-3, weight decay 1e-4); the validation curves still climb 2-6
    # points an epoch at 10 epochs (docs/DEMO.md, "Training budget"), so a higher learning
    # rate rather than a lower one; and AdamW's usual decoupled weight decay (0.05), the
    # other knob of its optimiser
    BASELINE: (
        Candidate((), "the demo's optimiser"),
        Candidate(("optim.lr=0.002", "optim.head_lr=0.002"), "learning rate 2e-3"),
        Candidate(("optim.weight_decay=0.05",), "weight decay 0.05"),
    ),
    # the reference's loss weight (1 with one teacher, 0.5 with both) and temperatures (0.5
    # audio, 0.1 image) pull the demo student harder than its cross-entropy (docs/DEMO.md,
    # "Why the distilled students fit worse"): weaker ones, and for the image teacher its
    # temperature at the audio teacher's 0.5, which softens the contrastive pull without
    # changing the weight of the divergence term
    f"{CCL}-a": (REFERENCE, _weight(0.25), _weight(0.0625)),
    f"{CCL}-i": (REFERENCE, _weight(0.25), _image_temperature(0.5)),
    f"{CCL}-ai": (REFERENCE, _weight(0.125), _image_temperature(0.5)),
    **{
        run: _kd_candidates(method)
        for run, (method, _) in COMPARISON_RUNS.items()
        if method in KD_METHODS
    },
}
"""The candidate settings of every run of the comparison: the same number for each, the
reference's first."""


def expand_runs(names: Iterable[str]) -> tuple[str, ...]:
    """Run names to tune, in :data:`CANDIDATES` order, from run names (``ccl-a``,
    ``pkt-ai``) or method names (``ccl``, ``pkt``: every teacher setting); the baseline is
    always among them (its chosen run is the table's reference)."""
    wanted = {BASELINE}
    for name in names:
        found = [run for run, (method, _) in COMPARISON_RUNS.items() if name in (run, method)]
        if not found:
            raise ValueError(
                f"unknown run or method {name!r}; choose from {', '.join(COMPARISON_RUNS)} "
                f"or {', '.join(METHODS)}"
            )
        wanted.update(found)
    return tuple(run for run in CANDIDATES if run in wanted)


def run_name(prefix: str, run: str, candidate: Candidate) -> str:
    """The candidate's run folder (:func:`ccl.config.demo_run_name`): ``<prefix>-<run>`` for
    the reference's setting, else ``<prefix>-<run>-<tag>``; the ``demo-*`` preset holding
    the same setting trains in the same folder, so the tuning and the demo share the run."""
    return demo_run_name(prefix, run, candidate.overrides)


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
    """One training of the tuning: a run of the comparison (``run.method``: a
    :data:`CANDIDATES` key) with one candidate setting on one seed; ``test``: evaluate it on
    the test groups too."""

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
    """The run's reference preset (``<presets>-reference-<run>``) on the candidate's seed, in its
    run folder (:func:`run_name`); the candidate's overrides are applied by
    :func:`train_candidate`."""
    run, scale = spec.run, demo_scale(spec.run.scale)
    cfg = preset(f"{scale.reference_presets}-{run.method}")
    cfg.train.out_dir = str(run.paths.runs)
    cfg.train.seed = run.seed
    cfg.train.name = run_name(scale.presets.removesuffix("-reference"), run.method, spec.candidate)
    return cfg


def label_of(run: str) -> str:
    """A run's name in tables: baseline, CCL-A, FitNet-AI."""
    if run == BASELINE:
        return BASELINE
    method, _, column = run.rpartition("-")
    return f"{METHODS[method].label}-{column.upper()}"


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


def ccl_pairs(runs: Iterable[str]) -> list[tuple[str, str]]:
    """(CCL's run, other method's run) for every other distillation run of ``runs`` whose
    teachers CCL also has there: ``("ccl-ai", "fitnet-ai")``."""
    runs = list(runs)
    ccl_by_teachers = {COMPARISON_RUNS[r][1]: r for r in runs if COMPARISON_RUNS[r][0] == CCL}
    pairs = []
    for run in runs:
        method, teachers = COMPARISON_RUNS[run]
        if method in KD_METHODS and teachers in ccl_by_teachers:
            pairs.append((ccl_by_teachers[teachers], run))
    return pairs


def run_tuning(
    out: str | Path,
    *,
    seeds: tuple[int, ...] = (1,),
    scale: str | DemoScale = "demo",
    overrides: list[str] | None = None,
    runs: Iterable[str] | None = None,
    candidates: dict[str, tuple[Candidate, ...]] | None = None,
    jobs: int = 1,
) -> str:
    """Train every candidate of each of ``runs`` (:func:`expand_runs`; default every run of
    :data:`CANDIDATES`, the baseline always) on each seed, choose one per run on validation
    (:func:`choose`), evaluate only the chosen runs on the test groups; returns the test
    table. ``jobs`` trainings run at once in separate processes, each with its share of the
    CPU threads."""
    out = Path(out)
    scale = demo_scale(scale)
    candidates = dict(CANDIDATES if candidates is None else candidates)
    tuned = expand_runs(runs if runs is not None else candidates)
    missing = [run for run in tuned if run not in candidates]
    if missing:
        raise ValueError(f"no candidates for {', '.join(missing)}")
    candidates = {run: candidates[run] for run in tuned}
    jobs = max(1, int(jobs))
    prepared = prepare_seeds(out, seeds, scale, jobs)
    user = tuple(overrides or ())

    def spec(seed: int, run: str, candidate: Candidate, test: bool) -> CandidateSpec:
        return CandidateSpec(RunSpec(run, seed, prepared[seed].paths, scale, user), candidate, test)

    def run_all(what: str, specs: list[CandidateSpec]) -> list[CandidateResult]:
        at_once = f", {jobs} at once (progress in {out}/seed_S/logs/<run>.log)" if jobs > 1 else ""
        print(f"[tune] {what}: {len(specs)} runs{at_once}", flush=True)
        logs = [s.run.paths.log(candidate_config(s).train.name) for s in specs]
        return run_jobs(train_candidate, specs, jobs, logs=logs)

    # 1. train every candidate, validation only
    trained = run_all(
        "train every candidate (validation only)",
        [
            spec(seed, run, candidate, False)
            for seed in seeds
            for run, options in candidates.items()
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
        run: next(c for c in options if c.tag == choose(validation[run]))
        for run, options in candidates.items()
    }
    # 3. only then: the chosen runs on the test groups
    tested = run_all(
        "evaluate the chosen runs on the test groups",
        [spec(seed, run, candidate, True) for seed in seeds for run, candidate in chosen.items()],
    )
    names = {run: label_of(run) for run in chosen}  # table labels; the baseline's is "baseline"
    replicates, probes = [], []
    for seed in seeds:
        here = prepared[seed]
        runs_here = [result for result in tested if result.seed == seed]
        report_runs(
            [r.run_dir for r in runs_here if r.evaluations], here.paths.root / "tuned_report"
        )
        numbers, hits = {}, {}
        for r in runs_here:
            last, best = r.evaluations.get("last"), r.evaluations.get("best")
            numbers[names[r.method]] = numbers_of(last, best, here.unrelated_audio_classes)
            if last is not None:
                hits[names[r.method]] = video_hits(last)
        replicates.append(Replicate(seed, 1, numbers, hits))
        probes.append(teacher_probes(here.paths, scale=scale, overrides=overrides))
    listed = ", ".join(map(str, seeds))
    settings = "; ".join(f"{names[run]}: {c.what}" for run, c in chosen.items())
    versus = versus_table(replicates, [(names[a], names[b]) for a, b in ccl_pairs(chosen)])
    table = (
        f"Test split, seeds {listed}; every run with its setting chosen on the validation "
        f"groups (tune_validation.md): {settings}\n\n" + format_table(replicates, probes)
    )
    if versus:  # the claim "CCL above every other distillation method", tested directly
        table += "\n\n" + "\n".join(versus)
    command = tune_command(seeds, scale, candidates, overrides)
    means = {run: _means(values) for run, values in validation.items()}
    presets = presets_section(chosen, means, command)
    validation_table = _validation_table(validation, candidates, chosen, seeds)
    write_text_atomic(out / "tuned_table.md", table + "\n")
    write_text_atomic(out / "tune_validation.md", f"{validation_table}\n{presets}")
    record = {
        "command": command,
        "seeds": list(seeds),
        "runs": list(candidates),
        "candidates": {
            run: [{"tag": c.tag, "overrides": list(c.overrides)} for c in options]
            for run, options in candidates.items()
        },
        "validation_last_top1": validation,
        "chosen": {m: {"tag": c.tag, "overrides": list(c.overrides)} for m, c in chosen.items()},
        "presets_hold": {run: preset_holds(run, c) for run, c in chosen.items()},
        "test": {str(r.seed): r.numbers for r in replicates},
    }
    write_text_atomic(out / "tuning.json", json.dumps(record, indent=1) + "\n")
    # the presets' state last: what a tuning leaves to do
    print(validation_table)
    print(table)
    print()
    print(presets, end="")
    return table


def _means(values: dict[str, list[float]]) -> dict[str, float]:
    """Per candidate tag, the mean over seeds (NaN: diverged on a seed)."""
    return {tag: statistics.mean(v) for tag, v in values.items()}


def tune_command(
    seeds: Iterable[int],
    scale: DemoScale,
    tuned: Iterable[str],
    overrides: Iterable[str] | None = None,
) -> str:
    """The ``ccl demo --tune`` command line of a tuning (without ``--out``), for the record
    beside each :data:`ccl.config.DEMO_CHOSEN` entry it chose."""
    words = ["ccl demo --tune"]
    if scale.synth == "quick":
        words.append("--quick")
    elif scale.synth == "gpu":
        words.append("--device cuda")
    if scale.soundtracks != DEMO_SCALES[scale.synth].soundtracks:
        words.append(f"--soundtracks {scale.soundtracks}")
    words.append("--seeds " + " ".join(map(str, seeds)))
    tuned = list(tuned)
    if set(tuned) != set(CANDIDATES):
        words.append("--methods " + " ".join(tuned))
    words += list(overrides or ())
    return " ".join(words)


def preset_holds(run: str, chosen: Candidate) -> bool:
    """Whether the ``demo-<run>`` preset carries the chosen candidate's overrides
    (:data:`ccl.config.DEMO_CHOSEN`; none there: the reference's setting)."""
    return tuple(DEMO_CHOSEN.get(run, ())) == tuple(chosen.overrides)


def preset_line(run: str, chosen: Candidate) -> str:
    """One line: does the ``demo-<run>`` preset hold the choice, and if not, what to write."""
    if preset_holds(run, chosen):
        return f"- {run}: the preset holds the choice, {chosen.tag}"
    held = setting_tag(DEMO_CHOSEN.get(run, ()))
    return (
        f"- {run}: the preset holds {held}, the tuning chose {chosen.tag}: update "
        f"DEMO_CHOSEN[{run!r}] to {tuple(chosen.overrides)!r}"
    )


def chosen_entry(run: str, chosen: Candidate, means: dict[str, float], command: str) -> str:
    """The :data:`ccl.config.DEMO_CHOSEN` entry of a choice as it is written in
    src/ccl/config.py: the command and every candidate's validation mean (%) in a comment
    (wrapped at the project's 100 columns, never between a tag and its value), then the
    entry."""
    # a no-break space (which textwrap does not split on) holds each tag to its value
    values = ", ".join(
        f"{tag}\N{NO-BREAK SPACE}" + ("diverged" if math.isnan(mean) else f"{100 * mean:.1f}")
        for tag, mean in means.items()
    )
    comment = textwrap.wrap(
        f"{command}: last validation top-1, mean over seeds: {values}",
        width=100 - len("    # "),
        break_on_hyphens=False,
    )
    comment = [line.replace("\N{NO-BREAK SPACE}", " ") for line in comment]
    # written as ruff formats it: double quotes
    value = repr(tuple(chosen.overrides)).replace("'", '"')
    return "\n".join([*(f"    # {line}" for line in comment), f'    "{run}": {value},'])


def presets_section(
    chosen: dict[str, Candidate], means: dict[str, dict[str, float]], command: str
) -> str:
    """Markdown: per tuned run whether its ``demo-*`` preset holds the choice
    (:func:`preset_line`), then the DEMO_CHOSEN entries of the choice to paste."""
    lines = ["The `demo-*` presets (DEMO_CHOSEN in src/ccl/config.py) against this choice:", ""]
    lines += [preset_line(run, c) for run, c in chosen.items()]
    held = all(preset_holds(run, c) for run, c in chosen.items())
    lines += [
        "",
        "The presets hold the choice; its entries, with their record:"
        if held
        else "The entries of this choice, each to replace its run's line in DEMO_CHOSEN:",
        "",
        "```python",
        *(chosen_entry(run, c, means[run], command) for run, c in chosen.items()),
        "```",
    ]
    return "\n".join(lines) + "\n"


def _validation_table(
    validation: dict[str, dict[str, list[float]]],
    candidates: dict[str, tuple[Candidate, ...]],
    chosen: dict[str, Candidate],
    seeds: tuple[int, ...],
) -> str:
    """Markdown: per run and candidate, the last epoch's validation top-1 (%) per seed and
    their mean, the chosen candidate marked."""
    lines = [
        "Last epoch's validation top-1 (%) per seed (the demo reports the last checkpoint); "
        "per run the candidate with the highest mean is chosen (a tie: the earlier)",
        "",
        "| run | setting | " + " | ".join(f"seed {s}" for s in seeds) + " | mean | chosen |",
        "|---|---|" + "---|" * (len(seeds) + 2),
    ]
    for run, options in candidates.items():
        for c in options:
            values = validation[run][c.tag]
            cells = [
                "diverged" if math.isnan(v) else f"{100 * v:.1f}"
                for v in [*values, statistics.mean(values)]
            ]
            what = f"{c.what} ({' '.join(c.overrides) or 'as the reference preset'})"
            mark = "yes" if chosen[run] == c else ""
            lines.append(f"| {label_of(run)} | {what} | " + " | ".join(cells) + f" | {mark} |")
    return "\n".join(lines) + "\n"
