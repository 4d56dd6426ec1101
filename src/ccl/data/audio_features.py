"""Audio-teacher embeddings: extraction with PANNs and import of the reference's archive.

Both paths write the same layout (docs/METHOD.md §2.3 and §6.2)::

    <out>/<Class>/<video_id>.npy     (512,) float32, or (T, 512) with segment embeddings
    <out>/manifest.json              what was written, how, and which videos have no sound

* :func:`extract_audio` runs PANNs ``Cnn14_emb512`` (:mod:`ccl.models.panns`) over every
  video file or prepared HDF5 store under ``src`` (class sub-folders mirrored). The whole
  soundtrack gives one embedding, as in the reference; with ``segment_seconds`` each
  non-overlapping segment gives one row. A video without a usable soundtrack gets no file
  (no zero vector): it is listed under ``unavailable`` in the manifest. Outputs are written
  atomically (temporary file + rename) and existing ones are skipped, so an interrupted run
  resumes where it stopped.
* :func:`import_audio_archive` imports ``audiocnn14embed512_features.tar.gz`` released with
  the reference code (UCF51: 51 class folders of ``v_<Class>_gNN_cMM.npy``) unchanged,
  after validating every entry; macOS ``._`` junk is ignored and reported. All-zero vectors
  (the reference's marker for a missing soundtrack) are kept as files and listed under
  ``all_zero`` in the manifest.

Manifest keys: ``kind`` (``ccl-audio-embeddings``), ``source`` (``extract`` or
``archive``), ``model``, ``embedding_dim``, ``videos`` (``"Class/video_id" -> {"file",
"shape", ...}``), ``unavailable`` (``"Class/video_id" -> reason``), ``failed`` and
source-specific details (checkpoint digest and settings, or archive digest and rejected
entries).

Soundtracks are decoded with PyAV and resampled to 32 kHz with ``av.AudioResampler``; the
channels are then averaged (librosa's mono downmix, used when PANNs was trained; FFmpeg's own
stereo-to-mono matrix would scale by 1/sqrt(2) per channel instead).
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import os
import tarfile
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any, TypeVar

import numpy as np

from ccl.data.prepare import (
    VIDEO_EXTENSIONS,
    resample_array,
    resample_mono,
    write_text_atomic,
)
from ccl.models.panns import (
    AMIN,
    FMAX,
    FMIN,
    HOP_SIZE,
    MEL_BINS,
    MODEL_NAMES,
    SAMPLE_RATE,
    WINDOW_SIZE,
    min_samples,
)

AUDIO_SAMPLE_RATE = SAMPLE_RATE
# PANNs variants, plus the embedded demo's small log-mel CNN (same front end and layout)
AUDIO_MODEL_NAMES = {**MODEL_NAMES, "small": "ccl-small-audio-cnn"}
MANIFEST_NAME = "manifest.json"
MANIFEST_KIND = "ccl-audio-embeddings"
STORE_EXTENSIONS = (".hdf5", ".h5")
ARCHIVE_EMBEDDING_DIM = 512
_MAX_MEMBER_BYTES = 1 << 24  # a (512,) float32 .npy is 2176 bytes; refuse anything absurd
_MANIFEST_EVERY = 50  # videos between manifest checkpoints during extraction


# ----------------------------------------------------------------------------- soundtracks


def _decode_video_audio(path: Path) -> tuple[np.ndarray | None, str | None]:
    import av

    with av.open(str(path), mode="r") as container:
        if not container.streams.audio:
            return None, "no audio stream"
        stream = container.streams.audio[0]
        samples = resample_mono(container.decode(stream), AUDIO_SAMPLE_RATE)
    if samples is None:
        return None, "audio stream has no samples"
    return samples, None


def _read_store_audio(path: Path) -> tuple[np.ndarray | None, str | None]:
    import h5py

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
        rate = int(ds.attrs.get("sample_rate", f.attrs.get("sample_rate", AUDIO_SAMPLE_RATE)))
    if not len(samples):
        return None, "audio stream has no samples"
    if rate != AUDIO_SAMPLE_RATE:
        samples = resample_array(samples, rate, AUDIO_SAMPLE_RATE)
    return samples, None


def read_soundtrack(path: str | Path) -> tuple[np.ndarray | None, str | None]:
    """``(samples, None)`` with mono float32 samples at 32 kHz, or ``(None, reason)`` when the
    video has no usable soundtrack. Decoding errors raise."""
    path = Path(path)
    if path.suffix.lower() in STORE_EXTENSIONS:
        return _read_store_audio(path)
    return _decode_video_audio(path)


def load_soundtrack(path: str | Path) -> np.ndarray | None:
    """The soundtrack of a video file (any container FFmpeg reads) or of a prepared HDF5 store
    (dataset ``audio``, attributes ``sample_rate`` and ``has_audio``) as mono float32 at
    32 kHz; None when there is no audio stream (or it holds no samples)."""
    return read_soundtrack(path)[0]


# ----------------------------------------------------------------------------- helpers


def find_sources(src: str | Path) -> list[Path]:
    """Video files and HDF5 stores under ``src`` (recursive, sorted; hidden entries and
    macOS ``._`` junk ignored). A file ``src`` is returned alone."""
    src = Path(src)
    if src.is_file():
        return [src]
    if not src.is_dir():
        raise FileNotFoundError(f"source not found: {src}")
    wanted = VIDEO_EXTENSIONS + STORE_EXTENSIONS
    found: list[Path] = []
    for root, dirs, files in os.walk(src):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for name in sorted(files):
            if not name.startswith(".") and Path(name).suffix.lower() in wanted:
                found.append(Path(root) / name)
    return found


def sha256_file(path: str | Path, chunk: int = 1 << 20) -> str:
    """Hex SHA-256 digest of a file."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def _atomic_save_npy(path: Path, array: np.ndarray) -> None:
    from ccl.atomic import atomic_write

    with atomic_write(path, what="audio embedding") as f:
        np.save(f, array, allow_pickle=False)


