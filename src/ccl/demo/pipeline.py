"""``ccl demo``: the whole pipeline on the embedded synthetic benchmark, end to end.

generate videos with soundtracks -> prepare frame stores -> annotations (UCF101 format) ->
pre-train the teachers on their own corpora -> extract audio embeddings -> train baseline,
CCL-A, CCL-I and CCL-AI -> evaluate recognition and retrieval -> ``ccl report``. The same
code paths as real data; every step writes into ``--out`` and a finished step is skipped
when the demo is run again.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import math
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ccl.atomic import write_text_atomic
from ccl.objectives import registry
from ccl.objectives.registry import BASELINE, CCL

METHODS = tuple(registry.MAIN_RUNS)  # baseline, ccl-a, ccl-i, ccl-ai


@dataclass(frozen=True)
class DemoScale:
    """One size of the demo: the benchmark :mod:`ccl.synth` generates, the presets trained
    on it, the teachers' pre-training epochs, and where everything runs."""

    synth: str  # ccl.synth scale
    presets: str  # preset prefix: <presets>-baseline, <presets>-ccl-a, ...
    teacher_epochs: tuple[int, int]  # image, audio
    overrides: tuple[str, ...] = ()  # applied to every run, before the user's overrides
    device: str = "auto"  # teachers' pre-training and audio extraction
    # methods trained at once, in separate processes sharing the CPU threads: the demo's
    # student is so small that a second thread barely speeds up its step (docs/DEMO.md)
    method_jobs: int = 1


DEMO_SCALES = {
    "demo": DemoScale("demo", "demo", (6, 5), method_jobs=2),
    # tiny, for CI smoke tests: the quick benchmark has 12 training videos
    "quick": DemoScale(
        "quick",
        "demo",
        (1, 1),
        ("train.epochs=2", "optim.milestones=2", "data.batch_size=4"),
        method_jobs=2,
    ),
    # ccl demo --device cuda: the larger benchmark and a longer budget, several seeds at once
    "gpu": DemoScale("gpu", "demo-gpu", (6, 5), device="cuda"),
}
GPU_SEEDS = (1, 2, 3, 4, 5)


def demo_scale(scale: str | DemoScale, device: str | None = None) -> DemoScale:
    """The :data:`DEMO_SCALES` entry of that name (or ``scale`` itself); ``device`` ("cpu",
    "cuda") puts the teachers and every run on that device."""
    found = DEMO_SCALES[scale] if isinstance(scale, str) else scale
    if device in (None, "auto"):
        return found
    return dataclasses.replace(
        found, device=device, overrides=(*found.overrides, f"train.device={device}")
    )


def _step(name: str, done: Path, fn: Any) -> None:
    """Run ``fn`` unless ``done`` exists; print progress with the time taken."""
    if done.exists():
        print(f"[demo] {name}: done already ({done})", flush=True)
        return
    print(f"[demo] {name} ...", flush=True)
    t0 = time.perf_counter()
    fn()
    print(f"[demo] {name}: {time.perf_counter() - t0:.0f} s", flush=True)


def demo_paths(out: str | Path) -> dict[str, Path]:
    """Where a demo folder (``ccl demo --out``) keeps each prepared input."""
    out = Path(out)
    return {
        "synth": out / "synth",
        "frames": out / "frames",
        "annotations": out / "annotations.json",
        "image_teacher": out / "teachers" / "image.pth",
        "audio_teacher": out / "teachers" / "audio.pt",
        "audio_dir": out / "audio_features",
    }


def use_demo_data(cfg: Any, paths: dict[str, Path]) -> Any:
    """Point a training config at a prepared demo (:func:`demo_paths`); returns ``cfg``."""
    cfg.data.annotations = str(paths["annotations"])
    cfg.data.frames_dir = str(paths["frames"])
    cfg.data.audio_dir = str(paths["audio_dir"])
    cfg.image_teacher.weights = str(paths["image_teacher"])
    return cfg


