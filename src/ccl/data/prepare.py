"""Videos -> one HDF5 frame store per video (docs/METHOD.md §5.2).

Each store holds the frames of one video decoded with PyAV (any container FFmpeg reads),
short side resized, JPEG-encoded, in the reference's layout: dataset ``video`` is a 1-D
variable-length uint8 array, one JPEG per frame, frame ``k`` (1-based in annotations) at
index ``k - 1``. Attributes: ``fps``, ``n_frames``, ``height``, ``width``, ``jpeg_quality``,
``source``, ``source_fps``, ``short_side``; with ``audio=True`` also ``has_audio`` and, when
the video has sound, a float32 mono dataset ``audio`` (attribute ``sample_rate``).

The source tree is mirrored (``src/Class/v.avi -> dst/Class/v.hdf5``). Each store is written
under a hidden temporary name next to its final path and renamed atomically when complete,
so an interrupted run can be resumed: complete stores are skipped, leftovers replaced.
A complete store made with other settings (short side, frame rate, JPEG quality, audio) is
never skipped as if it matched: the run refuses, naming it, unless ``reprepare`` asks to
convert it again (atomically, as above).
A video that cannot be read does not stop the run; it is listed with the reason in
``dst/prepare_report.json``, as are videos that decoded to fewer frames than their
container declares (truncated files). A still image (one frame of an image codec, e.g. a
PNG renamed ``.mp4``) is refused unless ``allow_still_images``.

Worker processes die with the parent (``PR_SET_PDEATHSIG`` on Linux, a parent-watching
thread elsewhere), so killing a run leaves no orphans.
"""

from __future__ import annotations

import ctypes
import errno
import io
import json
import multiprocessing
import os
import signal
import sys
import threading
import time
from collections.abc import Iterable, Iterator
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from ccl.atomic import write_text_atomic
from ccl.errors import SettingsMismatchError

VIDEO_EXTENSIONS = (
    ".avi",
    ".mp4",
    ".mkv",
    ".webm",
    ".mov",
    ".m4v",
    ".mpg",
    ".mpeg",
    ".flv",
    ".wmv",
    ".3gp",
    ".ogv",
    ".ts",
)
REPORT_NAME = "prepare_report.json"
AUDIO_SAMPLE_RATE = 32_000
DEFAULT_JPEG_QUALITY = 90
DEFAULT_SHORT_SIDE = 240  # frames of a store, short side (the reference's 240p frames)
STORE_SUFFIX = ".hdf5"
_WRITE_CHUNK = 256  # frames buffered in memory before they are appended to the store
# codecs of still images: a "video" of one such frame is a renamed picture
IMAGE_CODECS = frozenset(
    "apng bmp dds dpx exr gif hdr jpeg2000 jpegls jpegxl mjpeg pam pbm pcx pfm pgm pgmyuv "
    "phm png ppm psd qoi sgi sunrast targa tiff webp xbm xpm xwd".split()
)
# decoded frames may fall short of the declared count by this share (rounding of durations)
_FRAME_COUNT_SLACK = 0.02


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
    skipped: list[str] = field(default_factory=list)
    failed: list[dict[str, str]] = field(default_factory=list)
    no_audio: list[str] = field(default_factory=list)
    warnings: list[dict[str, str]] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        """True when no video failed."""
        return not self.failed

    def summary(self) -> str:
        """One line: counts of converted / skipped / failed (/ without sound)."""
        line = (
            f"prepare: {self.n_found} videos, {len(self.converted)} converted, "
            f"{len(self.skipped)} already complete, {len(self.failed)} failed"
        )
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


def _output_size(width: int, height: int, short_side: int | None) -> tuple[int, int]:
    if not short_side or short_side <= 0:
        return width, height
    if width >= height:
        return max(1, round(width * short_side / height)), short_side
    return short_side, max(1, round(height * short_side / width))


def _encode_jpeg(rgb: np.ndarray, quality: int) -> np.ndarray:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, format="JPEG", quality=quality)
    return np.frombuffer(buf.getvalue(), dtype=np.uint8)


class _StoreWriter:
    """Appends JPEG frames to a vlen-uint8 ``video`` dataset in chunks."""

    def __init__(self, f: h5py.File) -> None:
        self.ds = f.create_dataset(
            "video",
            shape=(0,),
            maxshape=(None,),
            dtype=h5py.vlen_dtype(np.uint8),
            chunks=(_WRITE_CHUNK,),
        )
        self.pending: list[np.ndarray] = []
        self.n = 0

    def add(self, jpeg: np.ndarray) -> None:
        self.pending.append(jpeg)
        if len(self.pending) >= _WRITE_CHUNK:
            self.flush()

    def flush(self) -> None:
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