def _atomic_write_json(path: Path, data: dict[str, Any]) -> None:
    write_text_atomic(path, json.dumps(data, indent=1, sort_keys=False))


def _read_manifest(path: Path) -> dict[str, Any] | None:
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as err:
        raise ValueError(f"cannot read {path}: {err}; move it away to start afresh") from err
    if not isinstance(data, dict) or data.get("kind") != MANIFEST_KIND:
        raise ValueError(f"{path} is not an audio-embedding manifest; choose another --out")
    return data


# ----------------------------------------------------------------------------- extraction


@dataclass
class ExtractReport:
    """Outcome of :func:`extract_audio` (the manifest holds the full record)."""

    src: str
    out: str
    n_found: int = 0
    written: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    unavailable: dict[str, str] = field(default_factory=dict)
    failed: dict[str, str] = field(default_factory=dict)
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        """True when no video failed (videos without sound are not failures)."""
        return not self.failed

    def summary(self) -> str:
        """One line of counts."""
        return (
            f"extract-audio: {self.n_found} videos, {len(self.written)} written, "
            f"{len(self.skipped)} already done, {len(self.unavailable)} without sound, "
            f"{len(self.failed)} failed ({self.seconds:.1f} s)"
            + (f"; see {Path(self.out) / MANIFEST_NAME}" if self.failed else "")
        )

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class _Pending:
    key: str
    target: Path
    samples: np.ndarray


def _segments(samples: np.ndarray, seg_len: int, minimum: int) -> list[np.ndarray]:
    """Non-overlapping ``seg_len`` windows; a trailing remainder is kept when it has at least
    ``minimum`` samples or when it is the only segment."""
    n_full = len(samples) // seg_len
    segs = [samples[i * seg_len : (i + 1) * seg_len] for i in range(n_full)]
    rest = samples[n_full * seg_len :]
    if len(rest) and (len(rest) >= minimum or not segs):
        segs.append(rest)
    return segs