def prepare_demo_data(
    out: Path, *, seed: int, scale: str | DemoScale = "demo"
) -> dict[str, Path]:
    """Generate, prepare and annotate the benchmark, pre-train both teachers and extract the
    audio embeddings into ``out``; returns the paths a run needs. Finished steps are skipped."""
    from ccl.data.annotations import build_ucf101
    from ccl.data.audio_features import extract_audio
    from ccl.data.prepare import prepare_videos
    from ccl.demo.pretrain import pretrain_audio_teacher, pretrain_image_teacher
    from ccl.demo.synth import generate

    out.mkdir(parents=True, exist_ok=True)
    paths = demo_paths(out)
    synth, frames = paths["synth"], paths["frames"]
    scale = demo_scale(scale)
    _check_same_benchmark(out, synth / "synth_info.json", seed, scale.synth)
    _step(
        "generate synthetic videos",
        synth / "synth_info.json",
        lambda: generate(synth, seed=seed, scale=scale.synth),
    )

    def prepare() -> None:
        report = prepare_videos(
            synth / "videos", frames, workers=2, short_side=0, audio=True, progress=False
        )
        print("  " + report.summary())
        if not report.ok:
            raise RuntimeError(f"preparing the demo videos failed: {report.summary()}")

    _step("prepare frame stores", frames / "prepare_report.json", prepare)

    def annotate() -> None:
        # 3 of the 18 training groups held out: >= 100 validation videos to decide with
        ann = build_ucf101(synth / "splits", frames, split=1, seed=seed, val_fraction=0.15)
        print("  " + ann.report.summary())
        ann.write(paths["annotations"])

    _step("write annotations", paths["annotations"], annotate)
    image_epochs, audio_epochs = scale.teacher_epochs
    _step(
        "pre-train the image teacher (object kinds)",
        paths["image_teacher"],
        lambda: pretrain_image_teacher(
            synth / "corpora" / "images",
            paths["image_teacher"],
            size=32,
            epochs=image_epochs,
            seed=seed,
            device=scale.device,
        ),
    )
    _step(
        "pre-train the audio teacher (sound events)",
        paths["audio_teacher"],
        lambda: pretrain_audio_teacher(
            synth / "corpora" / "audio",
            paths["audio_teacher"],
            epochs=audio_epochs,
            seed=seed,
            device=scale.device,
        ),
    )

    def extract() -> None:
        report = extract_audio(
            frames,
            paths["audio_teacher"],
            paths["audio_dir"],
            variant="small",
            device=scale.device,
            progress=False,
        )
        print("  " + report.summary())
        print("  " + embedding_norms(paths["audio_dir"]))

    _step("extract audio embeddings", paths["audio_dir"] / "manifest.json", extract)
    return paths


def _check_same_benchmark(out: Path, info_file: Path, seed: int, synth_scale: str) -> None:
    """A demo folder is reused step by step: refuse one that holds another seed's or
    scale's benchmark (its teachers and runs would be reported as this one's)."""
    if not info_file.is_file():
        return
    try:
        info = json.loads(info_file.read_text())
    except ValueError as err:
        raise ValueError(
            f"{info_file} is not readable JSON ({err}): ccl demo cannot tell which benchmark "
            f"{out} holds, so give it another --out"
        ) from err
    held = (info.get("seed"), info.get("scale"))
    if held != (seed, synth_scale):
        raise ValueError(
            f"{out} holds the demo benchmark of seed {held[0]} at scale {held[1]!r} "
            f"({info_file}), not seed {seed} at scale {synth_scale!r}: ccl demo reuses what "
            "its folder holds, so give it another --out"
        )


def embedding_norms(audio_dir: Path) -> str:
    """One line: the range and median of the L2 norms of the per-video audio embeddings
    (the real PANNs Cnn14_emb512 ones of UCF51: 13-25, median 15.6)."""
    import numpy as np

    norms = [float(np.linalg.norm(np.load(f))) for f in sorted(audio_dir.rglob("*.npy"))]
    if not norms:
        return "no audio embeddings"
    return (
        f"audio embeddings: {len(norms)}, L2 norm {min(norms):.1f}-{max(norms):.1f} "
        f"(median {float(np.median(norms)):.1f})"
    )


def train_and_evaluate(
    cfg: Any,
    paths: dict[str, Path],
    *,
    label: str,
    scale: str | DemoScale,
    overrides: list[str] | None,
    checkpoints: tuple[str, ...] = ("best", "last"),
) -> Path:
    """Point a ``demo-*`` config at the prepared data, train it and evaluate ``checkpoints``
    on the test split (none: validation only); returns the run folder. Finished steps are
    skipped."""
    from ccl.config import apply_overrides
    from ccl.engine import train
    from ccl.evaluation import EvalSettings, evaluate, summary_line

    use_demo_data(cfg, paths)
    cfg.train.progress = False
    apply_overrides(cfg, [*demo_scale(scale).overrides, *(overrides or [])])
    run_dir = Path(cfg.train.out_dir) / cfg.train.name
    _check_same_run(run_dir, cfg)
    if run_dir.exists():
        # left by an interrupted demo: continue that run (training refuses to start over
        # in a folder that holds one)
        cfg.train.resume = "auto"
    _step(f"train {label}", run_dir / "checkpoints" / "last.pt", lambda: train(cfg))

    def test() -> None:
        reports: dict[str, dict[str, Any]] = {}
        for kind in checkpoints:
            if kind != "best" and "best" in reports and _same_student(run_dir, "best", kind):
                # the best epoch was the last one: the same weights give the same numbers
                report = _copy_evaluation(reports["best"], run_dir, kind)
            else:
                # gallery: the training subset, as in the results recorded in docs/DEMO.md
                # (ccl evaluate's default adds the held-out validation videos), so resumed and
                # earlier demos stay comparable
                settings = EvalSettings(
                    checkpoint=kind,
                    gallery="training",
                    workers=0,
                    device=cfg.train.device,
                    progress=False,
                )
                report = evaluate(run_dir, settings)
            reports[kind] = report
            print(f"  {kind}: {summary_line(report)}")

    if checkpoints:
        _step(f"evaluate {label}", _evaluated(run_dir, checkpoints), test)
    return run_dir