def _iter_frames(decoded: Iterable[Any], stream: Any, fps: float | None):
    """Yield the ``decoded`` frames of ``stream``; with ``fps`` resample by dropping or
    duplicating (nearest earlier frame for each output instant ``k / fps``)."""
    if fps is None:
        yield from decoded
        return
    next_t = None
    prev = None
    prev_t = 0.0
    step = 1.0 / fps
    native = float(stream.average_rate) if stream.average_rate else fps
    for frame in decoded:
        t = float(frame.time) if frame.time is not None else (prev_t + 1.0 / native)
        if next_t is None:
            next_t = t
        while prev is not None and next_t < t - 1e-6:
            yield prev
            next_t += step
        prev, prev_t = frame, t
    if prev is not None:
        end = prev_t + 1.0 / native
        while next_t is not None and next_t < end - 1e-6:
            yield prev
            next_t += step


def declared_frame_count(container: Any, stream: Any) -> int | None:
    """Frames the container says the stream has: its frame count when the container stores
    one (AVI, MP4), else duration x average rate (Matroska, WebM); None when unknown."""
    if stream.frames and stream.frames > 0:
        return int(stream.frames)
    rate = float(stream.average_rate) if stream.average_rate else 0.0
    if rate <= 0:
        return None
    if stream.duration is not None and stream.time_base is not None:
        seconds = float(stream.duration * stream.time_base)
    elif container.duration is not None:
        import av

        seconds = container.duration / av.time_base
    else:
        return None
    n = round(seconds * rate)
    return n if n > 0 else None


def is_still_image(container: Any, stream: Any, n_decoded: int) -> bool:
    """One decoded frame of an image codec, or from an image demuxer: a picture, not a
    video (a PNG renamed ``.mp4`` opens as one)."""
    if n_decoded != 1:
        return False
    fmt = str(container.format.name or "")
    return stream.codec_context.name in IMAGE_CODECS or fmt == "image2" or fmt.endswith("_pipe")


def _frame_rgb(frame: Any, short_side: int | None) -> np.ndarray:
    rotation = int(getattr(frame, "rotation", 0) or 0)
    k = round(rotation / 90) % 4
    w, h = frame.width, frame.height
    if k % 2:  # displayed orientation is transposed: the short side is the same either way
        out_h, out_w = _output_size(h, w, short_side)
    else:
        out_w, out_h = _output_size(w, h, short_side)
    rgb = frame.to_ndarray(width=out_w, height=out_h, format="rgb24", interpolation="BICUBIC")
    if k:
        rgb = np.ascontiguousarray(np.rot90(rgb, k=k))
    return rgb


def decode_video_frames(
    video: str | Path, short_side: int | None = DEFAULT_SHORT_SIDE, threads: int = 0
) -> Iterator[np.ndarray]:
    """RGB uint8 (H, W, 3) frames of a video file, displayed orientation, short side
    resized to ``short_side`` exactly as :func:`prepare_videos` stores them (so ``ccl
    predict`` on the file sees what evaluation of its frame store sees, less the JPEG
    round trip). Raises ``ValueError`` for a file without a video stream, and PyAV's errors
    for one FFmpeg cannot open or decode."""
    import av

    with av.open(str(video), mode="r") as container:
        if not container.streams.video:
            raise ValueError("no video stream")
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        stream.thread_count = threads
        for frame in container.decode(stream):
            yield _frame_rgb(frame, short_side)


def _decode_audio(video: Path) -> tuple[np.ndarray | None, str | None]:
    """Mono float32 at 32 kHz, or (None, reason) when the video has no usable soundtrack."""
    import av

    try:
        with av.open(str(video), mode="r") as container:
            if not container.streams.audio:
                return None, "no audio stream"
            stream = container.streams.audio[0]
            samples = resample_mono(container.decode(stream), AUDIO_SAMPLE_RATE)
    except Exception as err:  # noqa: BLE001 - reported, never fatal
        return None, f"audio decode error: {type(err).__name__}: {err}"
    if samples is None:
        return None, "audio stream has no samples"
    return samples, None


def resample_mono(frames: Iterable[Any], rate: int) -> np.ndarray | None:
    """Resample decoded ``av.AudioFrame`` s to ``rate`` keeping their channels, then average
    the channels (librosa's, hence PANNs', downmix; FFmpeg's ``layout="mono"`` would weight
    stereo channels by 0.707 instead). None when no sample came out. Shared by frame stores
    and ``ccl extract-audio`` so both give the same samples."""
    import av

    resampler = av.AudioResampler(format="fltp", rate=rate)
    parts: list[np.ndarray] = []

    def collect(out_frames: list[Any]) -> None:
        for out in out_frames:
            arr = out.to_ndarray()  # (channels, samples)
            parts.append(arr.reshape(-1, arr.shape[-1]).mean(axis=0, dtype=np.float32))

    for frame in frames:
        collect(resampler.resample(frame))
    collect(resampler.resample(None))
    if not parts:
        return None
    samples = np.concatenate(parts).astype(np.float32, copy=False)
    return samples if len(samples) else None