def _load_audio_model(checkpoint: str | Path, variant: str) -> Any:
    """PANNs Cnn14 variants, or the demo's small CNN (``variant='small'``)."""
    if variant == "small":
        from ccl.models.small_audio import load_small_audio_teacher

        return load_small_audio_teacher(checkpoint)
    from ccl.models.panns import load_cnn14

    return load_cnn14(checkpoint, variant)  # type: ignore[arg-type]


def _segment_length(segment_seconds: float | None, minimum: int) -> int | None:
    """Samples per segment, or None for one embedding of the whole soundtrack. Segments
    shorter than the model's minimum input are refused: they would be zero-padded, and every
    row would then describe mostly padding."""
    if segment_seconds is None:
        return None
    seg_len = int(round(segment_seconds * AUDIO_SAMPLE_RATE))
    if seg_len < minimum:
        raise ValueError(
            f"segment_seconds={segment_seconds} is shorter than the model's minimum input "
            f"of {minimum} samples ({minimum / AUDIO_SAMPLE_RATE:.2f} s)"
        )
    return seg_len


def _extraction_identity(
    model: Any,
    checkpoint: str | Path,
    variant: str,
    segment_seconds: float | None,
    minimum: int,
) -> dict[str, Any]:
    """The manifest entries that must match for a later run to resume into the same folder:
    model, checkpoint digest and front-end settings (embeddings made otherwise are not
    comparable, so mixing them in one folder would be silent corruption)."""
    settings = {
        "sample_rate": AUDIO_SAMPLE_RATE,
        "window_size": WINDOW_SIZE,
        "hop_size": HOP_SIZE,
        "mel_bins": MEL_BINS,
        "fmin": FMIN,
        "fmax": FMAX,
        "ref": 1.0,
        "amin": AMIN,
        "top_db": None,
        "downmix": "mean of channels",
        "segment_seconds": segment_seconds,
        "min_samples": minimum,
        "short_clips": "zero-padded at the end to min_samples",
    }
    return {
        "model": AUDIO_MODEL_NAMES[variant],
        "variant": variant,
        "embedding_dim": model.embedding_dim,
        "checkpoint_sha256": sha256_file(checkpoint),
        "settings": settings,
    }


def _open_manifest(manifest_path: Path, identity: dict[str, Any]) -> dict[str, Any]:
    """The manifest of an earlier run into the same folder, which is what lets a run resume,
    or a new one. Raises when the earlier run used another model, checkpoint or settings."""
    manifest = _read_manifest(manifest_path)
    if manifest is not None:
        if manifest.get("source") != "extract" or any(
            manifest.get(k) != v for k, v in identity.items()
        ):
            raise ValueError(
                f"{manifest_path} was written with another model, checkpoint or settings; "
                "use another --out folder (or delete it) to extract with these"
            )
        return manifest
    return {
        "kind": MANIFEST_KIND,
        "source": "extract",
        **identity,
        "videos": {},
        "unavailable": {},
        "failed": {},
    }


