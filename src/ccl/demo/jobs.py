"""Jobs of the demo side by side: one pool of worker processes for every driver.

A demo's methods, a comparison's or tuning's trainings and several seeds can run at once,
each in its own process (started fresh: safe with CUDA and with torch's threads) with its
share of the CPU threads and its output in its own log file. :func:`run_jobs` is that pool;
one job at a time runs in this process instead, its output on the terminal. The results do
not depend on how many jobs run at once, only their output interleaves.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import TypeVar

import torch

from ccl.workers import die_with_parent

S = TypeVar("S")
R = TypeVar("R")


def threads_per_job(jobs: int) -> int | None:
    """CPU threads for each of ``jobs`` worker processes sharing this machine (None: one
    job, torch's own default)."""
    return max(1, (os.cpu_count() or 1) // jobs) if jobs > 1 else None


@contextlib.contextmanager
def worker_setup(threads: int | None, log: Path | None = None) -> Iterator[None]:
    """The set-up of a worker process of the demo: with ``threads`` (None: not a worker,
    nothing changes), torch uses that many threads and, with ``log``, the output goes to
    that file (appended) instead of the terminal."""
    if not threads:
        yield
        return
    torch.set_num_threads(threads)
    if log is None:
        yield
        return
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "a") as f, contextlib.redirect_stdout(f), contextlib.redirect_stderr(f):
        yield


def process_pool(workers: int) -> ProcessPoolExecutor:
    """Worker processes started fresh (spawn): safe with CUDA and with torch's threads.
    They die with this process (:func:`~ccl.workers.die_with_parent`): a demo killed with
    SIGKILL or SIGTERM leaves no worker training on as an orphan."""
    return ProcessPoolExecutor(
        workers,
        mp_context=multiprocessing.get_context("spawn"),
        initializer=die_with_parent,
        initargs=(os.getpid(),),
    )


def run_jobs(
    fn: Callable[[S], R],
    specs: Sequence[S],
    jobs: int,
    *,
    logs: Sequence[Path | None] | None = None,
    share_threads: bool = True,
) -> list[R]:
    """``fn(spec)`` for every spec, the results in the order of ``specs``. ``jobs`` 1: one
    after another in this process. More: ``jobs`` worker processes at once, each with
    :func:`threads_per_job` CPU threads and its output appended to ``logs[i]`` (None: the
    terminal); with ``share_threads`` False the workers keep torch's default threads and the
    terminal. ``fn`` must be a module-level function (the workers import it by name)."""
    specs = list(specs)
    if jobs <= 1:
        return [fn(spec) for spec in specs]
    threads = threads_per_job(jobs) if share_threads else None
    where = list(logs) if logs is not None else [None] * len(specs)
    work = [(fn, spec, threads, log) for spec, log in zip(specs, where, strict=True)]
    with process_pool(jobs) as pool:
        return list(pool.map(_in_worker, work))


def _in_worker(job: tuple[Callable[[S], R], S, int | None, Path | None]) -> R:
    """The body of a worker process: ``fn(spec)`` with its threads and log."""
    fn, spec, threads, log = job
    with worker_setup(threads, log):
        return fn(spec)
