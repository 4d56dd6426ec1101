"""Distributed helpers: torchrun detection, the global contrastive batch, exact gathering.

One code path serves one process and many: every helper is the identity when the process
group is not initialised.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist
import torch.distributed.nn.functional as dist_fn


@dataclass(frozen=True)
class DistInfo:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1


def launched_as_main() -> bool:
    """Whether this process is rank 0 of a torchrun launch, or a plain launch: read from
    the environment, so it answers before the process group exists."""
    return int(os.environ.get("RANK", "0")) == 0


def init_from_env(device_type: str) -> DistInfo:
    """Join the process group torchrun describes in the environment (gloo on CPU, NCCL on
    CUDA); a plain ``python`` launch is one process and initialises nothing."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return DistInfo()
    rank, local_rank = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    if not dist.is_initialized():
        backend = "nccl" if device_type == "cuda" else "gloo"
        if device_type == "cuda":
            torch.cuda.set_device(local_rank)
        dist.init_process_group(backend=backend)
    return DistInfo(rank=rank, world_size=world, local_rank=local_rank)


def info() -> DistInfo:
    if not (dist.is_available() and dist.is_initialized()):
        return DistInfo()
    return DistInfo(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", "0")))


def gather_with_grad(tensor: torch.Tensor) -> torch.Tensor:
    """Concatenate every rank's ``tensor`` along dim 0, rank order, keeping the autograd graph
    (the backward sends each rank the gradient of its own slice, summed over ranks).
    Every rank must pass the same shape."""
    if not info().enabled:
        return tensor
    return torch.cat(dist_fn.all_gather(tensor), dim=0)


def gather_no_grad(tensor: torch.Tensor) -> torch.Tensor:
    """Concatenate every rank's ``tensor`` along dim 0 (no gradient; shapes may differ in
    dim 0 between ranks)."""
    if not info().enabled:
        return tensor
    world = dist.get_world_size()
    sizes = [torch.zeros(1, dtype=torch.long, device=tensor.device) for _ in range(world)]
    dist.all_gather(sizes, torch.tensor([tensor.shape[0]], device=tensor.device))
    longest = int(max(s.item() for s in sizes))
    padded = tensor.new_zeros((longest, *tensor.shape[1:]))
    padded[: tensor.shape[0]] = tensor
    parts = [torch.empty_like(padded) for _ in range(world)]
    dist.all_gather(parts, padded)
    return torch.cat([p[: int(s.item())] for p, s in zip(parts, sizes)], dim=0)


def gather_by_index(values: torch.Tensor, indices: torch.Tensor, total: int) -> torch.Tensor:
    """Place every rank's rows at their dataset ``indices`` in a (total, ...) tensor. Rows
    repeated by a sampler's padding land on the same slot, so nothing is counted twice.
    Raises if any slot stays empty (a sample no rank evaluated)."""
    all_values, all_indices = gather_no_grad(values), gather_no_grad(indices)
    out = values.new_zeros((total, *values.shape[1:]))
    seen = torch.zeros(total, dtype=torch.bool, device=values.device)
    out[all_indices] = all_values
    seen[all_indices] = True
    if not bool(seen.all()):
        missing = (~seen).nonzero().flatten()[:10].tolist()
        raise RuntimeError(f"{int((~seen).sum())} of {total} samples were not evaluated: {missing}")
    return out


def all_reduce_sum(tensor: torch.Tensor) -> torch.Tensor:
    if info().enabled:
        dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return tensor