class _Outputs:
    """Where each video's outcome is recorded: its ``.npy`` file, the manifest's ``videos``,
    ``unavailable`` and ``failed`` tables, and the report. One place, so that the manifest
    and the report agree whichever path (whole soundtrack, segments, errors) a video took."""

    def __init__(
        self, out: Path, manifest: dict[str, Any], report: ExtractReport, minimum: int
    ) -> None:
        self.out = out
        self.manifest = manifest
        self.report = report
        self.minimum = minimum
        self.videos: dict[str, Any] = manifest.setdefault("videos", {})
        self.unavailable: dict[str, str] = manifest.setdefault("unavailable", {})
        self.failed: dict[str, str] = manifest.setdefault("failed", {})

    def store(self, key: str, target: Path, emb: np.ndarray, n_samples: int) -> None:
        """Write ``emb`` atomically and list it (``padded``: shorter than the model's input)."""
        emb = np.ascontiguousarray(emb, dtype=np.float32)
        _atomic_save_npy(target, emb)
        self.videos[key] = {
            "file": target.relative_to(self.out).as_posix(),
            "shape": list(emb.shape),
            "seconds": round(n_samples / AUDIO_SAMPLE_RATE, 4),
            "padded": n_samples < self.minimum,
        }
        self.failed.pop(key, None)
        self.report.written.append(key)

    def fail(self, key: str, reason: str) -> None:
        """Record a failure; the run goes on and a later run retries the video."""
        self.failed[key] = reason
        self.report.failed[key] = reason

    def no_sound(self, key: str, reason: str) -> None:
        """Record a video without a usable soundtrack: no file (not a zero vector), and
        later runs skip it."""
        self.unavailable[key] = reason
        self.report.unavailable[key] = reason
        self.failed.pop(key, None)

    def save_manifest(self, *, final: bool = False) -> None:
        """Write the manifest atomically, stamped with the time at the end of the run;
        intermediate saves bound what an interruption loses."""
        if final:
            self.manifest["updated"] = time.strftime("%Y-%m-%dT%H:%M:%S")
        _atomic_write_json(self.out / MANIFEST_NAME, self.manifest)


def _plan_extraction(
    sources: Sequence[Path], base: Path, outputs: _Outputs
) -> list[tuple[str, Path, Path]]:
    """``(key, source, target)`` of the videos still to embed; the others are recorded.

    The key is the source's path under ``base`` without its suffix (``Class/video_id``).
    Resuming: a video already listed in the manifest, or known to have no sound, is skipped;
    an output written by a run interrupted before its manifest update is adopted when
    readable and deleted (to be redone) when not. A second source with the same key fails,
    the first is kept."""
    report, out = outputs.report, outputs.out
    todo: list[tuple[str, Path, Path]] = []
    seen: set[str] = set()
    for path in sources:
        rel = path.relative_to(base).with_suffix("")
        key = rel.as_posix()
        target = out / rel.parent / f"{rel.name}.npy"
        if key in seen:
            report.failed[key] = f"duplicate video id ({path.name}); first one kept"
            continue
        seen.add(key)
        if target.is_file():
            if key in outputs.videos:
                report.skipped.append(key)
                continue
            try:  # written by a run interrupted before its manifest update
                shape = list(np.load(target, mmap_mode="r").shape)
            except (OSError, ValueError):
                target.unlink()  # unreadable: extract again
            else:
                outputs.videos[key] = {"file": target.relative_to(out).as_posix(), "shape": shape}
                outputs.failed.pop(key, None)
                report.skipped.append(key)
                continue
        if key in outputs.unavailable:
            report.skipped.append(key)
            continue
        todo.append((key, path, target))
    return todo


