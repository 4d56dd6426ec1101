"""``ccl demo``: the whole pipeline on the embedded synthetic benchmark, end to end.

generate videos with soundtracks -> prepare frame stores -> annotations (UCF101 format) ->
pre-train the teachers on their own corpora -> extract audio embeddings -> train baseline,
CCL-A, CCL-I and CCL-AI -> evaluate recognition and retrieval -> ``ccl report``. The same
code paths as real data; every step writes into ``--out`` (:mod:`ccl.demo.paths`) and a
finished step is skipped when the demo is run again. :func:`run_demo` is one seed,
:func:`run_demo_seeds` several; the comparison (:mod:`ccl.demo.compare`) and the tuning
(:mod:`ccl.demo.tune`) train on the same prepared seeds with :func:`train_and_evaluate`.
"""

from __future__ import annotations

import dataclasses
import json
import math
import shutil
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ccl.atomic import atomic_write, sha256_file, write_text_atomic
from ccl.checkpoint import load_checkpoint
from ccl.config import Config, apply_overrides, describe_settings, preset
from ccl.data.audio_features import extract_audio
from ccl.data.prepare import prepare_videos
from ccl.data.splits import build_ucf101
from ccl.demo.jobs import run_jobs, threads_per_job
from ccl.demo.paths import (
    DIVERGED_FILE,
    DemoPaths,
    check_same_benchmark,
    check_same_run,
    checkpoint_path,
    demo_paths,
    evaluated_marker,
    read_synth_info,
    seed_folder,
    step,
    use_demo_data,
)
from ccl.demo.pretrain import pretrain_audio_teacher, pretrain_image_teacher
from ccl.demo.probe import audio_probe, image_probe, image_probe_settings
from ccl.demo.synth import generate
from ccl.demo.tables import (
    Replicate,
    describe_replicates,
    format_table,
    numbers_of,
    video_hits,
)
from ccl.engine import RunResult, train
from ccl.errors import NonFiniteLossError
from ccl.evaluation import EvalSettings, evaluate, summary_line
from ccl.objectives import registry
from ccl.report import build_report
from ccl.runs import METRICS_FILE, eval_path, features_path, method_label, read_metrics

METHODS = tuple(registry.MAIN_RUNS)  # baseline, ccl-a, ccl-i, ccl-ai
# the label each method's row has in tables, as ``ccl report`` labels its runs
METHOD_LABELS = {
    run: method_label({"method": method, "teachers": list(teachers)})
    for run, (method, teachers) in registry.MAIN_RUNS.items()
}


@dataclass(frozen=True)
class DemoScale:
    """One size of the demo: the benchmark :mod:`ccl.demo.synth` generates, the presets
    trained on it, the teachers' pre-training epochs, and where everything runs."""

    synth: str  # ccl.demo.synth scale
    presets: str  # preset prefix: <presets>-baseline, <presets>-ccl-a, ...
    teacher_epochs: tuple[int, int]  # image, audio
    overrides: tuple[str, ...] = ()  # applied to every run, before the user's overrides
    device: str = "auto"  # teachers' pre-training and audio extraction
    # methods trained at once, in separate processes sharing the CPU threads: the demo's
    # student is so small that a second thread barely speeds up its step (docs/DEMO.md)
    method_jobs: int = 1
    # training runs of each method on one benchmark (training seeds): the table's interval
    # is taken over them (docs/DEMO.md, "Training noise")
    runs: int = 1
    # the benchmark's soundtracks (ccl.demo.synth_audio.SOUNDTRACKS)
    soundtracks: str = "families"
    # "chosen": the presets' settings chosen on validation (config.DEMO_CHOSEN), presets
    # <presets>-<run>; "reference": the reference's loss weights, <presets>-reference-<run>;
    # either trains in its setting's run folder (config.demo_run_name)
    settings: str = "chosen"

    @property
    def reference_presets(self) -> str:
        """The preset prefix of the reference's settings (what ``ccl demo --tune`` varies)."""
        return self.presets if self.settings == "reference" else f"{self.presets}-reference"


