"""Data loaders for the training loop: one per epoch, seeded like the epoch's sample order,
and a guard that turns a loader worker killed by the OS into one clear error."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

import torch
from torch.utils.data import DataLoader, Dataset

from ccl.data.sampling import EpochSampler


def epoch_loader(
    dataset: Dataset, sampler: EpochSampler, *, batch_size: int, workers: int, seed: int, epoch: int
) -> DataLoader:
    """A loader over ``sampler``'s share of ``dataset``. Batches are the sampler's local
    batch when it drops the last partial batch (training), else ``batch_size``. Worker seeds
    come from a generator seeded by (``seed``, ``epoch``), like the order itself."""
    generator = torch.Generator().manual_seed(seed * 100_003 + epoch)
    return DataLoader(
        dataset,
        batch_size=sampler.local_batch if sampler.drop_last else batch_size,
        sampler=sampler,
        num_workers=workers,
        pin_memory=torch.cuda.is_available(),
        generator=generator,
        drop_last=sampler.drop_last and not sampler.keep_last,
    )


def guard_workers(loader: Iterable) -> Iterator:
    """Iterate ``loader``; a loader worker killed by the OS surfaces as one clear
    RuntimeError instead of a traceback deep in the multiprocessing machinery. Errors the
    dataset raised inside a worker pass unchanged."""
    iterator = iter(loader)
    try:
        yield from iterator
    except (RuntimeError, ConnectionError, EOFError) as err:
        # torch reports a killed worker as a RuntimeError naming it; when the worker dies
        # while the main process is receiving a batch from it, the pipe breaks first
        # (ConnectionResetError / EOFError). Errors the dataset raised inside a worker are
        # re-raised by torch "in DataLoader worker process": those pass unchanged.
        message = str(err)
        died = "DataLoader worker" in message and "in DataLoader worker process" not in message
        if died or (
            isinstance(err, (ConnectionError, EOFError)) and "worker process" not in message
        ):
            _stop_workers(iterator)
            raise RuntimeError(
                f"a data loader worker died ({type(err).__name__}: {err}). Rerun with "
                "data.workers=0 to see the error in the main process, or check memory (each "
                "worker holds open stores)."
            ) from err
        raise


def _stop_workers(iterator: Any) -> None:
    """Stop a failed loader's workers now. Until its workers are stopped, torch's SIGCHLD
    handler raises again for the dead one whenever a signal arrives: under load, that came
    while the first error was being reported (seen on CI), replacing the clear message by
    a traceback. ``_shutdown_workers`` is torch's own (private) shutdown, which also
    unregisters the workers from that handler."""
    shutdown = getattr(iterator, "_shutdown_workers", None)
    if shutdown is None:  # workers=0: nothing to stop
        return
    try:
        shutdown()
    except RuntimeError:  # the handler firing during the shutdown (which still completes)
        pass
