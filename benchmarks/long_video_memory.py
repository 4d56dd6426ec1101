"""Peak memory of the commands that read video files, on a short and a long video.

Writes two videos with PyAV (``--short-seconds`` and ``--long-seconds`` long, ``--width`` x
``--height`` MPEG-4 Part 2 at ``--fps``, with a stereo 44.1 kHz AAC soundtrack, so the
32 kHz resampler runs), trains a tiny run (``smoke-baseline``, synthetic data, a few
seconds), then runs each command once per video, each in a fresh process, and records the
process's peak resident memory (``ru_maxrss`` of the command, read by a small helper process
that runs only it) and wall time:

* ``ccl predict RUN VIDEO``: decoding, windows, the student's forward pass;
* ``ccl embed RUN VIDEO --out F.npz``: the same, saving the feature;
* ``ccl prepare videos SRC DST --audio``: a frame store with its soundtrack.

The goal: a command on the long video holds at most 1.5x what it holds on the short one
(memory bounded by the window or chunk, not by the video's length). Prints a Markdown table,
then one line per command: ``command=<c> short_mb=<m> long_mb=<m> ratio=<long/short>``.

    python benchmarks/long_video_memory.py                       # 10 s and 10 min, ~5 min
    python benchmarks/long_video_memory.py --long-seconds 60     # a quicker check
    python benchmarks/long_video_memory.py --extract-audio       # + ccl extract-audio rows

``--extract-audio`` also measures ``ccl extract-audio`` (randomly initialised PANNs
Cnn14_emb512; memory does not depend on the weights) over the stores, once with one
embedding of each whole soundtrack (the reference's way) and once with ``--segment-seconds
10``.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

GOAL = 1.5  # long / short peak memory, at most
AUDIO_RATE = 44_100  # a common source rate, unlike the stores' 32 kHz: the resampler runs
TINY_RUN = (
    "data.synthetic_train=8",
    "data.synthetic_val=4",
    "data.batch_size=4",
    "data.clip_frames=4",
    "data.size=16",
    "train.epochs=1",
    "train.progress=false",
)


def write_video(path: Path, seconds: float, width: int, height: int, fps: int) -> Path:
    """An MPEG-4 video of moving bars with a 440 Hz stereo AAC tone, audio and video packets
    interleaved as a camera's file has them (the muxer never buffers the whole track)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    n_frames = round(seconds * fps)
    x = np.arange(width, dtype=np.float32)[None, :, None]
    y = np.arange(height, dtype=np.float32)[:, None, None]
    with av.open(str(path), mode="w") as out:
        video = out.add_stream("mpeg4", rate=fps)
        video.width, video.height, video.pix_fmt = width, height, "yuv420p"
        audio = out.add_stream("aac", rate=AUDIO_RATE)
        audio.layout = "stereo"
        block = audio.codec_context.frame_size or 1024
        fmt = audio.codec_context.format.name
        sent = 0  # audio samples encoded so far
        for k in range(n_frames):
            phase = 2 * np.pi * k / (4 * fps)  # the bars cross the frame every 4 seconds
            rgb = 127 + 120 * np.sin(x / 9 + phase) * np.cos(y / 7 - phase / 2) * [1, 0.6, 0.3]
            frame = av.VideoFrame.from_ndarray(rgb.astype(np.uint8), format="rgb24")
            for packet in video.encode(frame):
                out.mux(packet)
            while sent < (k + 1) * AUDIO_RATE / fps:
                t = (sent + np.arange(block, dtype=np.float32)) / AUDIO_RATE
                wave = (0.3 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)
                samples = np.stack([wave, wave])
                if not fmt.endswith("p"):
                    samples = samples.T.reshape(1, -1)
                chunk = av.AudioFrame.from_ndarray(samples, format=fmt, layout="stereo")
                chunk.sample_rate, chunk.pts = AUDIO_RATE, sent
                chunk.time_base = Fraction(1, AUDIO_RATE)
                for packet in audio.encode(chunk):
                    out.mux(packet)
                sent += block
        for stream in (video, audio):
            for packet in stream.encode():
                out.mux(packet)
    return path


@dataclass
class Measured:
    peak_mb: float
    seconds: float


# Runs the command as its only child and writes that child's peak RSS (KiB) and exit status
# to argv[1]. A child's ru_maxrss starts at the high-water mark of the process that
# spawned it (the kernel carries it over exec), so measured straight from this script
# every command would read at least this script's own peak; the helper's is ~10 MB.
_PEAK_RSS_HELPER = """
import resource, subprocess, sys
rc = subprocess.call(sys.argv[2:])
with open(sys.argv[1], "w") as f:
    f.write(f"{resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss} {rc}")
sys.exit(rc)
"""