DEMO_SCALES = {
    "demo": DemoScale("demo", "demo", (6, 5), method_jobs=2, runs=3),
    # tiny, for CI smoke tests: the quick benchmark has 12 training videos
    "quick": DemoScale(
        "quick",
        "demo",
        (1, 1),
        ("train.epochs=2", "optim.milestones=2", "data.batch_size=4"),
        method_jobs=2,
        runs=2,
    ),
    # ccl demo --device cuda: the larger benchmark and a longer budget, several seeds at once
    "gpu": DemoScale("gpu", "demo-gpu", (6, 5), device="cuda"),
}
GPU_SEEDS = (1, 2, 3, 4, 5)
# training run k (1, 2, ...) of a benchmark seed S trains with train.seed = S + (k-1) * this
RUN_SEED_STEP = 1000


def demo_scale(
    scale: str | DemoScale,
    device: str | None = None,
    soundtracks: str | None = None,
    settings: str | None = None,
) -> DemoScale:
    """The :data:`DEMO_SCALES` entry of that name (or ``scale`` itself); ``device`` ("cpu",
    "cuda") puts the teachers and every run on that device; ``soundtracks`` chooses the
    benchmark's soundtracks (default: the scale's); ``settings`` "reference" trains the
    ``<presets>-reference-*`` presets instead of the chosen ones."""
    found = DEMO_SCALES[scale] if isinstance(scale, str) else scale
    if soundtracks is not None:
        found = dataclasses.replace(found, soundtracks=soundtracks)
    if settings not in (None, "chosen", "reference"):
        raise ValueError(f"settings must be chosen or reference, got {settings!r}")
    if settings == "reference" and found.settings != "reference":
        found = dataclasses.replace(found, presets=found.reference_presets, settings=settings)
    if device in (None, "auto"):
        return found
    return dataclasses.replace(
        found, device=device, overrides=(*found.overrides, f"train.device={device}")
    )


# --------------------------------------------------------------------------- data


@dataclass(frozen=True)
class PreparedDemo:
    """One seed's prepared demo folder: where everything lies, and the benchmark's classes
    whose soundtrack is unrelated to them (the table's "unrelated audio" column)."""

    paths: DemoPaths
    seed: int
    unrelated_audio_classes: tuple[str, ...]


def prepare_demo_data(
    out: str | Path, *, seed: int, scale: str | DemoScale = "demo"
) -> PreparedDemo:
    """Generate, prepare and annotate the benchmark, pre-train both teachers and extract the
    audio embeddings into ``out``. Finished steps are skipped."""
    paths = demo_paths(out)
    paths.root.mkdir(parents=True, exist_ok=True)
    synth, frames = paths.synth, paths.frames
    scale = demo_scale(scale)
    check_same_benchmark(paths, seed, scale.synth, scale.soundtracks)
    unrelated = step(
        "generate synthetic videos",
        paths.synth_info,
        lambda: generate(
            synth, seed=seed, scale=scale.synth, soundtracks=scale.soundtracks
        ).unrelated_audio_classes,
        lambda: read_synth_info(paths).get("unrelated_audio_classes", []),
    )

    def prepare() -> None:
        report = prepare_videos(
            synth / "videos", frames, workers=2, short_side=0, audio=True, progress=False
        )
        print("  " + report.summary())
        if not report.ok:
            raise RuntimeError(f"preparing the demo videos failed: {report.summary()}")

    step("prepare frame stores", paths.frames_done, prepare)

    def annotate() -> None:
        # 3 of the 18 training groups held out: >= 100 validation videos to decide with
        ann = build_ucf101(synth / "splits", frames, split=1, seed=seed, val_fraction=0.15)
        print("  " + ann.report.summary())
        ann.write(paths.annotations)

    step("write annotations", paths.annotations, annotate)
    image_epochs, audio_epochs = scale.teacher_epochs
    step(
        "pre-train the image teacher (object kinds)",
        paths.image_teacher,
        lambda: pretrain_image_teacher(
            synth / "corpora" / "images",
            paths.image_teacher,
            size=32,
            epochs=image_epochs,
            seed=seed,
            device=scale.device,
        ),
    )
    step(
        "pre-train the audio teacher (sound corpus)",
        paths.audio_teacher,
        lambda: pretrain_audio_teacher(
            synth / "corpora" / "audio",
            paths.audio_teacher,
            epochs=audio_epochs,
            seed=seed,
            device=scale.device,
        ),
    )

    def extract() -> None:
        report = extract_audio(
            frames,
            paths.audio_teacher,
            paths.audio_dir,
            variant="small",
            device=scale.device,
            progress=False,
        )
        print("  " + report.summary())
        print("  " + embedding_norms(paths.audio_dir))

    step("extract audio embeddings", paths.audio_manifest, extract)
    return PreparedDemo(paths, seed, tuple(unrelated or ()))


