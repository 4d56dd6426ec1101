"""Videos -> one HDF5 frame store per video, in parallel (docs/METHOD.md §5.2).

Each video is decoded with PyAV (:mod:`ccl.data.media`), its frames short side resized and
written as a frame store (:mod:`ccl.data.store`, which describes the format); with
``audio=True`` the soundtrack is stored too, mono float32 at 32 kHz. Frames and soundtrack
are written while they are decoded, so memory does not grow with a video's length.

The source tree is mirrored (``src/Class/v.avi -> dst/Class/v.hdf5``). Each store is written
under a hidden temporary name next to its final path and renamed atomically when complete,
so an interrupted run can be resumed: complete stores are skipped, leftovers replaced. Each
store records the identity of its source file (size, modification time, SHA-256 of its first
and last MiB; :func:`ccl.data.store.source_identity`): a store whose source has changed
since (other size or content) is converted again and listed in the report's
``source_changed``, never skipped as complete. A store that records no identity (made before
identities were recorded) is kept unchecked, counted in the report's ``unverified``;
``reprepare`` converts it again. A complete store made with other settings (short side,
frame rate, JPEG quality, audio) is never skipped as if it matched: the run refuses, naming
it, unless ``reprepare`` asks to convert it again (atomically, as above).
A video that cannot be read does not stop the run; it is listed with the reason in
``dst/prepare_report.json``, as are videos that decoded to fewer frames than their
container declares (truncated files). A still image (one frame of an image codec, e.g. a
PNG renamed ``.mp4``) is refused unless ``allow_still_images``. Videos are read by
:class:`ccl.data.media.VideoReader`, as ``ccl predict`` reads them.

A full disk (``ENOSPC``) stops the run: the store being written is removed, no further video
is started, the report is written if it still fits, and an ``OSError`` names the output
folder and "no space left on device".

Worker processes die with the parent (:func:`ccl.workers.die_with_parent`), so killing a run
leaves no orphans.
"""

from __future__ import annotations

import errno
import json
import multiprocessing
import os
import time
from collections.abc import Iterable
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from contextlib import closing
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import h5py
from tqdm import tqdm

from ccl.atomic import is_disk_full, write_text_atomic
from ccl.data.media import (
    DEFAULT_SHORT_SIDE,
    VIDEO_EXTENSIONS,
    VideoReader,
    check_video_path,
    describe_media_failure,
    soundtrack_blocks,
)
from ccl.data.store import (
    DEFAULT_JPEG_QUALITY,
    STORE_SUFFIX,
    AudioWriter,
    FrameWriter,
    recorded_source_identity,
    source_change,
    source_identity,
    store_is_complete,
    store_settings_mismatch,
    temp_path_for,
)
from ccl.errors import MediaError, SettingsMismatchError
from ccl.workers import die_with_parent

REPORT_NAME = "prepare_report.json"


@dataclass
class PrepareReport:
    """Outcome of :func:`prepare_videos`; also written to ``dst/prepare_report.json``."""

    src: str
    dst: str
    settings: dict[str, Any]
    n_found: int = 0
    converted: list[str] = field(default_factory=list)
    # converted again because their store was made with other settings: {source, reason}
    reprepared: list[dict[str, str]] = field(default_factory=list)
    # converted again because their source file changed since: {source, reason}
    source_changed: list[dict[str, str]] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    # skipped stores that record no source identity (made before it was recorded)
    unverified: list[str] = field(default_factory=list)
    failed: list[dict[str, str]] = field(default_factory=list)
    no_audio: list[str] = field(default_factory=list)
    warnings: list[dict[str, str]] = field(default_factory=list)
    # why the run stopped before its end (a full disk), else empty
    stopped: str = ""
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        """True when no video failed."""
        return not self.failed

    def summary(self) -> str:
        """One line: counts of converted / skipped / failed (/ without sound)."""
        line = (
            f"prepare: {self.n_found} videos, {len(self.converted)} converted, "
            f"{len(self.skipped)} already complete"
        )
        if self.unverified:
            line += (
                f" ({len(self.unverified)} of them unchecked: made before source files were "
                "recorded; --reprepare converts them again)"
            )
        line += f", {len(self.failed)} failed"
        if self.source_changed:
            line += f", {len(self.source_changed)} re-prepared because the source changed"
        if self.reprepared:
            line += f", {len(self.reprepared)} re-prepared with the new settings"
        if self.settings.get("audio"):
            line += f", {len(self.no_audio)} without sound"
        if self.warnings:
            line += f", {len(self.warnings)} warnings"
        if self.failed:
            line += f" (see {Path(self.dst) / REPORT_NAME})"
        return line

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def write(self, path: str | Path) -> None:
        write_text_atomic(path, json.dumps(self.to_dict(), indent=1))


