"""The one training loop: every method, on CPU or CUDA, from a typed ``Config``.

Data flows one way: datasets -> uint8 clips -> normalised on the device -> student ->
objective (which owns teachers and heads) -> one backward -> one optimizer step.
"""

from __future__ import annotations

import bisect
import json
import math
import time
from collections import defaultdict
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, Dataset
from tqdm import tqdm

from ccl import distributed, metrics
from ccl.atomic import write_text_atomic
from ccl.checkpoint import (
    Progress,
    TrainingState,
    check_classes,
    find_resume_checkpoint,
    load_checkpoint,
    remove_stale_temporaries,
)
from ccl.config import Config
from ccl.cpu_allocator import configure_cpu_allocator
from ccl.data.sampling import EpochSampler, SkipUnreadable
from ccl.errors import NonFiniteLossError
from ccl.models import R2Plus1D, StudentOutput, build_model
from ccl.objectives import Batch, Objective, ObjectiveOutput
from ccl.objectives.build import build_objective
from ccl.protocol import check_annotations, forward_in_splits
from ccl.protocol import resolve as resolve_protocol
from ccl.runs import move_aside, refuse_existing_run
from ccl.runtime import autocast_context, resolve_device, seed_everything, stats_tensor, to_batch
from ccl.tblog import TensorBoardLog, require_tensorboard

# ----------------------------------------------------------------------------- builders


def build_optimizer(
    cfg: Config, student: nn.Module, objective: Objective
) -> tuple[torch.optim.Optimizer, torch.optim.lr_scheduler.LambdaLR]:
    """SGD as the reference (or AdamW, ``optim.name``), one parameter group each for the
    student and the heads, each with its own schedule: the student's MultiStep, the heads'
    constant (reference)."""
    o = cfg.optim
    groups = [{"params": list(student.parameters()), "lr": o.lr, "name": "student"}]
    head_params = [p for p in objective.heads.parameters() if p.requires_grad]
    if head_params:
        groups.append({"params": head_params, "lr": o.head_lr or o.lr, "name": "heads"})
    optimizer: torch.optim.Optimizer
    if o.name == "adamw":
        optimizer = torch.optim.AdamW(groups, lr=o.lr, weight_decay=o.weight_decay)
    else:
        optimizer = torch.optim.SGD(
            groups,
            lr=o.lr,
            momentum=o.momentum,
            dampening=o.dampening,
            weight_decay=o.weight_decay,
            nesterov=o.nesterov,
        )
    milestones = sorted(o.milestones)

    def multistep(epoch: int) -> float:
        return o.gamma ** bisect.bisect_right(milestones, epoch)

    lambdas = [multistep] + (
        [multistep if o.schedule_heads else (lambda _e: 1.0)] if head_params else []
    )
    return optimizer, torch.optim.lr_scheduler.LambdaLR(optimizer, lambdas)


def build_datasets(cfg: Config) -> tuple[Dataset, Dataset, list[str]]:
    """(train, validation, class names) for ``cfg.data.source``."""
    d = cfg.data
    if d.source == "synthetic":
        from ccl.data.toy import ToyClipDataset

        common = dict(frames=d.clip_frames, size=d.size, audio_dim=d.audio_dim, seed=cfg.train.seed)
        train = ToyClipDataset(d.synthetic_train, d.synthetic_classes, split="train", **common)
        val = ToyClipDataset(d.synthetic_val, d.synthetic_classes, split="val", **common)
        return train, val, train.classes
    if d.annotations is None or d.frames_dir is None:
        raise ValueError("data.source=prepared needs data.annotations=FILE and data.frames_dir=DIR")
    if cfg.train.protocol == "reference":
        check_annotations(d.annotations, d.val_subset)
    from ccl.data.audio import load_audio_embeddings
    from ccl.data.datasets import ClipDataset

    audio = load_audio_embeddings(d.audio_dir) if d.audio_dir else None
    if "audio" in cfg.objective.teachers and audio is None:
        raise ValueError("the audio teacher needs data.audio_dir=DIR of per-video embeddings")
    common = dict(
        frames=d.clip_frames,
        size=d.size,
        stride=d.frame_stride,
        audio=audio,
        seed=cfg.train.seed,
        reduced_decode=d.reduced_decode,
    )
    train = ClipDataset(
        d.annotations, d.frames_dir, "training", "train", scale=tuple(d.crop_scale), **common
    )
    val = ClipDataset(
        d.annotations, d.frames_dir, d.val_subset, "val", val_clips=d.val_clips, **common
    )
    return train, val, list(train.classes)


