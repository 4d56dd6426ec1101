"""Apply a trained student: ``ccl predict`` (class probabilities of video files) and ``ccl
embed`` (the video-level features retrieval uses), without frame stores or annotations.

A video file goes through the same steps as its frame store in ``ccl evaluate``: frames
decoded with PyAV and resized to the store's short side (:func:`decode_video_frames`, as
``ccl prepare videos`` does), cut into every non-overlapping window of ``data.clip_frames``
frames (every ``data.frame_stride``-th; the last window loop-padded, :func:`clip_offsets`),
each window resized to short side ``data.size`` and centre-cropped (:func:`eval_frames`),
then softmax averaged over windows (:func:`metrics.aggregate_windows`) and features
averaged and L2-normalised (:func:`metrics.aggregate_features`). Only the stores' JPEG
round trip is missing, so both give the same probabilities within JPEG tolerance (tested).

Frames are decoded one window at a time, so a long video never sits in memory. A video
that cannot be decoded is reported with the reason and the others are still processed.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from ccl import metrics
from ccl.atomic import atomic_write
from ccl.checkpoint import load_checkpoint
from ccl.config import Config
from ccl.data import transforms as T
from ccl.data.datasets import clip_offsets
from ccl.data.prepare import DEFAULT_SHORT_SIDE, decode_video_frames
from ccl.evaluation import resolve_checkpoint
from ccl.models import build_model
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


def video_windows(
    video: str | Path,
    frames: int,
    stride: int,
    size: int,
    store_short_side: int = DEFAULT_SHORT_SIDE,
    warnings: list[str] | None = None,
) -> Iterator[torch.Tensor]:
    """Every non-overlapping window of a video file as a (3, T, size, size) uint8 clip,
    in order: the windows of ``ClipDataset(mode="test")`` over the file's frame store.

    A decode error after at least one frame keeps the frames before it (as ``ccl prepare
    videos`` does) and is appended to ``warnings``; before any frame it propagates."""
    span = frames * stride  # window starts are multiples of the span (window_starts)
    chunk: list[np.ndarray] = []
    decoded = 0
    frames_iter = decode_video_frames(video, store_short_side)
    while True:
        try:
            frame = next(frames_iter)
        except StopIteration:
            break
        except Exception as err:  # noqa: BLE001 - a damaged tail: keep what decoded
            if decoded == 0:
                raise
            if warnings is not None:
                warnings.append(
                    f"decode error after {decoded} frames, kept those: {type(err).__name__}: {err}"
                )
            break
        decoded += 1
        chunk.append(frame)
        if len(chunk) == span:
            yield _window_clip(chunk, frames, stride, size)
            chunk = []
    if chunk:
        yield _window_clip(chunk, frames, stride, size)
    if decoded == 0:
        raise ValueError("no video frames could be decoded")


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


def run_video(model: TrainedStudent, video: str | Path, batch_size: int = 16) -> VideoResult:
    """Probabilities and feature of one video file. Decoding problems become
    ``VideoResult.error``; a failure of the model itself propagates."""
    data = model.cfg.data
    result = VideoResult(str(video))
    if not Path(video).is_file():
        result.error = "not a file" if Path(video).exists() else "no such file"
        return result
    windows = video_windows(
        video, data.clip_frames, data.frame_stride, data.size, warnings=result.warnings
    )
    logits, feats, batch = [], [], []
    while True:
        try:
            clip = next(windows, None)
        except Exception as err:  # noqa: BLE001 - any decoder failure is this video's error
            result.error = f"cannot decode: {_reason(err)}"
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


def _reason(err: BaseException) -> str:
    """One line for a decoding failure; FFmpeg's message without the errno and path
    (the path is already in the report)."""
    message = getattr(err, "strerror", None) or str(err)
    return f"{type(err).__name__}: {message}".strip()


def top_k(probs: torch.Tensor, classes: Sequence[str], k: int) -> list[dict[str, Any]]:
    """The ``k`` most probable classes as ``{"label": name, "prob": p}``, best first."""
    values, indices = probs.topk(min(k, len(classes)))
    return [{"label": classes[i], "prob": float(p)} for p, i in zip(values, indices.tolist())]


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
    from ccl.evaluation import EvalSettings, _subset_dataset, _video_results, forward_windows

    settings = EvalSettings(annotations=annotations, frames_dir=frames_dir, allow_missing=True)
    dataset = _subset_dataset(model.cfg, settings, subset)
    windows = forward_windows(
        model.student,
        dataset,
        batch_size=batch_size,
        workers=workers,
        device=model.device,
        mean=model.mean,
        std=model.std,
    )
    results = _video_results(dataset, windows)
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


# --------------------------------------------------------------------------- command line


def _each_video(
    command: str, model: TrainedStudent, videos: Sequence[str], batch_size: int
) -> Iterator[VideoResult]:
    """``run_video`` over the files, with each warning and failure printed as it happens."""
    for video in videos:
        result = run_video(model, video, batch_size)
        for warning in result.warnings:
            print(f"ccl {command}: warning: {result.video}: {warning}", file=sys.stderr)
        if result.error is not None:
            _print_error(command, result.video, result.error)
        yield result


def _print_error(command: str, name: str, reason: str) -> None:
    print(f"ccl {command}: error: {name}: {reason}", file=sys.stderr, flush=True)


def _exit_status(command: str, failed: int, total: int) -> int:
    """The closing count; exit status 1 when any video failed."""
    if failed:
        print(f"ccl {command}: {failed} of {total} videos could not be processed", file=sys.stderr)
        return 1
    return 0


def _cmd_predict(args: argparse.Namespace) -> int:
    if args.top < 1:
        raise ValueError(f"--top must be at least 1, got {args.top}")
    model = load_student(args.target, args.checkpoint, args.device)
    entries, failed = [], 0
    for result in _each_video("predict", model, args.videos, args.batch_size):
        if result.probs is None:
            entries.append({"video": result.video, "top": [], "error": result.error})
            failed += 1
            continue
        top = top_k(result.probs, model.classes, args.top)
        entries.append({"video": result.video, "top": top})
        print(f"{result.video} ({result.windows} window{'s' * (result.windows != 1)})")
        for item in top:
            print(f"  {item['prob']:.4f}  {item['label']}", flush=True)
    if args.json:
        with atomic_write(args.json) as f:
            f.write((json.dumps(entries, indent=1) + "\n").encode())
    return _exit_status("predict", failed, len(args.videos))


def _cmd_embed(args: argparse.Namespace) -> int:
    from ccl.cli import _SUBSETS

    from_stores = args.subset is not None or args.annotations or args.frames_dir
    if bool(args.videos) == bool(from_stores):
        raise ValueError("give either video files or --subset (with --annotations/--frames-dir)")
    if not str(args.out).endswith(".npz"):
        raise ValueError(f"--out must be a .npz file, got {args.out}")
    model = load_student(args.target, args.checkpoint, args.device)
    if from_stores:
        subset = _SUBSETS.get(args.subset or "test", args.subset or "test")
        arrays, errors = embed_stores(
            model,
            subset,
            args.annotations,
            args.frames_dir,
            batch_size=args.batch_size,
            workers=args.workers,
        )
        for name, reason in errors:
            _print_error("embed", name, reason)
        failed, total = len(errors), len(arrays["video_ids"]) + len(errors)
    else:
        results = list(_each_video("embed", model, args.videos, args.batch_size))
        done = [r for r in results if r.feature is not None]
        dim = model.student.feature_dim  # type: ignore[union-attr]
        arrays = {
            "features": np.stack([r.feature.numpy() for r in done]).astype(np.float32)
            if done
            else np.zeros((0, dim), dtype=np.float32),
            "video_ids": np.array([r.video for r in done], dtype=str),
        }
        failed, total = len(results) - len(done), len(results)
    if len(arrays["video_ids"]):
        save_npz(args.out, arrays)
        shape = "x".join(map(str, arrays["features"].shape))
        print(f"{len(arrays['video_ids'])} videos embedded ({shape} float32) -> {args.out}")
    else:
        print(f"ccl embed: nothing to save, {args.out} not written", file=sys.stderr)
    return _exit_status("embed", failed, total)


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("target", help="run folder or checkpoint file")
    p.add_argument(
        "--checkpoint",
        default="best",
        choices=["best", "last"],
        help="which checkpoint of a run folder (default best)",
    )
    p.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N")
    p.add_argument("--batch-size", type=int, default=16, help="windows per forward pass")


def register(sub: argparse._SubParsersAction) -> None:
    """Add ``predict`` and ``embed`` to the ``ccl`` command line."""
    p = sub.add_parser(
        "predict",
        help="top classes of video files (mp4, avi, mkv, webm, ...) by a trained student",
        description="Decode each video, apply the test-time windows, short-side resize and "
        "centre crop of `ccl evaluate`, average softmax over windows, print the top K "
        "classes. Exit status 1 when a video could not be decoded (the others are done).",
    )
    _common(p)
    p.add_argument("videos", nargs="+", metavar="VIDEO")
    p.add_argument("--top", type=int, default=5, help="classes shown per video (default 5)")
    p.add_argument(
        "--json",
        default=None,
        metavar="FILE",
        help='also write [{"video": path, "top": [{"label", "prob"}, ...]}, ...]',
    )
    p.set_defaults(func=_cmd_predict)

    p = sub.add_parser(
        "embed",
        help="video-level student features (retrieval's) of video files or frame stores",
        description="Window-averaged, L2-normalised student features, as retrieval in `ccl "
        "evaluate` uses them, saved as FILE.npz with `features` (N, D) float32, `video_ids`, "
        "and for frame stores `labels` (indices into `classes`). Exit status 1 when a video "
        "could not be read (the others are saved).",
    )
    _common(p)
    p.add_argument("videos", nargs="*", metavar="VIDEO")
    p.add_argument(
        "--subset",
        default=None,
        help="frame stores of this annotation subset: test | val | train | NAME",
    )
    p.add_argument("--annotations", default=None, help="default: the run's data.annotations")
    p.add_argument("--frames-dir", default=None, help="default: the run's data.frames_dir")
    p.add_argument("--workers", type=int, default=0, help="data loader workers (frame stores)")
    p.add_argument("--out", required=True, metavar="FILE.npz")
    p.set_defaults(func=_cmd_embed)


__all__ = [
    "TrainedStudent",
    "VideoResult",
    "embed_stores",
    "load_student",
    "register",
    "run_video",
    "save_npz",
    "top_k",
    "video_windows",
]