def embedding_norms(audio_dir: Path) -> str:
    """One line: the range and median of the L2 norms of the per-video audio embeddings
    (the real PANNs Cnn14_emb512 ones of UCF51: 13-25, median 15.6)."""
    norms = [float(np.linalg.norm(np.load(f))) for f in sorted(audio_dir.rglob("*.npy"))]
    if not norms:
        return "no audio embeddings"
    return (
        f"audio embeddings: {len(norms)}, L2 norm {min(norms):.1f}-{max(norms):.1f} "
        f"(median {float(np.median(norms)):.1f})"
    )


def teacher_probes(
    paths: DemoPaths,
    *,
    scale: str | DemoScale = "demo",
    overrides: Sequence[str] | None = None,
) -> dict[str, Any]:
    """The frozen teachers' linear probes (:mod:`ccl.demo.probe`) on one prepared demo
    benchmark, the teachers' own reference rows of the table. The image teacher is set up
    as the demo's CCL runs set it up (the scale's ``ccl-ai`` preset with ``overrides``).
    Cached in ``teacher_probes.json`` and computed again only when its inputs (annotations,
    teacher weights, audio embeddings, settings) changed."""
    scale = demo_scale(scale)
    cfg = apply_overrides(
        preset(f"{scale.presets}-ccl-ai"), [*scale.overrides, *(overrides or [])]
    )
    settings = image_probe_settings(cfg)
    manifest = paths.audio_manifest
    inputs = {
        "annotations": sha256_file(paths.annotations),
        "image_teacher": sha256_file(paths.image_teacher),
        "audio_manifest": sha256_file(manifest) if manifest.is_file() else None,
        "image_settings": json.loads(json.dumps(asdict(settings))),
    }
    cache = paths.probes
    if cache.is_file():
        try:
            cached = json.loads(cache.read_text())
        except (OSError, ValueError):
            cached = {}
        if cached.get("inputs") == inputs:
            print(f"[demo] teachers' linear probes: done already ({cache})", flush=True)
            return cached
    print("[demo] teachers' linear probes ...", flush=True)
    t0 = time.perf_counter()
    audio = audio_probe(paths.annotations, paths.audio_dir)
    image = image_probe(paths.annotations, paths.frames, paths.image_teacher, settings)
    for result in (audio, image):
        print("  " + result.summary())
    data = {"inputs": inputs, "audio": audio.to_dict(), "image": image.to_dict()}
    with atomic_write(cache) as f:
        f.write((json.dumps(data, indent=1) + "\n").encode())
    print(f"[demo] teachers' linear probes: {time.perf_counter() - t0:.0f} s", flush=True)
    return data


# --------------------------------------------------------------------------- one run


@dataclass(frozen=True)
class TrainedRun:
    """One run of the demo: its folder, what its training returned (None: trained by an
    earlier demo, or diverged) and the test evaluation of each checkpoint asked for (kind
    -> the evaluation's report), computed now or read from a finished step's files."""

    run_dir: Path
    training: RunResult | None
    evaluations: dict[str, dict[str, Any]]
    diverged: bool = False  # training stopped on a non-finite loss (now or earlier)

    def last_validation_top1(self) -> float:
        """The last epoch's validation top-1 (the tuning's selection number; NaN: diverged,
        -inf: never validated)."""
        if self.diverged:
            return math.nan
        if self.training is not None:
            last = self.training.last
            return float(last["top1"]) if last else -math.inf
        epochs = [r for r in read_metrics(self.run_dir / METRICS_FILE)[0] if "val/top1" in r]
        return float(epochs[-1]["val/top1"]) if epochs else -math.inf

    def test_top1(self) -> float:
        """Test top-1 of the last checkpoint (NaN: diverged)."""
        if self.diverged:
            return math.nan
        return float(self.evaluations["last"]["recognition"]["top1"])


