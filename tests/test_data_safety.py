"""Data safety: inputs that match nothing, damaged logs, extreme videos, full disks."""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

from ccl.cli import main

sys.path.insert(0, str(Path(__file__).parent / "data"))
from data_helpers import write_video  # noqa: E402

CLASSES = ["class_00", "class_01"]


def _prepared(root, videos_per_class=2):
    """Frame stores (8 random 16x16 frames) and an annotation file: ``videos_per_class``
    training videos and one testing video per class."""
    from ccl.data.store import write_frame_store

    rng = np.random.default_rng(0)
    frames, database = root / "frames", {}
    for label in CLASSES:
        for k in range(videos_per_class + 1):
            subset = "training" if k < videos_per_class else "testing"
            vid = f"v_{label}_{k}"
            clip = rng.integers(0, 255, size=(8, 16, 16, 3), dtype=np.uint8)
            write_frame_store(frames / label / f"{vid}.hdf5", list(clip), fps=25)
            database[vid] = {"subset": subset, "annotations": {"label": label, "segment": [1, 9]}}
    path = root / "annotations.json"
    path.write_text(json.dumps({"labels": CLASSES, "database": database}))
    return path, frames


def _audio(root, video_ids):
    for vid in video_ids:
        label = vid[2:10]
        (root / label).mkdir(parents=True, exist_ok=True)
        np.save(root / label / f"{vid}.npy", np.ones(8, dtype=np.float32))
    return root


def test_an_audio_teacher_without_any_training_video_embedding_is_refused(tmp_path, capsys):
    ann, frames = _prepared(tmp_path)
    # embeddings of other videos (another data set's folder): the teacher would teach nothing
    audio = _audio(tmp_path / "audio", ["v_class_00_7", "v_class_01_8"])
    args = [
        "train",
        "--preset",
        "ucf51-ccl-a",
        f"data.annotations={ann}",
        f"data.frames_dir={frames}",
        f"data.audio_dir={audio}",
        f"train.out_dir={tmp_path / 'runs'}",
        "train.device=cpu",
        "data.workers=0",
    ]
    assert main(args) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    assert err.startswith("ccl train: error: ") and str(audio) in err and str(ann) in err, err
    assert "no audio embedding for any of the 4 training videos" in err, err
    assert not list((tmp_path / "runs").rglob("*.pt"))


@pytest.mark.parametrize("covered, warns", [(1, True), (2, False), (4, False)])
def test_a_small_share_of_training_videos_with_audio_warns_with_the_share(
    tmp_path, caplog, covered, warns
):
    from ccl.data.datasets import MIN_AUDIO_SHARE, ClipDataset, check_audio_coverage

    ann, frames = _prepared(tmp_path)
    ids = ["v_class_00_0", "v_class_01_0", "v_class_00_1", "v_class_01_1"][:covered]
    audio = _audio(tmp_path / "audio", ids)
    train = ClipDataset(ann, frames, "training", "train", frames=4, size=16, audio=audio)
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="ccl.data"):
        assert check_audio_coverage(train) == covered / 4
    assert MIN_AUDIO_SHARE == 0.5
    messages = [r.getMessage() for r in caplog.records]
    if warns:
        assert messages == [
            f"only 25% of the training videos of {ann} (1 of 4) have an audio embedding in "
            f"{audio} (below 50%): the audio teacher teaches only those"
        ]
    else:
        assert messages == []


# A parent running the demo's job pool: every job says it started, then sleeps for minutes.
_POOL_PARENT = """
import sys, time
from pathlib import Path
from ccl.demo.jobs import run_jobs

def hold(path):
    Path(path).write_text("started")
    time.sleep(600)

if __name__ == "__main__":
    run_jobs(hold, sys.argv[1:], len(sys.argv) - 1, share_threads=False)
"""