# where a run and its inputs lie and how it is continued: they may change (a moved demo
# folder, a renamed run folder) without changing what the run computes
_RUN_PLACE = (
    "data.annotations",
    "data.frames_dir",
    "data.audio_dir",
    "image_teacher.weights",
    "train.out_dir",
    "train.name",
    "train.resume",
    "train.progress",
)


def _check_same_run(run_dir: Path, cfg: Any) -> None:
    """Finished demo steps are skipped: refuse a run folder that holds a run of other
    settings than ``cfg`` (other overrides, seed or scale), before it is reported as this
    one's or continued with the new settings."""
    from ccl.config import Config, config_differences

    saved = run_dir / "config.json"
    if not saved.is_file():
        return
    try:
        held = Config.load(saved)
    except ValueError as err:
        raise ValueError(
            f"{saved} is not a readable run config ({err}): ccl demo cannot tell which run "
            f"{run_dir} holds, so give it another --out"
        ) from err
    differ = config_differences(held, cfg, ignore=_RUN_PLACE)
    if differ:
        raise ValueError(
            f"{run_dir} holds a run with other settings ({'; '.join(differ)}): ccl demo "
            "reuses the runs its folder holds, so give it another --out"
        )


def _evaluated(run_dir: Path, checkpoints: tuple[str, ...]) -> Path:
    """The file whose presence says :func:`train_and_evaluate` finished evaluating these
    checkpoints of ``run_dir`` (the last one it writes)."""
    return run_dir / ("eval_test.json" if checkpoints == ("best",) else "eval_test_last.json")


def _same_student(run_dir: Path, kind_a: str, kind_b: str) -> bool:
    """Whether two checkpoints of a run hold the same student weights."""
    import torch

    from ccl.checkpoint import load_checkpoint

    a = load_checkpoint(run_dir / "checkpoints" / f"{kind_a}.pt")["student"]
    b = load_checkpoint(run_dir / "checkpoints" / f"{kind_b}.pt")["student"]
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def _copy_evaluation(report: dict[str, Any], run_dir: Path, kind: str) -> dict[str, Any]:
    """The evaluation of another checkpoint of ``run_dir`` with the same student weights:
    ``report`` under that checkpoint's name (its file, hash and features file); saves one
    evaluation pass when the best epoch is the last."""
    import shutil

    from ccl.checkpoint import load_checkpoint
    from ccl.data.audio_features import sha256_file

    ckpt = run_dir / "checkpoints" / f"{kind}.pt"
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
        copied["features_file"] = f"eval_{split}_{kind}_features.npz"
        shutil.copyfile(run_dir / report["features_file"], run_dir / copied["features_file"])
    path = run_dir / f"eval_{split}_{kind}.json"
    write_text_atomic(path, json.dumps(copied, indent=1) + "\n")
    return {**copied, "path": str(path)}


def run_demo(
    out: str | Path,
    *,
    seed: int = 1,
    scale: str | DemoScale = "demo",
    overrides: list[str] | None = None,
    methods: tuple[str, ...] = METHODS,
    jobs: int | None = None,
) -> dict[str, Any]:
    """Run the demo into ``out``; returns the report's data (one entry per method).
    ``jobs``: methods trained at once in separate processes, each with its share of the
    CPU threads and its output in ``out/logs/<run>.log`` (default: the scale's
    ``method_jobs``)."""
    from ccl.report import build_report

    out = Path(out)
    t_start = time.perf_counter()
    scale = demo_scale(scale)
    paths = prepare_demo_data(out, seed=seed, scale=scale)
    probes = teacher_probes(out, paths, scale=scale, overrides=overrides)
    specs = [
        {"method": m, "root": str(out), "seed": seed, "scale": scale, "paths": paths}
        | {"overrides": list(overrides or []), "threads": None}
        for m in methods
    ]
    # finished runs (a demo run again) are only read back, in this process
    pending = [spec for spec in specs if not _demo_method_done(spec)]
    jobs = min(max(1, scale.method_jobs if jobs is None else jobs), len(pending))
    if jobs > 1:
        threads = _threads_per_job(jobs)
        names = ", ".join(spec["method"] for spec in pending)
        logs = out / "logs" / "<run>.log"
        print(
            f"[demo] train and evaluate {names}: {jobs} at once, {threads} thread(s) each; "
            f"progress in {logs}",
            flush=True,
        )
        t0 = time.perf_counter()
        with _process_pool(jobs) as pool:
            done = list(pool.map(_demo_method, [spec | {"threads": threads} for spec in pending]))
        for spec, run_dir in zip(pending, done):
            print(f"  {spec['method']}: {_eval_summary(run_dir)}", flush=True)
        print(f"[demo] train and evaluate: {time.perf_counter() - t0:.0f} s", flush=True)
    # every method not trained yet runs here one after another; finished ones are read back
    run_dirs = [_demo_method(spec) for spec in specs]

    print("[demo] report ...", flush=True)
    report_md = build_report(run_dirs, out / "report")
    data = json.loads((out / "report" / "report.json").read_text())
    info = json.loads((paths["synth"] / "synth_info.json").read_text())
    table = _table(data, info, probes=probes, seed=seed)
    write_text_atomic(out / "demo_table.md", table + "\n")
    print(table)
    print(f"\n[demo] full report: {report_md}  ({(time.perf_counter() - t_start) / 60:.1f} min)")
    print(
        "[demo] CCL ran with the reference's loss weights and temperatures; `ccl demo --tune "
        "--seeds 1 2 3 --out demo_seeds` chooses them on the validation groups (9 trainings "
        "per seed; docs/DEMO.md)"
    )
    return data