# ----------------------------------------------------------------------------- evaluation


def _loader(dataset: Dataset, cfg: Config, sampler: EpochSampler, epoch: int) -> DataLoader:
    # Worker seeds come from a generator seeded by (seed, epoch), like the order itself.
    generator = torch.Generator().manual_seed(cfg.train.seed * 100_003 + epoch)
    return DataLoader(
        dataset,
        batch_size=sampler.local_batch if sampler.drop_last else cfg.data.batch_size,
        sampler=sampler,
        num_workers=cfg.data.workers,
        pin_memory=torch.cuda.is_available(),
        generator=generator,
        drop_last=sampler.drop_last and not sampler.keep_last,
    )


@torch.no_grad()
def evaluate_clips(
    student: nn.Module,
    loader: Iterable[dict[str, Any]],
    device: torch.device,
    mean: torch.Tensor,
    std: torch.Tensor,
    precision: str = "fp32",
    num_samples: int | None = None,
) -> dict[str, float]:
    """Clip loss and accuracy, and video-level accuracy from softmax averaged over each
    video's clips. Under DDP every rank evaluates its share and the results are gathered by
    sample index (``num_samples`` = the dataset's length), so no clip counts twice and none
    is dropped; every video must have at least one clip."""
    was_training = student.training
    student.eval()
    logits_all, labels_all, videos_all, index_all = [], [], [], []
    for raw in loader:
        batch = to_batch(raw, device, mean, std)
        with autocast_context(device, precision):
            out = student(batch.clip)
        logits_all.append(out.logits.float())
        labels_all.append(batch.label)
        videos_all.append(torch.as_tensor(raw.get("video", raw["index"])).to(device))
        index_all.append(torch.as_tensor(raw["index"]).to(device))
    student.train(was_training)
    logits, labels, videos, index = (
        torch.cat(x) for x in (logits_all, labels_all, videos_all, index_all)
    )
    if num_samples is not None:
        logits = distributed.gather_by_index(logits, index, num_samples)
        labels = distributed.gather_by_index(labels, index, num_samples)
        videos = distributed.gather_by_index(videos, index, num_samples)
    logits, labels, videos = logits.cpu(), labels.cpu(), videos.cpu()
    clip_acc = metrics.topk_accuracy(logits, labels, ks=(1, 5))
    n_videos = int(videos.max()) + 1
    video_scores = metrics.aggregate_windows(logits, videos, n_videos)
    video_labels = torch.zeros(n_videos, dtype=torch.long).scatter_(0, videos, labels)
    video_acc = metrics.topk_accuracy(video_scores, video_labels, ks=(1, 5))
    return {
        "loss": F.cross_entropy(logits, labels).item(),
        "clip_top1": clip_acc[1],
        "top1": video_acc[1],
        "top5": video_acc[5],
        "videos": n_videos,
    }


# ----------------------------------------------------------------------------- training


class TrainModule(nn.Module):
    """Student and objective as one module, so DDP synchronises every trainable parameter."""

    def __init__(self, student: R2Plus1D, objective: Objective, bn_splits: int = 1) -> None:
        super().__init__()
        self.student = student
        self.objective = objective
        self.bn_splits = bn_splits  # BatchNorm over parts of the batch (ccl.protocol)

    def forward(self, batch: Batch) -> tuple[StudentOutput, ObjectiveOutput]:
        student_out = forward_in_splits(self.student, batch.clip, self.bn_splits)
        return student_out, self.objective(student_out, batch)


