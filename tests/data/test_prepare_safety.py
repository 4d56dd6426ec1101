"""``prepare videos`` against changed sources and a full disk: a store whose source file
changed is converted again, never counted complete; a full disk stops the run with one line
naming the folder, no partial store, and the report kept."""

from __future__ import annotations

import errno
import io
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest
from data_helpers import write_video
from PIL import Image

from ccl.cli import main as ccl_main
from ccl.data.media import decode_video_frames
from ccl.data.prepare import REPORT_NAME, prepare_videos
from ccl.data.store import (
    SOURCE_IDENTITY_KEYS,
    FrameWriter,
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


# ----------------------------------------------------------------------------- full disk


def _videos(src: Path, n: int) -> list[Path]:
    return [write_video(src / "A" / f"v{i}.avi", 12, 64, 48) for i in range(n)]


def _fill_disk_at(monkeypatch, name: str) -> None:
    """The store of ``name`` runs out of disk space after its first frames are written."""
    flush = FrameWriter.flush

    def full(self):
        flush(self)
        if Path(self.ds.file.filename).name == f".{name}.hdf5.tmp":
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(FrameWriter, "flush", full)


def test_a_full_disk_stops_the_run_naming_the_folder(tmp_path: Path, monkeypatch, capsys) -> None:
    src, dst = tmp_path / "src", tmp_path / "dst"
    v0, v1, v2 = _videos(src, 3)
    _fill_disk_at(monkeypatch, "v1")
    assert ccl_main(["prepare", "videos", str(src), str(dst), "--no-progress"]) == 1
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err == (
        f"ccl prepare: error: {dst}: no space left on device while writing the store of "
        "A/v1.avi (its partial store was removed); 1 converted before, 1 videos not started "
        f"(report: {dst / REPORT_NAME}). Free some space and run again to go on\n"
    )
    assert _tree(dst) == ["A/v0.hdf5", REPORT_NAME]  # no partial store, no temporary
    report = json.loads((dst / REPORT_NAME).read_text())
    assert report["converted"] == [str(v0)]
    assert report["failed"] == [
        {"source": str(v1), "reason": "no space left on device (its partial store was removed)"}
    ]
    assert report["stopped"] == (
        f"no space left on device in {dst} while writing the store of {v1}; 1 videos not started"
    )
    monkeypatch.undo()  # space freed: the next run goes on where this one stopped
    again = prepare_videos(src, dst, progress=False)
    assert again.skipped == [str(v0)] and again.converted == [str(v1), str(v2)]


def test_a_report_that_no_longer_fits_is_said(tmp_path: Path, monkeypatch, capsys) -> None:
    import ccl.atomic

    src, dst = tmp_path / "src", tmp_path / "dst"
    _videos(src, 2)
    _fill_disk_at(monkeypatch, "v0")

    def full(self, data):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(ccl.atomic.RecordingWriter, "write", full)
    assert ccl_main(["prepare", "videos", str(src), str(dst), "--no-progress"]) == 1
    assert capsys.readouterr().err == (
        f"ccl prepare: error: {dst}: no space left on device while writing the store of "
        "A/v0.avi (its partial store was removed); 0 converted before, 1 videos not started "
        f"({REPORT_NAME} did not fit either). Free some space and run again to go on\n"
    )
    assert _tree(dst) == []


def _can_mount_tmpfs(where: Path) -> str | None:
    """None when this user may mount a tmpfs in a user namespace, else why not."""
    if not shutil.which("unshare"):
        return "no unshare command"
    where.mkdir()
    proc = subprocess.run(
        ["unshare", "-r", "-m", "sh", "-c", f"mount -t tmpfs -o size=64k tmpfs '{where}'"],
        capture_output=True,
        text=True,
    )
    return None if proc.returncode == 0 else f"cannot mount a tmpfs: {proc.stderr.strip()}"


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="user namespaces and tmpfs")
@pytest.mark.parametrize("workers", [1, 2])
def test_a_real_full_disk_with_workers(tmp_path: Path, workers: int) -> None:
    mnt = tmp_path / "mnt"
    why_not = _can_mount_tmpfs(mnt)
    if why_not:
        pytest.skip(why_not)
    src, dst = tmp_path / "src", mnt / "dst"
    for i in range(5):  # stores of about 360 kB: 2 fit in 900 kB, the report beside them
        write_video(src / "A" / f"v{i}.avi", 30, 320, 240)
    import ccl

    script = (
        f"mount -t tmpfs -o size=900k tmpfs '{mnt}' || exit 99; "
        f"'{sys.executable}' -m ccl.cli prepare videos '{src}' '{dst}' --no-progress "
        f"--workers {workers}; echo \"rc=$?\"; cd '{mnt}' && find . -type f | sort; "
        f"cat '{dst / REPORT_NAME}'"
    )
    env = dict(os.environ, PYTHONPATH=str(Path(ccl.__file__).parents[1]), OMP_NUM_THREADS="1")
    proc = subprocess.run(
        ["unshare", "-r", "-m", "sh", "-c", script],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert "rc=1" in proc.stdout, (proc.stdout, proc.stderr)
    errors = proc.stderr.strip().splitlines()
    assert len(errors) == 1, proc.stderr  # no traceback, no BrokenProcessPool
    assert errors[0].startswith(
        f"ccl prepare: error: {dst}: no space left on device while writing the store of A/v"
    )
    assert f"(report: {dst / REPORT_NAME})" in errors[0]
    listing, _, report_text = proc.stdout.partition("rc=1\n")[2].partition("{")
    report = json.loads("{" + report_text)
    stores = [line for line in listing.split() if line.endswith(".hdf5")]
    assert stores == [f"./dst/A/{Path(s).stem}.hdf5" for s in report["converted"]]
    assert len(stores) == 2
    assert sorted(listing.split()) == sorted([*stores, f"./dst/{REPORT_NAME}"])  # no partial
    assert report["failed"] and all(
        f["reason"] == "no space left on device (its partial store was removed)"
        for f in report["failed"]
    )
    assert report["stopped"].startswith(f"no space left on device in {dst}")


def test_a_dead_worker_leaves_no_partial_store(tmp_path: Path, monkeypatch) -> None:
    """A worker process that dies mid-store (a crash in a native library) cannot remove its
    temporary store: the run removes it, and names the failure."""
    from concurrent.futures import Future
    from concurrent.futures.process import BrokenProcessPool

    import ccl.data.prepare
    from ccl.data.store import temp_path_for

    src, dst = tmp_path / "src", tmp_path / "dst"
    videos = _videos(src, 3)

    class DyingPool:
        """Each job writes half a store, then its process dies."""

        def __init__(self, *args, **kwargs):
            self.broken = False

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return False

        def submit(self, fn, job):
            if self.broken:
                raise BrokenProcessPool("A child process terminated abruptly")
            self.broken = True
            temp_path_for(Path(job["store"])).parent.mkdir(parents=True, exist_ok=True)
            temp_path_for(Path(job["store"])).write_bytes(b"half a store")
            future = Future()
            future.set_exception(BrokenProcessPool("A child process terminated abruptly"))
            return future

    monkeypatch.setattr(ccl.data.prepare, "ProcessPoolExecutor", DyingPool)
    report = prepare_videos(src, dst, workers=2, progress=False)
    reason = "worker process failed: BrokenProcessPool: A child process terminated abruptly"
    assert report.failed == [{"source": str(v), "reason": reason} for v in videos]
    assert _tree(dst) == [REPORT_NAME]