def _demo_config(spec: dict[str, Any]) -> Any:
    """The training config of one method of the demo (its scale's preset, seed and run
    folder; the data and overrides are added by :func:`train_and_evaluate`)."""
    from ccl.config import preset

    cfg = preset(f"{demo_scale(spec['scale']).presets}-{spec['method']}")
    cfg.train.out_dir = str(Path(spec["root"]) / "runs")
    cfg.train.seed = spec["seed"]
    return cfg


def _demo_method(spec: dict[str, Any]) -> Path:
    """Train and evaluate one method of the demo (also the body of a worker process, whose
    output goes to ``<root>/logs/<run>.log``); returns its run folder."""
    cfg = _demo_config(spec)
    log = Path(spec["root"]) / "logs" / f"{cfg.train.name}.log"
    with _worker(spec.get("threads"), log):
        return train_and_evaluate(
            cfg,
            spec["paths"],
            label=spec["method"],
            scale=spec["scale"],
            overrides=spec["overrides"],
        )


def _demo_method_done(spec: dict[str, Any]) -> bool:
    """Whether :func:`_demo_method` finished this method before."""
    cfg = _demo_config(spec)
    return _evaluated(Path(cfg.train.out_dir) / cfg.train.name, ("best", "last")).is_file()


def _threads_per_job(jobs: int) -> int | None:
    """CPU threads for each of ``jobs`` worker processes sharing this machine (None: one
    job, torch's own default)."""
    import os

    return max(1, (os.cpu_count() or 1) // jobs) if jobs > 1 else None


@contextlib.contextmanager
def _worker(threads: int | None, log: Path | None = None) -> Iterator[None]:
    """The set-up of a worker process of the demo: with ``threads`` (None: not a worker,
    nothing changes), torch uses that many threads and, with ``log``, the output goes to
    that file (appended) instead of the terminal."""
    if not threads:
        yield
        return
    import torch

    torch.set_num_threads(threads)
    if log is None:
        yield
        return
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "a") as f, contextlib.redirect_stdout(f), contextlib.redirect_stderr(f):
        yield


def _eval_summary(run_dir: Path) -> str:
    """One line: the test evaluation of a run's best checkpoint, as ``ccl evaluate`` prints."""
    from ccl.evaluation import summary_line

    return summary_line(json.loads((run_dir / "eval_test.json").read_text()))


COMPARED = (CCL, *registry.KD_METHODS)
TEACHER_SETTINGS = {short.upper(): t for short, t in registry.TEACHER_SETS.items()}  # A, I, AI
METHOD_NAMES = {m: registry.METHODS[m].label for m in COMPARED}


def _compare_run(spec: dict[str, Any]) -> tuple[str, str, float, str]:
    """One training of the comparison (also the body of a ``--jobs`` worker process):
    -> (method, column, test top-1 of the best-on-validation checkpoint, run folder)."""
    from ccl.config import preset
    from ccl.engine import NonFiniteLossError

    method, column, seed, root = spec["method"], spec["column"], spec["seed"], Path(spec["root"])
    prefix = demo_scale(spec["scale"]).presets
    if method in (BASELINE, CCL):
        # the demo's own presets and run names: with the same --out, a comparison reuses
        # the runs of `ccl demo --seeds ...` instead of repeating them
        name = BASELINE if method == BASELINE else f"ccl-{column.lower()}"
        cfg = preset(f"{prefix}-{name}")
    else:
        cfg = preset(f"{prefix}-baseline")
        cfg.objective.method = method
        cfg.objective.teachers = TEACHER_SETTINGS[column]
        cfg.train.name = f"{method}-{column.lower()}"
    cfg.train.out_dir = str(root / "runs")
    cfg.train.seed = seed
    label = f"{cfg.train.name} (seed {seed})"
    diverged = root / "runs" / cfg.train.name / "DIVERGED"
    if diverged.exists():
        print(f"[demo] {label}: diverged in an earlier run ({diverged.read_text().strip()})")
        return method, column, math.nan, str(diverged.parent)
    try:
        with _worker(spec.get("threads")):
            run_dir = train_and_evaluate(
                cfg,
                spec["paths"],
                label=label,
                scale=spec["scale"],
                overrides=spec["overrides"],
                checkpoints=("best",),
            )
    except NonFiniteLossError as err:
        # A method that diverges with its paper's default weight is a result of the
        # comparison, not a reason to lose the other runs: recorded, shown as "diverged".
        print(f"[demo] {label}: diverged: {err}", flush=True)
        diverged.write_text(str(err) + "\n")
        return method, column, math.nan, str(diverged.parent)
    top1 = json.loads((run_dir / "eval_test.json").read_text())["recognition"]["top1"]
    return method, column, float(top1), str(run_dir)