def compile_step(
    module: nn.Module, *, backend: str = "inductor", fullgraph: bool = False
) -> nn.Module:
    """``torch.compile`` the whole forward of a :class:`TrainModule` (or its DDP wrapper):
    student, teachers and objective in one graph, so the objective's many small ops are
    fused instead of launched one by one (compiling the student alone left CCL-AI at 0.60x
    of the baseline's clips/s on a GPU, docs/PERFORMANCE.md). The CCL objective traces without
    graph breaks; an objective that does not is compiled in pieces (``fullgraph=False``).
    Tests use ``backend="aot_eager"``: the same capture and autograd graphs, no code generation."""
    return torch.compile(module, backend=backend, fullgraph=fullgraph)


def train_step(
    module: nn.Module,
    batch: Batch,
    optimizer: torch.optim.Optimizer,
    scaler: torch.amp.GradScaler,
    precision: str,
    grad_norms_of: list[nn.Parameter] | None = None,
) -> tuple[dict[str, float], StudentOutput]:
    """One optimisation step: forward, a finite-loss check, one backward, one step.
    ``grad_norms_of``: also log ``grad/<part>``, the L2 norm of the gradient of each part of
    the student's loss on these parameters (one extra backward pass per part)."""
    with autocast_context(batch.clip.device, precision):
        student_out, result = module(batch)
    if grad_norms_of is not None:
        result.terms.update(_grad_norms(result.student_terms, grad_norms_of))
    # One device-to-host copy for the loss and every logged term (a float() each would
    # synchronise with the GPU once per term)
    names = list(result.terms)
    values = torch.stack(
        [
            torch.as_tensor(v, device=result.loss.device).detach().float().reshape(())
            for v in (result.loss, *(result.terms[k] for k in names))
        ]
    ).tolist()
    loss_value, terms = values[0], dict(zip(names, values[1:]))
    if not math.isfinite(loss_value):
        raise NonFiniteLossError(", ".join(f"{k}={v:.4g}" for k, v in terms.items()))
    optimizer.zero_grad(set_to_none=True)
    scaler.scale(result.loss).backward()
    scaler.step(optimizer)
    scaler.update()
    return terms, student_out


def _grad_norms(
    parts: dict[str, torch.Tensor], params: list[nn.Parameter]
) -> dict[str, torch.Tensor]:
    """``grad/<name>``: the L2 norm of d part / d params, for each part of a loss."""
    norms = {}
    for name, part in parts.items():
        if not part.requires_grad:
            norms[f"grad/{name}"] = part.new_zeros(())
            continue
        grads = torch.autograd.grad(part, params, retain_graph=True, allow_unused=True)
        squares = [g.float().pow(2).sum() for g in grads if g is not None]
        norms[f"grad/{name}"] = torch.stack(squares).sum().sqrt() if squares else part.new_zeros(())
    return norms


class JsonlLog:
    """Append-only JSON-lines metrics log (one object per step or epoch); main rank only.
    ``tensorboard``: a :class:`~ccl.tblog.TensorBoardLog` given every record too."""

    def __init__(
        self, path: Path, enabled: bool = True, tensorboard: TensorBoardLog | None = None
    ) -> None:
        self.path, self.enabled, self.tensorboard = path, enabled, tensorboard

    def write(self, record: dict[str, Any]) -> None:
        if self.enabled:
            try:
                with self.path.open("a") as f:
                    f.write(json.dumps(record) + "\n")
            except OSError as err:  # a write error (full disk) would not name the file
                raise OSError(err.errno, err.strerror, str(self.path)) from err
            if self.tensorboard is not None:
                self.tensorboard.write(record)

    def close(self) -> None:
        if self.tensorboard is not None:
            self.tensorboard.close()


@dataclass
class RunResult:
    run_dir: Path
    best: dict[str, float] | None
    last: dict[str, float] | None


def _reset_log_after(path: Path, epoch: int, step: int) -> None:
    """On resume, drop log records written after the checkpoint (a killed run may have
    logged steps it never saved), so the log reads as one uninterrupted run."""
    if not path.exists():
        return
    kept = []
    for line in path.read_text().splitlines():
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            continue  # a line cut by the kill
        if record.get("step", 0) <= step and (record["type"] == "step" or record["epoch"] <= epoch):
            kept.append(line)
    # atomically: a crash while rewriting must not cost the run its whole log
    write_text_atomic(path, "".join(k + "\n" for k in kept))


