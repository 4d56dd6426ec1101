"""Videos -> HDF5 frame stores: sizes, audio, failures, resumption, CLI status."""

from __future__ import annotations

import errno
import hashlib
import io
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import av
import h5py
import numpy as np
import pytest
from data_helpers import (
    CORRUPT,
    N_FRAMES,
    SHORT_SIDE,
    VIDEOS,
    assert_one_line_error,
    digest,
    run_cli,
    write_video,
)
from PIL import Image

from ccl.cli import main as ccl_main
from ccl.data.prepare import REPORT_NAME, find_videos, prepare_videos
from ccl.data.store import read_store_info, store_settings_mismatch, temp_path_for
from ccl.errors import SettingsMismatchError


def _store(dst: Path, folder: str, name: str) -> Path:
    return dst / folder / (Path(name).stem + ".hdf5")


def _digest(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def test_find_videos_ignores_junk(video_tree: Path) -> None:
    found = find_videos(video_tree)
    assert len(found) == len(VIDEOS) + 1  # + the corrupt one; "._junk.avi" ignored
    assert all(not p.name.startswith(".") for p in found)


def test_stores_have_frames_sizes_and_attributes(prepared) -> None:
    dst, report = prepared
    assert report.n_found == len(VIDEOS) + 1
    assert len(report.converted) == len(VIDEOS)
    for folder, name, n, w, h, *_ in VIDEOS:
        path = _store(dst, folder, name)
        info = read_store_info(path)
        assert info["n_frames"] == n == N_FRAMES[Path(name).stem]
        assert min(info["height"], info["width"]) == SHORT_SIDE
        assert (info["width"] > info["height"]) == (w > h)  # landscape / portrait kept
        assert info["fps"] == pytest.approx(25.0)
        assert info["jpeg_quality"] == 90
        assert info["source"].endswith(name)
        with h5py.File(path, "r") as f:
            ds = f["video"]
            assert ds.dtype.metadata["vlen"] == np.uint8  # the reference's layout
            assert len(ds) == n
            img = Image.open(io.BytesIO(ds[n - 1].tobytes()))
            assert img.format == "JPEG"
            assert (img.height, img.width) == (info["height"], info["width"])
    # long side follows the aspect ratio: 64x48 -> 43x32, 48x64 -> 32x43
    info = read_store_info(_store(dst, "HandstandPushups", "v_HandStandPushups_g01_c01.mp4"))
    assert (info["height"], info["width"]) == (43, 32)


def test_audio_stored_and_silent_videos_reported(prepared) -> None:
    dst, report = prepared
    for folder, name, n, *_, audio in VIDEOS:
        with h5py.File(_store(dst, folder, name), "r") as f:
            assert bool(f.attrs["has_audio"]) == (audio is not None)
            if audio:
                samples = f["audio"]
                assert samples.dtype == np.float32 and samples.ndim == 1
                assert samples.attrs["sample_rate"] == 32_000
                assert len(samples) == pytest.approx(n / 25 * 32_000, rel=0.15)
                assert 0.05 < float(np.abs(samples[:]).max()) < 1.0
            else:
                assert "audio" not in f
    silent = {Path(p).name for p in report.no_audio}
    assert silent == {name for _, name, *_, audio in VIDEOS if audio is None}


def test_failures_are_reported_not_fatal(prepared) -> None:
    dst, report = prepared
    assert not report.ok
    assert [Path(r["source"]).name for r in report.failed] == [CORRUPT[1]]
    assert report.failed[0]["reason"]
    saved = json.loads((dst / REPORT_NAME).read_text())
    assert saved["failed"][0]["source"].endswith(CORRUPT[1])
    assert not _store(dst, *CORRUPT).exists()
    assert not list(dst.rglob(".*.tmp"))
    assert "1 failed" in report.summary() and "\n" not in report.summary()


def test_resume_skips_complete_and_replaces_leftovers(tmp_path: Path) -> None:
    src = tmp_path / "src"
    write_video(src / "A" / "a.avi", 12, 64, 48)
    write_video(src / "A" / "b.avi", 14, 64, 48)
    write_video(src / "B" / "c.webm", 9, 48, 64, codec="libvpx")
    before = _digest(src)
    dst = tmp_path / "dst"
    first = prepare_videos(src, dst, short_side=24, progress=False)
    assert first.ok and len(first.converted) == 3
    a, b, c = dst / "A" / "a.hdf5", dst / "A" / "b.hdf5", dst / "B" / "c.hdf5"
    a_stamp = a.stat().st_mtime_ns
    # an interrupted run: b's store never finished (only a partial temp file), c's final
    # path holds garbage
    b.unlink()
    temp_path_for(b).write_bytes(b"partial write")
    c.write_bytes(b"not an hdf5 file")
    second = prepare_videos(src, dst, short_side=24, progress=False)
    assert second.ok
    assert [Path(p).name for p in second.skipped] == ["a.avi"]
    assert sorted(Path(p).name for p in second.converted) == ["b.avi", "c.webm"]
    assert a.stat().st_mtime_ns == a_stamp
    assert read_store_info(b)["n_frames"] == 14
    assert read_store_info(c)["n_frames"] == 9
    assert not temp_path_for(b).exists()
    assert _digest(src) == before  # sources untouched


def test_fps_resampling_and_parallel_workers(tmp_path: Path) -> None:
    src = tmp_path / "src"
    write_video(src / "A" / "a.avi", 30, 64, 48)  # 1.2 s at 25 fps
    write_video(src / "A" / "b.mp4", 20, 64, 48, codec="libx264", fps=10)  # 2 s at 10 fps
    report = prepare_videos(src, tmp_path / "dst", fps=10, workers=2, progress=False)
    assert report.ok
    a = read_store_info(tmp_path / "dst" / "A" / "a.hdf5")
    b = read_store_info(tmp_path / "dst" / "A" / "b.hdf5")
    assert (a["n_frames"], a["fps"]) == (12, 10.0)
    assert (b["n_frames"], b["fps"]) == (20, 10.0)
    assert a["source_fps"] == pytest.approx(25.0)
    assert (a["height"], a["width"]) == (240, 320)  # short side 240 by default, as ffmpeg's


def test_cli_exit_status_and_summary(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    src = tmp_path / "src"
    write_video(src / "A" / "a.avi", 8, 64, 48)
    assert (
        ccl_main(
            [
                "prepare",
                "videos",
                str(src),
                str(tmp_path / "ok"),
                "--no-progress",
                "--short-side",
                "24",
            ]
        )
        == 0
    )
    (src / "A" / "broken.mp4").write_bytes(b"\x00" * 100)
    code = ccl_main(
        [
            "prepare",
            "videos",
            str(src),
            str(tmp_path / "bad"),
            "--no-progress",
            "--short-side",
            "24",
            "--fps",
            "native",
        ]
    )
    out = capsys.readouterr().out.strip().splitlines()
    assert code == 1
    assert "1 failed" in out[-1] and "prepare_report.json" in out[-1]
    with pytest.raises(SystemExit):
        ccl_main(["prepare", "videos", str(src), str(tmp_path / "x"), "--fps", "fast"])


def test_fixture_videos_have_no_frame_count_warnings(prepared) -> None:
    _, report = prepared
    assert not [w for w in report.warnings if "declares" in w["warning"]]


def test_store_made_with_other_settings_is_refused_then_reprepared(tmp_path: Path) -> None:
    src, dst = tmp_path / "src", tmp_path / "dst"
    write_video(src / "A" / "a.avi", 10, 64, 48)
    write_video(src / "B" / "b.mkv", 8, 48, 64)
    assert prepare_videos(src, dst, short_side=32, progress=False).ok
    before = digest(dst)
    # another short side: refused before anything is written (report included)
    with pytest.raises(SettingsMismatchError, match=r"2 of the 2 stores.*short side 32, req"):
        prepare_videos(src, dst, short_side=16, progress=False)
    assert digest(dst) == before
    code = ccl_main(["prepare", "videos", str(src), str(dst), "--short-side", "16"])
    assert code == 1 and digest(dst) == before
    # asked to: converted again, and the report says so
    report = prepare_videos(src, dst, short_side=16, reprepare=True, progress=False)
    assert report.ok and len(report.converted) == 2 and not report.skipped
    assert [r["reason"] for r in report.reprepared] == ["short side 32, requested 16"] * 2
    for store in (dst / "A" / "a.hdf5", dst / "B" / "b.hdf5"):
        info = read_store_info(store)
        assert min(info["height"], info["width"]) == 16 and info["short_side"] == 16
    written = json.loads((dst / REPORT_NAME).read_text())
    assert written["settings"]["short_side"] == 16 and len(written["reprepared"]) == 2
    assert "2 re-prepared" in report.summary()
    # same settings again: skipped, nothing re-prepared
    again = prepare_videos(src, dst, short_side=16, progress=False)
    assert len(again.skipped) == 2 and not again.reprepared
    # every recorded setting is compared
    store = dst / "A" / "a.hdf5"
    same = {"short_side": 16, "fps": None, "jpeg_quality": 90, "audio": False}
    assert store_settings_mismatch(store, **same) is None
    assert "JPEG quality 90, requested 70" in store_settings_mismatch(
        store, **{**same, "jpeg_quality": 70}
    )
    assert "audio requested" in store_settings_mismatch(store, **{**same, "audio": True})
    assert "fps 25, requested 10" in store_settings_mismatch(store, **{**same, "fps": 10})


def test_missing_frames_warn_for_every_container(tmp_path: Path) -> None:
    src = tmp_path / "src"
    for name, codec in (("a.avi", "mpeg4"), ("b.mkv", "mpeg4"), ("c.webm", "libvpx")):
        full = write_video(tmp_path / "full" / name, 60, 64, 48, codec=codec)
        data = full.read_bytes()
        (src / "T").mkdir(parents=True, exist_ok=True)
        (src / "T" / name).write_bytes(data[: len(data) * 7 // 10])  # header intact
    report = prepare_videos(src, tmp_path / "dst", short_side=16, progress=False)
    warned = {Path(w["source"]).name: w["warning"] for w in report.warnings}
    assert sorted(warned) == ["a.avi", "b.mkv", "c.webm"], report.to_dict()
    for name, text in warned.items():
        n = read_store_info(tmp_path / "dst" / "T" / (Path(name).stem + ".hdf5"))["n_frames"]
        assert 0 < n < 60 and f"only {n} of the 60 frames" in text


def test_still_image_is_refused_unless_asked(tmp_path: Path) -> None:
    src = tmp_path / "src"
    (src / "A").mkdir(parents=True)
    Image.fromarray(np.zeros((48, 64, 3), np.uint8)).save(src / "A" / "photo.png")
    (src / "A" / "photo.png").rename(src / "A" / "photo.mp4")
    write_video(src / "A" / "one.mp4", 1, 64, 48, codec="libx264")  # a real 1-frame video
    report = prepare_videos(src, tmp_path / "dst", short_side=16, progress=False)
    assert [Path(f["source"]).name for f in report.failed] == ["photo.mp4"]
    assert "still image (png)" in report.failed[0]["reason"]
    assert "--allow-still-images" in report.failed[0]["reason"]
    assert [Path(p).name for p in report.converted] == ["one.mp4"]
    allowed = prepare_videos(
        src, tmp_path / "dst", short_side=16, allow_still_images=True, progress=False
    )
    assert allowed.ok
    assert read_store_info(tmp_path / "dst" / "A" / "photo.hdf5")["n_frames"] == 1


def test_os_errors_are_one_line_without_traceback(tmp_path: Path, monkeypatch, capsys) -> None:
    src = tmp_path / "src"
    write_video(src / "A" / "a.avi", 4, 64, 48)
    (tmp_path / "file").write_text("a file, not a folder")
    # a file where the output folder, or one of its parents, should be
    proc = run_cli("prepare", "videos", str(src), str(tmp_path / "file"), "--no-progress")
    assert_one_line_error(proc, str(tmp_path / "file"), "a file where a folder is expected")
    assert ccl_main(["prepare", "videos", str(src), str(tmp_path / "file" / "dst")]) == 1
    err = capsys.readouterr().err.strip()
    where = tmp_path / "file" / "dst"
    assert err.startswith(f"ccl prepare: error: {where}: cannot create the output folder")
    assert (tmp_path / "file").read_text() == "a file, not a folder"
    # disk full while writing the report: the report's path and the cause, no temp file
    import ccl.atomic

    def full(self, data):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(ccl.atomic.RecordingWriter, "write", full)
    dst = tmp_path / "dst"
    assert ccl_main(["prepare", "videos", str(src), str(dst), "--no-progress"]) == 1
    err = capsys.readouterr().err.strip()
    assert err == (
        f"ccl prepare: error: {dst / REPORT_NAME}: cannot write file: "
        "No space left on device (ENOSPC)"
    )
    assert not list(dst.glob(f".{REPORT_NAME}*"))


def test_bad_values_are_refused_at_the_boundary(tmp_path: Path) -> None:
    src = tmp_path / "src"
    write_video(src / "A" / "a.avi", 4, 64, 48)
    dst = tmp_path / "dst"
    proc = run_cli("prepare", "videos", str(src), str(dst), "--short-side", "-5")
    assert_one_line_error(proc, "--short-side must be at least 0, got -5")
    assert not dst.exists()
    with pytest.raises(ValueError, match="short side must be positive"):
        prepare_videos(src, dst, short_side=-5, progress=False)
    with pytest.raises(ValueError, match="workers must be at least 1"):
        prepare_videos(src, dst, workers=0, progress=False)
    with pytest.raises(SystemExit):
        ccl_main(["prepare", "videos", str(src), str(dst), "--workers", "0"])
    assert not dst.exists()


def _stat(pid: int) -> list[str] | None:
    """Fields 3.. of /proc/PID/stat (state, ppid, ..., start time at index 19)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None


def _children(pid: int) -> dict[int, str]:
    """Processes whose parent is ``pid``, with their start times (a pid may be reused)."""
    found = {}
    for entry in Path("/proc").iterdir():
        stat = _stat(int(entry.name)) if entry.name.isdigit() else None
        if stat is not None and int(stat[1]) == pid:
            found[int(entry.name)] = stat[19]
    return found


def _alive(pid: int, start: str) -> bool:
    """Still running (a zombie waiting for a reaper counts as gone)."""
    stat = _stat(pid)
    return stat is not None and stat[19] == start and stat[0] not in ("Z", "X")


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_killed_run_leaves_no_worker_processes(tmp_path: Path) -> None:
    src, dst = tmp_path / "src", tmp_path / "dst"
    for i in range(4):
        write_video(src / "A" / f"v{i}.avi", 200, 96, 72)
    import ccl

    env = dict(os.environ, PYTHONPATH=str(Path(ccl.__file__).parents[1]), OMP_NUM_THREADS="1")
    cmd = [sys.executable, "-m", "ccl.cli", "prepare", "videos", str(src), str(dst)]
    parent = subprocess.Popen(
        [*cmd, "--workers", "2", "--no-progress"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    children: dict[int, str] = {}
    try:
        deadline = time.monotonic() + 120
        # mid-run: the workers exist and one of them is writing a store
        while time.monotonic() < deadline and parent.poll() is None:
            children.update(_children(parent.pid))
            if len(children) >= 2 and list(dst.rglob(".*.tmp")):
                break
            time.sleep(0.05)
        assert parent.poll() is None, "the run ended before it could be killed"
        children.update(_children(parent.pid))
        os.kill(parent.pid, signal.SIGKILL)
        parent.wait()
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and any(_alive(*c) for c in children.items()):
            time.sleep(0.1)
        assert not [pid for pid, start in children.items() if _alive(pid, start)], "orphans"
    finally:
        if parent.poll() is None:
            parent.kill()
            parent.wait()
        for pid, start in children.items():  # only processes this test started
            if _alive(pid, start):
                os.kill(pid, signal.SIGKILL)


def _spy_on_soundtrack(monkeypatch) -> tuple[list[int], list[int]]:
    """(samples of each block decoded, samples held by the writer at each write) of the
    soundtracks prepare_videos stores."""
    import ccl.data.prepare as prepare_module
    from ccl.data.store import AudioWriter

    blocks: list[int] = []
    held: list[int] = []
    decode, flush = prepare_module.soundtrack_blocks, AudioWriter.flush

    def spy_blocks(video):
        for block in decode(video):
            blocks.append(len(block))
            yield block

    def spy_flush(self):
        held.append(self.n_pending)
        flush(self)

    monkeypatch.setattr(prepare_module, "soundtrack_blocks", spy_blocks)
    monkeypatch.setattr(AudioWriter, "flush", spy_flush)
    return blocks, held


def test_soundtrack_is_written_in_bounded_blocks_while_decoded(tmp_path: Path, monkeypatch):
    """A long soundtrack never sits in memory whole: blocks of the resampler's size are
    written out every AUDIO_WRITE_SAMPLES samples, and the store holds what decoding the
    whole soundtrack at once gives."""
    import ccl.data.store
    from ccl.data.media import decode_soundtrack

    monkeypatch.setattr(ccl.data.store, "AUDIO_WRITE_SAMPLES", 4096)
    video = tmp_path / "src" / "A" / "a.mp4"
    write_video(video, 8, 64, 48, audio_codec="aac", audio_seconds=3.0)
    blocks, held = _spy_on_soundtrack(monkeypatch)
    report = prepare_videos(tmp_path / "src", tmp_path / "dst", audio=True, progress=False)
    assert report.ok and not report.no_audio
    with h5py.File(tmp_path / "dst" / "A" / "a.hdf5", "r") as f:
        stored = f["audio"][:]
        assert bool(f.attrs["has_audio"])
    whole, _ = decode_soundtrack(video)
    assert np.array_equal(stored, whole) and len(stored) == sum(blocks) > 90_000
    assert max(blocks) <= 4096  # the resampler's frames, not the soundtrack
    assert max(held) < 4096 + max(blocks)  # at most one write's worth pending
    assert len(held) >= sum(blocks) // (4096 + max(blocks))  # written while decoding


def test_soundtrack_failing_midway_is_dropped_and_the_frames_kept(tmp_path: Path, monkeypatch):
    import ccl.data.prepare as prepare_module

    def failing(video):
        yield np.zeros(70_000, dtype=np.float32)  # more than one write: some reached the store
        raise av.error.InvalidDataError(errno.EINVAL, "Invalid data found when processing input")

    write_video(tmp_path / "src" / "A" / "a.mp4", 8, 64, 48, audio_codec="aac")
    monkeypatch.setattr(prepare_module, "soundtrack_blocks", failing)
    report = prepare_videos(tmp_path / "src", tmp_path / "dst", audio=True, progress=False)
    assert report.ok and len(report.converted) == 1 and len(report.no_audio) == 1
    assert report.warnings[0]["warning"].startswith("audio decode error: InvalidDataError")
    with h5py.File(tmp_path / "dst" / "A" / "a.hdf5", "r") as f:
        assert len(f["video"]) == 8 and not bool(f.attrs["has_audio"]) and "audio" not in f


def test_a_full_disk_while_writing_the_soundtrack_stops_the_run(tmp_path: Path, monkeypatch):
    """A write error of the soundtrack is the disk's, not the soundtrack's: the run stops."""
    from ccl.data.store import AudioWriter

    def full(self):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    write_video(tmp_path / "src" / "A" / "a.mp4", 8, 64, 48, audio_codec="aac")
    monkeypatch.setattr(AudioWriter, "flush", full)
    with pytest.raises(OSError, match="no space left on device") as caught:
        prepare_videos(tmp_path / "src", tmp_path / "dst", audio=True, progress=False)
    assert caught.value.errno == errno.ENOSPC
    assert sorted(p.name for p in (tmp_path / "dst").rglob("*") if p.is_file()) == [REPORT_NAME]
