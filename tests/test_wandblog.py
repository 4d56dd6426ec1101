"""``train.wandb=true``: every scalar of ``metrics.jsonl`` and the config in an offline W&B
run, same names as TensorBoard's; a resumed run continues the same W&B run. Read back from
the files W&B wrote (``WANDB_MODE=offline``: nothing reaches a network)."""

import json
import os
import shutil
import socket
import struct
import sys

import pytest
import torch.multiprocessing as mp
from run_metrics import metrics_series
from test_engine import TINY  # the same seconds-fast smoke config

from ccl.cli import main
from ccl.config import apply_overrides, preset
from ccl.engine import train
from ccl.wandblog import RUN_ID_FILE

wandb_pb2 = pytest.importorskip("wandb.proto.wandb_internal_pb2")

BLOCK = 32768  # the .wandb file is a LevelDB-style log of 32 KiB blocks
RECORD_HEADER = struct.Struct("<IHB")  # checksum, length, type (1 full, 2 first, 3/4 rest)


def _records(path):
    """The protobuf ``Record`` s of an offline run's ``run-<id>.wandb`` file, in order."""
    data = path.read_bytes()
    assert data[:4] == b":W&B"
    pos, parts = 7, b""
    while pos + RECORD_HEADER.size <= len(data):
        left = BLOCK - pos % BLOCK
        _, length, kind = RECORD_HEADER.unpack_from(data, pos)
        if left < RECORD_HEADER.size or kind == 0:  # the block's zero padding
            pos += left
            continue
        chunk = data[pos + RECORD_HEADER.size : pos + RECORD_HEADER.size + length]
        pos += RECORD_HEADER.size + length
        parts = chunk if kind in (1, 2) else parts + chunk
        if kind in (1, 4):
            record = wandb_pb2.Record()
            record.ParseFromString(parts)
            yield record


def _offline_runs(wandb_dir):
    """Each offline run W&B wrote under ``wandb_dir``, oldest first, as (run id, config,
    {name: [(step, value), ...]}) with W&B's own ``_step``, ``_runtime``... left out."""
    runs = []
    for folder in sorted((wandb_dir / "wandb").glob("offline-run-*")):
        run_id, config, history = None, {}, {}
        for record in _records(next(folder.glob("run-*.wandb"))):
            kind = record.WhichOneof("record_type")
            if kind == "run":
                run_id = record.run.run_id
                config.update({c.key: json.loads(c.value_json) for c in record.run.config.update})
            elif kind == "history":
                step = record.history.step.num
                for item in record.history.item:
                    name = item.key or "/".join(item.nested_key)
                    if not name.startswith("_"):
                        history.setdefault(name, []).append((step, json.loads(item.value_json)))
        runs.append((run_id, config, history))
    return runs


@pytest.fixture
def offline_wandb(tmp_path, monkeypatch):
    """W&B in offline mode, without error reports (they would reach a network), writing
    runs under ``tmp_path/wandb_files`` (returned) and its cache and settings beside."""
    folder = tmp_path / "wandb_files"
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_ERROR_REPORTING", "false")
    monkeypatch.setenv("WANDB_DIR", str(folder))
    for name in ("CACHE", "CONFIG", "DATA"):
        monkeypatch.setenv(f"WANDB_{name}_DIR", str(tmp_path / f"wandb_{name.lower()}"))
    monkeypatch.setenv("WANDB_SILENT", "true")
    monkeypatch.delenv("WANDB_PROJECT", raising=False)
    yield folder
    import wandb

    wandb.teardown()  # W&B's process-wide state read this test's environment


