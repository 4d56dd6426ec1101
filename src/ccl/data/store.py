"""The HDF5 frame store: one file per video (docs/METHOD.md §5.2).

A store holds the frames of one video in the reference's layout: dataset ``video`` is a
1-D variable-length uint8 array, one JPEG per frame, frame ``k`` (1-based in annotations) at
index ``k - 1``. Attributes: ``fps``, ``n_frames``, ``height``, ``width``, ``jpeg_quality``,
``source``, ``source_fps``, ``short_side``; a store made with audio also has ``has_audio``
and, when the video has sound, a float32 mono dataset ``audio`` (attribute
``sample_rate``). A store made by ``ccl prepare videos`` also records the identity of its
source file (:func:`source_identity`): ``source_size``, ``source_mtime_ns`` and
``source_sha256``, the SHA-256 of the file's first and last MiB.

A store is written under a hidden temporary name next to its final path
(:func:`temp_path_for`) and renamed when complete, so a reader never sees half of one.
:func:`store_is_complete` and :func:`store_settings_mismatch` tell whether an existing store
can be kept, :func:`source_change` whether its source file is still the one it was made from;
:func:`read_store_info` and :func:`read_store_audio` read one back.
"""

from __future__ import annotations

import hashlib
import io
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import h5py
import numpy as np
from PIL import Image

from ccl.data.media import SAMPLE_RATE, resample_array

STORE_SUFFIX = ".hdf5"
STORE_EXTENSIONS = (".hdf5", ".h5")  # suffixes read as frame stores
DEFAULT_JPEG_QUALITY = 90
_WRITE_CHUNK = 256  # frames buffered in memory before they are appended to the store
AUDIO_WRITE_SAMPLES = 1 << 16
"""Soundtrack samples buffered before they are appended to a store (about 2 s at 32 kHz),
and the HDF5 chunk of its ``audio`` dataset."""
IDENTITY_SAMPLE = 1 << 20
"""Bytes hashed at each end of a source file for its identity (the whole file up to twice
this size)."""
SOURCE_IDENTITY_KEYS = ("source_size", "source_mtime_ns", "source_sha256")


def temp_path_for(store: Path) -> Path:
    """Hidden temporary name next to ``store`` (ignored by indexers, replaced on resume)."""
    return store.with_name(f".{store.name}.tmp")


def store_is_complete(path: Path, audio: bool = False) -> bool:
    """A store is complete when it opens, holds frames and its ``n_frames`` attribute agrees;
    with ``audio`` it must also record whether the video has sound."""
    if not path.is_file():
        return False
    try:
        with h5py.File(path, "r") as f:
            if "video" not in f:
                return False
            n = len(f["video"])
            if n == 0 or int(f.attrs.get("n_frames", n)) != n:
                return False
            if audio and "has_audio" not in f.attrs:
                return False
    except (OSError, KeyError, ValueError):
        return False
    return True


