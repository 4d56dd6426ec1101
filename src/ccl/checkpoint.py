"""Checkpoints: atomic writes, safe loads (``weights_only=True``), the training state a
checkpoint holds, ``--resume auto``, and the check that a checkpoint's classes are the
data's."""

from __future__ import annotations

import contextlib
import math
import random
import re
import sys
from collections.abc import Sequence
from dataclasses import MISSING, dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from ccl.atomic import TMP_SUFFIX, atomic_write
from ccl.errors import CheckpointError, ClassMismatchError, WeightsError


def save_checkpoint(state: dict[str, Any], path: str | Path) -> None:
    """Write ``state`` to ``path`` atomically (see :func:`atomic_write`)."""
    with atomic_write(path, what="checkpoint") as f:
        torch.save(state, f)


def remove_stale_temporaries(ckpt_dir: str | Path) -> list[Path]:
    """Delete the temporaries a save killed before its rename left behind (SIGKILL, power
    loss); only ever called by the run that owns ``ckpt_dir``, before it saves anything."""
    removed = []
    for tmp in sorted(Path(ckpt_dir).glob(f".*.pt.*{TMP_SUFFIX}")):
        tmp.unlink(missing_ok=True)
        removed.append(tmp)
    return removed


def check_classes(
    saved: Sequence[str], current: Sequence[str], *, saved_from: str, current_from: str
) -> None:
    """Refuse to score or train against other labels than a checkpoint's: output ``i`` of the
    network means ``saved[i]``, so ``current`` must be the same names in the same order.
    The error names the first class that differs."""
    saved, current = list(saved), list(current)
    if saved == current:
        return
    for i, (a, b) in enumerate(zip(saved, current)):
        if a != b:
            where = f"class {i} is {a!r} in {saved_from} but {b!r} in {current_from}"
            break
    else:
        i = min(len(saved), len(current))
        longer, name = (saved, saved_from) if len(saved) > i else (current, current_from)
        where = f"class {i} ({longer[i]!r}) is only in {name}"
    raise ClassMismatchError(
        f"the classes of {saved_from} ({len(saved)}) and {current_from} ({len(current)}) "
        f"differ: {where}"
    )



def load_weights(
    path: str | Path,
    *,
    what: str = "weights file",
    hint: str = "",
    safe_globals: Sequence[Any] = (),
) -> Any:
    """``torch.load(path, map_location="cpu", weights_only=True)``: tensors and plain
    containers only, never pickled code, so a downloaded or shared file cannot run anything.
    Every checkpoint and teacher-weights file is read through here.

    A missing file raises ``FileNotFoundError("<what> not found: <path><hint>")``; a file
    torch cannot read (truncated, garbage, pickled objects) raises :class:`WeightsError`
    ``"cannot read <what> <path>: <error type>: <first line of the error>"``. Callers check
    the content themselves. ``safe_globals``: extra classes and functions the file may
    reference (numpy scalars in PANNs checkpoints)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{what} not found: {path}{hint}")
    allowed = (
        torch.serialization.safe_globals(list(safe_globals))
        if safe_globals
        else contextlib.nullcontext()
    )
    try:
        with allowed:
            return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # noqa: BLE001 - any failure becomes one clear message
        raise WeightsError(f"cannot read {what} {path}: {torch_load_reason(err)}") from err


def torch_load_reason(err: BaseException) -> str:
    """One line for a failure of ``torch.load(weights_only=True)``: the error type and the
    first line of its message; for a file holding pickled objects, which object, without
    torch's advice to load it with ``weights_only=False`` (which could run its code)."""
    text = re.sub(r"\x1b\[[0-9;]*m", "", str(err)).strip()
    if "weights_only" in text or "Weights only load failed" in text:
        found = re.search(r"WeightsUnpickler error: ([^\n]*?)(?: was not an allowed|\.?\n|$)", text)
        detail = f" ({found.group(1).strip()})" if found else ""
        return (
            f"it holds pickled objects{detail}, not only tensors and plain containers; ccl "
            "never loads those, since loading them could run code"
        )
    first_line = (text.splitlines() or [""])[0]
    return f"{type(err).__name__}: {first_line}"


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """A ccl checkpoint, read onto the CPU by :func:`load_weights`; every problem is a
    :class:`CheckpointError` naming the file."""
    path = Path(path)
    try:
        state = load_weights(path, what="checkpoint")
    except (FileNotFoundError, WeightsError) as err:
        raise CheckpointError(str(err)) from err
    if not isinstance(state, dict) or "student" not in state:
        raise CheckpointError(f"{path} is not a ccl checkpoint (no 'student' entry)")
    return state