def find_videos(src: str | Path) -> list[Path]:
    """Video files under ``src`` (recursive, sorted), hidden files and ``._`` junk ignored."""
    src = Path(src)
    found = []
    for root, dirs, files in os.walk(src):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for name in sorted(files):
            if name.startswith(".") or Path(name).suffix.lower() not in VIDEO_EXTENSIONS:
                continue
            found.append(Path(root) / name)
    return found


def store_path_for(video: Path, src: Path, dst: Path) -> Path:
    """``src/Class/v.avi -> dst/Class/v.hdf5``."""
    return (dst / video.relative_to(src)).with_suffix(STORE_SUFFIX)


def _write_soundtrack(f: h5py.File, video: Path) -> str | None:
    """Store the soundtrack of ``video`` (:func:`~ccl.data.media.soundtrack_blocks`) in the
    open store ``f`` while it is decoded, so memory does not grow with its length. Returns
    why the store has none (no audio stream, no samples, a decoding error: what was written
    is dropped, the frames are kept), else None. Write errors (a full disk) propagate."""
    writer = AudioWriter(f)
    with closing(soundtrack_blocks(video)) as blocks:
        while True:
            try:
                block = next(blocks, None)
            except Exception as err:  # noqa: BLE001 - reported, never fatal
                writer.discard()
                writer.finish()
                if isinstance(err, MediaError):
                    return str(err)
                return f"audio decode error: {type(err).__name__}: {err}"
            if block is None:
                break
            writer.append(block)
    return None if writer.finish() else "audio stream has no samples"


def _skip_or_why_not(job: dict[str, Any], identity: dict[str, Any], result: dict[str, Any]) -> bool:
    """Whether the complete store of ``job`` can be kept (``result`` then says so); when its
    source changed, ``result["source_changed"]`` says how, and when it records no source
    and the job re-prepares, ``job["replace"]`` says so."""
    store = Path(job["store"])
    if job.get("replace") is not None or not store_is_complete(store, job["audio"]):
        return False
    recorded = recorded_source_identity(store)
    if recorded is None and job["reprepare"]:
        job["replace"] = "source file not recorded (made before source files were recorded)"
        return False
    changed = source_change(recorded, identity) if recorded is not None else None
    if changed is not None:
        result["source_changed"] = changed
        return False
    result["status"] = "skipped"
    if recorded is None:
        result["unverified"] = True
    if job["audio"]:
        with h5py.File(store, "r") as f:
            if not bool(f.attrs["has_audio"]):
                result["no_audio"] = "no usable soundtrack (recorded in an earlier run)"
    return True


def _convert_one(job: dict[str, Any]) -> dict[str, Any]:
    """Worker: convert one video, unless its complete store was made from this very source
    file with these settings. Never raises; returns a result record whose status is
    ``converted``, ``skipped``, ``failed`` or ``disk_full`` (nothing of the store kept)."""
    video, store = Path(job["video"]), Path(job["store"])
    result: dict[str, Any] = {"source": str(video), "store": str(store), "status": "failed"}
    tmp = temp_path_for(store)
    try:
        check_video_path(video)
        identity = source_identity(video)
        if _skip_or_why_not(job, identity, result):
            return result
        store.parent.mkdir(parents=True, exist_ok=True)
        with (
            VideoReader(
                video,
                short_side=job["short_side"],
                fps=job["fps"],
                threads=job["threads"],
                allow_still_images=job["still_images"],
            ) as reader,
            h5py.File(tmp, "w") as f,
        ):
            writer = FrameWriter(f, job["jpeg_quality"])
            for rgb in reader.frames():
                writer.add(rgb)
            writer.flush()
            f.attrs.update(
                {
                    "fps": reader.out_fps,
                    "source_fps": reader.source_fps,
                    "n_frames": writer.n,
                    "height": writer.height,
                    "width": writer.width,
                    "jpeg_quality": job["jpeg_quality"],
                    "source": str(video),
                    "short_side": job["short_side"] or 0,
                    **identity,
                }
            )
            if job["audio"]:
                reason = _write_soundtrack(f, video)
                if reason is not None:
                    result["no_audio"] = reason
        os.replace(tmp, store)
        result["status"] = "converted"
        result["n_frames"] = writer.n
        if job.get("replace"):
            result["reprepared"] = job["replace"]
        if reader.warnings:
            result["warning"] = "; ".join(reader.warnings)
        return result
    except Exception as err:  # noqa: BLE001 - one bad video never stops the run
        if is_disk_full(err):
            result["status"] = "disk_full"
            result["reason"] = "no space left on device (its partial store was removed)"
        else:
            result["reason"] = describe_media_failure(err)
        return result
    finally:
        if tmp.exists():
            try:
                tmp.unlink()
            except OSError:
                pass


