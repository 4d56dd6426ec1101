"""Apply a trained student: ``ccl predict`` (class probabilities of video files) and ``ccl
embed`` (the video-level features retrieval uses), without frame stores or annotations.

A video file goes through the same steps as its frame store in ``ccl evaluate``: frames
decoded with PyAV and resized to the store's short side (:class:`VideoReader`, as ``ccl
prepare videos`` does, with its checks: a still image, a symlink loop or a truncated file is
refused or warned about in prepare's words), cut into every non-overlapping window of
``data.clip_frames`` frames (every ``data.frame_stride``-th; the last window loop-padded,
:func:`clip_offsets`), each window resized to short side ``data.size`` and centre-cropped
(:func:`eval_frames`), then softmax averaged over windows
(:func:`metrics.aggregate_windows`) and features averaged and L2-normalised
(:func:`metrics.aggregate_features`). Only the stores' JPEG round trip is missing, so both
give the same probabilities within JPEG tolerance (tested).

Frames are decoded one window at a time, so a long video never sits in memory. A video
that cannot be decoded is reported with the reason and the others are still processed.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch
from torch import nn

from ccl import metrics
from ccl.atomic import atomic_write
from ccl.checkpoint import load_checkpoint
from ccl.config import Config
from ccl.data import transforms as T
from ccl.data.datasets import clip_offsets
from ccl.data.media import DEFAULT_SHORT_SIDE, VideoReader, describe_media_failure
from ccl.evaluation import resolve_checkpoint
from ccl.models import build_model
from ccl.package import PackagedStudent, load_package, looks_like_package
from ccl.runtime import resolve_device, stats_tensor, to_batch


@dataclass
class TrainedStudent:
    """A student loaded from a checkpoint, with what is needed to feed it."""

    student: nn.Module
    cfg: Config
    classes: list[str]
    checkpoint: Path
    device: torch.device
    mean: torch.Tensor
    std: torch.Tensor

    @torch.no_grad()
    def forward(self, clips: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(logits, features) of a batch of (B, 3, T, H, W) uint8 clips, as float32 on CPU."""
        raw = {"clip": clips, "label": torch.zeros(len(clips), dtype=torch.long)}
        out = self.student(to_batch(raw, self.device, self.mean, self.std).clip)
        return out.logits.float().cpu(), out.feature.float().cpu()

    @property
    def clip_frames(self) -> int:
        return self.cfg.data.clip_frames

    @property
    def frame_stride(self) -> int:
        return self.cfg.data.frame_stride

    @property
    def size(self) -> int:
        return self.cfg.data.size

    @property
    def feature_dim(self) -> int:
        return int(self.student.feature_dim)  # type: ignore[arg-type]


class VideoModel(Protocol):
    """What :func:`run_video` needs of a model: a run's :class:`TrainedStudent` or a model
    package's :class:`ccl.package.PackagedStudent`."""

    classes: list[str]
    clip_frames: int
    frame_stride: int
    size: int
    feature_dim: int

    def forward(self, clips: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]: ...


def load_student(
    target: str | Path, checkpoint: str = "best", device: str = "auto"
) -> TrainedStudent:
    """The student of a run folder (its ``checkpoints/<checkpoint>.pt``) or a checkpoint
    file, in eval mode on ``device``."""
    path = resolve_checkpoint(target, checkpoint)
    state = load_checkpoint(path)
    cfg = Config.from_dict(state["config"])
    classes = [str(c) for c in state["classes"]]
    dev = resolve_device(device)
    student = build_model(cfg.student, len(classes))
    student.load_state_dict(state["student"])
    student.to(dev).eval()
    return TrainedStudent(
        student,
        cfg,
        classes,
        path,
        dev,
        stats_tensor(cfg.data.mean, dev),
        stats_tensor(cfg.data.std, dev),
    )


def load_model(
    target: str | Path, checkpoint: str = "best", device: str = "auto"
) -> TrainedStudent | PackagedStudent:
    """The student of a model package folder (``ccl export``; ``checkpoint`` does not
    apply), of a run folder or of a checkpoint file (:func:`load_student`)."""
    path = Path(target)
    if looks_like_package(path):
        return load_package(path, resolve_device(device))
    if path.is_dir() and not (path / "checkpoints").is_dir():
        raise FileNotFoundError(
            f"{path} is neither a run folder (no checkpoints/) nor a model package "
            "(no preprocessing.json)"
        )
    return load_student(path, checkpoint, device)


def video_windows(
    video: str | Path,
    frames: int,
    stride: int,
    size: int,
    store_short_side: int = DEFAULT_SHORT_SIDE,
    warnings: list[str] | None = None,
    allow_still_images: bool = False,
) -> Iterator[torch.Tensor]:
    """Every non-overlapping window of a video file as a (3, T, size, size) uint8 clip,
    in order: the windows of ``ClipDataset(mode="test")`` over the file's frame store.

    The file is read by :class:`~ccl.data.media.VideoReader`, as ``ccl prepare videos``
    reads it: its refusals (``MediaError``) and PyAV's errors before the first frame
    propagate; its warnings (a damaged tail kept up to the error, a truncated file) are
    appended to ``warnings``."""
    span = frames * stride  # window starts are multiples of the span (window_starts)
    chunk: list[np.ndarray] = []
    with VideoReader(
        video, short_side=store_short_side, allow_still_images=allow_still_images
    ) as reader:
        try:
            for frame in reader.frames():
                chunk.append(frame)
                if len(chunk) == span:
                    yield _window_clip(chunk, frames, stride, size)
                    chunk = []
        finally:
            if warnings is not None:
                warnings.extend(reader.warnings)
    if chunk:
        yield _window_clip(chunk, frames, stride, size)