def _prepare_seed(args: tuple[Path, int, DemoScale]) -> dict[str, Path]:
    root, seed, scale = args
    return prepare_demo_data(root, seed=seed, scale=scale)


def prepare_seeds(
    out: Path, seeds: tuple[int, ...], scale: DemoScale, jobs: int
) -> tuple[dict[int, Path], dict[int, dict[str, Path]]]:
    """:func:`prepare_demo_data` for each seed into ``out/seed_S`` (up to ``jobs`` seeds at
    once, in separate processes) -> (folder, paths) per seed."""
    roots = {seed: out / f"seed_{seed}" for seed in seeds}
    prep = [(roots[seed], seed, scale) for seed in seeds]
    if jobs > 1 and len(seeds) > 1:
        with _process_pool(min(jobs, len(seeds))) as pool:
            return roots, dict(zip(seeds, pool.map(_prepare_seed, prep)))
    return roots, {seed: _prepare_seed(args) for seed, args in zip(seeds, prep)}


def run_compare(
    out: str | Path,
    *,
    seeds: tuple[int, ...] = (1,),
    scale: str | DemoScale = "demo",
    overrides: list[str] | None = None,
    methods: tuple[str, ...] = COMPARED,
    jobs: int = 1,
) -> str:
    """The paper's comparison table (docs/METHOD.md §7) on the demo: every method with the
    audio, image and both teachers, test top-1 of the best-on-validation checkpoint, mean +-
    std over ``seeds`` (each seed its own benchmark, teachers and runs under ``out/seed_S``).
    ``jobs`` > 1 prepares the seeds and runs the trainings in that many processes at once
    (each with its share of the CPU threads; the runs are the same as one at a time, only
    their output interleaves). Writes ``out/compare_table.md`` and ``out/compare.json``;
    returns the table."""
    from ccl.report import build_report

    out = Path(out)
    scale = demo_scale(scale)
    jobs = max(1, int(jobs))
    roots, paths = prepare_seeds(out, seeds, scale, jobs)
    threads = _threads_per_job(jobs)
    specs = [
        {
            "method": method,
            "column": column,
            "seed": seed,
            "root": str(roots[seed]),
            "paths": paths[seed],
            "scale": scale,
            "overrides": list(overrides or []),
            "threads": threads,
        }
        for seed in seeds
        for method in (BASELINE, *methods)
        for column in TEACHER_SETTINGS
        if method != BASELINE or column == "A"  # one baseline serves every column
    ]
    if jobs > 1:
        with _process_pool(jobs) as pool:
            done = list(pool.map(_compare_run, specs))
    else:
        done = [_compare_run(spec) for spec in specs]
    results: dict[tuple[str, str], list[float]] = {}
    hits: dict[int, dict[str, Any]] = {seed: {} for seed in seeds}  # per seed, per run
    for (method, column, top1, run_dir), spec in zip(done, specs):
        for col in TEACHER_SETTINGS if method == BASELINE else (column,):
            results.setdefault((method, col), []).append(top1)
        if not math.isnan(top1):
            key = BASELINE if method == BASELINE else f"{method}/{column}"
            hits[spec["seed"]][key] = _video_hits(Path(run_dir) / "eval_test.json")
    for seed in seeds:
        runs = [
            Path(d[3])
            for d, spec in zip(done, specs)
            if spec["seed"] == seed and not math.isnan(d[2])
        ]  # diverged runs (NaN) have no checkpoint to report
        build_report(runs, roots[seed] / "report")
    table = _compare_table(results, (BASELINE, *methods), seeds, [hits[s] for s in seeds])
    write_text_atomic(out / "compare_table.md", table + "\n")
    compared = {f"{m}/{c}": v for (m, c), v in results.items()}
    write_text_atomic(out / "compare.json", json.dumps(compared, indent=1) + "\n")
    print(table)
    return table