def _crashed(job: dict[str, Any], err: BaseException) -> dict[str, Any]:
    """The result of a job whose worker process died."""
    return {
        "source": job["video"],
        "store": job["store"],
        "status": "failed",
        "reason": f"worker process failed: {type(err).__name__}: {err}",
    }


def prepare_videos(
    src: str | Path,
    dst: str | Path,
    *,
    workers: int = 1,
    short_side: int | None = DEFAULT_SHORT_SIDE,
    fps: int | float | None = None,
    audio: bool = False,
    jpeg_quality: int = DEFAULT_JPEG_QUALITY,
    progress: bool = True,
    videos: Iterable[str | Path] | None = None,
    reprepare: bool = False,
    allow_still_images: bool = False,
) -> PrepareReport:
    """Convert every video under ``src`` into an HDF5 frame store under ``dst``.

    Args:
        src: folder of videos (class sub-folders are mirrored into ``dst``).
        dst: output folder (created); must not be ``src`` itself.
        workers: processes converting videos in parallel.
        short_side: frames are resized so their short side has this length (None: native).
        fps: output frame rate (None: the native rate, every decoded frame kept); otherwise
            frames are dropped or repeated (nearest earlier frame), no interpolation.
        audio: also store the soundtrack as mono float32 at 32 kHz (dataset ``audio``).
        jpeg_quality: JPEG quality of the stored frames (1-95).
        progress: show a tqdm progress bar.
        videos: convert only these files (paths under ``src``) instead of all found.
        reprepare: convert again the complete stores made with other settings, and those
            that record no source identity (listed in the report's ``reprepared``); without
            it stores of other settings make the run refuse, and those without an identity
            are kept unchecked (the report's ``unverified``).
        allow_still_images: store a still image (one frame of an image codec) as a 1-frame
            video instead of failing it.

    Returns:
        A :class:`PrepareReport` (also written to ``dst/prepare_report.json``).

    Raises:
        SettingsMismatchError: complete stores in ``dst`` were made with other settings and
            ``reprepare`` is False; nothing was changed.
        OSError: ``dst`` or its report cannot be written (the error names the path); the
            disk filled up (``errno.ENOSPC``, naming ``dst``; the report is written when it
            fits).
    """
    src, dst = Path(src).resolve(), Path(dst).resolve()
    if src.is_file():
        raise NotADirectoryError(
            f"{src} is a file, not a video folder: give the folder of the videos (one "
            "subfolder per class)"
        )
    if not src.is_dir():
        raise FileNotFoundError(f"video folder not found: {src}")
    if src == dst:
        raise ValueError(f"destination must differ from the source folder: {dst}")
    if not 1 <= int(jpeg_quality) <= 100:
        raise ValueError(f"jpeg_quality must be in 1..100, got {jpeg_quality}")
    if fps is not None and fps <= 0:
        raise ValueError(f"fps must be positive or None (native), got {fps}")
    if short_side is not None and short_side < 0:
        raise ValueError(f"short side must be positive (0 or None: native), got {short_side}")
    if int(workers) < 1:
        raise ValueError(f"workers must be at least 1, got {workers}")
    workers = int(workers)
    if dst.exists() and not dst.is_dir():
        raise NotADirectoryError(errno.ENOTDIR, "a file, not a folder", str(dst))
    try:
        dst.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise type(err)(
            err.errno, f"cannot create the output folder ({err.strerror})", str(dst)
        ) from err
    settings = {
        "short_side": short_side,
        "fps": fps,
        "audio": audio,
        "jpeg_quality": int(jpeg_quality),
        "workers": workers,
        "reprepare": reprepare,
        "allow_still_images": allow_still_images,
    }
    report = PrepareReport(src=str(src), dst=str(dst), settings=settings)
    start = time.perf_counter()

    files = [_resolved(v) for v in videos] if videos is not None else find_videos(src)
    jobs, owners = [], {}
    mismatched: list[tuple[Path, str]] = []
    threads = max(1, (os.cpu_count() or 1) // workers)
    for video in files:
        try:
            store = store_path_for(video, src, dst)
        except ValueError:
            report.failed.append({"source": str(video), "reason": f"not under {src}"})
            continue
        if store in owners:
            report.failed.append(
                {
                    "source": str(video),
                    "reason": f"same output name as {owners[store]} ({store.name}); rename one",
                }
            )
            continue
        owners[store] = video
        replace = None
        if store_is_complete(store):
            replace = store_settings_mismatch(
                store, short_side=short_side, fps=fps, jpeg_quality=jpeg_quality, audio=audio
            )
            if replace:
                mismatched.append((store, replace))
        jobs.append(
            {
                "video": str(video),
                "store": str(store),
                "short_side": short_side,
                "fps": fps,
                "audio": audio,
                "jpeg_quality": int(jpeg_quality),
                "threads": threads,
                "replace": replace,
                "reprepare": reprepare,
                "still_images": allow_still_images,
            }
        )
    report.n_found = len(files)
    if mismatched and not reprepare:
        store, reason = mismatched[0]
        raise SettingsMismatchError(
            f"{len(mismatched)} of the {len(jobs)} stores in {dst} were made with other "
            f"settings ({store.relative_to(dst)}: {reason}); nothing was changed. Pass "
            "--reprepare (reprepare=True) to convert them again with these settings, or "
            "choose another output folder"
        )

    disk_full: list[str] = []  # sources whose store did not fit on the disk
    handled: set[str] = set()  # stores converted or kept

    def handle(res: dict[str, Any]) -> None:
        if res["status"] == "converted":
            handled.add(res["store"])
            report.converted.append(res["source"])
            if "reprepared" in res:
                report.reprepared.append({"source": res["source"], "reason": res["reprepared"]})
            if "source_changed" in res:
                report.source_changed.append(
                    {"source": res["source"], "reason": res["source_changed"]}
                )
        elif res["status"] == "skipped":
            handled.add(res["store"])
            report.skipped.append(res["source"])
            if res.get("unverified"):
                report.unverified.append(res["source"])
        else:
            if res["status"] == "disk_full":
                disk_full.append(res["source"])
            report.failed.append({"source": res["source"], "reason": res.get("reason", "?")})
        if "no_audio" in res:
            report.no_audio.append(res["source"])
            report.warnings.append({"source": res["source"], "warning": res["no_audio"]})
        if "warning" in res:
            report.warnings.append({"source": res["source"], "warning": res["warning"]})

    bar = tqdm(total=len(jobs), unit="video", desc="prepare", disable=not progress or None)
    try:
        if workers == 1 or len(jobs) <= 1:
            for job in jobs:
                handle(_convert_one(job))
                bar.update()
                if disk_full:
                    break
        else:
            # spawn: FFmpeg and HDF5 hold threads and locks that must not cross a fork
            ctx = multiprocessing.get_context("spawn")
            n_procs = min(workers, len(jobs))
            with ProcessPoolExecutor(
                n_procs, mp_context=ctx, initializer=die_with_parent, initargs=(os.getpid(),)
            ) as pool:
                # one job per process at a time: after a full disk no other video starts
                queue, running = list(reversed(jobs)), {}
                while running or (queue and not disk_full):
                    while queue and not disk_full and len(running) < n_procs:
                        job = queue.pop()
                        try:
                            running[pool.submit(_convert_one, job)] = job
                        except BrokenProcessPool as err:
                            handle(_crashed(job, err))
                            bar.update()
                    done, _ = wait(running, return_when=FIRST_COMPLETED)
                    for fut in done:
                        job = running.pop(fut)
                        try:
                            res = fut.result()
                        except Exception as err:  # noqa: BLE001 - a crashed worker process
                            res = _crashed(job, err)
                        handle(res)
                        bar.update()
    finally:
        bar.close()
        for job in jobs:  # a worker that died leaves its temporary store
            if job["store"] not in handled:
                temp_path_for(Path(job["store"])).unlink(missing_ok=True)
        for lst in (report.converted, report.skipped, report.unverified, report.no_audio):
            lst.sort()
        for records in (report.failed, report.reprepared, report.source_changed):
            records.sort(key=lambda r: r["source"])
        report.warnings.sort(key=lambda r: r["source"])
        report.seconds = round(time.perf_counter() - start, 3)
        left = len(jobs) - len(report.converted) - len(report.skipped) - len(report.failed)
        if disk_full:
            report.stopped = (
                f"no space left on device in {dst} while writing the store of {disk_full[0]}; "
                f"{left} videos not started"
            )
            try:
                report.write(dst / REPORT_NAME)
                where = f"report: {dst / REPORT_NAME}"
            except OSError:
                where = f"{REPORT_NAME} did not fit either"
        else:
            report.write(dst / REPORT_NAME)
    if disk_full:
        raise OSError(
            errno.ENOSPC,
            f"no space left on device while writing the store of {_relative(disk_full[0], src)} "
            f"(its partial store was removed); {len(report.converted)} converted before, "
            f"{left} videos not started ({where}). Free some space and run again to go on",
            str(dst),
        )
    return report


def _resolved(path: str | Path) -> Path:
    """``path`` resolved; a symlink loop as an absolute path (its job names the loop)."""
    try:
        return Path(path).resolve()
    except (RuntimeError, OSError):  # RuntimeError: Python < 3.13's symlink loop
        return Path(os.path.abspath(path))


def _relative(path: str, root: Path) -> str:
    """``path`` relative to ``root`` when it lies under it."""
    try:
        return str(Path(path).relative_to(root))
    except ValueError:
        return path


__all__ = [
    "PrepareReport",
    "REPORT_NAME",
    "find_videos",
    "prepare_videos",
    "store_path_for",
]
