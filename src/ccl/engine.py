"""The one training loop: every method, on CPU or CUDA, from a typed ``Config``.

Data flows one way: datasets -> uint8 clips -> normalised on the device -> student ->
objective (which owns teachers and heads) -> one backward -> one optimizer step.
"""

from __future__ import annotations

import bisect
import contextlib
import json
import math
import random
import time
from collections import defaultdict
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, Dataset
from tqdm import tqdm

from ccl import distributed, metrics
from ccl.checkpoint import (
    check_classes,
    find_resume_checkpoint,
    load_checkpoint,
    remove_stale_temporaries,
    rng_state,
    save_checkpoint,
    set_rng_state,
)
from ccl.config import Config
from ccl.cpu_allocator import configure_cpu_allocator
from ccl.data.sampling import EpochSampler, SkipUnreadable
from ccl.models import ImageTeacher, R2Plus1D, StudentOutput, build_student
from ccl.objectives import BaselineObjective, Batch, CCLObjective, Objective, ObjectiveOutput
from ccl.runs import move_aside, refuse_existing_run
from ccl.tblog import TensorBoardLog, require_tensorboard


class NonFiniteLossError(RuntimeError):
    """Training produced NaN or inf; the message names the step and every loss term."""


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise RuntimeError(f"device {name!r} requested but CUDA is not available")
    return device


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


# ----------------------------------------------------------------------------- builders


def build_model(cfg: Config, num_classes: int) -> R2Plus1D:
    s = cfg.student
    return build_student(s.arch, num_classes, width=s.width, feature_dim=s.feature_dim)


def build_objective(
    cfg: Config, num_classes: int, feature_dim: int, num_samples: int | None = None
) -> Objective:
    """The method's objective with its teachers; ``num_samples`` (training-set size) sizes
    memory banks (CRD)."""
    o = cfg.objective
    if o.method == "baseline":
        if o.teachers:
            raise ValueError("the baseline uses no teachers; set objective.teachers= (empty)")
        return BaselineObjective()
    if not o.teachers:
        raise ValueError(
            f"method {o.method!r} needs objective.teachers=audio, image or audio,image"
        )
    image_teacher = None
    if "image" in o.teachers:
        t = cfg.image_teacher
        if t.weights is None and not t.allow_random:
            raise ValueError(
                "the image teacher needs pretrained weights: set image_teacher.weights=PATH to a "
                "torchvision state-dict file (e.g. resnet34-b627a593.pth)"
            )
        image_teacher = ImageTeacher(
            t.arch,
            t.weights,
            frame_choice=t.frame_choice,
            input_size=t.input_size,
            normalization=t.normalization,
            clip_mean=cfg.data.mean,
            clip_std=cfg.data.std,
        )
    if o.method != "ccl":
        from ccl.objectives.kd import build_kd_objective

        options: dict[str, Any] = {"audio_dim": cfg.data.audio_dim} if "audio" in o.teachers else {}
        if o.kd_weight is not None:
            options["weight"] = o.kd_weight
        if o.kd_temperature is not None:
            options["temperature"] = o.kd_temperature
        if o.kd_negatives is not None:
            options["num_negatives"] = o.kd_negatives
        if o.method == "crd":
            options["seed"] = cfg.train.seed
        return build_kd_objective(
            o.method,
            num_classes=num_classes,
            feature_dim=feature_dim,
            teachers=o.teachers,
            image_teacher=image_teacher,
            num_samples=num_samples,
            loss_weight=o.loss_weight,
            options=options,
        )
    return CCLObjective(
        num_classes,
        feature_dim,
        o.teachers,
        image_teacher=image_teacher,
        loss_weight=o.loss_weight,
        temperatures={"audio": o.audio_temperature, "image": o.image_temperature},
        head_update=o.head_update,
        divergence=o.divergence,
        jsd_weight=o.jsd_weight,
        normalize_composition=o.normalize_composition,
        nce_eps=o.nce_eps,
    )


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
    from ccl.data.audio import load_audio_embeddings
    from ccl.data.datasets import ClipDataset

    audio = load_audio_embeddings(d.audio_dir) if d.audio_dir else None
    if "audio" in cfg.objective.teachers and audio is None:
        raise ValueError("the audio teacher needs data.audio_dir=DIR of per-video embeddings")
    common = dict(
        frames=d.clip_frames, size=d.size, stride=d.frame_stride, audio=audio, seed=cfg.train.seed
    )
    train = ClipDataset(
        d.annotations, d.frames_dir, "training", "train", scale=tuple(d.crop_scale), **common
    )
    val = ClipDataset(
        d.annotations, d.frames_dir, d.val_subset, "val", val_clips=d.val_clips, **common
    )
    return train, val, list(train.classes)


