"""The one training loop: every method, on CPU or CUDA, from a typed ``Config``.

Data flows one way: datasets -> uint8 clips -> normalised on the device -> student ->
objective (which owns teachers and heads) -> one backward -> one optimizer step.
"""

from __future__ import annotations

import bisect
import math
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, Dataset
from tqdm import tqdm

from ccl import distributed, metrics
from ccl.checkpoint import (
    Progress,
    TrainingState,
    check_classes,
    load_checkpoint,
    remove_stale_temporaries,
)
from ccl.config import Config
from ccl.cpu_allocator import configure_cpu_allocator
from ccl.data.sampling import EpochSampler, SkipUnreadable
from ccl.errors import NonFiniteLossError
from ccl.loaders import epoch_loader, guard_workers
from ccl.logs import JsonlLog, open_mirrors, require_mirrors
from ccl.models import R2Plus1D, StudentOutput, build_model, prepare_student
from ccl.objectives import Batch, Objective, ObjectiveOutput
from ccl.objectives.build import build_objective
from ccl.preflight import check_networks
from ccl.protocol import Protocol, check_annotations, forward_in_splits
from ccl.protocol import resolve as resolve_protocol
from ccl.resume import restore_progress, resume_changes, resume_checkpoint_path
from ccl.runlock import RunLock, lock_run_folder
from ccl.runs import (
    is_other_runs_checkpoint,
    move_aside,
    refuse_existing_run,
    refuse_resume_into_other_run,
)
from ccl.runtime import autocast_context, resolve_device, seed_everything, stats_tensor, to_batch

TRAIN_LOCK_HINT = " or use another train.name"
"""The way on that a refused second ``ccl train`` of a run folder in use is told."""

# ----------------------------------------------------------------------------- builders


