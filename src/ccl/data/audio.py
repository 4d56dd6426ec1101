"""Precomputed audio-teacher embeddings on disk -> :class:`ccl.models.AudioEmbeddings`.

Layout (the reference's UCF51 archive): ``<dir>/<Class>/<video_id>.npy``, one (D,) or (T, D)
float array per video; files directly in ``<dir>`` are accepted too. macOS ``._`` junk and
hidden entries are ignored. The reference marks a video without a soundtrack by an all-zero
vector; such files are treated as missing by default (``available=False``), so the audio
terms drop those samples as they drop videos without a file.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ccl.models.teachers import AudioEmbeddings

log = logging.getLogger("ccl.data")


@dataclass
class AudioLoadReport:
    """Counts of what :func:`load_audio_embeddings` read."""

    root: str
    loaded: int = 0
    all_zero: list[str] = field(default_factory=list)
    dim: int | None = None

    def summary(self) -> str:
        line = f"audio embeddings: {self.loaded} videos from {self.root} (dim {self.dim})"
        if self.all_zero:
            line += f", {len(self.all_zero)} all-zero files treated as missing"
        return line


def load_audio_embeddings(root: str | Path, *, zero_as_missing: bool = True) -> AudioEmbeddings:
    """Read every ``<root>/<Class>/<video_id>.npy`` (and ``<root>/<video_id>.npy``).

    The result's ``load_report`` attribute (:class:`AudioLoadReport`) holds the counts,
    which are also logged once. Raises with the file named when a file cannot be read,
    has the wrong shape, or a video id appears twice."""
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"audio embedding folder not found: {root}")
    files = [p for p in root.glob("*.npy")] + [p for p in root.glob("*/*.npy")]
    files = sorted(
        p for p in files if not any(part.startswith(".") for part in p.relative_to(root).parts)
    )
    if not files:
        raise ValueError(f"{root}: no .npy files in it or its class folders")
    table: dict[str, np.ndarray] = {}
    folders: dict[str, str] = {}  # video id -> class folder, to check against annotations
    where: dict[str, Path] = {}
    report = AudioLoadReport(root=str(root))
    dim = None
    for path in files:
        video_id = path.stem
        if video_id in where:
            raise ValueError(
                f"audio embedding for {video_id!r} twice: {where[video_id]} and {path}"
            )
        where[video_id] = path
        try:
            array = np.load(path, allow_pickle=False)
        except (OSError, ValueError) as err:
            raise ValueError(f"cannot read audio embedding {path}: {err}") from err
        if array.ndim not in (1, 2) or array.shape[-1] == 0 or (array.ndim == 2 and not len(array)):
            raise ValueError(
                f"{path}: audio embedding has shape {array.shape}; want (D,) or (T, D)"
            )
        if dim is not None and array.shape[-1] != dim:
            raise ValueError(f"{path}: width {array.shape[-1]}, other files have {dim}")
        dim = int(array.shape[-1])
        if zero_as_missing and not np.any(array):
            report.all_zero.append(video_id)
            continue
        table[video_id] = array.astype(np.float32, copy=False)
        if path.parent != root:
            folders[video_id] = path.parent.name
    report.loaded, report.dim = len(table), dim
    embeddings = AudioEmbeddings(table, dim=dim, folders=folders, source=str(root))
    embeddings.load_report = report  # type: ignore[attr-defined]
    log.info(report.summary())
    return embeddings


__all__ = ["AudioLoadReport", "load_audio_embeddings"]
