"""Reading media files with PyAV: video frames, soundtracks, resampling, probing.

Any container FFmpeg reads is accepted. Every command that decodes a video file (``ccl
prepare videos``, ``ccl predict``, ``ccl embed``) opens it with :class:`VideoReader`, so a
missing file, a symlink loop, a still image renamed ``.mp4`` or a truncated file is refused
or warned about in the same words everywhere (:func:`describe_media_failure`). Frames come
out as RGB uint8 (H, W, 3) in their displayed orientation, short side resized with bicubic
interpolation (the size the frame stores hold, :mod:`ccl.data.store`). Soundtracks come out
as mono float32 at :data:`SAMPLE_RATE`, the rate the PANNs audio teacher was trained at:
resampled with ``av.AudioResampler`` keeping the channels, then the channels averaged
(librosa's mono downmix, used when PANNs was trained; FFmpeg's own stereo-to-mono matrix
would scale by 1/sqrt(2) per channel instead).

This module imports neither torch nor h5py.
"""

from __future__ import annotations

import errno
import itertools
import os
import stat
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import av
import numpy as np

from ccl.errors import MediaError

SAMPLE_RATE = 32_000
"""Audio rate of every soundtrack in the project (frame stores, embeddings, the demo's sound
corpus): the rate PANNs was trained at."""

DEFAULT_SHORT_SIDE = 240
"""Short side of decoded frames unless asked otherwise (the reference's 240p frames)."""

MAX_ASPECT = 4
"""Long side of a resized frame, at most, in multiples of its short side: a more elongated
video (an 8000x8 file) has its frames squeezed to this ratio, so a decoded frame stays within
960x240 at the default short side instead of 240000x240 (3.9 GB for a window of 16)."""

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
# codecs of still images: a "video" of one such frame is a renamed picture
FRAME_COUNT_SLACK = 0.02
"""Share of the declared frame count that decoding may fall short by without a warning
(rounding of durations); more missing frames warn of a truncated file."""

IMAGE_CODECS = frozenset(
    "apng bmp dds dpx exr gif hdr jpeg2000 jpegls jpegxl mjpeg pam pbm pcx pfm pgm pgmyuv "
    "phm png ppm psd qoi sgi sunrast targa tiff webp xbm xpm xwd".split()
)


# ----------------------------------------------------------------------------- video


def _output_size(width: int, height: int, short_side: int | None) -> tuple[int, int]:
    if not short_side or short_side <= 0:
        return width, height
    cap = MAX_ASPECT * short_side
    if width >= height:
        return min(cap, max(1, round(width * short_side / height))), short_side
    return short_side, min(cap, max(1, round(height * short_side / width)))


def elongation_note(width: int, height: int, short_side: int | None) -> str | None:
    """What resizing to ``short_side`` does to ``width`` x ``height`` frames more elongated
    than :data:`MAX_ASPECT` (their long side is capped), or None when nothing is capped."""
    if not short_side or short_side <= 0 or max(width, height) <= MAX_ASPECT * min(width, height):
        return None
    out_w, out_h = _output_size(width, height, short_side)
    return (
        f"frames are {width}x{height}, more elongated than {MAX_ASPECT}:1: decoded at "
        f"{out_w}x{out_h} (the long side capped at {MAX_ASPECT}x the short side {short_side}), "
        "so their content is squeezed"
    )


def frame_to_rgb(frame: av.VideoFrame, short_side: int | None) -> np.ndarray:
    """RGB uint8 (H, W, 3) of a decoded frame in its displayed orientation (rotation
    metadata applied), resized so its short side is ``short_side`` (None or 0: native)."""
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


def frames_at_rate(decoded: Iterable[Any], stream: Any, fps: float | None) -> Iterator[Any]:
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


def check_video_path(path: str | Path) -> None:
    """Raise :class:`~ccl.errors.MediaError` saying why ``path`` cannot be a video file: no
    such file, a broken symlink, a symlink loop, a folder, not a regular file, unreadable."""
    name = os.fspath(path)
    try:
        mode = os.stat(name).st_mode
    except OSError as err:
        if err.errno == errno.ELOOP:
            raise MediaError("a symlink loop (too many levels of symbolic links)") from None
        if err.errno == errno.ENOENT and os.path.islink(name):
            target = os.readlink(name)
            raise MediaError(f"a broken symlink (to {target}, which does not exist)") from None
        if err.errno in (errno.ENOENT, errno.ENOTDIR):
            raise MediaError("no such file") from None
        raise MediaError(f"cannot read: {err.strerror or err}") from None
    if stat.S_ISDIR(mode):
        raise MediaError("a folder, not a file")
    if not stat.S_ISREG(mode):
        raise MediaError("not a regular file")


