"""``ccl predict`` (top classes of video files) and ``ccl embed`` (their video-level
features, or those of prepared frame stores), by a trained student.

Both commands share their arguments (run folder or checkpoint, device, batch size) and their
reporting: a video that cannot be read is named with the reason on stderr, the others are
still processed, and the exit status is 1 when any failed. The work itself is
:mod:`ccl.predict`'s.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterator
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # the command line is built without torch
    from ccl.predict import VideoModel, VideoResult


def _add_model_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("target", help="run folder, checkpoint file or model package (ccl export)")
    p.add_argument(
        "--checkpoint",
        default="best",
        choices=["best", "last"],
        help="which checkpoint of a run folder (default best)",
    )
    p.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N")
    p.add_argument("--batch-size", type=int, default=16, help="windows per forward pass")
    p.add_argument(
        "--allow-still-images",
        action="store_true",
        help="use a still image (one frame of an image codec) as a 1-frame video instead of "
        "refusing it, as `ccl prepare videos --allow-still-images` does",
    )


def register(sub: argparse._SubParsersAction) -> None:
    """Add ``predict`` and ``embed`` to the ``ccl`` command line."""
    p = sub.add_parser(
        "predict",
        help="top classes of video files (mp4, avi, mkv, webm, ...) by a trained student",
        description="Decode each video, apply the test-time windows, short-side resize and "
        "centre crop of `ccl evaluate`, average softmax over windows, print the top K "
        "classes. Exit status 1 when a video could not be decoded (the others are done).",
    )
    _add_model_arguments(p)
    p.add_argument("videos", nargs="+", metavar="VIDEO")
    p.add_argument("--top", type=int, default=5, help="classes shown per video (default 5)")
    p.add_argument(
        "--json",
        default=None,
        metavar="FILE",
        help='also write [{"video": path, "top": [{"label", "prob"}, ...]}, ...]',
    )
    p.set_defaults(func=run_predict)

    p = sub.add_parser(
        "embed",
        help="video-level student features (retrieval's) of video files or frame stores",
        description="Window-averaged, L2-normalised student features, as retrieval in `ccl "
        "evaluate` uses them, saved as FILE.npz with `features` (N, D) float32, `video_ids`, "
        "and for frame stores `labels` (indices into `classes`). Exit status 1 when a video "
        "could not be read (the others are saved).",
    )
    _add_model_arguments(p)
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
    p.set_defaults(func=run_embed)


def _each_video(command: str, model: VideoModel, args: argparse.Namespace) -> Iterator[VideoResult]:
    """``run_video`` over the files of ``args.videos``, with each warning and failure
    printed as it happens."""
    from ccl.predict import run_video

    for video in args.videos:
        result = run_video(model, video, args.batch_size, args.allow_still_images)
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


def run_predict(args: argparse.Namespace) -> int:
    """Print (and with --json write) the top classes of each video file. ``--json`` never
    replaces an input nor a file that is not an earlier ``ccl predict --json`` output."""
    from ccl.atomic import atomic_write, check_replaceable_json
    from ccl.predict import check_batch_size, is_predictions_json, load_model, top_k

    check_batch_size(args.batch_size)
    if args.top < 1:
        raise ValueError(f"--top must be at least 1, got {args.top}")
    if args.json:
        check_replaceable_json(
            args.json,
            inputs=[*args.videos, args.target],
            is_own=is_predictions_json,
            kind="a ccl predict result",
            option="--json",
        )
    model = load_model(args.target, args.checkpoint, args.device)
    entries, failed = [], 0
    for result in _each_video("predict", model, args):
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


def run_embed(args: argparse.Namespace) -> int:
    """Save the video-level features of video files or of a subset's frame stores."""
    import numpy as np

    from ccl.data.annotations import subset_name
    from ccl.predict import TrainedStudent, check_batch_size, embed_stores, load_model, save_npz

    check_batch_size(args.batch_size)
    from_stores = args.subset is not None or args.annotations or args.frames_dir
    if bool(args.videos) == bool(from_stores):
        raise ValueError("give either video files or --subset (with --annotations/--frames-dir)")
    if not str(args.out).endswith(".npz"):
        raise ValueError(f"--out must be a .npz file, got {args.out}")
    model = load_model(args.target, args.checkpoint, args.device)
    if from_stores:
        if not isinstance(model, TrainedStudent):
            raise ValueError(
                f"{args.target}: frame stores (--subset) need a run folder or checkpoint, "
                "not a model package; give video files"
            )
        arrays, errors = embed_stores(
            model,
            subset_name(args.subset or "test"),
            args.annotations,
            args.frames_dir,
            batch_size=args.batch_size,
            workers=args.workers,
        )
        for name, reason in errors:
            _print_error("embed", name, reason)
        failed, total = len(errors), len(arrays["video_ids"]) + len(errors)
    else:
        results = list(_each_video("embed", model, args))
        done = [r for r in results if r.feature is not None]
        dim = model.feature_dim
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
