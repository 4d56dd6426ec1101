"""A training run's ``metrics.jsonl``: one JSON object per logged step and per epoch.

:class:`JsonlLog` appends the records (and mirrors them to TensorBoard and Weights & Biases
when asked, :func:`open_mirrors`); :func:`reset_log_after` trims a log back to a checkpoint
when a run resumes, dropping damaged lines (:func:`parse_log_line`) with a warning
(:func:`describe_dropped_lines`).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from ccl.atomic import write_text_atomic
from ccl.runs import is_number
from ccl.tblog import TensorBoardLog, require_tensorboard
from ccl.wandblog import WandbLog, require_wandb

if TYPE_CHECKING:
    from ccl.config import Config, TrainConfig


class MetricsMirror(Protocol):
    """Another sink of the log's records (:class:`~ccl.tblog.TensorBoardLog`,
    :class:`~ccl.wandblog.WandbLog`)."""

    def write(self, record: dict[str, Any]) -> None: ...

    def close(self) -> None: ...


def require_mirrors(train: TrainConfig) -> None:
    """Raise the one-line install hint of each mirror ``train`` asks for whose package is
    missing; called on every rank before anything is written."""
    if train.tensorboard:
        require_tensorboard()
    if train.wandb:
        require_wandb()


def open_mirrors(cfg: Config, run_dir: Path, resumed_step: int | None) -> list[MetricsMirror]:
    """The mirrors ``cfg.train`` asks for, opened on the run folder (main process only).
    ``resumed_step``: the step of the checkpoint a resumed run starts from, else None."""
    mirrors: list[MetricsMirror] = []
    if cfg.train.tensorboard:
        mirrors.append(TensorBoardLog(run_dir / "tensorboard", resumed_step))
    if cfg.train.wandb:
        mirrors.append(WandbLog(run_dir, cfg.to_dict(), cfg.train.name))
    return mirrors


class JsonlLog:
    """Append-only JSON-lines metrics log (one object per step or epoch); main rank only.
    ``mirrors``: sinks given every record too (:func:`open_mirrors`)."""

    def __init__(
        self, path: Path, enabled: bool = True, mirrors: Sequence[MetricsMirror] = ()
    ) -> None:
        self.path, self.enabled, self.mirrors = path, enabled, list(mirrors)

    def write(self, record: dict[str, Any]) -> None:
        if self.enabled:
            try:
                with self.path.open("a") as f:
                    f.write(json.dumps(record) + "\n")
            except OSError as err:  # a write error (full disk) would not name the file
                raise OSError(err.errno, err.strerror, str(self.path)) from err
            for mirror in self.mirrors:
                mirror.write(record)

    def close(self) -> None:
        for mirror in self.mirrors:
            mirror.close()


def parse_log_line(raw: bytes) -> dict[str, Any] | None:
    """One record of a ``metrics.jsonl`` line, or None when the line is damaged: not UTF-8,
    not a JSON object, without a ``type``, or with a ``step`` or (other than a step record)
    an ``epoch`` that is not a number."""
    try:
        record = json.loads(raw.decode("utf-8"))
    except ValueError:  # UnicodeDecodeError is one too
        return None
    if not isinstance(record, dict) or not isinstance(record.get("type"), str):
        return None
    if not is_number(record.get("step", 0)):
        return None
    if record["type"] != "step" and not is_number(record.get("epoch")):
        return None
    return record


def reset_log_after(path: Path, epoch: int, step: int) -> list[int]:
    """On resume, drop log records written after the checkpoint at (``epoch``, ``step``) (a
    killed run may have logged steps it never saved), so the log reads as one uninterrupted
    run. Damaged lines (:func:`parse_log_line`: a line cut by the kill, stray bytes) are
    dropped too; their 1-based line numbers are returned, for the caller's warning."""
    if not path.exists():
        return []
    try:
        lines = path.read_bytes().splitlines()
    except OSError as err:
        raise OSError(err.errno, err.strerror, str(path)) from err
    kept, damaged = [], []
    for lineno, raw in enumerate(lines, start=1):
        if not raw.strip():
            continue
        record = parse_log_line(raw)
        if record is None:
            damaged.append(lineno)
        elif record.get("step", 0) <= step and (
            record["type"] == "step" or record["epoch"] <= epoch
        ):
            kept.append(raw.decode("utf-8"))
    # atomically: a crash while rewriting must not cost the run its whole log
    write_text_atomic(path, "".join(k + "\n" for k in kept))
    return damaged


def describe_dropped_lines(path: Path, lines: list[int], shown: int = 10) -> str:
    """One line of warning for the damaged ``lines`` of the log at ``path`` that a resume
    dropped (the first ``shown`` line numbers, then a count)."""
    listed = ", ".join(map(str, lines[:shown])) + (
        f" and {len(lines) - shown} more" if len(lines) > shown else ""
    )
    plural = "s" if len(lines) != 1 else ""
    return (
        f"warning: {path}: dropped {len(lines)} damaged line{plural} ({listed}): not a "
        "readable log record (cut by a kill, or stray bytes); the other records are kept"
    )