class _Embedder:
    """Runs the model over soundtracks in batches of at most ``batch_size`` clips.

    Whole soundtracks wait in ``pending`` and share a forward pass only with consecutive ones
    of exactly the same length (padding would change their embeddings); a video's segments
    are batched together. A model error fails the videos of that batch; the run goes on."""

    def __init__(
        self, model: Any, device: Any, batch_size: int, outputs: _Outputs, bar: Any
    ) -> None:
        self.model = model
        self.device = device
        self.batch_size = batch_size
        self.outputs = outputs
        self.bar = bar
        self.pending: list[_Pending] = []

    def embed(self, batch: np.ndarray) -> np.ndarray:
        """(B, samples) -> (B, D) embeddings, without an autograd graph."""
        import torch

        with torch.no_grad():
            x = torch.from_numpy(np.ascontiguousarray(batch, dtype=np.float32)).to(self.device)
            return self.model(x).embedding.float().cpu().numpy()

    def add_whole(self, key: str, target: Path, samples: np.ndarray) -> None:
        """Queue a whole soundtrack; embeds the queue when it is full or the length changes."""
        if self.pending and len(self.pending[0].samples) != len(samples):
            self.flush()
        self.pending.append(_Pending(key, target, samples))
        if len(self.pending) >= self.batch_size:
            self.flush()

    def add_segmented(self, key: str, target: Path, samples: np.ndarray, seg_len: int) -> None:
        """Embed one video's segments now: a (T, D) array, one row per segment. Full
        segments go in batches; the shorter last one (if kept) goes alone."""
        self.flush()
        segs = _segments(samples, seg_len, self.outputs.minimum)
        full = [s for s in segs if len(s) == seg_len]
        rest = [s for s in segs if len(s) != seg_len]  # at most one, the last
        try:
            rows = [
                self.embed(np.stack(full[i : i + self.batch_size]))
                for i in range(0, len(full), self.batch_size)
            ]
            rows += [self.embed(s[None]) for s in rest]
            self.outputs.store(key, target, np.concatenate(rows), len(samples))
        except Exception as err:  # noqa: BLE001 - recorded, the run goes on
            self.outputs.fail(key, f"model error: {type(err).__name__}: {err}")
        self.bar.update(1)

    def flush(self) -> None:
        """Embed and store the queued whole soundtracks."""
        pending = self.pending
        if not pending:
            return
        try:
            embs = self.embed(np.stack([p.samples for p in pending]))
        except Exception as err:  # noqa: BLE001 - recorded, the run goes on
            for p in pending:
                self.outputs.fail(p.key, f"model error: {type(err).__name__}: {err}")
        else:
            for p, emb in zip(pending, embs):
                self.outputs.store(p.key, p.target, emb, len(p.samples))
        self.bar.update(len(pending))
        pending.clear()


def _embed_all(
    todo: Sequence[tuple[str, Path, Path]], embedder: _Embedder, seg_len: int | None
) -> None:
    """Decode each planned video and hand its soundtrack to ``embedder``. Decoding errors and
    missing soundtracks are recorded per video (queued soundtracks are embedded first, so
    outcomes stay in source order); the manifest is saved every ``_MANIFEST_EVERY``
    embedded videos so an interruption loses little."""
    outputs = embedder.outputs
    done = 0
    for key, path, target in todo:
        try:
            samples, reason = read_soundtrack(path)
        except Exception as err:  # noqa: BLE001 - recorded, the run goes on
            embedder.flush()
            outputs.fail(key, f"decode error: {type(err).__name__}: {err}")
            embedder.bar.update(1)
            continue
        if samples is None:
            embedder.flush()
            outputs.no_sound(key, reason or "no soundtrack")
            embedder.bar.update(1)
            continue
        if seg_len is None:
            embedder.add_whole(key, target, samples)
        else:
            embedder.add_segmented(key, target, samples, seg_len)
        done += 1
        if done % _MANIFEST_EVERY == 0:
            outputs.save_manifest()
    embedder.flush()