def still_image_reason(codec: str) -> str:
    """Why a still image (one frame of ``codec``) is refused as a video."""
    return (
        f"a still image ({codec}), not a video; pass --allow-still-images "
        "(allow_still_images=True) to use it as a 1-frame video"
    )


def describe_media_failure(err: BaseException) -> str:
    """One line for why a video file gave no frames, the same in every command (the caller
    names the file): a :class:`~ccl.errors.MediaError`'s message; FFmpeg's errors as
    ``cannot decode: <type>: <message>`` without their errno and path; others with their
    type."""
    if isinstance(err, MediaError):
        return str(err)
    if isinstance(err, av.error.FFmpegError):
        message = getattr(err, "strerror", None) or str(err)
        return f"cannot decode: {type(err).__name__}: {message}".strip()
    return f"{type(err).__name__}: {err}".strip()


class VideoReader:
    """A video file opened for decoding and checked as every command checks one.

    Opening raises :class:`~ccl.errors.MediaError` for a path that is no file
    (:func:`check_video_path`) or a file without a video stream, and PyAV's errors for one
    FFmpeg cannot open. :meth:`frames` yields RGB uint8 (H, W, 3) frames (:func:`frame_to_rgb`;
    with ``fps`` resampled by :func:`frames_at_rate`); a decode error after the first frame
    ends the video there with a warning, one before it propagates. When the frames are
    exhausted it raises ``MediaError`` for no frame at all and for a still image (unless
    ``allow_still_images``), and warns of frames missing against the declared count
    (:data:`FRAME_COUNT_SLACK`). Warnings, elongated frames (:func:`elongation_note`)
    included, collect in :attr:`warnings`. Use it as a context manager (closes the file)."""

    def __init__(
        self,
        path: str | Path,
        *,
        short_side: int | None = DEFAULT_SHORT_SIDE,
        fps: float | None = None,
        threads: int = 0,
        allow_still_images: bool = False,
    ) -> None:
        self.path = Path(path)
        self.short_side, self.fps, self.allow_still_images = short_side, fps, allow_still_images
        self.warnings: list[str] = []
        self.n_decoded = 0
        check_video_path(self.path)
        self.container = av.open(str(self.path), mode="r")
        try:
            if not self.container.streams.video:
                raise MediaError("no video stream")
            self.stream = self.container.streams.video[0]
            self.stream.thread_type = "AUTO"
            self.stream.thread_count = threads
            rate = self.stream.average_rate
            self.source_fps = float(rate) if rate else 0.0
            self.declared = declared_frame_count(self.container, self.stream)
            context = self.stream.codec_context
            note = elongation_note(context.width, context.height, short_side)
            if note is not None:
                self.warnings.append(note)
        except BaseException:
            self.container.close()
            raise

    @property
    def out_fps(self) -> float:
        """Frame rate of the frames :meth:`frames` yields."""
        return float(self.fps) if self.fps else self.source_fps

    def __enter__(self) -> VideoReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.container.close()

    def _decoded(self) -> Iterator[Any]:
        frames = self.container.decode(self.stream)
        while True:
            try:
                frame = next(frames)
            except StopIteration:
                return
            except Exception as err:  # noqa: BLE001 - a damaged tail: keep what decoded
                if self.n_decoded == 0:
                    raise
                self.warnings.append(
                    f"decode error after {self.n_decoded} frames, kept those: "
                    f"{type(err).__name__}: {err}"
                )
                return
            self.n_decoded += 1
            yield frame

    def frames(self) -> Iterator[np.ndarray]:
        """The RGB frames, then the checks of the whole video (see the class)."""
        for frame in frames_at_rate(self._decoded(), self.stream, self.fps):
            yield frame_to_rgb(frame, self.short_side)
        if self.n_decoded == 0:
            raise MediaError("no video frames could be decoded")
        if is_still_image(self.container, self.stream, self.n_decoded):
            if not self.allow_still_images:
                raise MediaError(still_image_reason(self.stream.codec_context.name))
        elif self.declared and self.n_decoded < self.declared * (1 - FRAME_COUNT_SLACK) - 1:
            self.warnings.append(
                f"only {self.n_decoded} of the {self.declared} frames the container declares "
                "could be decoded (truncated file?); kept those"
            )