def find_resume_checkpoint(run_dir: str | Path) -> Path | None:
    """The newest loadable checkpoint of a run for ``--resume auto``: ``last.pt``, else the
    periodic ones newest first (so a truncated ``last.pt`` falls back to the previous one).
    None when the run has none of them (nothing to resume: a fresh start loses nothing).
    When every one of them is unusable this raises instead of returning None, because a
    fresh start would overwrite ``best.pt`` and the log of the run."""
    ckpt_dir = Path(run_dir) / "checkpoints"
    if not ckpt_dir.is_dir():
        return None
    candidates = [ckpt_dir / "last.pt"] + sorted(ckpt_dir.glob("epoch_*.pt"), reverse=True)
    unusable = []
    for candidate in candidates:
        if not candidate.is_file():
            continue
        try:
            load_checkpoint(candidate)
        except CheckpointError as err:
            print(f"warning: skipping unusable checkpoint: {err}", file=sys.stderr)
            unusable.append(err)
            continue
        return candidate
    others = sorted(p for p in ckpt_dir.glob("*.pt") if p not in candidates)
    if not unusable and not others:
        return None
    intact = []
    for other in others:
        try:
            intact.append((other, int(load_checkpoint(other)["epoch"])))
        except (CheckpointError, KeyError, TypeError, ValueError):
            continue
    why = "; ".join(str(e) for e in unusable) or f"{ckpt_dir} has no last.pt"
    hint = (
        f"; intact: {', '.join(f'{p.name} (epoch {e})' for p, e in intact)}. Continue from "
        f"{intact[0][0].name} with --resume {intact[0][0]}, or"
        if intact
        else ". Continue from another checkpoint with --resume PATH, or"
    )
    raise CheckpointError(
        f"cannot resume {run_dir}: no usable checkpoint to continue from ({why}). Nothing "
        f"was changed{hint} start over with --overwrite (moves the old run aside) or a new "
        "train.name"
    )


def rng_state() -> dict[str, Any]:
    """Every RNG the loop draws from, as tensors and plain values (weights_only-safe)."""
    np_state = np.random.get_state()
    state: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "numpy": {
            "key": torch.from_numpy(np_state[1].astype(np.int64)),
            "pos": int(np_state[2]),
            "has_gauss": int(np_state[3]),
            "cached_gaussian": float(np_state[4]),
        },
        "python": _python_state_to_plain(random.getstate()),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    np_state = state["numpy"]
    np.random.set_state(
        (
            "MT19937",
            np_state["key"].numpy().astype(np.uint32),
            np_state["pos"],
            np_state["has_gauss"],
            np_state["cached_gaussian"],
        )
    )
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _python_state_to_plain(state: tuple) -> list:
    version, internal, gauss = state
    return [version, list(internal), gauss]


CHECKPOINT_FORMAT = "ccl-checkpoint-v1"


@dataclass
class Progress:
    """Where a run stands, saved next to the weights. ``epoch`` is the epoch in progress
    (0-based) and ``batch_in_epoch`` the batches of it already trained; a finished epoch is
    (epoch + 1, 0). ``epoch_sums`` and ``epoch_counts`` are the running training means of the
    epoch in progress, so a run resumed mid-epoch logs the same epoch means. The defaults are
    what a checkpoint without the entry (an older one) resumes with."""

    epoch: int
    batch_in_epoch: int
    step: int
    best_top1: float = -math.inf
    best: dict[str, float] | None = None
    epoch_sums: dict[str, float] = field(default_factory=dict)
    epoch_counts: dict[str, int] = field(default_factory=dict)


_REQUIRED_PROGRESS = [
    f.name for f in fields(Progress) if f.default is MISSING and f.default_factory is MISSING
]


@dataclass
class TrainingState:
    """Everything of a training run that a checkpoint saves and a resume restores: the keys
    of a checkpoint are written in :meth:`to_dict` and read back in :meth:`restore`, nowhere
    else, so the two cannot drift apart. Besides these objects a checkpoint holds the
    :class:`Progress`, every RNG state, the run's config and its classes."""

    student: nn.Module
    heads: nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    scaler: torch.amp.GradScaler

    def to_dict(
        self, progress: Progress, *, config: dict[str, Any], classes: Sequence[str]
    ) -> dict[str, Any]:
        """The checkpoint: tensors and plain containers only (``weights_only``-loadable)."""
        return {
            "format": CHECKPOINT_FORMAT,
            "epoch": progress.epoch,
            "batch_in_epoch": progress.batch_in_epoch,
            "step": progress.step,
            "student": self.student.state_dict(),
            "heads": self.heads.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "scaler": self.scaler.state_dict(),
            "rng": rng_state(),
            "best_top1": progress.best_top1,
            "best": progress.best,
            "epoch_sums": dict(progress.epoch_sums),
            "epoch_counts": dict(progress.epoch_counts),
            "config": config,
            "classes": list(classes),
        }

    def save(
        self,
        path: str | Path,
        progress: Progress,
        *,
        config: dict[str, Any],
        classes: Sequence[str],
    ) -> None:
        """Write the checkpoint to ``path`` atomically (:func:`save_checkpoint`)."""
        save_checkpoint(self.to_dict(progress, config=config, classes=classes), path)

    def restore(self, state: dict[str, Any], *, source: str | Path = "checkpoint") -> Progress:
        """Load a checkpoint (``state`` from :func:`load_checkpoint`) into these objects and
        the RNGs; returns where the run stands. ``source`` names the file in errors."""
        needed = ["student", "heads", "optimizer", "scheduler", "scaler", "rng"]
        missing = [k for k in needed + _REQUIRED_PROGRESS if k not in state]
        if missing:
            raise CheckpointError(f"cannot resume from {source}: it has no {', '.join(missing)}")
        self.student.load_state_dict(state["student"])
        self.heads.load_state_dict(state["heads"])
        # the kernel choice (optim.fused) is the resuming run's, not the saved one's (the
        # same update): set before loading, so torch places the state as those kernels need
        saved = state["optimizer"]
        for group, current in zip(saved.get("param_groups", []), self.optimizer.param_groups):
            group.update({k: current[k] for k in ("fused", "foreach") if k in current})
        self.optimizer.load_state_dict(saved)
        self.scheduler.load_state_dict(state["scheduler"])
        self.scaler.load_state_dict(state["scaler"])
        set_rng_state(state["rng"])
        return Progress(**{f.name: state[f.name] for f in fields(Progress) if f.name in state})