def extract_audio(
    src: str | Path,
    checkpoint: str | Path,
    out: str | Path,
    *,
    segment_seconds: float | None = None,
    batch_size: int = 8,
    device: str = "auto",
    variant: str = "emb512",
    progress: bool = True,
) -> ExtractReport:
    """Write PANNs embeddings of every video under ``src`` to ``out`` (see module docstring).

    Args:
        src: folder of class sub-folders holding video files and/or HDF5 stores (``.hdf5``
            with an ``audio`` dataset), or a single file.
        checkpoint: PANNs checkpoint (``Cnn14_emb512_mAP=0.420.pth`` for ``variant='emb512'``).
        out: output folder; ``<out>/<Class>/<video_id>.npy`` and ``<out>/manifest.json``.
        segment_seconds: None for one (D,) embedding of the whole soundtrack; else a (T, D)
            array, one row per non-overlapping segment of this length (a last, shorter segment
            is kept when it is at least the model's minimum length).
        batch_size: clips per forward pass. Whole soundtracks are batched only when
            consecutive videos have exactly the same length (padding would change them).
        device: ``'auto'`` (CUDA when available), ``'cpu'``, ``'cuda'``, ``'cuda:1'``, ...
        variant: ``'emb512'``, ``'cnn14'`` (2048-d), or ``'small'`` (the demo's teacher
            from ``ccl pretrain-teacher --modality audio``).
        progress: show a tqdm progress bar.

    Raises:
        ValueError: ``out`` holds a manifest written with another model, checkpoint or
            settings (mixing them in one folder would be silent corruption).
    """
    from tqdm import tqdm

    t0 = time.perf_counter()
    src, out = Path(src), Path(out)
    if batch_size < 1:
        raise ValueError("batch_size must be at least 1")
    minimum = min_samples(WINDOW_SIZE, HOP_SIZE)
    seg_len = _segment_length(segment_seconds, minimum)
    sources = find_sources(src)
    model = _load_audio_model(checkpoint, variant)
    from ccl.runtime import resolve_device  # torch loads only when extracting

    dev = resolve_device(device)
    model.to(dev)
    identity = _extraction_identity(model, checkpoint, variant, segment_seconds, minimum)
    manifest = _open_manifest(out / MANIFEST_NAME, identity)
    manifest.update(checkpoint=str(checkpoint), src=str(src), device=str(dev))
    report = ExtractReport(src=str(src), out=str(out), n_found=len(sources))
    outputs = _Outputs(out, manifest, report, minimum)
    todo = _plan_extraction(sources, src if src.is_dir() else src.parent, outputs)

    bar = tqdm(total=len(todo), unit="video", desc="extract-audio", disable=not progress)
    try:
        _embed_all(todo, _Embedder(model, dev, batch_size, outputs, bar), seg_len)
    finally:
        bar.close()
        report.seconds = time.perf_counter() - t0
        outputs.save_manifest(final=True)
    return report


# ----------------------------------------------------------------------------- archive import


@dataclass
class ImportReport:
    """Outcome of :func:`import_audio_archive`."""

    archive: str
    out: str
    written: list[str] = field(default_factory=list)
    junk: list[str] = field(default_factory=list)
    ignored: list[str] = field(default_factory=list)
    bad: list[dict[str, str]] = field(default_factory=list)
    all_zero: list[str] = field(default_factory=list)
    classes: list[str] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        """True when every embedding entry was valid and at least one was written."""
        return not self.bad and bool(self.written)

    def summary(self) -> str:
        """One line of counts."""
        line = (
            f"import-audio-features: {len(self.written)} embeddings in {len(self.classes)} "
            f"classes written, {len(self.all_zero)} all-zero (no sound in the reference), "
            f"{len(self.junk)} junk entries ignored, {len(self.ignored)} other files ignored, "
            f"{len(self.bad)} bad entries"
        )
        for item in self.bad[:5]:
            line += f"\n  bad: {item['member']}: {item['reason']}"
        if len(self.bad) > 5:
            line += f"\n  ... see {Path(self.out) / MANIFEST_NAME}"
        return line

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _is_junk(parts: Sequence[str]) -> bool:
    """macOS resource forks and Finder files: ``._*``, ``__MACOSX/``, ``.DS_Store``."""
    return any(p.startswith("._") or p in ("__MACOSX", ".DS_Store") for p in parts)


def _check_embedding(data: bytes) -> tuple[np.ndarray | None, str | None]:
    try:
        array = np.load(io.BytesIO(data), allow_pickle=False)
    except Exception as err:  # noqa: BLE001 - reported with the member name
        return None, f"not a readable .npy array ({type(err).__name__}: {err})"
    if not isinstance(array, np.ndarray):
        return None, "not a single .npy array"
    if array.shape != (ARCHIVE_EMBEDDING_DIM,):
        return None, f"shape {array.shape}, want ({ARCHIVE_EMBEDDING_DIM},)"
    if array.dtype != np.float32:
        return None, f"dtype {array.dtype.str}, want float32"
    if not np.isfinite(array).all():
        return None, "non-finite values"
    return array, None


