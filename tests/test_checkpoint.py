"""Checkpoint files: one safe loader for every weights file, and one save/restore of the
training state that keeps the checkpoint format resumable."""

import math
import random

import numpy as np
import pytest
import torch
from torch import nn

from ccl.checkpoint import (
    CheckpointError,
    Progress,
    TrainingState,
    WeightsError,
    load_checkpoint,
    load_weights,
    rng_state,
    save_checkpoint,
)
from ccl.models.panns import read_state_dict
from ccl.models.small_audio import load_small_audio_teacher
from ccl.models.teachers import load_torchvision_weights

# The keys the training loop wrote before the state had one home; checkpoints written then
# must keep resuming, and new ones must keep this layout.
OLD_KEYS = {
    "format",
    "epoch",
    "batch_in_epoch",
    "step",
    "student",
    "heads",
    "optimizer",
    "scheduler",
    "scaler",
    "rng",
    "best_top1",
    "best",
    "epoch_sums",
    "epoch_counts",
    "config",
    "classes",
}


def _bad_files(tmp_path):
    real = tmp_path / "real.pt"
    torch.save({"w": torch.zeros(1000)}, real)
    truncated = tmp_path / "truncated.pt"
    truncated.write_bytes(real.read_bytes()[:300])
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(b"this is not a checkpoint at all\n" * 4)
    empty = tmp_path / "empty.pt"
    empty.write_bytes(b"")

    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))

    pickled = tmp_path / "pickled.pt"
    torch.save({"student": Evil()}, pickled)
    return [truncated, garbage, empty, pickled]


def test_load_weights_names_the_file_it_cannot_read(tmp_path):
    for bad in _bad_files(tmp_path):
        with pytest.raises(WeightsError) as err:
            load_weights(bad, what="image teacher weights")
        message = str(err.value)
        assert message.startswith(f"cannot read image teacher weights {bad}: "), message
        assert "\n" not in message  # one line, not torch's multi-line explanation


def test_load_weights_missing_file_names_it_with_the_hint(tmp_path):
    missing = tmp_path / "nope.pth"
    with pytest.raises(FileNotFoundError, match=f"^PANNs checkpoint not found: {missing}. Get"):
        load_weights(missing, what="PANNs checkpoint", hint=". Get it from zenodo")


def test_load_weights_reads_on_the_cpu(tmp_path):
    path = tmp_path / "w.pt"
    torch.save({"a": torch.arange(3)}, path)
    state = load_weights(path)
    assert state["a"].device.type == "cpu" and state["a"].tolist() == [0, 1, 2]


@pytest.mark.parametrize(
    "loader, error",
    [
        (load_checkpoint, CheckpointError),
        (read_state_dict, ValueError),
        (lambda p: load_torchvision_weights(p, "resnet18"), ValueError),
        (load_small_audio_teacher, ValueError),
    ],
    ids=["checkpoint", "panns", "image-teacher", "audio-teacher"],
)
def test_every_weights_loader_names_an_unreadable_file(tmp_path, loader, error):
    for bad in _bad_files(tmp_path):
        with pytest.raises(error) as err:
            loader(bad)
        assert str(bad) in str(err.value) and "\n" not in str(err.value)
    with pytest.raises((FileNotFoundError, CheckpointError), match="not found"):
        loader(tmp_path / "missing.pt")


def _training_state(seed):
    torch.manual_seed(seed)
    student = nn.Linear(4, 3)
    heads = nn.ModuleDict({"audio": nn.Linear(3, 2)})
    optimizer = torch.optim.SGD(
        [{"params": student.parameters()}, {"params": heads.parameters(), "lr": 0.01}],
        lr=0.1,
        momentum=0.9,
    )
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, [lambda e: 0.5**e] * 2)
    scaler = torch.amp.GradScaler("cpu", enabled=False)
    return TrainingState(student, heads, optimizer, scheduler, scaler)