def resample_array(samples: np.ndarray, rate: int, target: int) -> np.ndarray:
    """Mono float32 ``samples`` at ``rate`` -> ``target`` Hz with FFmpeg's resampler, through
    :func:`resample_mono`, so waveforms held in memory (the demo's sound corpus) are
    resampled exactly as decoded soundtracks are."""
    import av

    def frames() -> Iterator[Any]:
        block = 65536
        for start in range(0, len(samples), block):
            chunk = np.ascontiguousarray(samples[None, start : start + block], dtype=np.float32)
            frame = av.AudioFrame.from_ndarray(chunk, format="fltp", layout="mono")
            frame.sample_rate = rate
            yield frame

    out = resample_mono(frames(), target)
    return out if out is not None else np.zeros(0, dtype=np.float32)


def write_frame_store(
    path: str | Path,
    frames: Iterable[np.ndarray],
    *,
    fps: float,
    jpeg_quality: int = DEFAULT_JPEG_QUALITY,
    source: str = "",
) -> int:
    """Write RGB uint8 (H, W, 3) frames as a frame store (same layout and attributes as
    :func:`prepare_videos`, written atomically). Returns the number of frames."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_path_for(path)
    height = width = 0
    try:
        with h5py.File(tmp, "w") as f:
            writer = _StoreWriter(f)
            for rgb in frames:
                height, width = rgb.shape[:2]
                writer.add(_encode_jpeg(np.ascontiguousarray(rgb, dtype=np.uint8), jpeg_quality))
            writer.flush()
            if writer.n == 0:
                raise ValueError(f"{path}: no frames to write")
            f.attrs.update(
                {
                    "fps": float(fps),
                    "source_fps": float(fps),
                    "n_frames": writer.n,
                    "height": height,
                    "width": width,
                    "jpeg_quality": jpeg_quality,
                    "source": source,
                    "short_side": min(height, width),
                }
            )
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    return writer.n


_PR_SET_PDEATHSIG = 1  # from <linux/prctl.h>


def _die_with_parent(parent_pid: int) -> None:
    """Worker initializer: end this worker when the process that started it dies (killed,
    crashed), instead of leaving an orphan waiting for jobs forever. Linux: the kernel sends
    SIGKILL (``PR_SET_PDEATHSIG``); other POSIX systems: a thread polls the parent id."""
    armed = False
    if sys.platform.startswith("linux"):
        try:
            libc = ctypes.CDLL(None, use_errno=True)
            armed = libc.prctl(_PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0) == 0
        except (OSError, AttributeError):
            armed = False
    if os.name != "posix":
        return  # Windows ends pool workers through their broken pipes to the parent
    if os.getppid() != parent_pid:  # the parent died before the signal was armed
        os._exit(1)
    if armed:
        return

    def watch() -> None:
        while os.getppid() == parent_pid:
            time.sleep(0.5)
        os._exit(1)

    threading.Thread(target=watch, name="ccl-watch-parent", daemon=True).start()


def _convert_one(job: dict[str, Any]) -> dict[str, Any]:
    """Worker: convert one video. Never raises; returns a result record."""
    import av

    video, store = Path(job["video"]), Path(job["store"])
    result: dict[str, Any] = {"source": str(video), "store": str(store), "status": "failed"}
    if job.get("replace") is None and store_is_complete(store, job["audio"]):
        result["status"] = "skipped"
        if job["audio"]:
            with h5py.File(store, "r") as f:
                if not bool(f.attrs["has_audio"]):
                    result["no_audio"] = "no usable soundtrack (recorded in an earlier run)"
        return result
    tmp = temp_path_for(store)
    try:
        store.parent.mkdir(parents=True, exist_ok=True)
        warnings = []
        with av.open(str(video), mode="r") as container:
            if not container.streams.video:
                result["reason"] = "no video stream"
                return result
            stream = container.streams.video[0]
            stream.thread_type = "AUTO"
            stream.thread_count = job["threads"]
            source_fps = float(stream.average_rate) if stream.average_rate else 0.0
            out_fps = float(job["fps"]) if job["fps"] else source_fps
            declared = declared_frame_count(container, stream)
            n_decoded = 0

            def decoded() -> Iterable[Any]:
                nonlocal n_decoded
                for frame in container.decode(stream):
                    n_decoded += 1
                    yield frame

            with h5py.File(tmp, "w") as f:
                writer = _StoreWriter(f)
                height = width = 0
                try:
                    for frame in _iter_frames(decoded(), stream, job["fps"]):
                        rgb = _frame_rgb(frame, job["short_side"])
                        height, width = rgb.shape[:2]
                        writer.add(_encode_jpeg(rgb, job["jpeg_quality"]))
                except (av.error.FFmpegError, ValueError) as err:
                    if writer.n + len(writer.pending) == 0:
                        raise
                    warnings.append(
                        f"decode error after {n_decoded} frames, kept those: "
                        f"{type(err).__name__}: {err}"
                    )
                writer.flush()
                if writer.n == 0:
                    result["reason"] = "no video frames could be decoded"
                    return result
                if is_still_image(container, stream, n_decoded) and not job["still_images"]:
                    result["reason"] = (
                        f"a still image ({stream.codec_context.name}), not a video; "
                        "pass --allow-still-images (allow_still_images=True) to store it as "
                        "a 1-frame video"
                    )
                    return result
                if declared and n_decoded < declared * (1 - _FRAME_COUNT_SLACK) - 1:
                    warnings.append(
                        f"only {n_decoded} of the {declared} frames the container declares "
                        "could be decoded (truncated file?); kept those"
                    )
                f.attrs.update(
                    {
                        "fps": out_fps,
                        "source_fps": source_fps,
                        "n_frames": writer.n,
                        "height": height,
                        "width": width,
                        "jpeg_quality": job["jpeg_quality"],
                        "source": str(video),
                        "short_side": job["short_side"] or 0,
                    }
                )
                if job["audio"]:
                    samples, reason = _decode_audio(video)
                    f.attrs["has_audio"] = samples is not None
                    if samples is not None:
                        ds = f.create_dataset("audio", data=samples)
                        ds.attrs["sample_rate"] = AUDIO_SAMPLE_RATE
                    else:
                        result["no_audio"] = reason
        os.replace(tmp, store)
        result["status"] = "converted"
        result["n_frames"] = writer.n
        if job.get("replace"):
            result["reprepared"] = job["replace"]
        if warnings:
            result["warning"] = "; ".join(warnings)
        return result
    except Exception as err:  # noqa: BLE001 - one bad video never stops the run
        result["reason"] = f"{type(err).__name__}: {err}".strip()
        return result
    finally:
        if tmp.exists():
            try:
                tmp.unlink()
            except OSError:
                pass


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
        reprepare: convert again the complete stores made with other settings (listed in
            the report's ``reprepared``); without it such stores make the run refuse.
        allow_still_images: store a still image (one frame of an image codec) as a 1-frame
            video instead of failing it.

    Returns:
        A :class:`PrepareReport` (also written to ``dst/prepare_report.json``).

    Raises:
        SettingsMismatchError: complete stores in ``dst`` were made with other settings and
            ``reprepare`` is False; nothing was changed.
        OSError: ``dst`` or its report cannot be written (the error names the path).
    """
    from tqdm import tqdm

    src, dst = Path(src).resolve(), Path(dst).resolve()
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

    files = [Path(v).resolve() for v in videos] if videos is not None else find_videos(src)
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

    def handle(res: dict[str, Any]) -> None:
        if res["status"] == "converted":
            report.converted.append(res["source"])
            if "reprepared" in res:
                report.reprepared.append({"source": res["source"], "reason": res["reprepared"]})
        elif res["status"] == "skipped":
            report.skipped.append(res["source"])
        else:
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
        else:
            # spawn: FFmpeg and HDF5 hold threads and locks that must not cross a fork
            ctx = multiprocessing.get_context("spawn")
            with ProcessPoolExecutor(
                min(workers, len(jobs)),
                mp_context=ctx,
                initializer=_die_with_parent,
                initargs=(os.getpid(),),
            ) as pool:
                futures = {pool.submit(_convert_one, job): job for job in jobs}
                for fut in as_completed(futures):
                    try:
                        res = fut.result()
                    except Exception as err:  # noqa: BLE001 - a crashed worker process
                        res = {
                            "source": futures[fut]["video"],
                            "status": "failed",
                            "reason": f"worker process failed: {type(err).__name__}: {err}",
                        }
                    handle(res)
                    bar.update()
    finally:
        bar.close()
        for lst in (report.converted, report.skipped, report.no_audio):
            lst.sort()
        report.failed.sort(key=lambda r: r["source"])
        report.reprepared.sort(key=lambda r: r["source"])
        report.warnings.sort(key=lambda r: r["source"])
        report.seconds = round(time.perf_counter() - start, 3)
        report.write(dst / REPORT_NAME)
    return report


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


__all__ = [
    "AUDIO_SAMPLE_RATE",
    "IMAGE_CODECS",
    "PrepareReport",
    "SettingsMismatchError",
    "REPORT_NAME",
    "VIDEO_EXTENSIONS",
    "declared_frame_count",
    "find_videos",
    "is_still_image",
    "prepare_videos",
    "read_store_info",
    "store_is_complete",
    "store_path_for",
    "store_settings_mismatch",
    "temp_path_for",
    "write_frame_store",
]
