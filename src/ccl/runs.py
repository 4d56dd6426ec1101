"""Run folders: a run is never touched by a command that did not ask to continue it.

A run folder (``<train.out_dir>/<train.name>``) holds ``config.json``, ``metrics.jsonl`` and
``checkpoints/``. Presets fix the name, so running a preset twice names the same folder; a
fresh start there would replace its checkpoints and append a second log to the first. So a
fresh start refuses a folder that holds a run, unless told to move that run aside.
"""

from __future__ import annotations

from pathlib import Path

from ccl.errors import RunExistsError

RUN_FILES = ("config.json", "metrics.jsonl")
CONFIG_FILE, METRICS_FILE = RUN_FILES
CHECKPOINT_KINDS = ("best", "last")


def eval_path(run_dir: str | Path, split: str, checkpoint: str = "best") -> Path:
    """Where ``ccl evaluate`` writes the results of ``checkpoint`` (``best`` or ``last``) on
    subset ``split`` (``testing``/``validation``/...): ``eval_<split>.json`` for the best
    checkpoint, ``eval_<split>_last.json`` for the last. The one place these names are spelled."""
    if checkpoint not in CHECKPOINT_KINDS:
        raise ValueError(f"checkpoint must be one of {CHECKPOINT_KINDS}, got {checkpoint!r}")
    suffix = "" if checkpoint == "best" else f"_{checkpoint}"
    return Path(run_dir) / f"eval_{split}{suffix}.json"


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


def move_aside(run_dir: str | Path) -> Path | None:
    """Rename a non-empty ``run_dir`` to ``<name>.old-N`` (the first free N) for
    ``--overwrite``, so starting over never deletes a run; returns the new path, or None
    when there was nothing to move."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir() or not any(run_dir.iterdir()):
        return None
    n = 1
    while (target := run_dir.with_name(f"{run_dir.name}.old-{n}")).exists():
        n += 1
    run_dir.rename(target)
    return target
