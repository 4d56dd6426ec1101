"""Tiny test videos written with PyAV at test time."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from fractions import Fraction
from pathlib import Path

import av
import numpy as np


def synthetic_frame(k: int, width: int, height: int) -> np.ndarray:
    """A smooth, moving RGB pattern (gradients and a square) so JPEG and resizing behave as
    on natural images."""
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    r = 128 + 100 * np.sin((x + 3 * k) / max(width, 1) * 2 * np.pi)
    g = 128 + 100 * np.cos((y - 2 * k) / max(height, 1) * 2 * np.pi)
    b = (x + y + 5 * k) % 256
    img = np.stack([r, g, b], axis=-1)
    s = max(4, min(width, height) // 4)
    x0 = (4 * k) % max(1, width - s)
    y0 = (3 * k) % max(1, height - s)
    img[y0 : y0 + s, x0 : x0 + s] = (240, 40, 40)
    return np.clip(img, 0, 255).astype(np.uint8)


def write_video(
    path: Path,
    n_frames: int,
    width: int,
    height: int,
    *,
    fps: int = 25,
    codec: str = "mpeg4",
    audio_codec: str | None = None,
    audio_seconds: float | None = None,
) -> Path:
    """Write a small video (yuv420p) with an optional sine soundtrack."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), mode="w") as out:
        vs = out.add_stream(codec, rate=fps)
        vs.width, vs.height, vs.pix_fmt = width, height, "yuv420p"
        as_ = None
        if audio_codec:
            as_ = out.add_stream(audio_codec, rate=44_100)
            as_.layout = "stereo"
        for k in range(n_frames):
            frame = av.VideoFrame.from_ndarray(synthetic_frame(k, width, height), format="rgb24")
            for packet in vs.encode(frame):
                out.mux(packet)
        for packet in vs.encode():
            out.mux(packet)
        if as_ is not None:
            seconds = audio_seconds if audio_seconds is not None else n_frames / fps
            n = int(seconds * 44_100)
            t = np.arange(n, dtype=np.float32) / 44_100
            wave = (0.3 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)
            fmt = as_.codec_context.format.name
            block = 1152 if audio_codec == "mp2" else 1024
            for i in range(0, n, block):
                chunk = wave[i : i + block]
                data = np.stack([chunk, chunk])
                if fmt in ("s16", "s16p"):
                    data = (data * 32767).astype(np.int16)
                if not fmt.endswith("p"):
                    data = data.T.reshape(1, -1)
                frame = av.AudioFrame.from_ndarray(data, format=fmt, layout="stereo")
                frame.sample_rate = 44_100
                frame.pts = i
                frame.time_base = Fraction(1, 44_100)
                for packet in as_.encode(frame):
                    out.mux(packet)
            for packet in as_.encode():
                out.mux(packet)
    return path


# (class folder, file name, frames, width, height, codec, audio codec)
VIDEOS = [
    ("ApplyEyeMakeup", "v_ApplyEyeMakeup_g01_c01.avi", 30, 64, 48, "mpeg4", "mp2"),
    ("ApplyEyeMakeup", "v_ApplyEyeMakeup_g08_c01.avi", 24, 64, 48, "mpeg4", None),
    ("ApplyEyeMakeup", "v_ApplyEyeMakeup_g09_c01.mkv", 20, 64, 48, "mpeg4", None),
    ("HandstandPushups", "v_HandStandPushups_g01_c01.mp4", 36, 48, 64, "libx264", "aac"),
    ("HandstandPushups", "v_HandStandPushups_g08_c01.mp4", 22, 48, 64, "libx264", None),
    ("HandstandPushups", "v_HandStandPushups_g10_c02.avi", 10, 48, 64, "mpeg4", None),  # short
    ("Basketball", "v_Basketball_g01_c01.avi", 20, 64, 48, "mpeg4", None),
    ("Basketball", "v_Basketball_g09_c01.avi", 20, 64, 48, "mpeg4", None),
]
CORRUPT = ("Basketball", "v_Basketball_g02_c01.avi")
SHORT_SIDE = 32
N_FRAMES = {Path(name).stem: n for _, name, n, *_ in VIDEOS}


def make_video_tree(root: Path) -> Path:
    for folder, name, n, w, h, codec, audio in VIDEOS:
        write_video(root / folder / name, n, w, h, codec=codec, audio_codec=audio)
    (root / CORRUPT[0]).mkdir(parents=True, exist_ok=True)
    (root / CORRUPT[0] / CORRUPT[1]).write_bytes(os.urandom(4096))
    (root / "._junk.avi").write_bytes(b"\x00\x05\x16\x07")  # macOS junk: ignored
    return root


def write_ucf_splits(root: Path, extra_train: list[str] | None = None) -> Path:
    """classInd / trainlist01 / testlist01 for the fixture videos (groups 1-7 are test)."""
    root.mkdir(parents=True, exist_ok=True)
    classes = ["ApplyEyeMakeup", "Basketball", "HandstandPushups"]
    (root / "classInd.txt").write_text(
        "".join(f"{i} {c}\r\n" for i, c in enumerate(classes, start=1))
    )
    train, test = [], []
    for folder, name, *_ in VIDEOS:
        group = int(name.split("_g")[1][:2])
        idx = classes.index(folder) + 1
        if group <= 7:
            test.append(f"{folder}/{name}")
        else:
            train.append(f"{folder}/{name} {idx}")
    train.extend(extra_train or [])
    test.append(f"{CORRUPT[0]}/{CORRUPT[1]}")  # listed, but preparation failed
    (root / "trainlist01.txt").write_text("\n".join(train) + "\n")
    (root / "testlist01.txt").write_text("\n".join(test) + "\n")
    return root


def digest(root: Path) -> dict[str, str]:
    """SHA-256 of every file under ``root`` (or of ``root`` itself), by relative path: equal
    before and after a command means it changed nothing there."""
    files = [root] if root.is_file() else sorted(p for p in root.rglob("*") if p.is_file())
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest() for p in files}


def run_cli(*args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    """``python -m ccl.cli ARGS`` in a subprocess with this checkout's sources; stdout and
    stderr together in ``.stdout``."""
    import ccl

    env = dict(os.environ, PYTHONPATH=str(Path(ccl.__file__).parents[1]), OMP_NUM_THREADS="1")
    return subprocess.run(
        [sys.executable, "-m", "ccl.cli", *args],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        timeout=timeout,
    )


def assert_one_line_error(proc: subprocess.CompletedProcess, *fragments: str) -> str:
    """A refused command: non-zero exit, no traceback, the error on its own line holding
    every fragment. Returns that line."""
    assert proc.returncode != 0, proc.stdout
    assert "Traceback" not in proc.stdout, proc.stdout
    lines = [line for line in proc.stdout.splitlines() if "error" in line]
    assert lines, proc.stdout
    assert all(f in lines[-1] for f in fragments), proc.stdout
    return lines[-1]
