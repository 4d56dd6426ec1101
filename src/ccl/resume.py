"""Resuming a run: which checkpoint it continues from, what it may change, and where it
stands after.

``train.resume=auto`` continues the run folder's own newest good checkpoint;
``train.resume=PATH`` continues any checkpoint, but into a folder holding another run only
when the checkpoint is that run's (:func:`ccl.runs.refuse_resume_into_other_run`).

A resume runs with the checkpoint's settings except those that can change safely mid-run
(:data:`CHANGEABLE_ON_RESUME`): those are applied, learning rates included, and printed;
any other difference is refused naming the key. So the stored config is always what ran.
"""

from __future__ import annotations

import sys
from collections import defaultdict
from pathlib import Path
from typing import Any

from ccl.checkpoint import Progress, TrainingState, find_resume_checkpoint
from ccl.config import Config
from ccl.errors import CheckpointError
from ccl.logs import describe_dropped_lines, reset_log_after


def resume_checkpoint_path(cfg: Config, run_dir: Path) -> Path | None:
    """The checkpoint ``cfg.train.resume`` names for ``run_dir``: None for a fresh start or
    an ``auto`` resume that finds none, else the file. A folder given as the checkpoint is a
    :class:`~ccl.errors.CheckpointError` saying what to give instead."""
    if cfg.train.resume is None:
        return None
    if cfg.train.resume == "auto":
        return find_resume_checkpoint(run_dir)
    path = Path(cfg.train.resume)
    if path.is_dir():
        raise CheckpointError(
            f"--resume {path} is a folder: give a checkpoint file (e.g. "
            f"{path / 'checkpoints' / 'last.pt'}) or --resume auto"
        )
    return path


CHANGEABLE_ON_RESUME = frozenset(
    {
        "optim.lr",
        "optim.head_lr",
        "train.epochs",
        "train.log_every",
        "train.save_every",
        "train.val_every",
        "train.checkpoint_every_steps",
        "train.grad_norm_every",
        "train.tensorboard",
        "train.wandb",
        "train.progress",
        "train.device",
        "train.compile",
        "data.workers",
        "optim.fused",  # which kernels compute the same update
        # where the same inputs lie (a moved folder; the classes are checked on resume)
        "data.annotations",
        "data.frames_dir",
        "data.audio_dir",
        "image_teacher.weights",
    }
)
"""Settings a resume may change: learning rates, the number of epochs, log, save and
validation frequencies, logging, device, loader workers, and where the inputs lie."""

RUN_PLACE = ("train.name", "train.out_dir", "train.resume")
"""Where a run is and how it started: never a difference between a checkpoint and a resume."""


def resume_changes(
    cfg: Config, saved_config: dict[str, Any] | None, checkpoint: str | Path
) -> dict[str, tuple[Any, Any]]:
    """``{"section.key": (checkpoint's value, cfg's value)}`` for the settings a resume of
    ``checkpoint`` changes, all of them in :data:`CHANGEABLE_ON_RESUME`; any other change
    raises ``ValueError`` naming every such key. Only keys the checkpoint's config holds are
    compared (none when it holds no config). Reads only."""
    if not saved_config:
        return {}
    try:
        saved = Config.from_dict(saved_config).to_dict()
    except (ValueError, TypeError) as err:
        msg = f"cannot resume from {checkpoint}: its config is unreadable ({err})"
        raise ValueError(msg) from err
    current = cfg.to_dict()
    changes = {
        f"{section}.{key}": (saved[section][key], current[section][key])
        for section, values in saved_config.items()
        for key in values
        if f"{section}.{key}" not in RUN_PLACE and saved[section][key] != current[section][key]
    }
    fixed = [key for key in changes if key not in CHANGEABLE_ON_RESUME]
    if fixed:
        shown = "; ".join(f"{k} {changes[k][0]!r} -> {changes[k][1]!r}" for k in fixed)
        raise ValueError(
            f"cannot resume from {checkpoint} with other settings than it was trained with: "
            f"{shown} (these cannot change mid-run); nothing was changed. Resume with the "
            "run's values, or start a new run with train.name=NAME"
        )
    return changes


def apply_learning_rates(cfg: Config, state: TrainingState) -> None:
    """Make a restored optimiser follow ``cfg``'s learning rates: each parameter group's
    base rate becomes the config's (the student's ``optim.lr``, the heads' ``optim.head_lr``
    or ``optim.lr``) and its current rate that base times the schedule at the restored
    epoch."""
    bases = {"student": cfg.optim.lr, "heads": cfg.optim.head_lr or cfg.optim.lr}
    scheduler = state.scheduler
    for i, group in enumerate(state.optimizer.param_groups):
        base = bases[group.get("name", "student")]
        scheduler.base_lrs[i] = group["initial_lr"] = base
        group["lr"] = base * scheduler.lr_lambdas[i](scheduler.last_epoch)


def restore_progress(
    cfg: Config,
    state: TrainingState,
    saved: dict[str, Any] | None,
    resume_path: Path | None,
    run_dir: Path,
    *,
    main: bool,
    changes: dict[str, tuple[Any, Any]] | None = None,
) -> Progress:
    """Where the run starts: the ``saved`` checkpoint restored into ``state`` and the RNGs,
    or epoch 0. The log is cut back to match (main process only). ``changes``
    (:func:`resume_changes`) are applied and printed."""
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
    changes = changes or {}
    if {"optim.lr", "optim.head_lr"} & changes.keys():
        apply_learning_rates(cfg, state)
    if main:
        for key, (old, new) in changes.items():
            print(f"resume: {key} changed from {old!r} to {new!r} (applied from here on)")
        damaged = reset_log_after(log_path, progress.epoch, progress.step)
        if damaged:
            print(describe_dropped_lines(log_path, damaged), file=sys.stderr)
        where = f"epoch {progress.epoch + 1}, batch {progress.batch_in_epoch}"
        print(f"resumed from {resume_path}: {where}")
    return progress