def measure(cmd: list[str], log: Path) -> Measured:
    """Peak RSS (MB) and wall time of ``cmd`` run in a fresh process; raises when it fails
    (its output is in ``log``)."""
    result = log.with_suffix(".rss")
    t0 = time.perf_counter()
    with log.open("w") as out:
        subprocess.run(
            [sys.executable, "-c", _PEAK_RSS_HELPER, str(result), *cmd],
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    seconds = time.perf_counter() - t0
    peak_kib, rc = map(int, result.read_text().split())
    if rc != 0:
        raise RuntimeError(f"{' '.join(cmd)} exited {rc}; see {log}")
    return Measured(peak_kib / 1024, seconds)  # ru_maxrss is in KiB on Linux


def ccl(*args: str) -> list[str]:
    return [sys.executable, "-m", "ccl.cli", *args]


def save_random_cnn14(path: Path) -> Path:
    """A PANNs Cnn14_emb512 checkpoint of random weights (memory does not depend on them)."""
    import torch

    from ccl.models.panns import build_cnn14

    torch.save({"model": build_cnn14("emb512").state_dict()}, path)
    return path


def command_lines(
    work: Path, videos: dict[str, Path], device: str, extract_audio: bool
) -> dict[str, dict[str, list[str]]]:
    """{label: {video name: command line}} of the commands measured."""
    run = str(work / "tiny")
    lines: dict[str, dict[str, list[str]]] = {}
    for name, video in videos.items():
        src, stores = str(work / "src" / name), str(work / "stores" / name)
        model = [run, str(video), "--device", device]
        per_video = {
            "ccl predict": ccl("predict", *model),
            "ccl embed": ccl("embed", *model, "--out", str(work / f"{name}.npz")),
            "ccl prepare videos --audio": ccl(
                "prepare", "videos", src, stores, "--audio", "--no-progress"
            ),
        }
        if extract_audio:
            extract = ["extract-audio", stores, "--checkpoint", str(work / "cnn14_random.pth")]
            extract += ["--device", "cpu", "--no-progress", "--out"]
            per_video["ccl extract-audio (whole soundtrack)"] = ccl(
                *extract, str(work / "audio_whole" / name)
            )
            per_video["ccl extract-audio --segment-seconds 10"] = ccl(
                *extract, str(work / "audio_segments" / name), "--segment-seconds", "10"
            )
        for label, line in per_video.items():
            lines.setdefault(label, {})[name] = line
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--short-seconds", type=float, default=10.0)
    parser.add_argument("--long-seconds", type=float, default=600.0)
    parser.add_argument("--width", type=int, default=320)
    parser.add_argument("--height", type=int, default=240)
    parser.add_argument("--fps", type=int, default=25)
    parser.add_argument("--device", default="cpu", help="of ccl predict and ccl embed")
    parser.add_argument("--extract-audio", action="store_true", help="also ccl extract-audio")
    parser.add_argument("--work", type=Path, default=None, help="kept; default: a temp folder")
    args = parser.parse_args()

    work = args.work or Path(tempfile.mkdtemp(prefix="ccl-long-video-"))
    work.mkdir(parents=True, exist_ok=True)
    if args.extract_audio:
        save_random_cnn14(work / "cnn14_random.pth")
    lengths = {"short": args.short_seconds, "long": args.long_seconds}
    try:
        videos = {}
        for name, seconds in lengths.items():
            t0 = time.perf_counter()
            path = work / "src" / name / "clip" / f"{name}.mp4"
            videos[name] = write_video(path, seconds, args.width, args.height, args.fps)
            mb = path.stat().st_size / 1e6
            print(f"wrote {path} ({seconds:g} s, {mb:.1f} MB) in {time.perf_counter() - t0:.0f} s")
        train = ["train", "--preset", "smoke-baseline", *TINY_RUN, f"train.out_dir={work}"]
        subprocess.run(ccl(*train, "train.name=tiny"), check=True, stdout=subprocess.DEVNULL)
        commands = command_lines(work, videos, args.device, args.extract_audio)
        results: dict[str, dict[str, Measured]] = {}
        for label, by_video in commands.items():
            for name, cmd in by_video.items():
                slug = label.replace(" ", "_").replace("-", "")
                m = measure(cmd, work / f"{slug}_{name}.log")
                results.setdefault(label, {})[name] = m
                print(f"{label} on {name}: {m.peak_mb:.0f} MB, {m.seconds:.1f} s", flush=True)
    finally:
        if args.work is None:
            shutil.rmtree(work, ignore_errors=True)

    short, long = (f"{s:g} s" for s in lengths.values())
    print(f"\n| command | peak MB, {short} | peak MB, {long} | long / short | wall s |")
    print("|---|---|---|---|---|")
    for label, by in results.items():
        ratio = by["long"].peak_mb / by["short"].peak_mb
        mark = "" if ratio <= GOAL else f" (goal <= {GOAL}x)"
        print(
            f"| `{label}` | {by['short'].peak_mb:.0f} | {by['long'].peak_mb:.0f} | "
            f"**{ratio:.2f}x**{mark} | {by['short'].seconds:.1f} / {by['long'].seconds:.1f} |"
        )
    print()
    for label, by in results.items():
        ratio = by["long"].peak_mb / by["short"].peak_mb
        print(
            f"command={label.replace(' ', '_')} short_mb={by['short'].peak_mb:.1f} "
            f"long_mb={by['long'].peak_mb:.1f} ratio={ratio:.3f}"
        )


if __name__ == "__main__":
    main()