def train_and_evaluate(
    cfg: Config,
    paths: DemoPaths,
    *,
    label: str,
    scale: str | DemoScale,
    overrides: Sequence[str] | None,
    checkpoints: tuple[str, ...] = ("last", "best"),
    retrieval: tuple[str, ...] = ("last",),
) -> TrainedRun:
    """Point a ``demo-*`` config at the prepared data, train it and evaluate ``checkpoints``
    on the test split (none: validation only), with retrieval against the training videos
    for those in ``retrieval`` (the others: recognition only, a quarter of the time).
    Finished steps are skipped."""
    use_demo_data(cfg, paths)
    cfg.train.progress = False
    apply_overrides(cfg, [*demo_scale(scale).overrides, *(overrides or [])])
    run_dir = Path(cfg.train.out_dir) / cfg.train.name
    check_same_run(run_dir, cfg)
    if run_dir.exists():
        # left by an interrupted demo: continue that run (training refuses to start over
        # in a folder that holds one)
        cfg.train.resume = "auto"
    training = step(f"train {label}", checkpoint_path(run_dir, "last"), lambda: train(cfg))

    def test() -> dict[str, dict[str, Any]]:
        reports: dict[str, dict[str, Any]] = {}
        for kind in checkpoints:
            same = [k for k in reports if _same_student(run_dir, k, kind)]
            if same and (kind not in retrieval or same[0] in retrieval):
                # the best epoch was the last one: the same weights give the same numbers
                report = _copy_evaluation(reports[same[0]], run_dir, kind)
            else:
                # gallery: the training subset (ccl evaluate's default adds the held-out
                # validation videos), the demo's retrieval protocol in docs/DEMO.md
                settings = EvalSettings(
                    checkpoint=kind,
                    gallery="training" if kind in retrieval else None,
                    workers=0,
                    device=cfg.train.device,
                    progress=False,
                )
                report = evaluate(run_dir, settings)
            reports[kind] = report
            print(f"  {kind}: {summary_line(report)}")
        return reports

    def tested() -> dict[str, dict[str, Any]]:
        """The evaluations a finished step wrote."""
        return {
            kind: json.loads(eval_path(run_dir, "test", kind).read_text()) for kind in checkpoints
        }

    evaluations = None
    if checkpoints:
        done = evaluated_marker(run_dir, checkpoints)
        evaluations = step(f"evaluate {label}", done, test, tested)
    return TrainedRun(run_dir, training, evaluations or {})


def train_unless_diverged(
    run_dir: Path, label: str, train_run: Callable[[], TrainedRun], *, tag: str = "demo"
) -> TrainedRun:
    """``train_run()``; a run whose training diverges (:class:`NonFiniteLossError`) is a
    result, not a reason to lose the other runs: the error is printed and written to
    ``run_dir/DIVERGED``, and the run comes back ``diverged`` (its numbers NaN). A rerun
    finds that file and skips the run instead of training it again."""
    marker = run_dir / DIVERGED_FILE
    if marker.exists():
        print(f"[{tag}] {label}: diverged in an earlier run ({marker.read_text().strip()})")
        return TrainedRun(run_dir, None, {}, diverged=True)
    try:
        return train_run()
    except NonFiniteLossError as err:
        print(f"[{tag}] {label}: diverged: {err}", flush=True)
        marker.parent.mkdir(parents=True, exist_ok=True)
        marker.write_text(str(err) + "\n")
        return TrainedRun(run_dir, None, {}, diverged=True)