def train(cfg: Config, *, overwrite: bool = False) -> RunResult:
    """Train ``cfg`` end to end on one process or under torchrun: resume if asked, validate,
    checkpoint, log. Returns the run folder and the best and last validation metrics.

    A run folder that already holds a run is only continued (``train.resume``) or, with
    ``overwrite``, moved aside to ``<name>.old-N`` first; otherwise this refuses before
    writing anything (:class:`ccl.runs.RunExistsError`)."""
    cfg.validate()
    run_dir = Path(cfg.train.out_dir) / cfg.train.name
    ckpt_dir = run_dir / "checkpoints"
    if overwrite and cfg.train.resume is not None:
        raise ValueError("--overwrite starts the run over; it cannot be combined with --resume")
    # The checks that can refuse read only, on every rank, before anything is written.
    if cfg.train.resume is None and not overwrite:
        refuse_existing_run(run_dir)
    resume_path = _resume_path(cfg, run_dir)
    state = load_checkpoint(resume_path) if resume_path is not None else None
    device = resolve_device(cfg.train.device)
    if device.type == "cpu":
        configure_cpu_allocator()  # fewer page faults; CCL_SYSTEM_MALLOC=1 opts out
    dist_info = distributed.init_from_env(device.type)
    if dist_info.enabled and device.type == "cuda":
        device = torch.device("cuda", dist_info.local_rank)
    main = dist_info.is_main
    protocol = resolve_protocol(cfg.train)
    if protocol.keep_last_batch and dist_info.enabled:
        raise ValueError(
            "train.protocol=reference runs in one process, as the reference did (DataParallel; "
            "its batches are split for BatchNorm by train.bn_splits): start it without torchrun"
        )
    if cfg.train.tensorboard:
        require_tensorboard()  # before anything is written, on every rank
    if main:
        moved = move_aside(run_dir) if overwrite else None
        if moved is not None:
            print(f"--overwrite: the previous run in {run_dir} was moved to {moved}")
        ckpt_dir.mkdir(parents=True, exist_ok=True)
        for tmp in remove_stale_temporaries(ckpt_dir):
            print(f"removed a temporary file left by an interrupted save: {tmp}")
    seed_everything(cfg.train.seed)
    torch.use_deterministic_algorithms(cfg.train.deterministic)
    train_set, val_set, classes = build_datasets(cfg)
    if state is not None and state.get("classes") is not None:
        check_classes(
            state["classes"],
            classes,
            saved_from=f"checkpoint {resume_path}",
            current_from=cfg.data.annotations or "the synthetic data",
        )
    train_set = SkipUnreadable(train_set, cfg.data.on_error)
    num_classes = len(classes)

    student = build_model(cfg, num_classes)
    if cfg.train.sync_bn and dist_info.enabled:
        student = nn.SyncBatchNorm.convert_sync_batchnorm(student)
    student = student.to(device)
    if cfg.train.channels_last:
        student = student.to(memory_format=torch.channels_last_3d)
    objective = build_objective(cfg, num_classes, student.feature_dim, len(train_set)).to(device)
    if cfg.train.channels_last:
        objective = objective.to(memory_format=torch.channels_last)  # the image teacher's convs
    optimizer, scheduler = build_optimizer(cfg, student, objective)
    scaler = torch.amp.GradScaler(device.type, enabled=cfg.train.precision == "fp16")
    mean, std = stats_tensor(cfg.data.mean, device), stats_tensor(cfg.data.std, device)
    module: nn.Module = TrainModule(student, objective, protocol.bn_splits)
    if dist_info.enabled:
        if cfg.train.grad_norm_every:
            raise ValueError("train.grad_norm_every works in a single process, not under torchrun")
        module = nn.parallel.DistributedDataParallel(module)
    if cfg.train.compile:
        module = compile_step(module)
    student_params = [p for p in student.parameters() if p.requires_grad]

    start_epoch, start_batch, best_top1, best, last = 0, 0, -math.inf, None, None
    sums: dict[str, float] = defaultdict(float)
    counts: dict[str, int] = defaultdict(int)
    resumed_step = None
    training = TrainingState(student, objective.heads, optimizer, scheduler, scaler)
    if state is not None:
        progress = training.restore(state, source=resume_path)
        start_epoch, start_batch = progress.epoch, progress.batch_in_epoch
        resumed_step = progress.step
        best_top1, best = progress.best_top1, progress.best
        sums.update(progress.epoch_sums)
        counts.update(progress.epoch_counts)
        if main:
            _reset_log_after(run_dir / "metrics.jsonl", start_epoch, progress.step)
            print(f"resumed from {resume_path}: epoch {start_epoch + 1}, batch {start_batch}")
        del state
    elif main and cfg.train.resume == "auto":
        # no checkpoint to continue from: a log is all a killed first epoch left, of steps
        # that were never saved
        _reset_log_after(run_dir / "metrics.jsonl", 0, 0)
    if main:
        cfg.save(run_dir / "config.json")
    tensorboard = (
        TensorBoardLog(run_dir / "tensorboard", resumed_step)
        if cfg.train.tensorboard and main
        else None
    )
    log = JsonlLog(run_dir / "metrics.jsonl", enabled=main, tensorboard=tensorboard)

    def checkpoint(path: Path, epoch: int, batch_in_epoch: int, step: int) -> None:
        """``epoch`` is the epoch in progress (0-based) and ``batch_in_epoch`` the batches of
        it already trained; a finished epoch is saved as (epoch + 1, 0)."""
        if not main:
            return
        progress = Progress(epoch, batch_in_epoch, step, best_top1, best, dict(sums), dict(counts))
        training.save(path, progress, config=cfg.to_dict(), classes=classes)

    steps_per_epoch = _steps_per_epoch(len(train_set), cfg, protocol.keep_last_batch)
    step = start_epoch * steps_per_epoch + start_batch
    for epoch in range(start_epoch, cfg.train.epochs):
        module.train()
        batch_in_epoch = start_batch if epoch == start_epoch else 0
        if batch_in_epoch == 0:
            sums.clear()
            counts.clear()
        sampler = EpochSampler(
            len(train_set),
            global_batch=cfg.data.batch_size,
            shuffle=True,
            seed=cfg.train.seed,
            epoch=epoch,
            rank=dist_info.rank,
            world_size=dist_info.world_size,
            start_batch=batch_in_epoch,
            keep_last=protocol.keep_last_batch,
        )
        if hasattr(train_set, "set_epoch"):
            train_set.set_epoch(epoch)  # per-(epoch, sample) augmentation: exact resume
        n_clips, t0 = 0, time.perf_counter()
        bar = tqdm(
            _loader(train_set, cfg, sampler, epoch),
            total=steps_per_epoch - batch_in_epoch,
            desc=f"epoch {epoch + 1}/{cfg.train.epochs}",
            disable=not (cfg.train.progress and main),
            leave=False,
        )
        for raw in _guard_workers(bar):
            if batch_in_epoch >= steps_per_epoch:
                break
            t_step = time.perf_counter()
            batch = to_batch(raw, device, mean, std)
            try:
                every_g = cfg.train.grad_norm_every
                terms, student_out = train_step(
                    module,
                    batch,
                    optimizer,
                    scaler,
                    cfg.train.precision,
                    student_params if every_g and (step + 1) % every_g == 0 else None,
                )
            except NonFiniteLossError as err:
                raise NonFiniteLossError(
                    f"non-finite loss at epoch {epoch + 1}, step {step}: {err}. "
                    + (
                        f"Last good checkpoint: {ckpt_dir / 'last.pt'}"
                        if (ckpt_dir / "last.pt").is_file()
                        else "No checkpoint was saved yet."
                    )
                ) from None
            terms["acc"] = float((student_out.logits.argmax(1) == batch.label).float().mean())
            terms["data/skipped"] = float(torch.as_tensor(raw.get("skipped", 0)).sum())
            for k, v in terms.items():
                sums[k] += v * len(batch)
                counts[k] += len(batch)
            n_clips += len(batch) * dist_info.world_size
            step += 1
            batch_in_epoch += 1
            bar.set_postfix(loss=f"{terms['ce']:.3f}", acc=f"{terms['acc']:.2f}")
            if cfg.train.log_every and step % cfg.train.log_every == 0:
                log.write(
                    {
                        "type": "step",
                        "epoch": epoch + 1,
                        "step": step,
                        "time": time.time(),  # wall clock: end-to-end throughput from the log
                        **terms,
                        **_lrs(optimizer),
                        "clips_per_s": len(batch)
                        * dist_info.world_size
                        / (time.perf_counter() - t_step),
                    }
                )
            every = cfg.train.checkpoint_every_steps
            if every and step % every == 0 and batch_in_epoch < steps_per_epoch:
                checkpoint(ckpt_dir / "last.pt", epoch, batch_in_epoch, step)
        scheduler.step()
        elapsed = time.perf_counter() - t0
        record: dict[str, Any] = {
            "type": "epoch",
            "epoch": epoch + 1,
            "step": step,
            **{f"train/{k}": sums[k] / counts[k] for k in sums},
            **_lrs(optimizer),
            "epoch_s": elapsed,
            "clips_per_s": n_clips / elapsed if elapsed > 0 else 0.0,
        }
        record["train/data/skipped"] = sums.get("data/skipped", 0.0)  # a count, not a mean
        is_last = epoch + 1 == cfg.train.epochs
        if cfg.train.val_every and ((epoch + 1) % cfg.train.val_every == 0 or is_last):
            val_sampler = EpochSampler(
                len(val_set),
                global_batch=cfg.data.batch_size,
                shuffle=False,
                seed=cfg.train.seed,
                rank=dist_info.rank,
                world_size=dist_info.world_size,
                drop_last=False,
            )
            val_loader = _loader(val_set, cfg, val_sampler, 0)
            last = evaluate_clips(
                student, val_loader, device, mean, std, cfg.train.precision, len(val_set)
            )
            record.update({f"val/{k}": v for k, v in last.items()})
            # best_top1 holds the protocol's selection metric (video or clip top-1)
            if last[protocol.select_by] > best_top1:
                best_top1 = last[protocol.select_by]
                best = {**last, "epoch": epoch + 1, "selected_by": protocol.select_by}
                checkpoint(ckpt_dir / "best.pt", epoch + 1, 0, step)
        log.write(record)
        checkpoint(ckpt_dir / "last.pt", epoch + 1, 0, step)
        if cfg.train.save_every and (epoch + 1) % cfg.train.save_every == 0:
            checkpoint(ckpt_dir / f"epoch_{epoch + 1:04d}.pt", epoch + 1, 0, step)
        if main:
            summary = f"epoch {epoch + 1}/{cfg.train.epochs} loss {record.get('train/ce', 0):.3f}"
            if "val/top1" in record:
                summary += f" val top1 {record['val/top1']:.3f}"
            print(summary + f" ({elapsed:.1f}s, {record['clips_per_s']:.1f} clips/s)", flush=True)
    log.close()
    return RunResult(run_dir=run_dir, best=best, last=last)


def _guard_workers(loader: Iterable) -> Iterator:
    """A loader worker killed by the OS surfaces as one clear error instead of a traceback
    deep in the multiprocessing machinery."""
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


def _steps_per_epoch(num_samples: int, cfg: Config, keep_last_batch: bool) -> int:
    n = num_samples // cfg.data.batch_size
    if keep_last_batch:
        n = -(-num_samples // cfg.data.batch_size)  # the last, partial batch too
    return min(n, cfg.train.max_steps_per_epoch or n)


def _lrs(optimizer: torch.optim.Optimizer) -> dict[str, float]:
    return {f"lr/{g.get('name', i)}": g["lr"] for i, g in enumerate(optimizer.param_groups)}


def _resume_path(cfg: Config, run_dir: Path) -> Path | None:
    if cfg.train.resume is None:
        return None
    if cfg.train.resume == "auto":
        return find_resume_checkpoint(run_dir)
    return Path(cfg.train.resume)
