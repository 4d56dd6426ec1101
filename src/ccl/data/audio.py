"""Precomputed audio-teacher embeddings: the folder format, the per-video table
(:class:`AudioEmbeddings`) and its loader from disk. :mod:`ccl.data.audio_features` (PANNs
extraction) and :mod:`ccl.data.archive` (import of the reference's archive) write such
folders.

Layout (the reference's UCF51 archive): ``<dir>/<Class>/<video_id>.npy``, one (D,) or (T, D)
float array per video; files directly in ``<dir>`` are accepted too. macOS ``._`` junk and
hidden entries are ignored. The reference marks a video without a soundtrack by an all-zero
vector; such files are treated as missing by default (``available=False``), so the audio
terms drop those samples as they drop videos without a file.

The writers also leave ``<dir>/manifest.json`` (:data:`MANIFEST_NAME`) saying what was
written and how. Its keys: ``kind`` (:data:`MANIFEST_KIND`), ``source`` (``extract`` or
``archive``), ``model``, ``embedding_dim``, ``videos`` (``"Class/video_id" -> {"file",
"shape", ...}``), ``unavailable`` (``"Class/video_id" -> reason``), ``failed`` and
source-specific details (checkpoint digest and settings, or archive digest and rejected
entries).
"""
from __future__ import annotations

import json
import logging
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ccl.atomic import atomic_write, write_text_atomic
from ccl.errors import ClassMismatchError

log = logging.getLogger("ccl.data")

MANIFEST_NAME = "manifest.json"
MANIFEST_KIND = "ccl-audio-embeddings"
# The audio teachers a folder's embeddings come from, by variant: the manifests' ``model``.
# PANNs Cnn14 and Cnn14_emb512 (:data:`ccl.models.panns.MODEL_NAMES`), and the embedded
# demo's small log-mel CNN (same front end and layout).
AUDIO_MODEL_NAMES: dict[str, str] = {
    "cnn14": "cnn14",
    "emb512": "cnn14_emb512",
    "small": "ccl-small-audio-cnn",
}


class AudioEmbeddings:
    """Precomputed audio-teacher embeddings joined to videos by id (docs/METHOD.md §2.3).

    Each video has one (D,) vector or a (T, D) array of segment embeddings (a random row is
    used per training sample). A video without an entry, or marked unavailable, gives a zero
    vector and ``available=False``; the objective drops such samples from the audio terms.
    """

    def __init__(
        self,
        embeddings: Mapping[str, np.ndarray],
        dim: int | None = None,
        *,
        folders: Mapping[str, str] | None = None,
        source: str = "the audio embeddings",
    ) -> None:
        """``folders`` (video id -> the class folder its file is in) lets
        :meth:`check_labels` compare the table with the annotations; ``source`` names the
        table in messages."""
        self.folders = dict(folders or {})
        self.source = source
        self._table: dict[str, np.ndarray] = {}
        for video_id, array in embeddings.items():
            array = np.asarray(array, dtype=np.float32)
            if (
                array.ndim not in (1, 2)
                or array.shape[-1] == 0
                or (array.ndim == 2 and not len(array))
            ):
                raise ValueError(
                    f"audio embedding of {video_id!r} has shape {array.shape}; want (D,) or (T, D)"
                )
            if not np.isfinite(array).all():
                raise ValueError(f"audio embedding of {video_id!r} has non-finite values")
            self._table[video_id] = array
        dims = {a.shape[-1] for a in self._table.values()}
        if dim is not None:
            dims.add(dim)
        if len(dims) > 1:
            raise ValueError(f"audio embeddings have mixed widths {sorted(dims)}")
        if not dims:
            raise ValueError("no audio embeddings and no dim given")
        self.dim = dims.pop()

    def __len__(self) -> int:
        return len(self._table)

    def __contains__(self, video_id: str) -> bool:
        return video_id in self._table

    def __iter__(self) -> Iterator[str]:
        """The video ids with an embedding, in the order they were given (file order when
        loaded from disk), so a table without annotations can still be walked."""
        return iter(self._table)

    def check_labels(self, labels: Mapping[str, str], annotations: str) -> None:
        """Refuse a table filed under other classes than the annotations' (``labels``: video
        id -> class name): the embeddings then belong to other videos or another label
        set. Folder and class names compare case-insensitively (UCF101's own class index
        and folders differ in case); videos whose file is in no class folder are not
        checked. The error names the first video and both classes."""
        for video_id, label in labels.items():
            folder = self.folders.get(video_id)
            if folder is not None and folder.lower() != label.lower():
                raise ClassMismatchError(
                    f"{self.source}: the embedding of {video_id!r} is in class folder "
                    f"{folder!r}, but {annotations} labels the video {label!r}; the audio "
                    "features were made for other labels"
                )

    def lookup(
        self, video_id: str, rng: np.random.Generator | None = None
    ) -> tuple[np.ndarray, bool]:
        """(vector, available). With ``rng`` a random segment row, else the segment mean."""
        array = self._table.get(video_id)
        if array is None:
            return np.zeros(self.dim, dtype=np.float32), False
        if array.ndim == 2:
            array = array[rng.integers(len(array))] if rng is not None else array.mean(0)
        return array, True


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


def read_manifest(path: Path) -> dict[str, Any] | None:
    """The embedding folder's manifest at ``path``, or None when there is none. Raises
    ``ValueError`` for a file that is unreadable or not an audio-embedding manifest."""
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as err:
        raise ValueError(f"cannot read {path}: {err}; move it away to start afresh") from err
    if not isinstance(data, dict) or data.get("kind") != MANIFEST_KIND:
        raise ValueError(f"{path} is not an audio-embedding manifest; choose another --out")
    return data


def write_manifest(path: Path, data: dict[str, Any]) -> None:
    """Write a manifest atomically."""
    write_text_atomic(path, json.dumps(data, indent=1, sort_keys=False))


def save_embedding(path: Path, array: np.ndarray) -> None:
    """Write one video's embedding as ``.npy`` atomically."""
    with atomic_write(path, what="audio embedding") as f:
        np.save(f, array, allow_pickle=False)


__all__ = [
    "AUDIO_MODEL_NAMES",
    "MANIFEST_KIND",
    "MANIFEST_NAME",
    "AudioEmbeddings",
    "AudioLoadReport",
    "load_audio_embeddings",
    "read_manifest",
    "save_embedding",
    "write_manifest",
]
