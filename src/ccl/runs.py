"""Run folders: reading what a run holds, and never touching a run unasked.

A run folder (``<train.out_dir>/<train.name>``) holds ``config.json``, ``metrics.jsonl`` and
``checkpoints/``; ``ccl evaluate`` adds ``eval_<split>.json`` (best checkpoint),
``eval_<split>_last.json`` (last checkpoint), ``eval_<split>_<name>.json`` (any other
checkpoint file) and the saved features beside them.
:func:`load_run` reads all of it into a :class:`Run` (checkpoints are listed, never loaded),
with notes on what is missing, unfinished or stale.

Presets fix the name, so running a preset twice names the same folder; a fresh start there
would replace its checkpoints and append a second log to the first. So a fresh start refuses
a folder that holds a run, unless told to move that run aside.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from ccl.errors import ReportError, RunExistsError
from ccl.runlock import LOCK_FILE

RUN_FILES = ("config.json", "metrics.jsonl")
CONFIG_FILE, METRICS_FILE = RUN_FILES


def split_file_name(split: str) -> str:
    """The name a subset goes by in the evaluation file names: ``testing`` is ``test``,
    every other subset keeps its name."""
    return split.replace("testing", "test")


def eval_path(run_dir: str | Path, split: str, checkpoint: str = "best") -> Path:
    """Where ``ccl evaluate`` writes the results of ``checkpoint`` on subset ``split``
    (``testing``/``test``/``validation``/...): ``eval_<split>.json`` for the best checkpoint,
    ``eval_<split>_<checkpoint>.json`` for any other (``last``, or the name of another
    checkpoint file, :func:`checkpoint_label`; ``<split>`` by :func:`split_file_name`). The
    one place these names are spelled."""
    if not re.fullmatch(r"[A-Za-z0-9._-]+", checkpoint):
        raise ValueError(f"checkpoint must be a name (best, last, ...), got {checkpoint!r}")
    suffix = "" if checkpoint == "best" else f"_{checkpoint}"
    return Path(run_dir) / f"eval_{split_file_name(split)}{suffix}.json"


def checkpoint_label(checkpoint: str | Path) -> str:
    """What an evaluation of the checkpoint file ``checkpoint`` is labelled and filed as:
    its name without ``.pt`` (``best.pt`` -> ``best``, ``last.pt`` -> ``last``,
    ``epoch_0002.pt`` -> ``epoch_0002``), made safe for a file name."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", Path(checkpoint).stem).strip("_.") or "checkpoint"


def features_path(run_dir: str | Path, split: str, checkpoint: str = "best") -> Path:
    """The embeddings file written beside :func:`eval_path`'s JSON (``..._features.npz``)."""
    json_path = eval_path(run_dir, split, checkpoint)
    return json_path.with_name(json_path.stem + "_features.npz")


def run_contents(run_dir: str | Path) -> list[str]:
    """What of a run ``run_dir`` holds, as paths relative to it: its config, its log and its
    checkpoints (``checkpoints/*.pt``; a save's leftover temporaries are not a run)."""
    run_dir = Path(run_dir)
    found = [name for name in RUN_FILES if (run_dir / name).exists()]
    ckpt_dir = run_dir / "checkpoints"
    if ckpt_dir.is_dir():
        found += [f"checkpoints/{p.name}" for p in sorted(ckpt_dir.glob("*.pt"))]
    return found


def refuse_existing_run(run_dir: str | Path) -> None:
    """Raise :class:`RunExistsError` naming the folder, what it holds and the three ways on,
    when ``run_dir`` already holds a run. Reads only."""
    found = run_contents(run_dir)
    if found:
        raise RunExistsError(
            f"{run_dir} already holds a run ({', '.join(found)}); nothing was changed. "
            "Continue it with --resume auto, start a new run with another train.name=NAME, "
            "or start over with --overwrite (the old run is moved aside, not deleted)"
        )


def is_other_runs_checkpoint(checkpoint: str | Path, run_dir: str | Path) -> bool:
    """Whether ``checkpoint`` lies outside ``run_dir`` (a start from another run's state)."""
    return Path(run_dir).resolve() not in Path(checkpoint).resolve().parents


def refuse_resume_into_other_run(run_dir: str | Path, checkpoint: str | Path) -> None:
    """Raise :class:`RunExistsError` naming both when ``checkpoint`` (``--resume PATH``) is
    not inside ``run_dir`` and ``run_dir`` already holds a run: continuing another run's
    checkpoint there would replace this run's checkpoints, config and log. Into an empty or
    new folder it is a start from that checkpoint. Reads only."""
    if not is_other_runs_checkpoint(checkpoint, run_dir):
        return
    found = run_contents(run_dir)
    if found:
        raise RunExistsError(
            f"cannot resume into {run_dir} from {checkpoint}: the checkpoint is not this "
            f"run's and {run_dir} already holds a run ({', '.join(found)}); nothing was "
            "changed. Resume into a new folder with train.name=NAME, or continue this run "
            "with --resume auto"
        )