# ----------------------------------------------------------------------------- batches


def to_batch(
    raw: dict[str, Any], device: torch.device, mean: torch.Tensor, std: torch.Tensor
) -> Batch:
    """Move a collated sample dict to ``device``; uint8 clips become normalised floats there
    (4x less host-to-device traffic than float clips)."""
    clip = raw["clip"].to(device, non_blocking=True)
    if clip.dtype == torch.uint8:
        clip = clip.float().div_(255.0)
    clip = (clip - mean) / std
    audio = raw.get("audio")
    available = raw.get("audio_available")
    index = raw.get("index")
    return Batch(
        clip=clip,
        label=torch.as_tensor(raw["label"]).to(device, non_blocking=True),
        audio=audio.to(device, non_blocking=True) if audio is not None else None,
        audio_available=available.to(device, non_blocking=True) if available is not None else None,
        index=torch.as_tensor(index).to(device, non_blocking=True) if index is not None else None,
    )


def _stats_tensor(values: Iterable[float], device: torch.device) -> torch.Tensor:
    return torch.tensor(list(values), dtype=torch.float32, device=device).view(1, 3, 1, 1, 1)


def autocast_context(device: torch.device, precision: str) -> contextlib.AbstractContextManager:
    if precision == "fp32":
        return contextlib.nullcontext()
    dtype = torch.bfloat16 if precision == "bf16" else torch.float16
    return torch.autocast(device_type=device.type, dtype=dtype)


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
        drop_last=sampler.drop_last,
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

    def __init__(self, student: R2Plus1D, objective: Objective) -> None:
        super().__init__()
        self.student = student
        self.objective = objective

    def forward(self, batch: Batch) -> tuple[StudentOutput, ObjectiveOutput]:
        student_out = self.student(batch.clip)
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
    path.write_text("".join(k + "\n" for k in kept))


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
    mean, std = _stats_tensor(cfg.data.mean, device), _stats_tensor(cfg.data.std, device)
    module: nn.Module = TrainModule(student, objective)
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
    if state is not None:
        student.load_state_dict(state["student"])
        objective.heads.load_state_dict(state["heads"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        scaler.load_state_dict(state["scaler"])
        set_rng_state(state["rng"])
        start_epoch, start_batch = state["epoch"], state["batch_in_epoch"]
        resumed_step = state["step"]
        best_top1 = state.get("best_top1", -math.inf)
        best = state.get("best")
        sums.update(state.get("epoch_sums", {}))
        counts.update(state.get("epoch_counts", {}))
        if main:
            _reset_log_after(run_dir / "metrics.jsonl", start_epoch, state["step"])
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
        state = {
            "format": "ccl-checkpoint-v1",
            "epoch": epoch,
            "batch_in_epoch": batch_in_epoch,
            "step": step,
            "student": student.state_dict(),
            "heads": objective.heads.state_dict(),
            "optimizer": optimizer.state_dict(),
            "scheduler": scheduler.state_dict(),
            "scaler": scaler.state_dict(),
            "rng": rng_state(),
            "best_top1": best_top1,
            "best": best,
            "epoch_sums": dict(sums),
            "epoch_counts": dict(counts),
            "config": cfg.to_dict(),
            "classes": list(classes),
        }
        save_checkpoint(state, path)

    steps_per_epoch = _steps_per_epoch(len(train_set), cfg)
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
            if last["top1"] > best_top1:
                best_top1, best = last["top1"], {**last, "epoch": epoch + 1}
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
    try:
        yield from loader
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
            raise RuntimeError(
                f"a data loader worker died ({type(err).__name__}: {err}). Rerun with "
                "data.workers=0 to see the error in the main process, or check memory (each "
                "worker holds open stores)."
            ) from err
        raise


def _steps_per_epoch(num_samples: int, cfg: Config) -> int:
    n = num_samples // cfg.data.batch_size
    return min(n, cfg.train.max_steps_per_epoch or n)


def _lrs(optimizer: torch.optim.Optimizer) -> dict[str, float]:
    return {f"lr/{g.get('name', i)}": g["lr"] for i, g in enumerate(optimizer.param_groups)}


def _resume_path(cfg: Config, run_dir: Path) -> Path | None:
    if cfg.train.resume is None:
        return None
    if cfg.train.resume == "auto":
        return find_resume_checkpoint(run_dir)
    return Path(cfg.train.resume)