def _same_student(run_dir: Path, kind_a: str, kind_b: str) -> bool:
    """Whether two checkpoints of a run hold the same student weights."""
    a = load_checkpoint(checkpoint_path(run_dir, kind_a))["student"]
    b = load_checkpoint(checkpoint_path(run_dir, kind_b))["student"]
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def _copy_evaluation(report: dict[str, Any], run_dir: Path, kind: str) -> dict[str, Any]:
    """The evaluation of another checkpoint of ``run_dir`` with the same student weights:
    ``report`` under that checkpoint's name (its file, hash and features file); saves one
    evaluation pass when the best epoch is the last."""
    ckpt = checkpoint_path(run_dir, kind)
    split = "test" if report["split"] == "testing" else report["split"]
    copied = {
        **report,
        "checkpoint": str(ckpt),
        "checkpoint_kind": kind,
        "checkpoint_sha256": sha256_file(ckpt),
        "epoch": int(load_checkpoint(ckpt)["epoch"]),
        "settings": {**report["settings"], "checkpoint": kind},
        "note": f"same student weights as the {report['checkpoint_kind']} checkpoint",
    }
    copied.pop("path", None)
    if report.get("features_file"):
        copied["features_file"] = features_path(run_dir, split, kind).name
        shutil.copyfile(run_dir / report["features_file"], run_dir / copied["features_file"])
    path = eval_path(run_dir, split, kind)
    write_text_atomic(path, json.dumps(copied, indent=1) + "\n")
    return {**copied, "path": str(path)}


def report_runs(run_dirs: Sequence[Path], out_dir: Path) -> tuple[Path, dict[str, Any]]:
    """``ccl report`` of ``run_dirs`` into ``out_dir`` -> (``report.md``, the report's data,
    its runs in the order of ``run_dirs``)."""
    report = build_report(list(run_dirs), out_dir)
    return report.md_path, report.data


# --------------------------------------------------------------------------- one seed


@dataclass(frozen=True)
class RunSpec:
    """One training of the demo on one seed's prepared folder: ``method`` is one of
    :data:`METHODS`, trained with the preset ``<scale.presets>-<method>``; ``overrides``
    (the user's) come after the scale's."""

    method: str
    seed: int
    paths: DemoPaths
    scale: DemoScale
    overrides: tuple[str, ...] = ()
    run: int = 1  # training run on this benchmark (1, 2, ...)


def demo_config(spec: RunSpec) -> Config:
    """The training config of one method of the demo (its scale's preset, run folder and
    training seed: ``seed + (run - 1) * RUN_SEED_STEP``, run 1 in ``<preset name>``, run k
    in ``<preset name>-run<k>``; the data and overrides are added by
    :func:`train_and_evaluate`)."""
    cfg = preset(f"{spec.scale.presets}-{spec.method}")
    cfg.train.out_dir = str(spec.paths.runs)
    cfg.train.seed = spec.seed + (spec.run - 1) * RUN_SEED_STEP
    if spec.run > 1:
        cfg.train.name += f"-run{spec.run}"
    return cfg


def train_demo_method(spec: RunSpec) -> TrainedRun:
    """Train and evaluate one method of the demo (also the body of a worker job); a run
    that diverges is a result (its numbers NaN), not a reason to lose the others."""
    cfg = demo_config(spec)
    label = spec.method if spec.run == 1 else f"{spec.method} run {spec.run}"
    return train_unless_diverged(
        Path(cfg.train.out_dir) / cfg.train.name,
        label,
        lambda: train_and_evaluate(
            cfg, spec.paths, label=label, scale=spec.scale, overrides=spec.overrides
        ),
    )


def demo_method_done(spec: RunSpec) -> bool:
    """Whether :func:`train_demo_method` finished this method before."""
    cfg = demo_config(spec)
    run_dir = Path(cfg.train.out_dir) / cfg.train.name
    return (run_dir / DIVERGED_FILE).is_file() or evaluated_marker(
        run_dir, ("last", "best")
    ).is_file()


@dataclass(frozen=True)
class DemoResult:
    """What one benchmark seed's demo computed: its replicates (one per training run, each
    with every method's numbers and per-video hits), the teachers' probes, and the table."""

    replicates: tuple[Replicate, ...]
    probes: dict[str, Any]
    table: str
    report_md: Path


