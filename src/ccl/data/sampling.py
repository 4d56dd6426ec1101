"""Deterministic, shardable, resumable sample order, and a guard against unreadable samples.

The training order of an epoch depends only on ``(seed, epoch)``. Global batch ``g`` is
``order[g*B:(g+1)*B]``; rank ``r`` of ``W`` takes its ``B/W`` slice of every global batch, so
one process with batch B and W processes with B/W each see the same global batches. A run
resumed mid-epoch starts at a batch offset of the same order.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from typing import Any

import torch
from torch.utils.data import Dataset, Sampler


class EpochSampler(Sampler[int]):
    def __init__(
        self,
        num_samples: int,
        *,
        global_batch: int,
        shuffle: bool,
        seed: int,
        epoch: int = 0,
        rank: int = 0,
        world_size: int = 1,
        start_batch: int = 0,
        drop_last: bool = True,
        keep_last: bool = False,
    ) -> None:
        if drop_last and global_batch % world_size:
            raise ValueError(
                f"the global batch ({global_batch}) must be divisible by the number of "
                f"processes ({world_size})"
            )
        if keep_last and world_size > 1:
            raise ValueError("keep_last (a last, partial training batch) needs one process")
        self.num_samples, self.global_batch = num_samples, global_batch
        self.shuffle, self.seed, self.epoch = shuffle, seed, epoch
        self.rank, self.world_size, self.start_batch = rank, world_size, start_batch
        self.drop_last = drop_last
        # training order with the last, partial batch kept (the reference's protocol)
        self.keep_last = keep_last
        self.local_batch = global_batch // world_size

    def _indices(self) -> list[int]:
        if self.shuffle:
            g = torch.Generator().manual_seed(self.seed * 100_003 + self.epoch)
            order = torch.randperm(self.num_samples, generator=g).tolist()
        else:
            order = list(range(self.num_samples))
        if not self.drop_last:
            # evaluation: a plain strided share; the gather by index makes it exact
            return order[self.rank :: self.world_size]
        n_batches = self._n_batches()
        if n_batches == 0:
            raise ValueError(
                f"{self.num_samples} training samples cannot fill one batch of {self.global_batch}"
            )
        out: list[int] = []
        for g_idx in range(self.start_batch, n_batches):
            base = g_idx * self.global_batch + self.rank * self.local_batch
            out.extend(order[base : base + self.local_batch])
        return out

    def __iter__(self) -> Iterator[int]:
        return iter(self._indices())

    def _n_batches(self) -> int:
        if self.keep_last:
            return -(-self.num_samples // self.global_batch)
        return self.num_samples // self.global_batch

    def __len__(self) -> int:
        if not self.drop_last:
            return len(range(self.rank, self.num_samples, self.world_size))
        if self.keep_last:
            return max(0, self.num_samples - self.start_batch * self.global_batch)
        return max(0, self.num_samples // self.global_batch - self.start_batch) * self.local_batch


class SkipUnreadable(Dataset):
    """Wraps a dataset whose samples can fail to load (a store that became unreadable).

    ``on_error="skip"``: the failing sample is replaced by the next readable one, a warning
    names the file once, and the sample's ``skipped`` field counts the replacements (the loop
    logs their sum), so batch shapes stay fixed, also under DDP. ``on_error="stop"``: the
    error propagates with the sample named.
    """

    def __init__(self, dataset: Dataset, on_error: str = "skip", max_tries: int = 16) -> None:
        if on_error not in ("skip", "stop"):
            raise ValueError(f"on_error must be 'skip' or 'stop', got {on_error!r}")
        self.dataset, self.on_error, self.max_tries = dataset, on_error, max_tries
        self._warned: set[str] = set()

    def __len__(self) -> int:
        return len(self.dataset)  # type: ignore[arg-type]

    def __getattr__(self, name: str) -> Any:
        if name == "dataset":  # not yet set (unpickling)
            raise AttributeError(name)
        return getattr(self.dataset, name)

    def __getitem__(self, index: int) -> dict[str, Any]:
        n = len(self)
        skipped = 0
        for attempt in range(self.max_tries):
            i = (index + attempt) % n
            try:
                sample = self.dataset[i]
            except (OSError, ValueError, RuntimeError, KeyError) as err:
                if self.on_error == "stop":
                    raise RuntimeError(f"cannot load training sample {i}: {err}") from err
                message = str(err)
                if message not in self._warned:
                    self._warned.add(message)
                    warnings.warn(f"skipping unreadable sample {i}: {message}", stacklevel=2)
                skipped += 1
                continue
            sample["skipped"] = skipped
            return sample
        raise RuntimeError(f"{self.max_tries} consecutive samples from {index} could not be read")