def source_identity(path: str | Path) -> dict[str, Any]:
    """The identity of a source file as a store records it: ``source_size`` (bytes),
    ``source_mtime_ns`` and ``source_sha256``, the SHA-256 of its first and last
    :data:`IDENTITY_SAMPLE` bytes (of the whole file when it is at most twice that)."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        st = os.fstat(f.fileno())
        digest.update(f.read(IDENTITY_SAMPLE))
        if st.st_size > IDENTITY_SAMPLE:
            f.seek(max(IDENTITY_SAMPLE, st.st_size - IDENTITY_SAMPLE))
            digest.update(f.read(IDENTITY_SAMPLE))
    return {
        "source_size": int(st.st_size),
        "source_mtime_ns": int(st.st_mtime_ns),
        "source_sha256": digest.hexdigest(),
    }


def recorded_source_identity(path: str | Path) -> dict[str, Any] | None:
    """The source identity a store recorded (:func:`source_identity`), or None when it
    recorded none (stores written before identities were recorded, or not by ``prepare``)."""
    with h5py.File(path, "r") as f:
        if not all(key in f.attrs for key in SOURCE_IDENTITY_KEYS):
            return None
        return {
            "source_size": int(f.attrs["source_size"]),
            "source_mtime_ns": int(f.attrs["source_mtime_ns"]),
            "source_sha256": str(f.attrs["source_sha256"]),
        }


def source_change(recorded: dict[str, Any], current: dict[str, Any]) -> str | None:
    """How the source file ``current`` differs from the one a store ``recorded``, or None
    when it is the same file: same size and same first and last MiB. The modification
    time alone decides nothing (a copied, touched or identically regenerated file would
    give the same store); it is named when the content differs."""
    if recorded["source_size"] != current["source_size"]:
        what = f"size {recorded['source_size']} -> {current['source_size']} bytes"
    elif recorded["source_sha256"] != current["source_sha256"]:
        what = "same size, other content"
    else:
        return None
    if recorded["source_mtime_ns"] != current["source_mtime_ns"]:
        what += ", modified since"
    return f"source changed since its store was made ({what})"


def _short_side_text(value: int | None) -> str:
    return str(int(value)) if value else "native"


def store_settings_mismatch(
    path: str | Path,
    *,
    short_side: int | None,
    fps: float | None,
    jpeg_quality: int,
    audio: bool,
) -> str | None:
    """Why the complete store at ``path`` was not made with these settings (None when it
    was), e.g. ``short side 240, requested 120``. A setting the store does not record
    counts as different: its value is unknown."""
    with h5py.File(path, "r") as f:
        attrs = dict(f.attrs)
    diffs = []
    have_short = attrs.get("short_side")
    if have_short is None:
        diffs.append("short side not recorded")
    elif int(have_short) != int(short_side or 0):
        diffs.append(
            f"short side {_short_side_text(have_short)}, requested {_short_side_text(short_side)}"
        )
    have_quality = attrs.get("jpeg_quality")
    if have_quality is None:
        diffs.append("JPEG quality not recorded")
    elif int(have_quality) != int(jpeg_quality):
        diffs.append(f"JPEG quality {int(have_quality)}, requested {int(jpeg_quality)}")
    have_fps, source_fps = attrs.get("fps"), attrs.get("source_fps")
    if have_fps is None or (fps is None and source_fps is None):
        diffs.append("frame rate not recorded")
    elif fps is None and abs(float(have_fps) - float(source_fps)) > 1e-6:
        diffs.append(f"fps {float(have_fps):g}, requested native ({float(source_fps):g})")
    elif fps is not None and abs(float(have_fps) - float(fps)) > 1e-6:
        diffs.append(f"fps {float(have_fps):g}, requested {float(fps):g}")
    has_audio = "has_audio" in attrs
    if audio and not has_audio:
        diffs.append("made without audio, audio requested")
    elif has_audio and not audio:
        diffs.append("made with audio, audio not requested")
    return "; ".join(diffs) or None


def _encode_jpeg(rgb: np.ndarray, quality: int) -> np.ndarray:
    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, format="JPEG", quality=quality)
    return np.frombuffer(buf.getvalue(), dtype=np.uint8)


class FrameWriter:
    """Appends RGB frames, JPEG-encoded, to a new vlen-uint8 ``video`` dataset of an open
    store, in chunks of ``_WRITE_CHUNK`` frames; :meth:`flush` writes the rest."""

    def __init__(self, f: h5py.File, jpeg_quality: int) -> None:
        self.ds = f.create_dataset(
            "video",
            shape=(0,),
            maxshape=(None,),
            dtype=h5py.vlen_dtype(np.uint8),
            chunks=(_WRITE_CHUNK,),
        )
        self.jpeg_quality = jpeg_quality
        self.pending: list[np.ndarray] = []
        self.n = 0  # frames written to the dataset
        self.height = self.width = 0  # size of the last frame added

    @property
    def n_added(self) -> int:
        """Frames added, written or still pending."""
        return self.n + len(self.pending)

    def add(self, rgb: np.ndarray) -> None:
        """Encode an RGB uint8 (H, W, 3) frame; writes a chunk when enough are pending."""
        self.height, self.width = rgb.shape[:2]
        self.pending.append(_encode_jpeg(rgb, self.jpeg_quality))
        if len(self.pending) >= _WRITE_CHUNK:
            self.flush()

    def flush(self) -> None:
        """Append the pending frames to the dataset."""
        if not self.pending:
            return
        k = len(self.pending)
        self.ds.resize((self.n + k,))
        if len({len(jpeg) for jpeg in self.pending}) == 1:
            # h5py reads an object array of equal-length arrays as 2-D: write one by one
            for i, jpeg in enumerate(self.pending):
                self.ds[self.n + i] = jpeg
        else:
            arr = np.empty(k, dtype=object)
            arr[:] = self.pending
            self.ds[self.n : self.n + k] = arr
        self.n += k
        self.pending = []


class AudioWriter:
    """Appends a soundtrack, given as consecutive mono float32 blocks at
    :data:`~ccl.data.media.SAMPLE_RATE`, to a new resizable ``audio`` dataset of an open
    store, :data:`AUDIO_WRITE_SAMPLES` samples at a time, so a long soundtrack never sits in
    memory whole. :meth:`finish` records ``has_audio``; :meth:`discard` drops what was
    written (a soundtrack that failed to decode is not kept in part)."""

    def __init__(self, f: h5py.File) -> None:
        self.f = f
        self.ds: h5py.Dataset | None = None
        self.pending: list[np.ndarray] = []
        self.n_pending = 0
        self.n = 0  # samples written to the dataset

    def append(self, block: np.ndarray) -> None:
        """Add mono samples; writes them out once :data:`AUDIO_WRITE_SAMPLES` are pending."""
        block = np.asarray(block, dtype=np.float32).reshape(-1)
        self.pending.append(block)
        self.n_pending += len(block)
        if self.n_pending >= AUDIO_WRITE_SAMPLES:
            self.flush()

    def flush(self) -> None:
        """Append the pending samples to the dataset (created at the first)."""
        if not self.n_pending:
            return
        if self.ds is None:
            self.ds = self.f.create_dataset(
                "audio",
                shape=(0,),
                maxshape=(None,),
                dtype=np.float32,
                chunks=(AUDIO_WRITE_SAMPLES,),
            )
            self.ds.attrs["sample_rate"] = SAMPLE_RATE
        self.ds.resize((self.n + self.n_pending,))
        self.ds[self.n :] = np.concatenate(self.pending)
        self.n += self.n_pending
        self.pending, self.n_pending = [], 0

    def discard(self) -> None:
        """Drop every sample added; the store records no soundtrack until :meth:`finish`."""
        if self.ds is not None:
            del self.f["audio"]
            self.ds = None
        self.pending, self.n_pending, self.n = [], 0, 0

    def finish(self) -> bool:
        """Write the rest and record ``has_audio``: whether any sample was written."""
        self.flush()
        self.f.attrs["has_audio"] = self.n > 0
        return self.n > 0


def write_frame_store(
    path: str | Path,
    frames: Iterable[np.ndarray],
    *,
    fps: float,
    jpeg_quality: int = DEFAULT_JPEG_QUALITY,
    source: str = "",
) -> int:
    """Write RGB uint8 (H, W, 3) frames as a frame store (same layout and attributes as
    :func:`ccl.data.prepare.prepare_videos`, written atomically). Returns the number of
    frames."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_path_for(path)
    try:
        with h5py.File(tmp, "w") as f:
            writer = FrameWriter(f, jpeg_quality)
            for rgb in frames:
                writer.add(np.ascontiguousarray(rgb, dtype=np.uint8))
            writer.flush()
            if writer.n == 0:
                raise ValueError(f"{path}: no frames to write")
            f.attrs.update(
                {
                    "fps": float(fps),
                    "source_fps": float(fps),
                    "n_frames": writer.n,
                    "height": writer.height,
                    "width": writer.width,
                    "jpeg_quality": jpeg_quality,
                    "source": source,
                    "short_side": min(writer.height, writer.width),
                }
            )
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    return writer.n


