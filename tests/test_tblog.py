"""``train.tensorboard=true``: every scalar of ``metrics.jsonl`` in TensorBoard, same names."""

import json
import shutil
import sys

import pytest
from run_metrics import metrics_series
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from test_engine import TINY  # the same seconds-fast smoke config

from ccl.cli import main
from ccl.config import apply_overrides, preset
from ccl.engine import train


def _scalars(run_dir):
    """{tag: [(step, value), ...]} read back with TensorBoard's own event reader."""
    acc = EventAccumulator(str(run_dir / "tensorboard"), size_guidance={"scalars": 0})
    acc.Reload()
    return {tag: [(e.step, e.value) for e in acc.Scalars(tag)] for tag in acc.Tags()["scalars"]}


def test_tensorboard_holds_every_metrics_scalar(tmp_path):
    cfg = apply_overrides(
        preset("smoke-ccl-ai"),
        [*TINY, f"train.out_dir={tmp_path}", "train.epochs=1", "train.tensorboard=true"],
    )
    run_dir = train(cfg).run_dir
    logged, board = metrics_series(run_dir), _scalars(run_dir)
    for name in ("train/ce", "val/top1", "lr/student", "lr/heads", "ce", "train/audio/jsd"):
        assert name in board
    assert set(board) == set(logged)
    for tag, points in logged.items():
        assert [s for s, _ in board[tag]] == [s for s, _ in points], tag
        assert [v for _, v in board[tag]] == pytest.approx([v for _, v in points], rel=1e-6)
    # a step record's wall-clock stamp is its events' walltime, not a curve of its own
    acc = EventAccumulator(str(run_dir / "tensorboard"), size_guidance={"scalars": 0})
    acc.Reload()
    stamps = [
        json.loads(line)["time"]
        for line in (run_dir / "metrics.jsonl").read_text().splitlines()
        if json.loads(line)["type"] == "step"
    ]
    assert "time" not in board and stamps == sorted(stamps)
    assert [e.wall_time for e in acc.Scalars("ce")] == pytest.approx(stamps, abs=1e-3)


def test_resumed_run_drops_the_events_it_replays(tmp_path):
    """A run killed after epoch 2 resumes from epoch 1's checkpoint: TensorBoard, like
    metrics.jsonl, holds each step once."""
    args = [*TINY, f"train.out_dir={tmp_path}", "train.tensorboard=true", "train.save_every=1"]
    cfg = apply_overrides(preset("smoke-baseline"), [*args, "train.epochs=2"])
    ckpt = train(cfg).run_dir / "checkpoints"
    shutil.copy(ckpt / "epoch_0001.pt", ckpt / "last.pt")  # as if killed before saving epoch 2
    run_dir = train(apply_overrides(cfg, ["train.resume=auto"])).run_dir
    logged, board = metrics_series(run_dir), _scalars(run_dir)
    assert [s for s, _ in board["ce"]] == [s for s, _ in logged["ce"]] == list(range(1, 9))
    assert [s for s, _ in board["val/top1"]] == [4, 8]


def test_missing_tensorboard_says_how_to_install(tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "tensorboard", None)  # import tensorboard fails
    args = [*TINY, f"train.out_dir={tmp_path}", "train.epochs=1", "train.tensorboard=true"]
    assert main(["train", "--preset", "smoke-baseline", *args]) == 1
    err = capsys.readouterr().err
    assert "pip install 'ccl[tb]'" in err and "train.tensorboard" in err
    assert len(err.strip().splitlines()) == 1
    assert not any(tmp_path.iterdir())  # nothing written before the check