def import_audio_archive(archive: str | Path, out: str | Path) -> ImportReport:
    """Import the reference's ``audiocnn14embed512_features.tar.gz`` into ``out``.

    Every ``<...>/<Class>/<video_id>.npy`` member is validated (shape (512,), dtype float32,
    finite) and written unchanged to ``<out>/<Class>/<video_id>.npy``; invalid members are
    reported with their name and not written. Junk (``._*``, ``__MACOSX``, ``.DS_Store``)
    and non-``.npy`` files are ignored and reported. Nothing is extracted with tarfile's own
    extraction: target paths are built from validated class and file names, so members
    cannot write outside ``out`` (absolute names, ``..``, links are rejected). Re-running
    overwrites the same files with the same values. ``<out>/manifest.json`` records the
    archive's SHA-256 and the outcome.
    """
    t0 = time.perf_counter()
    archive, out = Path(archive), Path(out)
    if not archive.is_file():
        raise FileNotFoundError(
            f"audio feature archive not found: {archive}. The reference's UCF51 features are "
            "datasets/UCF101/audiocnn14embed512_features.tar.gz in github.com/yanbeic/CCL."
        )
    manifest_path = out / MANIFEST_NAME
    previous = _read_manifest(manifest_path)
    if previous is not None and previous.get("source") != "archive":
        raise ValueError(
            f"{manifest_path} describes extracted embeddings; import into another --out folder"
        )
    out.mkdir(parents=True, exist_ok=True)
    out_root = out.resolve()
    report = ImportReport(archive=str(archive), out=str(out))
    videos: dict[str, Any] = {}
    try:
        tar = tarfile.open(archive, mode="r:*")
    except (tarfile.TarError, OSError) as err:
        raise ValueError(f"cannot open {archive} as a tar archive: {err}") from err
    with tar:
        for member in tar:
            name = member.name
            parts = [p for p in PurePosixPath(name).parts if p not in ("", ".")]
            if member.isdir():
                continue
            if _is_junk(parts):
                report.junk.append(name)
                continue
            if not name.endswith(".npy"):
                report.ignored.append(name)
                continue

            def bad(reason: str, member_name: str = name) -> None:
                report.bad.append({"member": member_name, "reason": reason})

            if not member.isfile():
                bad("not a regular file (link or device)")
                continue
            if name.startswith("/") or ".." in parts or any("\\" in p for p in parts):
                bad("unsafe path")
                continue
            if len(parts) < 2:
                bad("not inside a class folder")
                continue
            cls, fname = parts[-2], parts[-1]
            video_id = fname[: -len(".npy")]
            if not video_id or cls.startswith(".") or video_id.startswith("."):
                bad("unexpected name")
                continue
            key = f"{cls}/{video_id}"
            if key in videos:
                bad(f"duplicate of an earlier entry for {key}")
                continue
            target = out / cls / fname
            if out_root not in target.resolve().parents:
                bad("unsafe path")
                continue
            if member.size > _MAX_MEMBER_BYTES:
                bad(f"too large for a (512,) embedding ({member.size} bytes)")
                continue
            handle = tar.extractfile(member)
            if handle is None:
                bad("unreadable member")
                continue
            array, reason = _check_embedding(handle.read())
            if array is None:
                bad(reason or "invalid")
                continue
            _atomic_save_npy(target, array)
            videos[key] = {"file": f"{cls}/{fname}", "shape": [ARCHIVE_EMBEDDING_DIM]}
            report.written.append(key)
            if not array.any():
                report.all_zero.append(key)
    report.classes = sorted({k.split("/", 1)[0] for k in videos})
    report.seconds = time.perf_counter() - t0
    manifest = {
        "kind": MANIFEST_KIND,
        "source": "archive",
        "model": "cnn14_emb512",
        "embedding_dim": ARCHIVE_EMBEDDING_DIM,
        "archive": str(archive),
        "archive_sha256": sha256_file(archive),
        "n_classes": len(report.classes),
        "videos": videos,
        "unavailable": {},
        "all_zero": report.all_zero,
        "failed": {},
        "junk": report.junk,
        "ignored": report.ignored,
        "bad": report.bad,
        "note": "values copied unchanged from the reference's release; all-zero vectors are "
        "the reference's marker for a video without sound",
        "updated": time.strftime("%Y-%m-%dT%H:%M:%S"),
    }
    _atomic_write_json(manifest_path, manifest)
    return report