def decode_video_frames(
    video: str | Path,
    short_side: int | None = DEFAULT_SHORT_SIDE,
    threads: int = 0,
    notes: list[str] | None = None,
    allow_still_images: bool = False,
) -> Iterator[np.ndarray]:
    """RGB uint8 (H, W, 3) frames of a video file by :class:`VideoReader`, displayed
    orientation, short side resized to ``short_side`` exactly as
    :func:`ccl.data.prepare.prepare_videos` stores them, the long side at most
    :data:`MAX_ASPECT` times the short side; the reader's warnings are appended to
    ``notes`` once the frames are exhausted."""
    with VideoReader(
        video, short_side=short_side, threads=threads, allow_still_images=allow_still_images
    ) as reader:
        try:
            yield from reader.frames()
        finally:
            if notes is not None:
                notes.extend(reader.warnings)


# ----------------------------------------------------------------------------- audio


def soundtrack_blocks(video: str | Path) -> Iterator[np.ndarray]:
    """The first audio stream of a media file as consecutive mono float32 blocks at
    :data:`SAMPLE_RATE`, as the resampler gives them (about a thousand samples each), so a
    long soundtrack never sits in memory whole; concatenated they are
    :func:`decode_soundtrack`'s samples. Raises :class:`~ccl.errors.MediaError` ``no audio
    stream`` at the first block when the file has none; errors of opening or decoding raise
    (PyAV's)."""
    with av.open(str(video), mode="r") as container:
        if not container.streams.audio:
            raise MediaError("no audio stream")
        yield from resample_mono_blocks(container.decode(container.streams.audio[0]), SAMPLE_RATE)


def decode_soundtrack(video: str | Path) -> tuple[np.ndarray | None, str | None]:
    """``(samples, None)`` with the first audio stream of a media file as mono float32 at
    :data:`SAMPLE_RATE`, or ``(None, reason)`` when it has no audio stream or the stream
    holds no samples. Errors of opening or decoding raise (PyAV's)."""
    try:
        blocks = list(soundtrack_blocks(video))
    except MediaError as err:
        return None, str(err)
    if not blocks:
        return None, "audio stream has no samples"
    return np.concatenate(blocks), None


def resample_mono_blocks(frames: Iterable[Any], rate: int) -> Iterator[np.ndarray]:
    """Resample decoded ``av.AudioFrame`` s to ``rate`` keeping their channels, then average
    the channels (librosa's, hence PANNs', downmix; FFmpeg's ``layout="mono"`` would weight
    stereo channels by 0.707 instead); yields each resampled frame as a non-empty mono
    float32 block. Frame stores and ``ccl extract-audio`` both decode through it, so both
    give the same samples."""
    resampler = av.AudioResampler(format="fltp", rate=rate)
    for frame in itertools.chain(frames, [None]):  # None flushes the resampler
        for out in resampler.resample(frame):
            arr = out.to_ndarray()  # (channels, samples)
            if arr.shape[-1]:
                yield arr.reshape(-1, arr.shape[-1]).mean(axis=0, dtype=np.float32)


def resample_mono(frames: Iterable[Any], rate: int) -> np.ndarray | None:
    """:func:`resample_mono_blocks` concatenated: the whole resampled mono waveform, or None
    when no sample came out."""
    blocks = list(resample_mono_blocks(frames, rate))
    return np.concatenate(blocks) if blocks else None


def resample_array(samples: np.ndarray, rate: int, target: int) -> np.ndarray:
    """Mono float32 ``samples`` at ``rate`` -> ``target`` Hz with FFmpeg's resampler, through
    :func:`resample_mono`, so waveforms held in memory (the demo's sound corpus, soundtracks
    stored at another rate) are resampled exactly as decoded soundtracks are."""

    def frames() -> Iterator[Any]:
        block = 65536
        for start in range(0, len(samples), block):
            chunk = np.ascontiguousarray(samples[None, start : start + block], dtype=np.float32)
            frame = av.AudioFrame.from_ndarray(chunk, format="fltp", layout="mono")
            frame.sample_rate = rate
            yield frame

    out = resample_mono(frames(), target)
    return out if out is not None else np.zeros(0, dtype=np.float32)


__all__ = [
    "DEFAULT_SHORT_SIDE",
    "FRAME_COUNT_SLACK",
    "IMAGE_CODECS",
    "MAX_ASPECT",
    "SAMPLE_RATE",
    "VIDEO_EXTENSIONS",
    "VideoReader",
    "check_video_path",
    "declared_frame_count",
    "decode_soundtrack",
    "decode_video_frames",
    "describe_media_failure",
    "elongation_note",
    "frame_to_rgb",
    "frames_at_rate",
    "is_still_image",
    "resample_array",
    "resample_mono",
    "resample_mono_blocks",
    "soundtrack_blocks",
    "still_image_reason",
]