def test_wandb_holds_every_metrics_scalar_and_the_config(tmp_path, offline_wandb):
    cfg = apply_overrides(
        preset("smoke-ccl-ai"),
        [*TINY, f"train.out_dir={tmp_path}", "train.epochs=1", "train.wandb=true"],
    )
    run_dir = train(cfg).run_dir
    [(run_id, config, history)] = _offline_runs(offline_wandb)
    assert run_id == (run_dir / RUN_ID_FILE).read_text().strip()
    assert config["train"]["name"] == "smoke-ccl-ai" and config["train"]["wandb"] is True
    assert config["objective"]["teachers"] == list(cfg.objective.teachers)
    logged = metrics_series(run_dir)
    for name in ("train/ce", "val/top1", "lr/student", "lr/heads", "ce", "train/audio/jsd"):
        assert name in history
    assert set(history) == set(logged)
    for name, points in logged.items():
        # one W&B row per step: a name an epoch record shares with its last step record
        # (clips_per_s, lr/...) holds the epoch record's value, the one logged last
        last = dict(points)
        assert [s for s, _ in history[name]] == sorted(last), name
        assert [v for _, v in history[name]] == pytest.approx(list(last.values()), rel=1e-6)
    assert any(len(points) > len(dict(points)) for points in logged.values())  # such names


def test_resumed_run_continues_the_same_wandb_run(tmp_path, offline_wandb):
    """A run killed after epoch 2 resumes from epoch 1's checkpoint into the W&B run it
    started, logging from the checkpoint's step on."""
    args = [*TINY, f"train.out_dir={tmp_path}", "train.wandb=true", "train.save_every=1"]
    cfg = apply_overrides(preset("smoke-baseline"), [*args, "train.epochs=2"])
    run_dir = train(cfg).run_dir
    ckpt = run_dir / "checkpoints"
    shutil.copy(ckpt / "epoch_0001.pt", ckpt / "last.pt")  # as if killed before saving epoch 2
    train(apply_overrides(cfg, ["train.resume=auto"]))
    (first_id, _, first), (resumed_id, _, resumed) = _offline_runs(offline_wandb)
    assert first_id == resumed_id == (run_dir / RUN_ID_FILE).read_text().strip()
    assert [s for s, _ in first["ce"]] == list(range(1, 9))
    assert [s for s, _ in resumed["ce"]] == [5, 6, 7, 8]
    assert [s for s, _ in resumed["val/top1"]] == [8]


def test_a_new_run_gets_a_new_wandb_run(tmp_path, offline_wandb):
    for name in ("a", "b"):
        args = [*TINY, f"train.out_dir={tmp_path}", f"train.name={name}", "train.wandb=true"]
        train(apply_overrides(preset("smoke-baseline"), [*args, "train.epochs=1"]))
    ids = [run_id for run_id, _, _ in _offline_runs(offline_wandb)]
    assert sorted(ids) == sorted((tmp_path / n / RUN_ID_FILE).read_text().strip() for n in "ab")
    assert len(set(ids)) == 2


def _ddp_worker(rank, world, port, overrides):
    os.environ.update(
        MASTER_ADDR="127.0.0.1",
        MASTER_PORT=str(port),
        RANK=str(rank),
        LOCAL_RANK=str(rank),
        WORLD_SIZE=str(world),
    )
    import torch
    import torch.distributed as dist

    torch.set_num_threads(1)
    try:
        train(apply_overrides(preset("smoke-baseline"), overrides))
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()


def test_only_rank_0_logs_under_ddp(tmp_path, offline_wandb):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    args = [*TINY, f"train.out_dir={tmp_path}", "train.epochs=1", "train.wandb=true"]
    mp.spawn(_ddp_worker, args=(2, port, [*args, "train.device=cpu"]), nprocs=2)
    [(run_id, _, history)] = _offline_runs(offline_wandb)  # one W&B run, rank 0's
    run_dir = tmp_path / "smoke-baseline"
    assert run_id == (run_dir / RUN_ID_FILE).read_text().strip()
    assert set(history) == set(metrics_series(run_dir))


def test_missing_wandb_says_how_to_install(tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "wandb", None)  # import wandb fails
    args = [*TINY, f"train.out_dir={tmp_path}", "train.epochs=1", "train.wandb=true"]
    assert main(["train", "--preset", "smoke-baseline", *args]) == 1
    err = capsys.readouterr().err
    assert "pip install 'ccl[wandb]'" in err and "train.wandb" in err
    assert len(err.strip().splitlines()) == 1
    assert not any(tmp_path.iterdir())  # nothing written before the check