def _train_a_little(state, steps):
    for _ in range(steps):
        x = torch.randn(5, 4)
        loss = state.heads["audio"](state.student(x)).pow(2).mean()
        state.optimizer.zero_grad()
        loss.backward()
        state.optimizer.step()
        state.scheduler.step()


def _assert_same_tree(a, b):
    if isinstance(a, dict):
        assert a.keys() == b.keys()
        for k in a:
            _assert_same_tree(a[k], b[k])
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b)
        for x, y in zip(a, b):
            _assert_same_tree(x, y)
    elif torch.is_tensor(a):
        assert torch.equal(a, b)
    else:
        assert a == b


def test_training_state_round_trip(tmp_path):
    saved = _training_state(0)
    _train_a_little(saved, 3)
    progress = Progress(1, 2, 7, 0.25, {"top1": 0.25, "epoch": 1}, {"ce": 3.0}, {"ce": 6})
    path = tmp_path / "last.pt"
    saved.save(path, progress, config={"train": {"seed": 0}}, classes=["a", "b", "c"])
    after_save = (torch.rand(3), np.random.rand(3), random.random())
    state = load_checkpoint(path)
    assert set(state) == OLD_KEYS and state["format"] == "ccl-checkpoint-v1"
    assert state["classes"] == ["a", "b", "c"] and state["config"] == {"train": {"seed": 0}}

    restored = _training_state(1)  # other initial weights
    assert restored.restore(state, source=path) == progress
    # the generators continue where the saved run left them
    assert torch.equal(torch.rand(3), after_save[0])
    np.testing.assert_array_equal(np.random.rand(3), after_save[1])
    assert random.random() == after_save[2]
    for name in ("student", "heads", "optimizer", "scheduler", "scaler"):
        _assert_same_tree(getattr(saved, name).state_dict(), getattr(restored, name).state_dict())
    assert restored.optimizer.state_dict()["state"]  # momentum buffers came back
    assert [g["lr"] for g in restored.optimizer.param_groups] == [
        g["lr"] for g in saved.optimizer.param_groups
    ]


def test_checkpoint_in_the_old_layout_resumes(tmp_path):
    """A checkpoint as the loop wrote it before (a literal dict), and an older one without
    the best-metric and epoch-mean entries, both restore; the missing ones get defaults."""
    old = _training_state(0)
    _train_a_little(old, 2)
    literal = {
        "format": "ccl-checkpoint-v1",
        "epoch": 3,
        "batch_in_epoch": 0,
        "step": 12,
        "student": old.student.state_dict(),
        "heads": old.heads.state_dict(),
        "optimizer": old.optimizer.state_dict(),
        "scheduler": old.scheduler.state_dict(),
        "scaler": old.scaler.state_dict(),
        "rng": rng_state(),
        "best_top1": 0.5,
        "best": {"top1": 0.5, "epoch": 2},
        "epoch_sums": {},
        "epoch_counts": {},
        "config": {},
        "classes": ["a", "b", "c"],
    }
    assert set(literal) == OLD_KEYS
    save_checkpoint(literal, tmp_path / "old.pt")
    progress = _training_state(1).restore(load_checkpoint(tmp_path / "old.pt"))
    assert progress == Progress(3, 0, 12, 0.5, {"top1": 0.5, "epoch": 2})

    for key in ("best_top1", "best", "epoch_sums", "epoch_counts"):
        del literal[key]
    save_checkpoint(literal, tmp_path / "older.pt")
    fresh = _training_state(1)
    progress = fresh.restore(load_checkpoint(tmp_path / "older.pt"))
    assert progress == Progress(3, 0, 12, -math.inf, None, {}, {})
    _assert_same_tree(fresh.optimizer.state_dict(), old.optimizer.state_dict())


def test_checkpoint_without_training_state_is_refused_by_name(tmp_path):
    path = tmp_path / "weights_only.pt"
    save_checkpoint({"student": nn.Linear(4, 3).state_dict(), "epoch": 1}, path)
    with pytest.raises(CheckpointError, match=f"cannot resume from {path}: it has no heads"):
        _training_state(0).restore(load_checkpoint(path), source=path)
