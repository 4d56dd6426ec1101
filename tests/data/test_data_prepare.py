"""Videos -> HDF5 frame stores: sizes, audio, failures, resumption, CLI status."""

from __future__ import annotations

import hashlib
import io
import json
from pathlib import Path

import h5py
import numpy as np
import pytest
from data_helpers import CORRUPT, N_FRAMES, SHORT_SIDE, VIDEOS, write_video
from PIL import Image

from ccl.data.cli import main as data_cli
from ccl.data.prepare import (
    REPORT_NAME,
    find_videos,
    prepare_videos,
    read_store_info,
    temp_path_for,
)


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
        data_cli(
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
    code = data_cli(
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
        data_cli(["prepare", "videos", str(src), str(tmp_path / "x"), "--fps", "fast"])