def read_store_info(path: str | Path) -> dict[str, Any]:
    """Attributes of a frame store plus ``n_frames`` (from the data when the attribute is
    missing, as in stores made by the reference's script)."""
    path = Path(path)
    try:
        with h5py.File(path, "r") as f:
            if "video" not in f:
                raise ValueError(f"{path}: no 'video' dataset; not a frame store")
            info = {k: (v.item() if hasattr(v, "item") else v) for k, v in f.attrs.items()}
            info.setdefault("n_frames", len(f["video"]))
            info["n_frames"] = int(info["n_frames"])
            return info
    except OSError as err:
        raise OSError(f"cannot read frame store {path}: {err}") from err


def read_store_audio(path: str | Path) -> tuple[np.ndarray | None, str | None]:
    """``(samples, None)`` with a store's soundtrack as mono float32 at
    :data:`~ccl.data.media.SAMPLE_RATE` (resampled when stored at another rate), or
    ``(None, reason)`` when the store records that the video has no usable soundtrack.
    Raises ``ValueError`` for a store made without audio (it records nothing either way)."""
    path = Path(path)
    with h5py.File(path, "r") as f:
        if "has_audio" not in f.attrs and "audio" not in f:
            raise ValueError(
                f"{path} records no soundtrack information (prepare the stores with audio "
                "enabled, or extract from the video files)"
            )
        if not bool(f.attrs.get("has_audio", True)) or "audio" not in f:
            return None, "no audio stream (recorded in the store)"
        ds = f["audio"]
        samples = np.asarray(ds[()], dtype=np.float32).reshape(-1)
        rate = int(ds.attrs.get("sample_rate", f.attrs.get("sample_rate", SAMPLE_RATE)))
    if not len(samples):
        return None, "audio stream has no samples"
    if rate != SAMPLE_RATE:
        samples = resample_array(samples, rate, SAMPLE_RATE)
    return samples, None


__all__ = [
    "AUDIO_WRITE_SAMPLES",
    "AudioWriter",
    "DEFAULT_JPEG_QUALITY",
    "STORE_EXTENSIONS",
    "STORE_SUFFIX",
    "IDENTITY_SAMPLE",
    "SOURCE_IDENTITY_KEYS",
    "FrameWriter",
    "read_store_audio",
    "read_store_info",
    "recorded_source_identity",
    "source_change",
    "source_identity",
    "store_is_complete",
    "store_settings_mismatch",
    "temp_path_for",
    "write_frame_store",
]