def replicates_of(
    specs: Sequence[RunSpec], runs: Sequence[TrainedRun], unrelated_audio: Sequence[str]
) -> list[Replicate]:
    """Group trained runs into :class:`Replicate` s by (seed, run), methods labelled as the
    report labels them (baseline, CCL-A, ...)."""
    grouped: dict[tuple[int, int], tuple[dict[str, Any], dict[str, Any]]] = {}
    for spec, run in zip(specs, runs, strict=True):
        label = METHOD_LABELS[spec.method]
        numbers, hits = grouped.setdefault((spec.seed, spec.run), ({}, {}))
        last = None if run.diverged else run.evaluations["last"]
        best = None if run.diverged else run.evaluations.get("best")
        numbers[label] = numbers_of(last, best, unrelated_audio)
        if last is not None:
            hits[label] = video_hits(last)
    return [Replicate(seed, k, numbers, hits) for (seed, k), (numbers, hits) in grouped.items()]


def run_demo(
    out: str | Path,
    *,
    seed: int = 1,
    runs: int | None = None,
    scale: str | DemoScale = "demo",
    overrides: Sequence[str] | None = None,
    methods: tuple[str, ...] = METHODS,
    jobs: int | None = None,
) -> DemoResult:
    """Run the demo into ``out``: one benchmark (``seed``), each method trained ``runs`` times
    with training seeds ``seed``, ``seed + 1000``, ... (default: the scale's ``runs``).
    ``jobs``: trainings run at once in separate processes, each with its share of the CPU
    threads and its output in ``out/logs/<run>.log`` (default: the scale's
    ``method_jobs``). Writes ``out/demo_table.md``."""
    t_start = time.perf_counter()
    scale = demo_scale(scale)
    runs = scale.runs if runs is None else int(runs)
    if runs < 1:
        raise ValueError(f"--runs must be at least 1, got {runs}")
    prepared = prepare_demo_data(out, seed=seed, scale=scale)
    paths = prepared.paths
    probes = teacher_probes(paths, scale=scale, overrides=overrides)
    specs = [
        RunSpec(m, seed, paths, scale, tuple(overrides or ()), run)
        for run in range(1, runs + 1)
        for m in methods
    ]
    # finished runs (a demo run again) are only read back, in this process
    pending = [spec for spec in specs if not demo_method_done(spec)]
    jobs = min(max(1, scale.method_jobs if jobs is None else jobs), max(1, len(pending)))
    if jobs > 1 and len(pending) > 1:
        print(
            f"[demo] train and evaluate {len(pending)} runs ({', '.join(methods)}; "
            f"{runs} run(s) each): {jobs} at once, {threads_per_job(jobs)} thread(s) each; "
            f"progress in {paths.log('<run>')}",
            flush=True,
        )
        t0 = time.perf_counter()
        logs = [paths.log(demo_config(spec).train.name) for spec in pending]
        done = run_jobs(train_demo_method, pending, jobs, logs=logs)
        for spec, run in zip(pending, done):
            what = "diverged" if run.diverged else summary_line(run.evaluations["last"])
            print(f"  {demo_config(spec).train.name}: {what}", flush=True)
        print(f"[demo] train and evaluate: {time.perf_counter() - t0:.0f} s", flush=True)
    # every run not trained yet runs here one after another; finished ones are read back
    trained = [train_demo_method(spec) for spec in specs]

    print("[demo] report ...", flush=True)
    report_md, _ = report_runs(
        [run.run_dir for run in trained if not run.diverged], paths.report
    )
    replicates = replicates_of(specs, trained, prepared.unrelated_audio_classes)
    settings = describe_settings(scale.settings, methods)
    table = f"Demo, {describe_replicates(replicates)}\n{settings}\n\n" + format_table(
        replicates, [probes]
    )
    write_text_atomic(paths.root / "demo_table.md", table + "\n")
    print(table)
    print(f"\n[demo] full report: {report_md}  ({(time.perf_counter() - t_start) / 60:.1f} min)")
    print(
        f"[demo] {settings}; `ccl demo --tune --seeds 1 2 3 4 5 --out demo_seeds` chooses them on "
        "the validation groups, `--settings reference` trains the reference's (docs/DEMO.md)"
    )
    return DemoResult(tuple(replicates), probes, table, report_md)


