"""``prepare videos`` against changed sources: a store whose source file changed is
converted again, never counted complete."""

from __future__ import annotations

import io
import json
import os
from pathlib import Path

import h5py
import numpy as np
from data_helpers import write_video
from PIL import Image

from ccl.cli import main as ccl_main
from ccl.data.media import decode_video_frames
from ccl.data.prepare import REPORT_NAME, prepare_videos
from ccl.data.store import (
    SOURCE_IDENTITY_KEYS,
    read_store_info,
    recorded_source_identity,
    source_identity,
)


def _first_frame(store: Path) -> np.ndarray:
    with h5py.File(store, "r") as f:
        return np.asarray(Image.open(io.BytesIO(f["video"][0].tobytes())).convert("RGB"))


def _tree(root: Path) -> list[str]:
    """Every file under ``root``, hidden ones included, by relative path."""
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())


# ----------------------------------------------------------------------------- changed sources


def test_a_replaced_source_is_prepared_again_and_counted(tmp_path: Path, capsys) -> None:
    src, dst = tmp_path / "src", tmp_path / "dst"
    a = write_video(src / "A" / "a.avi", 12, 64, 48)
    b = write_video(src / "A" / "b.avi", 14, 64, 48)
    assert ccl_main(["prepare", "videos", str(src), str(dst), "--short-side", "0"]) == 0
    store_a, store_b = dst / "A" / "a.hdf5", dst / "A" / "b.hdf5"
    assert recorded_source_identity(store_b) == source_identity(b)
    stamp_a = store_a.stat().st_mtime_ns
    old_size = b.stat().st_size
    # the user regenerates b: other frames (another size), other length
    b.unlink()
    write_video(b, 20, 80, 60)
    capsys.readouterr()
    assert ccl_main(["prepare", "videos", str(src), str(dst), "--short-side", "0"]) == 0
    out = capsys.readouterr().out
    assert "1 converted, 1 already complete, 0 failed, 1 re-prepared because the source " in out
    report = json.loads((dst / REPORT_NAME).read_text())
    assert report["skipped"] == [str(a)] and report["converted"] == [str(b)]
    assert report["source_changed"] == [
        {
            "source": str(b),
            "reason": f"source changed since its store was made (size {old_size} -> "
            f"{b.stat().st_size} bytes, modified since)",
        }
    ]
    assert store_a.stat().st_mtime_ns == stamp_a  # the unchanged source's store kept
    info = read_store_info(store_b)
    assert (info["n_frames"], info["height"], info["width"]) == (20, 60, 80)
    new_first = next(decode_video_frames(b, None))
    assert np.abs(_first_frame(store_b).astype(int) - new_first.astype(int)).mean() < 4
    assert recorded_source_identity(store_b) == source_identity(b)
    # a third run: everything is current
    again = prepare_videos(src, dst, short_side=None, progress=False)
    assert len(again.skipped) == 2 and not again.converted and not again.source_changed


def test_same_size_other_content_is_a_change_a_new_mtime_alone_is_not(tmp_path: Path) -> None:
    src, dst = tmp_path / "src", tmp_path / "dst"
    a = write_video(src / "A" / "a.avi", 12, 64, 48)
    b = write_video(src / "A" / "b.avi", 12, 64, 48)
    assert prepare_videos(src, dst, short_side=16, progress=False).ok
    # a: touched (copied, restored from a backup): same bytes, new modification time
    os.utime(a, ns=(a.stat().st_atime_ns, a.stat().st_mtime_ns + 10**9))
    # b: one byte changed in place (in the padding of its header: it decodes as before),
    # its modification time put back
    stat = b.stat()
    data = bytearray(b.read_bytes())
    data[data.find(b"JUNK") + 18] ^= 0xFF
    b.write_bytes(bytes(data))
    os.utime(b, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    report = prepare_videos(src, dst, short_side=16, progress=False)
    assert report.skipped == [str(a)]
    reason = "source changed since its store was made (same size, other content)"
    assert report.source_changed == [{"source": str(b), "reason": reason}]
    assert report.converted == [str(b)]


def test_stores_without_a_recorded_source_are_kept_once_reported(tmp_path: Path, capsys) -> None:
    src, dst = tmp_path / "src", tmp_path / "dst"
    a = write_video(src / "A" / "a.avi", 12, 64, 48)
    write_video(src / "A" / "b.avi", 12, 64, 48)
    assert prepare_videos(src, dst, short_side=16, progress=False).ok
    with h5py.File(dst / "A" / "a.hdf5", "a") as f:  # as stores of earlier versions are
        for key in SOURCE_IDENTITY_KEYS:
            del f.attrs[key]
    write_video(src / "A" / "a.avi", 30, 64, 48)  # changed, but nothing records the old one
    stamp = (dst / "A" / "a.hdf5").stat().st_mtime_ns
    assert ccl_main(["prepare", "videos", str(src), str(dst), "--short-side", "16"]) == 0
    assert capsys.readouterr().out.strip() == (
        "prepare: 2 videos, 0 converted, 2 already complete (1 of them unchecked: made before "
        "source files were recorded; --reprepare converts them again), 0 failed"
    )
    assert json.loads((dst / REPORT_NAME).read_text())["unverified"] == [str(a)]
    assert (dst / "A" / "a.hdf5").stat().st_mtime_ns == stamp
    report = prepare_videos(src, dst, short_side=16, reprepare=True, progress=False)
    assert report.converted == [str(a)] and not report.unverified
    assert report.reprepared == [
        {
            "source": str(a),
            "reason": "source file not recorded (made before source files were recorded)",
        }
    ]
    assert read_store_info(dst / "A" / "a.hdf5")["n_frames"] == 30
    assert recorded_source_identity(dst / "A" / "a.hdf5") == source_identity(a)


def test_the_identity_hashes_the_first_and_last_mib(tmp_path: Path) -> None:
    import hashlib

    big = tmp_path / "big.bin"
    data = np.random.default_rng(0).bytes(3 * 2**20 + 5)
    big.write_bytes(data)
    identity = source_identity(big)
    expected = hashlib.sha256(data[: 2**20] + data[-(2**20) :]).hexdigest()
    assert identity["source_sha256"] == expected
    assert identity["source_size"] == len(data)
    assert identity["source_mtime_ns"] == big.stat().st_mtime_ns
    small = tmp_path / "small.bin"
    small.write_bytes(data[: 2**20 + 10])  # between one and two MiB: every byte once
    assert source_identity(small)["source_sha256"] == hashlib.sha256(data[: 2**20 + 10]).hexdigest()
