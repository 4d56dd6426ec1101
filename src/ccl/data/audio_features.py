"""Audio-teacher embeddings extracted with PANNs (docs/METHOD.md §2.3 and §6.2).

:func:`extract_audio` runs PANNs ``Cnn14_emb512`` (:mod:`ccl.models.panns`) over every video
file or prepared HDF5 store under ``src`` (class sub-folders mirrored) and writes the
embedding folder layout of :mod:`ccl.data.audio`::

    <out>/<Class>/<video_id>.npy     (512,) float32, or (T, 512) with segment embeddings
    <out>/manifest.json              what was written, how, and which videos have no sound

The whole soundtrack gives one embedding, as in the reference (a long one goes through the
network in chunks, in the memory of a 13 s clip: :class:`ccl.models.panns.Cnn14`); with
``segment_seconds`` each non-overlapping segment gives one row. A video without a usable
soundtrack gets no file (no zero vector): it is listed under ``unavailable`` in the manifest.
Outputs are written atomically (temporary file + rename) and existing ones are skipped, so
an interrupted run resumes where it stopped.

Soundtracks are read with :func:`ccl.data.media.decode_soundtrack` (video files) or
:func:`ccl.data.store.read_store_audio` (frame stores): mono float32 at 32 kHz either way.
"""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from ccl.atomic import sha256_file
from ccl.data.audio import (
    AUDIO_MODEL_NAMES,
    MANIFEST_KIND,
    MANIFEST_NAME,
    read_manifest,
    save_embedding,
    write_manifest,
)
from ccl.data.media import SAMPLE_RATE, VIDEO_EXTENSIONS, decode_soundtrack
from ccl.data.store import STORE_EXTENSIONS, read_store_audio
from ccl.models.panns import (
    AMIN,
    FMAX,
    FMIN,
    HOP_SIZE,
    MEL_BINS,
    WINDOW_SIZE,
    load_cnn14,
    min_samples,
)
from ccl.models.small_audio import load_small_audio_teacher
from ccl.runtime import resolve_device

_MANIFEST_EVERY = 50  # videos between manifest checkpoints during extraction


# ----------------------------------------------------------------------------- sources


def read_soundtrack(path: str | Path) -> tuple[np.ndarray | None, str | None]:
    """``(samples, None)`` with mono float32 samples at 32 kHz, or ``(None, reason)`` when the
    video has no usable soundtrack. Decoding errors raise."""
    path = Path(path)
    if path.suffix.lower() in STORE_EXTENSIONS:
        return read_store_audio(path)
    return decode_soundtrack(path)


def load_soundtrack(path: str | Path) -> np.ndarray | None:
    """The soundtrack of a video file (any container FFmpeg reads) or of a prepared HDF5 store
    (dataset ``audio``, attributes ``sample_rate`` and ``has_audio``) as mono float32 at
    32 kHz; None when there is no audio stream (or it holds no samples)."""
    return read_soundtrack(path)[0]


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
        return load_small_audio_teacher(checkpoint)
    return load_cnn14(checkpoint, variant)  # type: ignore[arg-type]


def segment_length(segment_seconds: float | None, minimum: int) -> int | None:
    """Samples per segment, or None for one embedding of the whole soundtrack. Segments
    shorter than the model's minimum input are refused: they would be zero-padded, and every
    row would then describe mostly padding."""
    if segment_seconds is None:
        return None
    seg_len = int(round(segment_seconds * SAMPLE_RATE))
    if seg_len < minimum:
        raise ValueError(
            f"segment_seconds={segment_seconds} is shorter than the model's minimum input "
            f"of {minimum} samples ({minimum / SAMPLE_RATE:.2f} s)"
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
        "sample_rate": SAMPLE_RATE,
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
    manifest = read_manifest(manifest_path)
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


class ExtractionOutputs:
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
        save_embedding(target, emb)
        self.videos[key] = {
            "file": target.relative_to(self.out).as_posix(),
            "shape": list(emb.shape),
            "seconds": round(n_samples / SAMPLE_RATE, 4),
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
        write_manifest(self.out / MANIFEST_NAME, self.manifest)


def plan_extraction(
    sources: Sequence[Path], base: Path, outputs: ExtractionOutputs
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
        self, model: Any, device: Any, batch_size: int, outputs: ExtractionOutputs, bar: Any
    ) -> None:
        self.model = model
        self.device = device
        self.batch_size = batch_size
        self.outputs = outputs
        self.bar = bar
        self.pending: list[_Pending] = []

    def embed(self, batch: np.ndarray) -> np.ndarray:
        """(B, samples) -> (B, D) embeddings, without an autograd graph."""
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
    t0 = time.perf_counter()
    src, out = Path(src), Path(out)
    if batch_size < 1:
        raise ValueError("batch_size must be at least 1")
    minimum = min_samples(WINDOW_SIZE, HOP_SIZE)
    seg_len = segment_length(segment_seconds, minimum)
    sources = find_sources(src)
    model = _load_audio_model(checkpoint, variant)
    dev = resolve_device(device)
    model.to(dev)
    identity = _extraction_identity(model, checkpoint, variant, segment_seconds, minimum)
    manifest = _open_manifest(out / MANIFEST_NAME, identity)
    manifest.update(checkpoint=str(checkpoint), src=str(src), device=str(dev))
    report = ExtractReport(src=str(src), out=str(out), n_found=len(sources))
    outputs = ExtractionOutputs(out, manifest, report, minimum)
    todo = plan_extraction(sources, src if src.is_dir() else src.parent, outputs)

    bar = tqdm(total=len(todo), unit="video", desc="extract-audio", disable=not progress)
    try:
        _embed_all(todo, _Embedder(model, dev, batch_size, outputs, bar), seg_len)
    finally:
        bar.close()
        report.seconds = time.perf_counter() - t0
        outputs.save_manifest(final=True)
    return report


__all__ = [
    "ExtractReport",
    "ExtractionOutputs",
    "extract_audio",
    "find_sources",
    "load_soundtrack",
    "plan_extraction",
    "read_soundtrack",
    "segment_length",
]
