"""Checkpoints: atomic writes, safe loads (``weights_only=True``), and ``--resume auto``."""

from __future__ import annotations

import contextlib
import os
import random
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
import torch


class CheckpointError(RuntimeError):
    """A checkpoint file that cannot be used, with the file named."""


@contextlib.contextmanager
def atomic_write(path: str | Path) -> Iterator[BinaryIO]:
    """Open ``path`` for binary writing atomically: a temporary file in the same folder,
    fsynced and renamed over ``path`` when the block succeeds, removed when it fails. A
    crash leaves either the previous file or the new one, never half of one."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def save_checkpoint(state: dict[str, Any], path: str | Path) -> None:
    """Write ``state`` to ``path`` atomically (see :func:`atomic_write`)."""
    with atomic_write(path) as f:
        torch.save(state, f)


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Load with ``weights_only=True``: tensors and plain containers only, never pickled code."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}")
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as err:  # noqa: BLE001 - any failure becomes one clear message
        raise CheckpointError(
            f"cannot load checkpoint {path}: {type(err).__name__}: {str(err).splitlines()[0]}"
        ) from err
    if not isinstance(state, dict) or "student" not in state:
        raise CheckpointError(f"{path} is not a ccl checkpoint (no 'student' entry)")
    return state


def find_resume_checkpoint(run_dir: str | Path) -> Path | None:
    """The newest loadable checkpoint of a run for ``--resume auto``: ``last.pt``, else the
    periodic ones newest first (so a truncated ``last.pt`` falls back to the previous one)."""
    ckpt_dir = Path(run_dir) / "checkpoints"
    if not ckpt_dir.is_dir():
        return None
    candidates = [ckpt_dir / "last.pt"] + sorted(ckpt_dir.glob("epoch_*.pt"), reverse=True)
    for candidate in candidates:
        if not candidate.is_file():
            continue
        try:
            load_checkpoint(candidate)
        except CheckpointError as err:
            print(f"warning: skipping unusable checkpoint: {err}")
            continue
        return candidate
    return None


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
