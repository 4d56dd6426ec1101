"""Resuming a run: which checkpoint it continues from and where it stands after.

``train.resume=auto`` continues the run folder's own newest good checkpoint;
``train.resume=PATH`` continues any checkpoint, but into a folder holding another run only
when the checkpoint is that run's (:func:`ccl.runs.refuse_resume_into_other_run`).
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path
from typing import Any

from ccl.checkpoint import Progress, TrainingState, find_resume_checkpoint
from ccl.config import Config
from ccl.logs import reset_log_after


def resume_checkpoint_path(cfg: Config, run_dir: Path) -> Path | None:
    """The checkpoint ``cfg.train.resume`` names for ``run_dir``: None for a fresh start or
    an ``auto`` resume that finds none, else the file."""
    if cfg.train.resume is None:
        return None
    if cfg.train.resume == "auto":
        return find_resume_checkpoint(run_dir)
    return Path(cfg.train.resume)


def restore_progress(
    cfg: Config,
    state: TrainingState,
    saved: dict[str, Any] | None,
    resume_path: Path | None,
    run_dir: Path,
    *,
    main: bool,
) -> Progress:
    """Where the run starts: the ``saved`` checkpoint restored into ``state`` and the RNGs,
    or epoch 0. The log is cut back to match (main process only)."""
    log_path = run_dir / "metrics.jsonl"
    if saved is None:
        if main and cfg.train.resume == "auto":
            # no checkpoint to continue from: a log is all a killed first epoch left, of
            # steps that were never saved
            reset_log_after(log_path, 0, 0)
        return Progress(0, 0, 0, epoch_sums=defaultdict(float), epoch_counts=defaultdict(int))
    progress = state.restore(saved, source=resume_path or "checkpoint")
    progress.epoch_sums = defaultdict(float, progress.epoch_sums)
    progress.epoch_counts = defaultdict(int, progress.epoch_counts)
    if main:
        reset_log_after(log_path, progress.epoch, progress.step)
        where = f"epoch {progress.epoch + 1}, batch {progress.batch_in_epoch}"
        print(f"resumed from {resume_path}: {where}")
    return progress