def move_aside(run_dir: str | Path) -> Path | None:
    """Rename a non-empty ``run_dir`` to ``<name>.old-N`` (the first free N) for
    ``--overwrite``, so starting over never deletes a run; returns the new path, or None
    when there was nothing to move (its lock file alone is nothing)."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir() or all(p.name == LOCK_FILE for p in run_dir.iterdir()):
        return None
    n = 1
    while (target := run_dir.with_name(f"{run_dir.name}.old-{n}")).exists():
        n += 1
    run_dir.rename(target)
    return target


# --------------------------------------------------------------------------- reading a run


def is_number(x: Any) -> bool:
    """Whether ``x`` is a finite ``int`` or ``float`` (not a ``bool``): a value a metrics
    record or an evaluation file may leave out, null or NaN."""
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


# a metrics record's kind, its x axis and its wall-clock stamp: not curves of their own
_NOT_SCALARS = ("type", "step", "time")


def metric_scalars(record: dict[str, Any]) -> dict[str, float]:
    """The curves of a ``metrics.jsonl`` record, as the logging mirrors (TensorBoard, W&B)
    log them: every numeric field but ``type``, ``step`` and ``time``, as a float."""
    return {
        key: float(value)
        for key, value in record.items()
        if key not in _NOT_SCALARS and isinstance(value, (int, float))
    }


def method_label(objective: dict[str, Any]) -> str:
    """``baseline``, ``CCL-A``, ``CCL-I`` or ``CCL-AI`` from an ``objective`` config section."""
    method = str(objective.get("method", "baseline")).lower()
    teachers = [str(t).lower() for t in objective.get("teachers", []) or []]
    if method == "baseline":
        return "baseline"
    if method.startswith("ccl-") and not teachers:  # tolerate "ccl-ai" style names
        return method.upper()
    letters = "".join(t[0].upper() for t in ("audio", "image") if t in teachers)
    letters += "".join(t[0].upper() for t in teachers if t not in ("audio", "image"))
    return f"{method.upper()}-{letters}" if letters else method.upper()


def read_metrics(path: Path) -> tuple[list[dict[str, Any]], list[str]]:
    """Epoch records of a ``metrics.jsonl`` (one per epoch, the last written wins, sorted).

    Corrupt lines are skipped; the messages naming the file and line are returned, for the
    caller to show once (``ccl report`` prints them on stderr and lists them in its report).
    """
    messages: list[str] = []
    by_epoch: dict[int, dict[str, Any]] = {}
    with path.open(encoding="utf-8", errors="replace") as fh:
        for lineno, line in enumerate(fh, start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
                if not isinstance(record, dict):
                    raise ValueError("not a JSON object")
            except ValueError as err:
                msg = f"{path}:{lineno}: skipped corrupt metrics line ({err})"
                messages.append(msg)
                continue
            if record.get("type") == "epoch" and is_number(record.get("epoch")):
                by_epoch[int(record["epoch"])] = record
    return [by_epoch[e] for e in sorted(by_epoch)], messages


def _read_json_object(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        raise ReportError(f"{path}: cannot read JSON ({err})") from err
    if not isinstance(data, dict):
        raise ReportError(f"{path}: expected a JSON object")
    return data


@dataclass
class Run:
    """What one run folder holds: its config, epoch records, evaluations and checkpoints,
    with notes on what is missing, unfinished or stale."""

    name: str
    path: Path
    config: dict[str, Any]
    method: str
    teachers: list[str]
    epochs: list[dict[str, Any]] = field(default_factory=list)
    epochs_configured: int | None = None
    eval_best: dict[str, Any] | None = None
    eval_last: dict[str, Any] | None = None
    eval_best_path: Path | None = None
    checkpoints: list[dict[str, Any]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    @property
    def is_baseline(self) -> bool:
        """True for a run trained without teachers by the baseline objective."""
        return self.method == "baseline"

    @property
    def epochs_trained(self) -> int:
        """Highest epoch with an epoch record in ``metrics.jsonl`` (0 when none)."""
        return max((int(r["epoch"]) for r in self.epochs), default=0)

    @property
    def wall_s(self) -> float | None:
        """Sum of ``epoch_s`` over the logged epochs, None when nothing was logged."""
        times = [float(r["epoch_s"]) for r in self.epochs if is_number(r.get("epoch_s"))]
        return sum(times) if times else None

    @property
    def file_stem(self) -> str:
        """The run name made safe for a file name."""
        return re.sub(r"[^A-Za-z0-9._-]+", "_", self.name).strip("_") or "run"

    @property
    def recognition(self) -> dict[str, Any]:
        """The best checkpoint's recognition results (``top1``, ``confusion_matrix``, ...);
        empty when it was not evaluated."""
        return (self.eval_best or {}).get("recognition") or {}

    @property
    def last_recognition(self) -> dict[str, Any]:
        """The last checkpoint's recognition results; empty when it was not evaluated."""
        return (self.eval_last or {}).get("recognition") or {}

    @property
    def retrieval(self) -> dict[str, Any]:
        """The best checkpoint's retrieval results (``recall``, ``map``, ``gallery``, ...);
        empty when it was not evaluated or retrieval was skipped."""
        return (self.eval_best or {}).get("retrieval") or {}

    def saved_features(self, split: str = "test") -> Path | None:
        """The best checkpoint's saved features of ``split`` (the evaluation's
        ``features_file``, relative to the run folder, else :func:`features_path`); None when
        not evaluated, not saved or not on disk."""
        ev = self.eval_best
        if not ev:
            return None
        if "features_file" not in ev:
            path = features_path(self.path, split)
        elif not ev["features_file"]:
            return None
        else:
            path = Path(ev["features_file"])
            path = path if path.is_absolute() else self.path / path
        return path if path.is_file() else None


