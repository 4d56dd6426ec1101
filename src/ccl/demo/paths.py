"""A demo folder (``ccl demo --out``): where each step writes, and how a rerun knows what is done.

A demo is run again into the same folder step by step: a step whose file exists is skipped
(:func:`step`), a run folder is continued. So a folder is refused when it holds another
seed's or scale's benchmark (:func:`check_same_benchmark`) or a run of other settings
(:func:`check_same_run`), before their results could be reported as this demo's. A run that
diverged leaves :data:`DIVERGED_FILE` in its folder, so a rerun skips it too.

Layout of one seed's folder (several seeds: one such folder per seed, ``seed_S``)::

    synth/                       the generated benchmark (ccl.demo.synth; synth_info.json)
    frames/                      frame stores (prepare_report.json once complete)
    annotations.json             UCF101-style annotations with a validation hold-out
    teachers/image.pth, audio.pt the pretrained teachers
    audio_features/              per-video audio embeddings (manifest.json)
    teacher_probes.json          the teachers' linear probes (cached with their inputs)
    runs/<run>/                  training runs (eval_test.json, eval_test_last.json)
    logs/<run>.log               a run's output when it trained in a worker process
    report/                      ccl report of the runs
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from ccl.config import Config, config_differences
from ccl.data.audio import MANIFEST_NAME
from ccl.data.prepare import REPORT_NAME
from ccl.demo.synth import INFO_FILE
from ccl.runs import CONFIG_FILE, eval_path

T = TypeVar("T")

PROBES_FILE = "teacher_probes.json"
"""The teachers' linear probes of a demo folder, with the inputs they were computed from."""
DIVERGED_FILE = "DIVERGED"
"""Written into a run folder whose training diverged (its text: the error)."""
DEMO_LOG = "demo.log"
"""A seed's output when the seeds run side by side."""


@dataclass(frozen=True)
class DemoPaths:
    """Where one demo folder keeps each prepared input and output."""

    root: Path

    @property
    def synth(self) -> Path:
        """The generated benchmark (``ccl synth --out``)."""
        return self.root / "synth"

    @property
    def synth_info(self) -> Path:
        """The generator's record; present once the benchmark is complete."""
        return self.synth / INFO_FILE

    @property
    def frames(self) -> Path:
        return self.root / "frames"

    @property
    def frames_done(self) -> Path:
        """``ccl prepare``'s report: present once the frame stores are complete."""
        return self.frames / REPORT_NAME

    @property
    def annotations(self) -> Path:
        return self.root / "annotations.json"

    @property
    def image_teacher(self) -> Path:
        return self.root / "teachers" / "image.pth"

    @property
    def audio_teacher(self) -> Path:
        return self.root / "teachers" / "audio.pt"

    @property
    def audio_dir(self) -> Path:
        return self.root / "audio_features"

    @property
    def audio_manifest(self) -> Path:
        """The audio extraction's manifest: present once the embeddings are complete."""
        return self.audio_dir / MANIFEST_NAME

    @property
    def probes(self) -> Path:
        return self.root / PROBES_FILE

    @property
    def runs(self) -> Path:
        """The run folders (``train.out_dir`` of every run of this demo)."""
        return self.root / "runs"

    @property
    def report(self) -> Path:
        return self.root / "report"

    @property
    def demo_log(self) -> Path:
        return self.root / DEMO_LOG

    def log(self, run_name: str) -> Path:
        """The output of run ``run_name`` when it trains in a worker process."""
        return self.root / "logs" / f"{run_name}.log"


def demo_paths(out: str | Path) -> DemoPaths:
    """The layout of the demo folder ``out`` (``ccl demo --out``)."""
    return DemoPaths(Path(out))


def seed_folder(out: str | Path, seed: int) -> Path:
    """The demo folder of one seed when several seeds share ``out``."""
    return Path(out) / f"seed_{seed}"


def use_demo_data(cfg: Config, paths: DemoPaths) -> Config:
    """Point a training config at a prepared demo folder; returns ``cfg``."""
    cfg.data.annotations = str(paths.annotations)
    cfg.data.frames_dir = str(paths.frames)
    cfg.data.audio_dir = str(paths.audio_dir)
    cfg.image_teacher.weights = str(paths.image_teacher)
    return cfg


def step(
    name: str, done: Path, compute: Callable[[], T], load: Callable[[], T] | None = None
) -> T | None:
    """``compute()`` unless ``done`` exists (a finished step of an earlier demo): then
    ``load()``, which reads what that step left (None without ``load``). Prints progress
    with the time taken."""
    if done.exists():
        print(f"[demo] {name}: done already ({done})", flush=True)
        return load() if load is not None else None
    print(f"[demo] {name} ...", flush=True)
    t0 = time.perf_counter()
    value = compute()
    print(f"[demo] {name}: {time.perf_counter() - t0:.0f} s", flush=True)
    return value


def checkpoint_path(run_dir: Path, kind: str) -> Path:
    """A run's checkpoint ``kind`` (``best``, ``last``); ``last`` marks a trained run."""
    return run_dir / "checkpoints" / f"{kind}.pt"


def evaluated_marker(run_dir: Path, checkpoints: tuple[str, ...]) -> Path:
    """The file whose presence says the demo finished evaluating these checkpoints of
    ``run_dir`` on the test split (the last one it writes: ``checkpoints[-1]``'s)."""
    return eval_path(run_dir, "test", checkpoints[-1])


def read_synth_info(paths: DemoPaths) -> dict[str, Any]:
    """The generator's record of the benchmark in ``paths`` (it must be complete)."""
    return json.loads(paths.synth_info.read_text())


def check_same_benchmark(
    paths: DemoPaths, seed: int, synth_scale: str, soundtracks: str = "families"
) -> None:
    """A demo folder is reused step by step: refuse one that holds another seed's, scale's
    or kind of soundtracks' benchmark (its teachers and runs would be reported as this
    one's). A ``synth_info.json`` without ``soundtracks`` holds ``events``."""
    out, info_file = paths.root, paths.synth_info
    if not info_file.is_file():
        return
    try:
        info = read_synth_info(paths)
    except ValueError as err:
        raise ValueError(
            f"{info_file} is not readable JSON ({err}): ccl demo cannot tell which benchmark "
            f"{out} holds, so give it another --out"
        ) from err
    held = (info.get("seed"), info.get("scale"), info.get("soundtracks", "events"))
    if held != (seed, synth_scale, soundtracks):
        raise ValueError(
            f"{out} holds the demo benchmark of seed {held[0]} at scale {held[1]!r} with "
            f"{held[2]} soundtracks ({info_file}), not seed {seed} at scale {synth_scale!r} "
            f"with {soundtracks} soundtracks: ccl demo reuses what its folder holds, so give "
            "it another --out"
        )


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


def check_same_run(run_dir: Path, cfg: Config) -> None:
    """Finished demo steps are skipped: refuse a run folder that holds a run of other
    settings than ``cfg`` (other overrides, seed or scale), before it is reported as this
    one's or continued with the new settings."""
    saved = run_dir / CONFIG_FILE
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
