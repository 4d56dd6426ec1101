"""Data safety under concurrency and interruption: one writer per run folder, resumes that
never overwrite another run, outputs that never replace an unrelated file."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from ccl.checkpoint import load_checkpoint
from ccl.cli import main
from ccl.runlock import LOCK_FILE, lock_run_folder

ENV = {**os.environ, "OMP_NUM_THREADS": "1"}


def _default_sigint() -> None:
    # a test run started in the background by a non-interactive shell inherits SIGINT
    # ignored, and Python then never raises KeyboardInterrupt: give the child the default
    import signal

    signal.signal(signal.SIGINT, signal.SIG_DFL)


def _ccl(*args: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "ccl.cli", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=ENV,
        preexec_fn=_default_sigint,
    )


class LockHolder:
    """Another process holding a run folder's lock through the library function, until
    stopped."""

    def __init__(self, run_dir: Path, command: str = "ccl train") -> None:
        code = textwrap.dedent(
            f"""
            import sys
            from ccl.runlock import lock_run_folder
            lock = lock_run_folder({str(run_dir)!r}, {command!r})
            print("locked", flush=True)
            sys.stdin.read()
            """
        )
        self.proc = subprocess.Popen(
            [sys.executable, "-c", code],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            env=ENV,
        )
        assert self.proc.stdout.readline().strip() == "locked"

    def stop(self) -> None:
        self.proc.stdin.close()
        assert self.proc.wait(timeout=30) == 0


def _refused(capsys, argv: list[str], run_dir: Path, pid: int, command: str = "ccl train") -> str:
    assert main(argv) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    assert f"{run_dir} is in use by process {pid} ({command}); wait for it" in err, err
    return err


def test_every_writer_of_a_locked_run_folder_is_refused_naming_the_holder(
    tmp_path, capsys, train_tiny_run, tiny_run_overrides, tree_hashes
):
    run = train_tiny_run(tmp_path, "train.name=X")
    stale = run / "checkpoints" / ".last.pt.live.tmp"  # a live save's temporary
    stale.write_bytes(b"half a checkpoint")
    before = tree_hashes(tmp_path)
    holder = LockHolder(run)
    try:
        pid = holder.proc.pid
        assert (run / LOCK_FILE).read_text().split() == [str(pid), "ccl", "train"]
        train_args = ["train", "--preset", "smoke-baseline", *tiny_run_overrides]
        train_args += [f"train.out_dir={tmp_path}", "train.name=X"]
        err = _refused(capsys, train_args, run, pid)
        assert "another train.name" in err
        _refused(capsys, [*train_args, "--resume", "auto"], run, pid)
        _refused(capsys, [*train_args, "--overwrite"], run, pid)
        err = _refused(capsys, ["evaluate", str(run)], run, pid)
        assert "--out DIR" in err
        assert sorted(p.name for p in tmp_path.iterdir()) == ["X"]  # nothing moved aside
        after = tree_hashes(tmp_path)
        after.pop(f"X/{LOCK_FILE}")
        assert after == before and stale.exists()
    finally:
        holder.stop()
    # the holder ended normally: its lock file is gone, the folder is free again
    assert not (run / LOCK_FILE).exists()
    with lock_run_folder(run, "test"):
        pass
    assert tree_hashes(tmp_path) == before


def test_a_live_training_keeps_its_folder_and_a_killed_one_frees_it(
    tmp_path, capsys, tiny_run_overrides
):
    """Two real trainings of one train.name: the second is refused with the first's PID;
    once the first is killed (SIGKILL, no cleanup), the OS has released its lock and
    ``--resume auto`` continues it, removing the temporary its kill left."""
    args = [*tiny_run_overrides, f"train.out_dir={tmp_path}", "train.name=live"]
    proc = _ccl("train", "--preset", "smoke-baseline", *args, "train.epochs=200")
    run = tmp_path / "live"
    try:
        for line in proc.stdout:
            if line.startswith("epoch 1/"):
                break
        assert proc.poll() is None
        assert (run / LOCK_FILE).read_text().split()[0] == str(proc.pid)
        train_args = ["train", "--preset", "smoke-baseline", *args]
        _refused(capsys, train_args, run, proc.pid)
        _refused(capsys, [*train_args, "--resume", "auto"], run, proc.pid)
        _refused(capsys, [*train_args, "--overwrite"], run, proc.pid)
        assert sorted(p.name for p in tmp_path.iterdir()) == ["live"]
    finally:
        proc.kill()
        proc.wait()
    stale = run / "checkpoints" / ".last.pt.k1ll3d.tmp"
    stale.write_bytes(b"half a checkpoint")
    done = load_checkpoint(run / "checkpoints" / "last.pt")["epoch"]
    more = [f"train.epochs={done + 1}", "--resume", "auto"]
    assert main(["train", "--preset", "smoke-baseline", *args, *more]) == 0
    assert "removed a temporary file left by an interrupted save" in capsys.readouterr().out
    assert not stale.exists() and not (run / LOCK_FILE).exists()
    assert load_checkpoint(run / "checkpoints" / "last.pt")["epoch"] == done + 1


def test_overwrite_moves_the_old_run_under_its_lock_and_locks_the_new_folder(
    tmp_path, train_tiny_run, tree_hashes
):
    from ccl.config import apply_overrides, preset
    from ccl.engine import build_run

    run = train_tiny_run(tmp_path, "train.name=X")
    before = tree_hashes(run)
    lock = lock_run_folder(run, "ccl train")
    tiny = ["data.synthetic_train=8", "data.size=16", "data.clip_frames=4"]
    cfg = apply_overrides(
        preset("smoke-baseline"), [*tiny, f"train.out_dir={tmp_path}", "train.name=X"]
    )
    built = build_run(cfg, overwrite=True, lock=lock)
    built.log.close()
    assert tree_hashes(tmp_path / "X.old-1") == before  # its lock file removed on hand-over
    assert lock.held and lock.run_dir == run
    assert (run / LOCK_FILE).read_text().split()[0] == str(os.getpid())
    lock.release()
    assert not (run / LOCK_FILE).exists()


def test_a_refused_fresh_start_leaves_no_folder(tmp_path):
    from ccl.config import apply_overrides, preset
    from ccl.engine import train

    cfg = apply_overrides(preset("smoke-baseline"), [f"train.out_dir={tmp_path}", "train.name=N"])
    cfg.train.resume = "auto"
    with pytest.raises(ValueError, match="--overwrite"):
        train(cfg, overwrite=True)
    assert list(tmp_path.iterdir()) == []


def test_resume_from_another_runs_checkpoint_never_replaces_a_run(
    tmp_path, capsys, train_tiny_run, tiny_run_overrides, tree_hashes
):
    base = train_tiny_run(tmp_path, "train.name=base")
    victim = train_tiny_run(tmp_path, "train.name=victim")
    before = tree_hashes(tmp_path)
    foreign = base / "checkpoints" / "last.pt"
    args = ["train", "--preset", "smoke-baseline", *tiny_run_overrides, f"train.out_dir={tmp_path}"]
    assert main([*args, "train.name=victim", "train.epochs=2", "--resume", str(foreign)]) == 1
    err = capsys.readouterr().err
    assert f"cannot resume into {victim} from {foreign}" in err and "nothing was changed" in err
    assert tree_hashes(tmp_path) == before

    # into a new folder: a start from that checkpoint, which the run records
    assert main([*args, "train.name=fresh", "train.epochs=2", "--resume", str(foreign)]) == 0
    fresh = tmp_path / "fresh"
    first = json.loads((fresh / "metrics.jsonl").read_text().splitlines()[0])
    assert first == {"type": "resumed", "from": str(foreign), "epoch": 1, "step": 2}
    assert json.loads((fresh / "config.json").read_text())["train"]["resume"] == str(foreign)
    assert load_checkpoint(fresh / "checkpoints" / "last.pt")["epoch"] == 2
    # its own checkpoint, by path: an ordinary resume
    own = victim / "checkpoints" / "last.pt"
    assert main([*args, "train.name=victim", "train.epochs=2", "--resume", str(own)]) == 0
    assert load_checkpoint(own)["epoch"] == 2
    assert tree_hashes(base) == {k[5:]: v for k, v in before.items() if k.startswith("base/")}


def test_a_resume_applies_the_settings_it_may_change_and_refuses_the_others(
    tmp_path, capsys, tiny_run_overrides, tree_hashes
):
    args = ["train", "--preset", "smoke-baseline", *tiny_run_overrides]
    args += [f"train.out_dir={tmp_path}", "train.name=X", "optim.milestones=1"]
    assert main([*args, "optim.lr=0.05"]) == 0
    run = tmp_path / "X"
    before = tree_hashes(tmp_path)
    resume = [*args, "train.epochs=2", "--resume", "auto"]
    assert main([*resume, "optim.lr=0.05", "data.batch_size=2", "train.seed=7"]) == 1
    err = capsys.readouterr().err
    assert "data.batch_size 4 -> 2" in err and "train.seed 1 -> 7" in err, err
    assert "cannot change mid-run" in err and "optim.lr" not in err
    assert tree_hashes(tmp_path) == before

    assert main([*resume, "optim.lr=0.5"]) == 0
    out = capsys.readouterr().out
    assert "resume: optim.lr changed from 0.05 to 0.5" in out
    assert "resume: train.epochs changed from 1 to 2" in out
    epochs = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    epochs = [r for r in epochs if r["type"] == "epoch"]
    # epoch records hold the rate after the epoch's schedule step (one milestone: x 0.1):
    # epoch 2 trained at the new rate on the schedule, 0.5 x 0.1, not the restored 0.005
    assert [r["lr/student"] for r in epochs] == [pytest.approx(0.005), pytest.approx(0.05)]
    state = load_checkpoint(run / "checkpoints" / "last.pt")
    assert state["optimizer"]["param_groups"][0]["lr"] == pytest.approx(0.05)
    assert state["scheduler"]["base_lrs"] == [0.5]
    stored = json.loads((run / "config.json").read_text())
    assert stored["optim"]["lr"] == state["config"]["optim"]["lr"] == 0.5


def test_ctrl_c_ends_a_training_with_one_line_and_exit_130(tmp_path, tiny_run_overrides):
    import signal

    args = [*tiny_run_overrides, f"train.out_dir={tmp_path}", "train.name=i", "train.epochs=500"]
    proc = _ccl("train", "--preset", "smoke-baseline", *args)
    lines = []
    for line in proc.stdout:
        lines.append(line)
        if line.startswith("epoch 1/"):
            break
    proc.send_signal(signal.SIGINT)
    rest = proc.communicate(timeout=120)[0]
    assert proc.returncode == 130, rest
    assert "Traceback" not in rest and "KeyboardInterrupt" not in rest, rest
    last = rest.strip().splitlines()[-1]
    assert last.startswith("ccl train: interrupted") and "--resume auto" in last, rest
    assert not (tmp_path / "i" / LOCK_FILE).exists()  # released on the way out
    assert load_checkpoint(tmp_path / "i" / "checkpoints" / "last.pt")["epoch"] >= 1


@pytest.mark.parametrize(
    "override, key",
    [
        ("optim.lr=inf", "optim.lr"),
        ("optim.head_lr=inf", "optim.head_lr"),
        ("objective.audio_temperature=inf", "objective.audio_temperature"),
        ("objective.image_temperature=nan", "objective.image_temperature"),
        ("data.mean=nan,0.4,0.4", "data.mean"),
        ("data.std=0.2,inf,0.2", "data.std"),
        ("student.arch=r9d", "student.arch"),
        ("image_teacher.arch=vgg", "image_teacher.arch"),
        ("train.device=tpu9", "train.device"),
    ],
)
def test_every_value_is_validated_before_any_folder_is_made(
    tmp_path, capsys, tiny_run_overrides, override, key
):
    args = ["train", "--preset", "smoke-baseline", *tiny_run_overrides]
    assert main([*args, f"train.out_dir={tmp_path / 'runs'}", override]) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and f"invalid config: {key} must be" in err, err
    assert list(tmp_path.iterdir()) == []