def build_optimizer(
    cfg: Config, student: nn.Module, objective: Objective
) -> tuple[torch.optim.Optimizer, torch.optim.lr_scheduler.LambdaLR]:
    """SGD as the reference (or AdamW, ``optim.name``), one parameter group each for the
    student and the heads, each with its own schedule: the student's MultiStep, the heads'
    constant (reference)."""
    o = cfg.optim
    # frozen parameters (student.finetune_from) stay out, as in the reference
    trainable = [p for p in student.parameters() if p.requires_grad]
    groups = [{"params": trainable, "lr": o.lr, "name": "student"}]
    head_params = [p for p in objective.heads.parameters() if p.requires_grad]
    if head_params:
        groups.append({"params": head_params, "lr": o.head_lr or o.lr, "name": "heads"})
    optimizer: torch.optim.Optimizer
    # fused kernels where torch has them for these tensors (CPU, CUDA; not, e.g., MPS)
    fused = o.fused and all(
        p.device.type in ("cpu", "cuda") and p.is_floating_point()
        for group in groups
        for p in group["params"]
    )
    if o.name == "adamw":
        optimizer = torch.optim.AdamW(
            groups, lr=o.lr, weight_decay=o.weight_decay, fused=fused or None
        )
    else:
        optimizer = torch.optim.SGD(
            groups,
            lr=o.lr,
            momentum=o.momentum,
            dampening=o.dampening,
            weight_decay=o.weight_decay,
            nesterov=o.nesterov,
            fused=fused or None,
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
    from ccl.data.datasets import ClipDataset, check_audio_coverage

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
    if "audio" in cfg.objective.teachers:
        check_audio_coverage(train)
    val = ClipDataset(
        d.annotations, d.frames_dir, d.val_subset, "val", val_clips=d.val_clips, **common
    )
    return train, val, list(train.classes)


# ----------------------------------------------------------------------------- evaluation


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
        result.terms.update(grad_norms(result.student_terms, grad_norms_of))
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


def grad_norms(
    parts: dict[str, torch.Tensor], params: list[nn.Parameter]
) -> dict[str, torch.Tensor]:
    """``grad/<name>``: the L2 norm of d part / d params, for each part of a loss (a part
    that does not depend on any parameter: 0). The graph is kept for the step's backward."""
    norms = {}
    for name, part in parts.items():
        if not part.requires_grad:
            norms[f"grad/{name}"] = part.new_zeros(())
            continue
        grads = torch.autograd.grad(part, params, retain_graph=True, allow_unused=True)
        squares = [g.float().pow(2).sum() for g in grads if g is not None]
        norms[f"grad/{name}"] = torch.stack(squares).sum().sqrt() if squares else part.new_zeros(())
    return norms


# ----------------------------------------------------------------------------- the run


@dataclass
class RunResult:
    """What :func:`train` returns: the run folder and the best and last validation metrics
    (None when no epoch was validated)."""

    run_dir: Path
    best: dict[str, float] | None
    last: dict[str, float] | None


@dataclass
class TrainingRun:
    """A run ready to train, as :func:`build_run` makes it.

    ``module`` is what a step runs (the :class:`TrainModule`, DDP-wrapped under torchrun,
    compiled with ``train.compile``); ``state`` is what a checkpoint saves of the networks and
    the optimiser; ``progress`` is where the run stands, kept current after every step: the
    epoch in progress and its batches trained (a finished epoch is (epoch + 1, 0)), the global
    step, the best validation so far and the epoch's running training sums."""

    cfg: Config
    run_dir: Path
    classes: list[str]
    device: torch.device
    dist_info: distributed.DistInfo
    protocol: Protocol
    train_set: Dataset
    val_set: Dataset
    student: nn.Module
    module: nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LambdaLR
    scaler: torch.amp.GradScaler
    mean: torch.Tensor
    std: torch.Tensor
    state: TrainingState
    progress: Progress
    steps_per_epoch: int
    log: JsonlLog

    @property
    def ckpt_dir(self) -> Path:
        return self.run_dir / "checkpoints"

    @property
    def main(self) -> bool:
        """This process writes the run folder (rank 0, or the only process)."""
        return self.dist_info.is_main

    def save_checkpoint(self, name: str) -> None:
        """Write ``checkpoints/<name>`` (main process only): networks, optimiser, RNGs and
        ``progress`` as it stands."""
        if self.main:
            self.state.save(
                self.ckpt_dir / name, self.progress, config=self.cfg.to_dict(), classes=self.classes
            )


def train(cfg: Config, *, overwrite: bool = False) -> RunResult:
    """Train ``cfg`` end to end on one process or under torchrun: resume if asked, validate,
    checkpoint, log. Returns the run folder and the best and last validation metrics.

    A run folder that already holds a run is only continued (``train.resume``) or, with
    ``overwrite``, moved aside to ``<name>.old-N`` first; otherwise this refuses before
    writing anything (:class:`ccl.runs.RunExistsError`). The run folder's lock
    (:mod:`ccl.runlock`) is held from before the first check to the end, so a second writer
    is refused (:class:`ccl.errors.RunInUseError`) and never mixes its files in."""
    cfg.validate()
    run_dir = Path(cfg.train.out_dir) / cfg.train.name
    # one writer per run folder: rank 0 (or the only process) holds its lock throughout
    main = distributed.launched_as_main()
    lock = lock_run_folder(run_dir, "ccl train", TRAIN_LOCK_HINT) if main else None
    try:
        run = build_run(cfg, overwrite=overwrite, lock=lock)
        last = None
        for epoch in range(run.progress.epoch, cfg.train.epochs):
            record = train_one_epoch(run, epoch)
            if _validates_after(cfg, epoch):
                last = validate(run)
                record.update({f"val/{k}": v for k, v in last.items()})
                _keep_if_best(run, last, epoch)
            run.log.write(record)
            run.save_checkpoint("last.pt")
            if cfg.train.save_every and (epoch + 1) % cfg.train.save_every == 0:
                run.save_checkpoint(f"epoch_{epoch + 1:04d}.pt")
            if run.main:
                print(_epoch_summary(record, cfg.train.epochs), flush=True)
        run.log.close()
    finally:
        if lock is not None:
            lock.release()
    return RunResult(run_dir=run.run_dir, best=run.progress.best, last=last)


def build_run(cfg: Config, *, overwrite: bool = False, lock: RunLock | None = None) -> TrainingRun:
    """Everything :func:`train` needs, in a fixed order (the networks' initial weights are
    drawn from the seeded generators in that order): the checks that can refuse (read only,
    on every rank), the run folder, the data, the networks, the optimiser, the state resumed
    from a checkpoint (``train.resume``) and the log. ``lock``: the run folder's lock, which
    the caller holds (main process); ``overwrite`` moves it with the old run and takes the
    new folder's."""
    cfg.validate()
    run_dir = Path(cfg.train.out_dir) / cfg.train.name
    if overwrite and cfg.train.resume is not None:
        raise ValueError("--overwrite starts the run over; it cannot be combined with --resume")
    # The checks that can refuse read only, on every rank, before anything is written.
    resume_path = resume_checkpoint_path(cfg, run_dir)
    if cfg.train.resume is None and not overwrite:
        refuse_existing_run(run_dir)
    elif cfg.train.resume not in (None, "auto"):
        refuse_resume_into_other_run(run_dir, cfg.train.resume)
    saved = load_checkpoint(resume_path) if resume_path is not None else None
    changes = resume_changes(cfg, saved.get("config"), resume_path) if saved else {}
    check_networks(cfg, resuming=saved is not None)  # clip sizes, student.weights, widths
    device, dist_info = _join_processes(cfg.train.device)
    protocol = resolve_protocol(cfg.train)
    if protocol.keep_last_batch and dist_info.enabled:
        raise ValueError(
            "train.protocol=reference runs in one process, as the reference did (DataParallel; "
            "its batches are split for BatchNorm by train.bn_splits): start it without torchrun"
        )
    require_mirrors(cfg.train)  # TensorBoard, W&B: before anything is written, on every rank
    if dist_info.is_main:
        _prepare_folder(run_dir, overwrite, lock)

    seed_everything(cfg.train.seed)
    torch.use_deterministic_algorithms(cfg.train.deterministic)
    train_set, val_set, classes = build_datasets(cfg)
    if saved is not None and saved.get("classes") is not None:
        check_classes(
            saved["classes"],
            classes,
            saved_from=f"checkpoint {resume_path}",
            current_from=cfg.data.annotations or "the synthetic data",
        )
    train_set = SkipUnreadable(train_set, cfg.data.on_error)
    student, objective = _build_networks(
        cfg, len(classes), len(train_set), device, dist_info, resuming=saved is not None
    )
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

    state = TrainingState(student, objective.heads, optimizer, scheduler, scaler)
    progress = restore_progress(
        cfg, state, saved, resume_path, run_dir, main=dist_info.is_main, changes=changes
    )
    resumed_step = progress.step if saved is not None else None
    del saved  # the loaded checkpoint's tensors: restored, no longer needed
    if dist_info.is_main:
        cfg.save(run_dir / "config.json")
    mirrors = open_mirrors(cfg, run_dir, resumed_step) if dist_info.is_main else []
    log = JsonlLog(run_dir / "metrics.jsonl", enabled=dist_info.is_main, mirrors=mirrors)
    steps_per_epoch = _steps_per_epoch(len(train_set), cfg, protocol.keep_last_batch)
    # the step counter follows the epochs and batches trained
    progress.step = progress.epoch * steps_per_epoch + progress.batch_in_epoch
    if resume_path is not None and is_other_runs_checkpoint(resume_path, run_dir):
        # where a run started from another run's checkpoint began: its log's first line
        log.write({"type": "resumed", "from": str(resume_path), "epoch": progress.epoch,
                   "step": progress.step})  # fmt: skip
    return TrainingRun(
        cfg=cfg,
        run_dir=run_dir,
        classes=classes,
        device=device,
        dist_info=dist_info,
        protocol=protocol,
        train_set=train_set,
        val_set=val_set,
        student=student,
        module=module,
        optimizer=optimizer,
        scheduler=scheduler,
        scaler=scaler,
        mean=mean,
        std=std,
        state=state,
        progress=progress,
        steps_per_epoch=steps_per_epoch,
        log=log,
    )


def train_one_epoch(run: TrainingRun, epoch: int) -> dict[str, Any]:
    """Train epoch ``epoch`` (0-based) from ``run.progress``'s batch (0 but in an epoch
    resumed from a mid-epoch checkpoint), logging every ``train.log_every`` steps, then step
    the schedule. Returns the epoch's log record (training means, learning rates, timings);
    ``run.progress`` is left at the finished epoch, (epoch + 1, 0)."""
    cfg, progress = run.cfg, run.progress
    world_size = run.dist_info.world_size
    run.module.train()
    sums, counts = progress.epoch_sums, progress.epoch_counts
    if progress.batch_in_epoch == 0:
        sums.clear()
        counts.clear()
    sampler = EpochSampler(
        len(run.train_set),
        global_batch=cfg.data.batch_size,
        shuffle=True,
        seed=cfg.train.seed,
        epoch=epoch,
        rank=run.dist_info.rank,
        world_size=world_size,
        start_batch=progress.batch_in_epoch,
        keep_last=run.protocol.keep_last_batch,
    )
    if hasattr(run.train_set, "set_epoch"):
        run.train_set.set_epoch(epoch)  # per-(epoch, sample) augmentation: exact resume
    n_clips, t0 = 0, time.perf_counter()
    bar = tqdm(
        _loader(run.train_set, cfg, sampler, epoch),
        total=run.steps_per_epoch - progress.batch_in_epoch,
        desc=f"epoch {epoch + 1}/{cfg.train.epochs}",
        disable=not (cfg.train.progress and run.main),
        leave=False,
    )
    student_params = [p for p in run.student.parameters() if p.requires_grad]
    every_g = cfg.train.grad_norm_every
    for raw in guard_workers(bar):
        if progress.batch_in_epoch >= run.steps_per_epoch:
            break
        t_step = time.perf_counter()
        batch = to_batch(raw, run.device, run.mean, run.std)
        try:
            terms, student_out = train_step(
                run.module,
                batch,
                run.optimizer,
                run.scaler,
                cfg.train.precision,
                student_params if every_g and (progress.step + 1) % every_g == 0 else None,
            )
        except NonFiniteLossError as err:
            last_pt = run.ckpt_dir / "last.pt"
            raise NonFiniteLossError(
                f"non-finite loss at epoch {epoch + 1}, step {progress.step}: {err}. "
                + (
                    f"Last good checkpoint: {last_pt}"
                    if last_pt.is_file()
                    else "No checkpoint was saved yet."
                )
            ) from None
        terms["acc"] = float((student_out.logits.argmax(1) == batch.label).float().mean())
        terms["data/skipped"] = float(torch.as_tensor(raw.get("skipped", 0)).sum())
        for k, v in terms.items():
            sums[k] += v * len(batch)
            counts[k] += len(batch)
        n_clips += len(batch) * world_size
        progress.step += 1
        progress.batch_in_epoch += 1
        bar.set_postfix(loss=f"{terms['ce']:.3f}", acc=f"{terms['acc']:.2f}")
        if cfg.train.log_every and progress.step % cfg.train.log_every == 0:
            run.log.write(
                {
                    "type": "step",
                    "epoch": epoch + 1,
                    "step": progress.step,
                    "time": time.time(),  # wall clock: end-to-end throughput from the log
                    **terms,
                    **_lrs(run.optimizer),
                    "clips_per_s": len(batch) * world_size / (time.perf_counter() - t_step),
                }
            )
        every = cfg.train.checkpoint_every_steps
        if every and progress.step % every == 0 and progress.batch_in_epoch < run.steps_per_epoch:
            run.save_checkpoint("last.pt")  # mid-epoch: (epoch, batches trained)
    run.scheduler.step()
    elapsed = time.perf_counter() - t0
    progress.epoch, progress.batch_in_epoch = epoch + 1, 0
    record: dict[str, Any] = {
        "type": "epoch",
        "epoch": epoch + 1,
        "step": progress.step,
        **{f"train/{k}": sums[k] / counts[k] for k in sums},
        **_lrs(run.optimizer),
        "epoch_s": elapsed,
        "clips_per_s": n_clips / elapsed if elapsed > 0 else 0.0,
    }
    record["train/data/skipped"] = sums.get("data/skipped", 0.0)  # a count, not a mean
    return record


def validate(run: TrainingRun) -> dict[str, float]:
    """The student's metrics on the whole validation set (:func:`evaluate_clips`), each
    process evaluating its share."""
    cfg = run.cfg
    sampler = EpochSampler(
        len(run.val_set),
        global_batch=cfg.data.batch_size,
        shuffle=False,
        seed=cfg.train.seed,
        rank=run.dist_info.rank,
        world_size=run.dist_info.world_size,
        drop_last=False,
    )
    loader = _loader(run.val_set, cfg, sampler, 0)
    return evaluate_clips(
        run.student, loader, run.device, run.mean, run.std, cfg.train.precision, len(run.val_set)
    )


def _validates_after(cfg: Config, epoch: int) -> bool:
    """Whether epoch ``epoch`` (0-based) ends with a validation: every ``train.val_every``
    epochs and after the last (none with 0)."""
    every, is_last = cfg.train.val_every, epoch + 1 == cfg.train.epochs
    return bool(every) and ((epoch + 1) % every == 0 or is_last)


def _keep_if_best(run: TrainingRun, metrics: dict[str, float], epoch: int) -> None:
    """Save ``best.pt`` when epoch ``epoch``'s validation beats the best so far on the
    protocol's selection metric (video or clip top-1, held in ``progress.best_top1``)."""
    select_by = run.protocol.select_by
    if metrics[select_by] > run.progress.best_top1:
        run.progress.best_top1 = metrics[select_by]
        run.progress.best = {**metrics, "epoch": epoch + 1, "selected_by": select_by}
        run.save_checkpoint("best.pt")


def _epoch_summary(record: dict[str, Any], epochs: int) -> str:
    """The line printed after each epoch: training loss, validation top-1, timings."""
    summary = f"epoch {record['epoch']}/{epochs} loss {record.get('train/ce', 0):.3f}"
    if "val/top1" in record:
        summary += f" val top1 {record['val/top1']:.3f}"
    return summary + f" ({record['epoch_s']:.1f}s, {record['clips_per_s']:.1f} clips/s)"


def _join_processes(device_name: str) -> tuple[torch.device, distributed.DistInfo]:
    """The run's device and, under torchrun, this process's place in the group (its own GPU)."""
    device = resolve_device(device_name)
    if device.type == "cpu":
        configure_cpu_allocator()  # fewer page faults; CCL_SYSTEM_MALLOC=1 opts out
    dist_info = distributed.init_from_env(device.type)
    if dist_info.enabled and device.type == "cuda":
        device = torch.device("cuda", dist_info.local_rank)
    return device, dist_info


def _prepare_folder(run_dir: Path, overwrite: bool, lock: RunLock | None) -> None:
    """Move a previous run aside (``overwrite``, under its lock, which then passes to the
    fresh folder), make the checkpoint folder and remove the temporaries an interrupted save
    left in it (only under the lock: a live run's temporary is never touched)."""
    moved = move_aside(run_dir) if overwrite else None
    if moved is not None:
        if lock is not None:
            lock.take_over(moved, lock_run_folder(run_dir, "ccl train", TRAIN_LOCK_HINT))
        print(f"--overwrite: the previous run in {run_dir} was moved to {moved}")
    ckpt_dir = run_dir / "checkpoints"
    ckpt_dir.mkdir(parents=True, exist_ok=True)
    for tmp in remove_stale_temporaries(ckpt_dir):
        print(f"removed a temporary file left by an interrupted save: {tmp}")


def _build_networks(
    cfg: Config,
    num_classes: int,
    num_samples: int,
    device: torch.device,
    dist_info: distributed.DistInfo,
    resuming: bool = False,
) -> tuple[nn.Module, Objective]:
    """The student and the objective (teachers and heads) on ``device``, freshly initialised
    from the seeded generators, the student first; then ``student.weights`` (unless
    ``resuming``: the checkpoint's replace them) and ``student.finetune_from``."""
    student = build_model(cfg.student, num_classes)
    for note in prepare_student(student, cfg.student, load_weights_file=not resuming):
        if dist_info.is_main:
            print(note)
    if cfg.train.sync_bn and dist_info.enabled:
        student = nn.SyncBatchNorm.convert_sync_batchnorm(student)
    student = student.to(device)
    if cfg.train.channels_last:
        student = student.to(memory_format=torch.channels_last_3d)
    objective = build_objective(
        cfg.objective,
        cfg.image_teacher,
        cfg.data,
        num_classes=num_classes,
        feature_dim=student.feature_dim,
        seed=cfg.train.seed,
        num_samples=num_samples,
    ).to(device)
    if cfg.train.channels_last:
        objective = objective.to(memory_format=torch.channels_last)  # the image teacher's convs
    return student, objective


def _loader(dataset: Dataset, cfg: Config, sampler: EpochSampler, epoch: int) -> DataLoader:
    return epoch_loader(
        dataset,
        sampler,
        batch_size=cfg.data.batch_size,
        workers=cfg.data.workers,
        seed=cfg.train.seed,
        epoch=epoch,
    )


def _steps_per_epoch(num_samples: int, cfg: Config, keep_last_batch: bool) -> int:
    n = num_samples // cfg.data.batch_size
    if keep_last_batch:
        n = -(-num_samples // cfg.data.batch_size)  # the last, partial batch too
    return min(n, cfg.train.max_steps_per_epoch or n)


def _lrs(optimizer: torch.optim.Optimizer) -> dict[str, float]:
    return {f"lr/{g.get('name', i)}": g["lr"] for i, g in enumerate(optimizer.param_groups)}