def load_run(path: Path, split: str = "test", name: str | None = None) -> Run:
    """Read one run folder and its evaluations of ``split``. Raises :class:`ReportError`
    when it or its config is missing, or when a JSON file it holds cannot be read."""
    path = Path(path)
    if not path.is_dir():
        raise ReportError(f"run folder {path} does not exist")
    cfg_path = path / CONFIG_FILE
    if not cfg_path.is_file():
        raise ReportError(f"run folder {path} has no {CONFIG_FILE} (is it a training run?)")
    config = _read_json_object(cfg_path)
    objective = config.get("objective", {}) or {}
    run = Run(
        name=name or path.resolve().name,
        path=path,
        config=config,
        method=method_label(objective),
        teachers=[str(t) for t in objective.get("teachers", []) or []],
        epochs_configured=(config.get("train", {}) or {}).get("epochs"),
    )

    metrics_path = path / METRICS_FILE
    if metrics_path.is_file():
        run.epochs, run.warnings = read_metrics(metrics_path)
        if not run.epochs:
            run.notes.append(f"run {run.name}: {METRICS_FILE} has no epoch records")
    else:
        run.notes.append(f"run {run.name}: no {METRICS_FILE}")
    if (
        run.epochs
        and isinstance(run.epochs_configured, int)
        and run.epochs_trained < run.epochs_configured
    ):
        run.notes.append(
            f"run {run.name}: trained {run.epochs_trained} of {run.epochs_configured} "
            "configured epochs (unfinished or stopped early)"
        )

    ckpt_dir = path / "checkpoints"
    if ckpt_dir.is_dir():
        for ckpt in sorted(ckpt_dir.glob("*.pt")):
            stat = ckpt.stat()
            run.checkpoints.append(
                {
                    "path": str(ckpt),
                    "size_bytes": stat.st_size,
                    "mtime": datetime.fromtimestamp(stat.st_mtime, timezone.utc).isoformat(
                        timespec="seconds"
                    ),
                }
            )

    best_path = eval_path(path, split, "best")
    if best_path.is_file():
        run.eval_best = _read_json_object(best_path)
        run.eval_best_path = best_path
        _check_eval(run, run.eval_best, best_path)
    else:
        run.notes.append(f"run {run.name}: no {best_path.name} (run `ccl evaluate {path}`)")
    last_path = eval_path(path, split, "last")
    if last_path.is_file():
        run.eval_last = _read_json_object(last_path)
        _check_eval(run, run.eval_last, last_path)
    return run


def _check_eval(run: Run, ev: dict[str, Any], path: Path) -> None:
    """Notes for incomplete or stale evaluations."""
    expected, evaluated = ev.get("videos_expected"), ev.get("videos_evaluated")
    if is_number(expected) and is_number(evaluated) and evaluated < expected:
        missing = ev.get("missing") or []
        shown = ", ".join(f"{m.get('video_id', '?')} ({m.get('reason', '?')})" for m in missing[:3])
        more = f", ... {len(missing) - 3} more" if len(missing) > 3 else ""
        run.notes.append(
            f"run {run.name}: {path.name} evaluated {evaluated} of {expected} videos "
            f"({expected - evaluated} missing, counted as wrong)"
            + (f": {shown}{more}" if shown else "")
        )
    ckpt = ev.get("checkpoint")
    if ckpt:
        ckpt_path = Path(ckpt)
        if not ckpt_path.is_absolute() and not ckpt_path.exists():
            ckpt_path = run.path / ckpt_path
        if ckpt_path.is_file() and ckpt_path.stat().st_mtime > path.stat().st_mtime:
            run.notes.append(
                f"run {run.name}: {ckpt_path.name} is newer than {path.name}; "
                f"the evaluation may be stale (rerun `ccl evaluate {run.path}`)"
            )