# --------------------------------------------------------------------------- several seeds


@dataclass(frozen=True)
class SeedSpec:
    """One seed of the demo in its own folder ``root``; ``method_jobs``: its trainings
    run at once (None: the scale's ``method_jobs``); ``runs``: training runs per method
    (None: the scale's)."""

    root: Path
    seed: int
    scale: DemoScale
    overrides: tuple[str, ...] = ()
    method_jobs: int | None = None
    runs: int | None = None


def run_demo_seed(spec: SeedSpec) -> DemoResult:
    """``ccl demo`` of one seed into its folder (also the body of a worker job)."""
    return run_demo(
        spec.root,
        seed=spec.seed,
        runs=spec.runs,
        scale=spec.scale,
        overrides=spec.overrides,
        jobs=spec.method_jobs,
    )


def run_demo_seeds(
    out: str | Path,
    *,
    seeds: tuple[int, ...],
    runs: int = 1,
    scale: str | DemoScale = "demo",
    overrides: Sequence[str] | None = None,
    jobs: int = 1,
) -> str:
    """``ccl demo`` for each seed (into ``out/seed_S``, ``runs`` training runs per method),
    then one table over the seeds: numbers as mean +- sd and the differences to the baseline
    with their interval over the seeds (``out/demo_table_seeds.md``; every replicate's
    numbers in ``out/demo_seeds.json``). ``jobs`` > 1 runs that many seeds at once, in
    separate processes with a share of the CPU threads each (one GPU serves them all), each
    writing its progress to ``out/seed_S/demo.log``. The runs are those of one seed at a
    time; with fewer threads each, floating-point sums (and so the numbers) can differ
    slightly."""
    out = Path(out)
    scale = demo_scale(scale)
    jobs = max(1, min(int(jobs), len(seeds)))
    # seeds side by side share the threads already: each trains its methods one at a time
    method_jobs = 1 if jobs > 1 else None
    specs = [
        SeedSpec(seed_folder(out, seed), seed, scale, tuple(overrides or ()), method_jobs, runs)
        for seed in seeds
    ]
    t0 = time.perf_counter()
    if jobs > 1:
        logs = demo_paths(out / "seed_S").demo_log
        print(f"[demo] {len(seeds)} seeds, {jobs} at once; progress in {logs}", flush=True)
    results = run_jobs(
        run_demo_seed, specs, jobs, logs=[demo_paths(spec.root).demo_log for spec in specs]
    )
    replicates = [rep for result in results for rep in result.replicates]
    settings = describe_settings(scale.settings, METHODS)
    table = f"Demo, {describe_replicates(replicates)}\n{settings}\n\n" + format_table(
        replicates, [result.probes for result in results]
    )
    write_text_atomic(out / "demo_table_seeds.md", table + "\n")
    record = [
        {"seed": rep.seed, "run": rep.run, "numbers": rep.numbers} for rep in replicates
    ]
    write_text_atomic(out / "demo_seeds.json", json.dumps(record, indent=1) + "\n")
    print(table)
    minutes = (time.perf_counter() - t0) / 60
    print(f"\n[demo] {len(seeds)} seeds: {minutes:.1f} min", flush=True)
    return table


def prepare_seed(spec: SeedSpec) -> PreparedDemo:
    """:func:`prepare_demo_data` of one seed into its folder (also the body of a worker job)."""
    return prepare_demo_data(spec.root, seed=spec.seed, scale=spec.scale)


def prepare_seeds(
    out: Path, seeds: tuple[int, ...], scale: DemoScale, jobs: int
) -> dict[int, PreparedDemo]:
    """:func:`prepare_demo_data` for each seed into ``out/seed_S`` (up to ``jobs`` seeds at
    once, in separate processes with torch's default threads: the teachers of a seed do not
    depend on ``jobs``) -> the prepared folder of each seed."""
    specs = [SeedSpec(seed_folder(out, seed), seed, scale) for seed in seeds]
    prepared = run_jobs(prepare_seed, specs, min(jobs, len(seeds)), share_threads=False)
    return dict(zip(seeds, prepared))