def _process_pool(workers: int) -> Any:
    """Worker processes started fresh (spawn): safe with CUDA and with torch's threads."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    return ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"))


def _cell(values: list[float]) -> str:
    """A table cell: "-" without values, the value alone for one, else mean +- std
    (population std) over them."""
    import statistics

    if not values:
        return "-"
    finite = [v for v in values if not math.isnan(v)]
    if len(finite) < len(values):
        if not finite:
            return "diverged"
        return f"{_cell(finite)} ({len(values) - len(finite)} of {len(values)} diverged)"
    if len(values) == 1:
        return f"{values[0]:.1f}"
    return f"{statistics.mean(values):.1f} +- {statistics.pstdev(values):.1f}"


def _compare_table(
    results: dict[tuple[str, str], list[float]],
    methods: tuple[str, ...],
    seeds: tuple[int, ...],
    hits: list[dict[str, Any]] | None = None,
) -> str:
    """Rows: methods; columns: A, I, AI (the paper's layout); cells: mean +- std of test top-1
    in % over the seeds (population std; a single seed shows the value alone). With ``hits``
    (per seed, :func:`_video_hits` of each run keyed "baseline" or "<method>/<column>"), a
    second table in the same layout: each method's paired difference to the baseline of the
    same seed, pooled over the (seed, test video) pairs, with its bootstrap interval."""

    def name(method: str) -> str:
        return "baseline (no distillation)" if method == BASELINE else METHOD_NAMES[method]

    head = ["| method | A | I | AI |", "|---|---|---|---|"]
    lines = [
        f"Test top-1 (%), best-on-validation checkpoint, seeds {', '.join(map(str, seeds))}",
        "",
        *head,
    ]
    for method in methods:
        cells = []
        for column in TEACHER_SETTINGS:
            cells.append(_cell([100 * v for v in results.get((method, column), [])]))
        lines.append(f"| {name(method)} | " + " | ".join(cells) + " |")
    if not hits:
        return "\n".join(lines)
    deltas = _paired_cells(hits, list(seeds))
    pairs = sum(len((h.get(BASELINE) or {}).get("top1") or {}) for h in hits)
    lines += [
        "",
        f"Δ test top-1 vs the baseline of the same seed (points): mean over the {pairs} "
        f"(seed, test video) pairs [95 % percentile bootstrap interval, "
        f"{BOOTSTRAP_RESAMPLES:,} resamples of the pairs]; a run that diverged leaves its "
        "seed's pairs out",
        "",
        *head,
    ]
    for method in methods:
        if method == BASELINE:
            continue
        cells = [
            (deltas.get(f"{method}/{column}") or {}).get("top1", "-")
            for column in TEACHER_SETTINGS
        ]
        lines.append(f"| {name(method)} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


TABLE_COLUMNS = (
    ("top1", "top-1"),
    ("top5", "top-5"),
    ("top1_related", "top-1 related audio"),
    ("top1_unrelated", "top-1 unrelated audio"),
    ("r1", "R@1"),
    ("r5", "R@5"),
    ("map", "mAP"),
)


def _metrics(report: dict[str, Any], synth_info: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Per method (report order): the demo table's numbers as fractions (None if absent),
    from the best-on-validation checkpoint on the test split; "related / unrelated audio" is
    the mean per-class top-1 over the classes whose soundtrack is / is not tied to them."""
    unrelated = set(synth_info.get("unrelated_audio_classes", []))
    out: dict[str, dict[str, Any]] = {}
    for run in report.get("runs", []):
        best = run.get("best") or {}
        retrieval = run.get("retrieval") or {}
        recall = retrieval.get("recall") or {}
        groups: dict[bool, list[float]] = {True: [], False: []}
        if best.get("eval_file"):
            ev = json.loads(Path(best["eval_file"]).read_text())
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


def _format_table(
    per_seed: list[dict[str, dict[str, Any]]],
    hits: list[dict[str, dict[str, Any]]] | None = None,
    probes: list[dict[str, Any] | None] | None = None,
    seeds: list[int] | None = None,
) -> str:
    """Markdown table of :func:`_metrics` in %: the value for one seed, mean +- std
    (population) over several; then the paired differences to the baseline (:func:`_hits`
    of each seed, pooled; "-" without them) and the teachers' linear-probe rows
    (:func:`teacher_probes` of each seed), with notes on how they are computed."""
    seeds = list(seeds) if seeds is not None else list(range(1, len(per_seed) + 1))
    deltas = _paired_cells(hits, seeds) if hits else {}
    names = [name for _, name in TABLE_COLUMNS] + [name for _, name in DELTA_COLUMNS]
    header = "| method | " + " | ".join(names) + " |"
    lines = [header, "|---" * (len(names) + 1) + "|"]
    for method in per_seed[0]:
        cells = []
        for key, _ in TABLE_COLUMNS:
            values = [m[method][key] for m in per_seed if m.get(method, {}).get(key) is not None]
            cells.append(_cell([100 * v for v in values]))
        cells += [deltas.get(method, {}).get(key, "-") for key, _ in DELTA_COLUMNS]
        lines.append(f"| {method} | " + " | ".join(cells) + " |")
    found = [p for p in probes or [] if p]
    for teacher, name in PROBE_ROWS:
        results = [p[teacher] for p in found if p.get(teacher)]
        cells = [
            _cell([100 * r[key] for r in results]) if key in ("top1", "top5") else "-"
            for key, _ in TABLE_COLUMNS
        ]
        lines.append(f"| {name} | " + " | ".join(cells + ["-"] * len(DELTA_COLUMNS)) + " |")
    lines += ["", *_table_notes(hits, found)]
    return "\n".join(lines)


def _table_notes(
    hits: list[dict[str, dict[str, Any]]] | None, probes: list[dict[str, Any]]
) -> list[str]:
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


def _table(
    report: dict[str, Any],
    synth_info: dict[str, Any],
    probes: dict[str, Any] | None = None,
    seed: int = 1,
) -> str:
    """The comparison of one demo run as Markdown (docs/METHOD.md §7)."""
    return _format_table([_metrics(report, synth_info)], [_hits(report)], [probes], [seed])


DELTA_COLUMNS = (("top1", "Δ top-1 vs baseline [95 % CI]"), ("r1", "Δ R@1 vs baseline [95 % CI]"))
PROBE_ROWS = (("audio", "audio teacher, linear probe"), ("image", "image teacher, linear probe"))
BOOTSTRAP_RESAMPLES = 10_000
PROBES_FILE = "teacher_probes.json"


def _video_hits(eval_file: str | Path) -> dict[str, dict[str, float] | None]:
    """Per test video of an evaluation file, 1.0 / 0.0: ``top1`` (the top class is the
    label) and ``r1`` (the nearest training video has the label; None for files written
    before evaluation stored ranks). Videos that could not be evaluated count as misses."""
    ev = json.loads(Path(eval_file).read_text())
    top1: dict[str, float] = {}
    r1: dict[str, float] | None = {}
    for video in ev.get("videos", []):
        vid = video["video_id"]
        top1[vid] = float(bool(video["top5"]) and video["top5"][0] == video["label"])
        if r1 is not None and "retrieval_rank" in video:
            r1[vid] = float(video["retrieval_rank"] == 0)
        else:
            r1 = None
    for miss in ev.get("missing", []):
        top1[miss["video_id"]] = 0.0
        if r1 is not None:
            r1[miss["video_id"]] = 0.0
    return {"top1": top1, "r1": r1 if ev.get("retrieval") else None}


def _hits(report: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Per method of a report: :func:`_video_hits` of its best-on-validation evaluation."""
    out: dict[str, dict[str, Any]] = {}
    for run in report.get("runs", []):
        best = run.get("best") or {}
        if best.get("eval_file"):
            out[str(run.get("method"))] = _video_hits(best["eval_file"])
    return out


def _paired_cells(
    hits: list[dict[str, dict[str, Any]]], seeds: list[int]
) -> dict[str, dict[str, str]]:
    """Per non-baseline method, per :data:`DELTA_COLUMNS` key: "+d [lo, hi]" in points, the
    mean paired difference to the baseline of the same seed over the (seed, video) pairs of
    every seed that has both, with its bootstrap interval (:func:`ccl.stats.paired_bootstrap`,
    fixed generator seed: the same runs give the same table)."""
    from ccl.stats import paired_bootstrap

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


def teacher_probes(
    out: Path,
    paths: dict[str, Path],
    *,
    scale: str | DemoScale = "demo",
    overrides: list[str] | None = None,
) -> dict[str, Any]:
    """The frozen teachers' linear probes (:mod:`ccl.probe`) on one prepared demo benchmark,
    the teachers' own reference rows of the table. The image teacher is set up as the demo's
    CCL runs set it up (the scale's ``ccl-ai`` preset with ``overrides``). Cached in
    ``out/teacher_probes.json`` and computed again only when its inputs (annotations,
    teacher weights, audio embeddings, settings) changed."""
    from dataclasses import asdict

    from ccl.atomic import atomic_write
    from ccl.config import apply_overrides, preset
    from ccl.data.audio_features import sha256_file
    from ccl.demo.probe import audio_probe, image_probe, image_probe_settings

    scale = demo_scale(scale)
    cfg = apply_overrides(
        preset(f"{scale.presets}-ccl-ai"), [*scale.overrides, *(overrides or [])]
    )
    settings = image_probe_settings(cfg)
    manifest = paths["audio_dir"] / "manifest.json"
    inputs = {
        "annotations": sha256_file(paths["annotations"]),
        "image_teacher": sha256_file(paths["image_teacher"]),
        "audio_manifest": sha256_file(manifest) if manifest.is_file() else None,
        "image_settings": json.loads(json.dumps(asdict(settings))),
    }
    cache = out / PROBES_FILE
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
    audio = audio_probe(paths["annotations"], paths["audio_dir"])
    image = image_probe(paths["annotations"], paths["frames"], paths["image_teacher"], settings)
    for result in (audio, image):
        print("  " + result.summary())
    data = {"inputs": inputs, "audio": audio.to_dict(), "image": image.to_dict()}
    with atomic_write(cache) as f:
        f.write((json.dumps(data, indent=1) + "\n").encode())
    print(f"[demo] teachers' linear probes: {time.perf_counter() - t0:.0f} s", flush=True)
    return data


def _demo_seed(spec: dict[str, Any]) -> dict[str, Any]:
    """One seed's demo (also the body of a ``jobs`` worker process, whose output goes to
    ``<root>/demo.log``): ``ccl demo`` into ``root`` -> its report's data."""
    root = Path(spec["root"])
    kwargs = {"seed": spec["seed"], "scale": spec["scale"], "overrides": spec["overrides"]}
    if spec.get("threads"):
        kwargs["jobs"] = 1  # its methods one after another: the seeds share the threads already
    with _worker(spec.get("threads"), root / "demo.log"):
        return run_demo(root, **kwargs)


def run_demo_seeds(
    out: str | Path,
    *,
    seeds: tuple[int, ...],
    scale: str | DemoScale = "demo",
    overrides: list[str] | None = None,
    jobs: int = 1,
) -> str:
    """``ccl demo`` for each seed (into ``out/seed_S``), then the table with mean +- std over
    the seeds (``out/demo_table_seeds.md``, per-seed numbers in ``out/demo_seeds.json``).
    ``jobs`` > 1 runs that many seeds at once, in separate processes with a share of the CPU
    threads each (one GPU serves them all), each writing its progress to
    ``out/seed_S/demo.log``. The runs are those of one seed at a time; with fewer threads
    each, floating-point sums (and so the numbers) can differ slightly."""
    out = Path(out)
    scale = demo_scale(scale)
    jobs = max(1, min(int(jobs), len(seeds)))
    threads = _threads_per_job(jobs)
    specs = [
        {
            "root": str(out / f"seed_{seed}"),
            "seed": seed,
            "scale": scale,
            "overrides": list(overrides or []),
            "threads": threads,
        }
        for seed in seeds
    ]
    t0 = time.perf_counter()
    if jobs > 1:
        logs = out / "seed_S" / "demo.log"
        print(f"[demo] {len(seeds)} seeds, {jobs} at once; progress in {logs}", flush=True)
        with _process_pool(jobs) as pool:
            reports = list(pool.map(_demo_seed, specs))
    else:
        reports = [_demo_seed(spec) for spec in specs]
    per_seed, hits, probes = [], [], []
    for spec, report in zip(specs, reports):
        root = Path(spec["root"])
        info = json.loads((root / "synth" / "synth_info.json").read_text())
        per_seed.append(_metrics(report, info))
        hits.append(_hits(report))
        probes.append(json.loads((root / PROBES_FILE).read_text()))
    table = (
        f"Test split, best-on-validation checkpoint, mean +- std over seeds "
        f"{', '.join(map(str, seeds))}\n\n" + _format_table(per_seed, hits, probes, list(seeds))
    )
    write_text_atomic(out / "demo_table_seeds.md", table + "\n")
    numbers = {str(s): m for s, m in zip(seeds, per_seed)}
    write_text_atomic(out / "demo_seeds.json", json.dumps(numbers, indent=1) + "\n")
    print(table)
    minutes = (time.perf_counter() - t0) / 60
    print(f"\n[demo] {len(seeds)} seeds: {minutes:.1f} min", flush=True)
    return table


def _cmd_demo(args: argparse.Namespace) -> int:
    if args.device == "cuda":
        from ccl.runtime import resolve_device

        resolve_device("cuda")  # no GPU: one clear error before anything is generated
    if args.quick:
        scale = demo_scale("quick", args.device)
    else:
        scale = demo_scale("gpu" if args.device == "cuda" else "demo", args.device)
    seeds = tuple(args.seeds) if args.seeds else None
    if seeds is None and scale.synth == "gpu":
        seeds = GPU_SEEDS
    # --jobs by default: on a GPU every seed at once; on a CPU one seed after another, with
    # its methods (or the comparison's trainings) side by side
    gpu = scale.synth == "gpu"
    if args.compare or args.tune:
        jobs = args.jobs or (len(seeds) if gpu and seeds else scale.method_jobs)
        seeds = seeds or (args.seed,)
        if args.compare:
            run_compare(args.out, seeds=seeds, scale=scale, overrides=args.overrides, jobs=jobs)
        else:
            from ccl.demo.tune import run_tuning

            run_tuning(args.out, seeds=seeds, scale=scale, overrides=args.overrides, jobs=jobs)
    elif seeds:
        jobs = args.jobs or (len(seeds) if gpu else 1)
        run_demo_seeds(args.out, seeds=seeds, scale=scale, overrides=args.overrides, jobs=jobs)
    else:
        run_demo(args.out, seed=args.seed, scale=scale, overrides=args.overrides, jobs=args.jobs)
    return 0


def register(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "demo",
        help="the whole pipeline on the embedded synthetic benchmark (about 10 min on 2 cores)",
    )
    p.add_argument("--out", default="demo_runs", help="folder for everything the demo writes")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--quick", action="store_true", help="tiny scale, 2 epochs (CI smoke test)")
    task = p.add_mutually_exclusive_group()
    task.add_argument(
        "--compare",
        action="store_true",
        help="the paper's table: CCL, FitNet, PKT, CC, RKD, CRD and CMC with each teacher setting",
    )
    task.add_argument(
        "--tune",
        action="store_true",
        help="CCL's loss weight / temperature chosen on the validation groups, then the test "
        "table of the chosen settings against the baseline (ccl.tuning, docs/DEMO.md)",
    )
    p.add_argument(
        "--seeds",
        type=int,
        nargs="+",
        help="seeds to average over (one benchmark, teachers and runs per seed, in --out/seed_S)",
    )
    p.add_argument(
        "--device",
        choices=("auto", "cpu", "cuda"),
        default="auto",
        help="cuda: the larger 'gpu' benchmark with 15 epochs per run and seeds 1-5 side by "
        "side on one GPU (docs/DEMO.md); cpu: everything on the CPU; auto (default): the "
        "demo, on a GPU when there is one",
    )
    p.add_argument(
        "--jobs",
        type=int,
        default=None,
        help="processes run at once, sharing the CPU threads: methods of one demo (default "
        "2: a second thread barely speeds up the demo's small student), seeds with --seeds "
        "(default 1; every seed at once with --device cuda), trainings with --compare or "
        "--tune (default 2; one per seed with --device cuda); the runs do not depend on it",
    )
    p.add_argument("overrides", nargs="*", metavar="section.key=value", help="applied to every run")
    p.set_defaults(func=_cmd_demo)