def _window_clip(chunk: list[np.ndarray], frames: int, stride: int, size: int) -> torch.Tensor:
    """The clip of one window whose frames (from its start on) are ``chunk``."""
    offsets = clip_offsets(len(chunk), 0, frames, stride)
    block = T.to_tchw(np.stack([chunk[o] for o in offsets]))
    return T.eval_frames(block, size).permute(1, 0, 2, 3).contiguous()


@dataclass
class VideoResult:
    """Video-level outputs of one file, or why it has none."""

    video: str
    probs: torch.Tensor | None = None  # (C,) softmax averaged over windows
    feature: torch.Tensor | None = None  # (D,) window-averaged, L2-normalised
    windows: int = 0
    error: str | None = None
    warnings: list[str] = field(default_factory=list)


def run_video(
    model: VideoModel, video: str | Path, batch_size: int = 16, allow_still_images: bool = False
) -> VideoResult:
    """Probabilities and feature of one video file. Decoding problems become
    ``VideoResult.error`` (:func:`~ccl.data.media.describe_media_failure`, the words of ``ccl
    prepare videos``); a failure of the model itself propagates. ``batch_size``: windows per
    forward pass, at least 1. ``allow_still_images``: score a still image as a 1-frame
    video instead of refusing it."""
    check_batch_size(batch_size)
    result = VideoResult(str(video))
    windows = video_windows(
        video,
        model.clip_frames,
        model.frame_stride,
        model.size,
        warnings=result.warnings,
        allow_still_images=allow_still_images,
    )
    logits, feats, batch = [], [], []
    while True:
        try:
            clip = next(windows, None)
        except Exception as err:  # noqa: BLE001 - any decoder failure is this video's error
            result.error = describe_media_failure(err)
            return result
        if clip is not None:
            batch.append(clip)
        if batch and (clip is None or len(batch) == batch_size):
            lg, ft = model.forward(torch.stack(batch))
            logits.append(lg)
            feats.append(ft)
            batch = []
        if clip is None:
            break
    window_logits, window_feats = torch.cat(logits), torch.cat(feats)
    one_video = torch.zeros(len(window_logits), dtype=torch.long)
    result.probs = metrics.aggregate_windows(window_logits, one_video, 1)[0]
    result.feature = metrics.aggregate_features(window_feats, one_video, 1)[0]
    result.windows = len(window_logits)
    return result


def check_batch_size(batch_size: int, flag: str = "--batch-size") -> None:
    """Raise ``ValueError`` naming ``flag`` unless ``batch_size`` is at least 1 (0 or less
    would score every window of a video in one forward pass)."""
    if batch_size < 1:
        raise ValueError(f"{flag} must be at least 1, got {batch_size}")


def top_k(probs: torch.Tensor, classes: Sequence[str], k: int) -> list[dict[str, Any]]:
    """The ``k`` most probable classes as ``{"label": name, "prob": p}``, best first."""
    values, indices = probs.topk(min(k, len(classes)))
    return [{"label": classes[i], "prob": float(p)} for p, i in zip(values, indices.tolist())]


def is_predictions_json(data: Any) -> bool:
    """Whether parsed JSON is a ``ccl predict --json`` output: a non-empty list of objects
    with ``video`` and ``top`` (the keys every entry has)."""
    return (
        isinstance(data, list)
        and bool(data)
        and all(isinstance(e, dict) and "video" in e and "top" in e for e in data)
    )


def embed_stores(
    model: TrainedStudent,
    subset: str,
    annotations: str | None = None,
    frames_dir: str | None = None,
    *,
    batch_size: int = 16,
    workers: int = 0,
) -> tuple[dict[str, np.ndarray], list[tuple[str, str]]]:
    """Video-level features of a subset of prepared frame stores, by the very pass ``ccl
    evaluate`` makes (its windows, transforms and aggregation). Returns the arrays to save
    (``features``, ``video_ids``, ``labels``, ``classes``) and the (video_id, reason) of the
    videos that could not be embedded."""
    from ccl.evaluation import EvalSettings, forward_windows, subset_dataset, video_results

    check_batch_size(batch_size)
    settings = EvalSettings(annotations=annotations, frames_dir=frames_dir, allow_missing=True)
    dataset = subset_dataset(model.cfg, settings, subset)
    windows = forward_windows(
        model.student,
        dataset,
        batch_size=batch_size,
        workers=workers,
        device=model.device,
        mean=model.mean,
        std=model.std,
    )
    results = video_results(dataset, windows)
    errors = [(vid, reason) for vid, reason in getattr(dataset, "skipped", [])]
    for i in results["unreadable"]:
        reasons = sorted({m for w, m in windows["errors"].items() if dataset.windows[w][0] == i})
        errors.append((dataset.videos[i].video_id, "; ".join(reasons) or "unreadable"))
    arrays = {
        "features": results["features"].numpy().astype(np.float32),
        "video_ids": np.array([dataset.videos[i].video_id for i in results["videos"].tolist()]),
        "labels": results["labels"].numpy().astype(np.int64),
        "classes": np.array(dataset.classes),
    }
    return arrays, errors


def save_npz(path: str | Path, arrays: dict[str, np.ndarray]) -> None:
    """Write arrays atomically (loadable with ``np.load(path)``, no pickle)."""
    with atomic_write(path) as f:
        np.savez(f, **arrays)


__all__ = [
    "TrainedStudent",
    "VideoResult",
    "VideoModel",
    "check_batch_size",
    "embed_stores",
    "load_model",
    "load_student",
    "run_video",
    "save_npz",
    "top_k",
    "video_windows",
]
