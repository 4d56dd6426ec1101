"""Two gloo processes train exactly like one process with the same global batch."""

import os
import random

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from ccl.config import apply_overrides, preset
from ccl.distributed import gather_by_index
from ccl.engine import TrainModule, build_optimizer, train_step
from ccl.models import build_model
from ccl.objectives import Batch, build_objective

GLOBAL_BATCH, STEPS, CLASSES = 8, 3, 4


def _global_batches():
    g = torch.Generator().manual_seed(7)
    batches = []
    for _ in range(STEPS):
        audio = torch.rand(GLOBAL_BATCH, 512, generator=g)
        available = torch.rand(GLOBAL_BATCH, generator=g) > 0.3
        batches.append(
            Batch(
                clip=torch.randn(GLOBAL_BATCH, 3, 4, 16, 16, generator=g),
                label=torch.randint(CLASSES, (GLOBAL_BATCH,), generator=g),
                audio=audio * available[:, None],
                audio_available=available,
            )
        )
    return batches


def _run(method, rank=0, world=1):
    """Three steps; returns the (rank-averaged) loss terms per step and the parameters."""
    cfg = apply_overrides(preset(f"smoke-{method}"), [])
    torch.manual_seed(0)
    random.seed(0)
    student = build_model(cfg.student, CLASSES)
    objective = build_objective(
        cfg.objective,
        cfg.image_teacher,
        cfg.data,
        num_classes=CLASSES,
        feature_dim=student.feature_dim,
        seed=cfg.train.seed,
    )
    optimizer, _ = build_optimizer(cfg, student, objective)
    module = TrainModule(student, objective)
    # Per-process BatchNorm statistics are DDP's documented behaviour (SyncBN is the CUDA
    # option); frozen BN makes the single-process run comparable.
    for m in student.modules():
        if isinstance(m, torch.nn.BatchNorm3d):
            m.eval()
    if world > 1:
        module = torch.nn.parallel.DistributedDataParallel(module)
    scaler = torch.amp.GradScaler("cpu", enabled=False)
    local = GLOBAL_BATCH // world
    history = []
    for batch in _global_batches():
        part = slice(rank * local, (rank + 1) * local)
        mine = Batch(
            batch.clip[part], batch.label[part], batch.audio[part], batch.audio_available[part]
        )
        terms, _ = train_step(module, mine, optimizer, scaler, "fp32")
        history.append(terms)
    params = {
        k: v.detach().clone()
        for k, v in [*student.named_parameters(), *objective.heads.named_parameters()]
    }
    return history, params


def _worker(rank, world, method, port, out):
    os.environ.update(
        MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE=str(world)
    )
    torch.set_num_threads(1)
    dist.init_process_group("gloo", rank=rank, world_size=world)
    try:
        history, params = _run(method, rank, world)
        torch.save({"history": history, "params": params}, f"{out}/rank{rank}.pt")
        # exact evaluation gathering: rank r holds samples r::2, one padded duplicate
        idx = torch.arange(rank, 5, world)
        if rank == 1:
            idx = torch.cat([idx, idx[:1]])
        gathered = gather_by_index(idx.float() * 10, idx, 5)
        torch.save(gathered, f"{out}/gather{rank}.pt")
    finally:
        dist.destroy_process_group()


def _free_port():
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.parametrize("method", ["baseline", "ccl-ai"])
def test_two_processes_match_one(method, tmp_path):
    single_history, single_params = _run(method)
    mp.spawn(_worker, args=(2, method, _free_port(), str(tmp_path)), nprocs=2, join=True)
    ranks = [torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in range(2)]
    for name, value in single_params.items():
        for r in ranks:
            torch.testing.assert_close(r["params"][name], value, rtol=1e-5, atol=1e-6, msg=name)
    for step, terms in enumerate(single_history):
        for key in [k for k in ("ce", "loss_v") if k in terms]:
            averaged = sum(r["history"][step][key] for r in ranks) / 2
            assert averaged == pytest.approx(terms[key], rel=1e-5), (step, key)
        for key in [k for k in terms if "/" in k]:  # global teacher terms: equal on every rank
            for r in ranks:
                assert r["history"][step][key] == pytest.approx(terms[key], rel=1e-5), (step, key)
    if method == "ccl-ai":
        assert "audio/contrast_vm" in single_history[0]
    for r in range(2):
        assert torch.load(tmp_path / f"gather{r}.pt").tolist() == [0.0, 10.0, 20.0, 30.0, 40.0]