# ----------------------------------------------------------------------------- command line


_Report = TypeVar("_Report")


def _run_or_print_error(command: Callable[[], _Report]) -> _Report | None:
    """``command()``, or None after one line ``error: ...`` when it fails on a user error
    (a missing file, a bad value, an unusable folder), so the command exits 2 without a
    traceback."""
    try:
        return command()
    except (FileNotFoundError, ValueError) as err:
        print(f"error: {err}")
    except OSError as err:
        from ccl.cli import describe_error

        print(f"error: {describe_error(err)}")
    return None


def _cmd_extract(args: argparse.Namespace) -> int:
    report = _run_or_print_error(
        lambda: extract_audio(
            args.src,
            args.checkpoint,
            args.out,
            segment_seconds=args.segment_seconds,
            batch_size=args.batch_size,
            device=args.device,
            variant=args.variant,
            progress=not args.no_progress,
        )
    )
    if report is None:
        return 2
    print(report.summary())
    for key, reason in list(report.failed.items())[:10]:
        print(f"  failed: {key}: {reason}")
    return 0 if report.ok else 1


def _cmd_import(args: argparse.Namespace) -> int:
    report = _run_or_print_error(lambda: import_audio_archive(args.from_archive, args.out))
    if report is None:
        return 2
    print(report.summary())
    for name in report.junk:
        print(f"  junk ignored: {name}")
    return 0 if report.ok else 1


def add_extract_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``extract-audio`` (reusable under another command name)."""
    parser.add_argument("src", help="folder of class sub-folders with videos or .hdf5 stores")
    parser.add_argument(
        "--checkpoint",
        required=True,
        help="PANNs checkpoint, e.g. Cnn14_emb512_mAP=0.420.pth (Zenodo record 3987831)",
    )
    parser.add_argument("--out", required=True, help="output folder")
    parser.add_argument(
        "--segment-seconds",
        type=float,
        default=None,
        help="one embedding per segment of this length: (T, D) arrays",
    )
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N")
    parser.add_argument(
        "--variant",
        choices=sorted(AUDIO_MODEL_NAMES),
        default="emb512",
        help="emb512 (512-d, the CCL teacher) or cnn14 (2048-d)",
    )
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.set_defaults(func=_cmd_extract)


def add_import_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``import-audio-features`` (also usable as ``prepare audio-features``)."""
    parser.add_argument(
        "--from-archive",
        required=True,
        metavar="FILE",
        help="the reference's audiocnn14embed512_features.tar.gz",
    )
    parser.add_argument("--out", required=True, help="output folder")
    parser.set_defaults(func=_cmd_import)


def register(subparsers: Any) -> None:
    """Add ``extract-audio`` and ``import-audio-features`` to an argparse subparsers object;
    each sets ``func`` to a callable ``(args) -> int`` exit code (0 ok, 1 some videos or
    entries failed, 2 unusable input)."""
    extract = subparsers.add_parser(
        "extract-audio",
        help="PANNs Cnn14_emb512 embeddings of video soundtracks",
        description="Write one PANNs embedding per video (<out>/<Class>/<video_id>.npy); "
        "videos without sound are listed in <out>/manifest.json. Resumable.",
    )
    add_extract_arguments(extract)
    imp = subparsers.add_parser(
        "import-audio-features",
        help="import the reference's audiocnn14embed512_features.tar.gz",
        description="Validate and copy the reference's released UCF51 audio embeddings into "
        "<out>/<Class>/<video_id>.npy with a manifest.",
    )
    add_import_arguments(imp)