def _stat(pid: int) -> list[str] | None:
    """Fields 3.. of /proc/PID/stat (state, ppid, ..., start time at index 19)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None


def _process_alive(pid: int, start: str) -> bool:
    """Still running: the same start time (a pid may be reused), not a zombie."""
    stat = _stat(pid)
    return stat is not None and stat[19] == start and stat[0] not in ("Z", "X")


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
@pytest.mark.parametrize("signum", [signal.SIGKILL, signal.SIGTERM])
def test_the_demo_job_pool_workers_die_with_their_parent(tmp_path, signum):
    import ccl

    script = tmp_path / "parent.py"
    script.write_text(textwrap.dedent(_POOL_PARENT))
    marks = [tmp_path / f"job{i}.started" for i in range(2)]
    env = dict(os.environ, PYTHONPATH=str(Path(ccl.__file__).parents[1]), OMP_NUM_THREADS="1")
    parent = subprocess.Popen(
        [sys.executable, str(script), *map(str, marks)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    workers: dict[int, str] = {}
    try:
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline and parent.poll() is None:
            if all(m.exists() for m in marks):
                break
            time.sleep(0.1)
        assert parent.poll() is None and all(m.exists() for m in marks), "the jobs never ran"
        for entry in Path("/proc").iterdir():
            stat = _stat(int(entry.name)) if entry.name.isdigit() else None
            if stat is not None and int(stat[1]) == parent.pid:
                workers[int(entry.name)] = stat[19]
        assert len(workers) >= 2, workers  # the two job workers (and the resource tracker)
        os.kill(parent.pid, signum)
        parent.wait()
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and any(_process_alive(*w) for w in workers.items()):
            time.sleep(0.1)
        assert not [pid for pid, start in workers.items() if _process_alive(pid, start)]
    finally:
        if parent.poll() is None:
            parent.kill()
            parent.wait()
        for pid, start in workers.items():  # only processes this test started
            if _process_alive(pid, start):
                os.kill(pid, signal.SIGKILL)


@pytest.mark.parametrize("value", ["0", "-3"])
@pytest.mark.parametrize("command", ["predict", "embed"])
def test_a_batch_size_below_one_is_refused_naming_the_flag(tmp_path, capsys, command, value):
    video = write_video(tmp_path / "v.avi", 2, 16, 16)
    out = ["--out", str(tmp_path / "f.npz")] if command == "embed" else []
    args = [command, str(tmp_path / "run"), str(video), "--batch-size", value, *out]
    assert main(args) == 1
    err = capsys.readouterr().err.strip()
    assert err == f"ccl {command}: error: --batch-size must be at least 1, got {value}"


@pytest.mark.parametrize("width, height", [(512, 8), (8, 512)])
def test_frames_of_an_extremely_elongated_video_are_capped_with_a_note(
    tmp_path, width, height
):
    from ccl.data.media import MAX_ASPECT, decode_video_frames
    from ccl.data.prepare import prepare_videos

    video = write_video(tmp_path / "src" / "K" / "thin.avi", 3, width, height)
    notes: list[str] = []
    frames = list(decode_video_frames(video, 240, notes=notes))
    # the short side scaled to 240 would make the long side 15360 (23 MB a frame)
    long_side = MAX_ASPECT * 240
    want = (240, long_side, 3) if width > height else (long_side, 240, 3)
    assert [f.shape for f in frames] == [want] * 3
    w, h = want[1], want[0]
    assert notes == [
        f"frames are {width}x{height}, more elongated than 4:1: decoded at {w}x{h} (the long "
        "side capped at 4x the short side 240), so their content is squeezed"
    ]
    notes.clear()
    assert [f.shape for f in decode_video_frames(video, None, notes=notes)] == [
        (height, width, 3)
    ] * 3
    assert notes == []  # native size: nothing capped
    # a frame store of the video holds the same capped frames, its report says so
    report = prepare_videos(tmp_path / "src", tmp_path / "stores", short_side=16, progress=False)
    assert [w["warning"] for w in report.warnings] == [
        f"frames are {width}x{height}, more elongated than 4:1: decoded at "
        f"{64 if width > height else 16}x{16 if width > height else 64} (the long side capped "
        "at 4x the short side 16), so their content is squeezed"
    ]


def test_a_frame_within_the_aspect_cap_is_resized_as_before(tmp_path):
    from ccl.data.media import decode_video_frames

    video = write_video(tmp_path / "wide.avi", 2, 64, 16)  # exactly 4:1
    notes: list[str] = []
    assert [f.shape for f in decode_video_frames(video, 32, notes=notes)] == [(32, 128, 3)] * 2
    assert notes == []


def test_a_resume_drops_damaged_log_lines_with_a_warning_naming_file_and_lines(
    tmp_path, capsys, tiny_run_overrides
):
    args = ["train", "--preset", "smoke-baseline", *tiny_run_overrides]
    args += [f"train.out_dir={tmp_path}", "train.name=X", "train.log_every=1"]
    assert main(args) == 0
    log = tmp_path / "X" / "metrics.jsonl"
    good = log.read_bytes().splitlines()
    assert len(good) == 3  # 2 steps, 1 epoch
    damaged = [
        *good[:2],
        b'{"epoch": 1, "step": 2, "ce": 1.0}',  # no "type"
        *good[2:],
        b'{"type": "step", "epoch": 1, "step": 9, "ce": 1.\xff}',  # not UTF-8
        b'{"type": "step", "epoch": 2, "st',  # cut by a kill
    ]
    log.write_bytes(b"\n".join(damaged))
    capsys.readouterr()
    assert main([*args, "train.epochs=2", "--resume", "auto"]) == 0
    err = capsys.readouterr().err
    warning = [line for line in err.splitlines() if "damaged" in line]
    assert warning == [
        f"warning: {log}: dropped 3 damaged lines (3, 5, 6): not a readable log record (cut "
        "by a kill, or stray bytes); the other records are kept"
    ], err
    records = [json.loads(x) for x in log.read_text(encoding="utf-8").splitlines()]
    assert [(r["type"], r["step"]) for r in records] == [
        ("step", 1),
        ("step", 2),
        ("epoch", 2),
        ("step", 3),
        ("step", 4),
        ("epoch", 4),
    ]
    assert log.read_bytes().splitlines()[:3] == good


def test_damaged_log_lines_are_named_by_line(tmp_path):
    from ccl.logs import parse_log_line, reset_log_after

    assert parse_log_line(b'{"type": "epoch", "epoch": 1, "step": 3}') is not None
    for raw in (b'{"epoch": 1}', b"[1]", b"\xff", b'{"type": "epoch", "step": 3}', b"{"):
        assert parse_log_line(raw) is None, raw
    log = tmp_path / "metrics.jsonl"
    log.write_bytes(b'{"type": "step", "epoch": 1, "step": 1}\n\n\xfe\xff\n')
    assert reset_log_after(log, 1, 1) == [3]
    assert log.read_text() == '{"type": "step", "epoch": 1, "step": 1}\n'
    assert reset_log_after(tmp_path / "none.jsonl", 0, 0) == []


def test_a_full_disk_while_drawing_a_figure_names_it_and_leaves_nothing_partial(
    tmp_path, capsys, monkeypatch
):
    import errno

    import ccl.atomic

    run = tmp_path / "runs" / "r1"
    run.mkdir(parents=True)
    config = {"objective": {"method": "baseline", "teachers": []}, "train": {"name": "r1"}}
    (run / "config.json").write_text(json.dumps(config))
    epochs = [
        {"type": "epoch", "epoch": e, "step": 10 * e, "train/acc": 0.2 * e, "val/top1": 0.1 * e}
        for e in (1, 2)
    ]
    (run / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in epochs))

    def full(self, data):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(ccl.atomic.RecordingWriter, "write", full)
    out = tmp_path / "report"
    assert main(["report", str(run), "--out", str(out)]) == 1
    err = capsys.readouterr().err.strip()
    assert err == (
        f"ccl report: error: {out / 'curves_r1.png'}: cannot write figure: "
        "No space left on device (ENOSPC)"
    )
    assert list(out.iterdir()) == []  # no PNG, empty or partial, and no temporary
    monkeypatch.undo()
    assert main(["report", str(run), "--out", str(out)]) == 0
    assert (out / "curves_r1.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_a_checkpoint_of_pickled_objects_is_refused_without_torch_advice(tmp_path):
    import torch

    from ccl.checkpoint import load_checkpoint
    from ccl.errors import CheckpointError

    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))

    path = tmp_path / "pickled.pt"
    torch.save({"student": Evil()}, path)
    with pytest.raises(CheckpointError) as err:
        load_checkpoint(path)
    message = str(err.value)
    assert message.startswith(f"cannot read checkpoint {path}: it holds pickled objects (")
    assert "weights_only" not in message and "\x1b" not in message and "\n" not in message


def test_a_folder_given_to_resume_is_refused_saying_what_to_give(
    tmp_path, capsys, tiny_run_overrides, tree_hashes
):
    run = tmp_path / "r1"
    (run / "checkpoints").mkdir(parents=True)
    before = tree_hashes(tmp_path)
    args = ["train", "--preset", "smoke-baseline", *tiny_run_overrides]
    args += [f"train.out_dir={tmp_path}", "train.name=r1", "--resume", str(run)]
    assert main(args) == 1
    assert capsys.readouterr().err.strip() == (
        f"ccl train: error: --resume {run} is a folder: give a checkpoint file (e.g. "
        f"{run / 'checkpoints' / 'last.pt'}) or --resume auto"
    )
    assert tree_hashes(tmp_path) == before


def test_prepare_videos_given_a_file_says_it_is_a_file(tmp_path, capsys):
    video = write_video(tmp_path / "v.avi", 2, 16, 16)
    assert main(["prepare", "videos", str(video), str(tmp_path / "out")]) == 1
    assert capsys.readouterr().err.strip() == (
        f"ccl prepare: error: {video} is a file, not a video folder: give the folder of the "
        "videos (one subfolder per class)"
    )
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("umask", [0o022, 0o077, 0o002])
def test_files_written_atomically_get_the_permissions_of_ordinary_ones(tmp_path, umask):
    import stat

    from ccl.atomic import write_text_atomic
    from ccl.checkpoint import save_checkpoint

    kept = tmp_path / "kept.json"
    kept.write_text("{}")
    kept.chmod(0o640)
    old = os.umask(umask)
    try:
        with open(tmp_path / "metrics.jsonl", "a") as f:  # how the training log is written
            f.write("{}\n")
        write_text_atomic(tmp_path / "config.json", "{}")
        save_checkpoint({"epoch": 1}, tmp_path / "last.pt")
        write_text_atomic(kept, '{"new": 1}')  # replaced: keeps the mode it had
    finally:
        os.umask(old)

    def mode(name):
        return stat.S_IMODE((tmp_path / name).stat().st_mode)

    assert mode("metrics.jsonl") == 0o666 & ~umask
    assert mode("config.json") == mode("last.pt") == 0o666 & ~umask
    assert mode("kept.json") == 0o640 and kept.read_text() == '{"new": 1}'
