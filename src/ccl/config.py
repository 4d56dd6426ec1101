"""Typed run configuration, presets that reproduce the reference, and ``key=value`` overrides.

Every run folder and checkpoint stores the resolved config as plain JSON (``to_dict``), so a
run can be rebuilt from its folder alone.
"""

from __future__ import annotations

import dataclasses
import json
import math
import re
import types
import typing
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from ccl.models.teachers import KINETICS_MEAN, KINETICS_STD, image_teacher_archs
from ccl.models.torchvision_video import student_archs
from ccl.objectives.registry import (
    AUDIO,
    BASELINE,
    CCL,
    CCL_TEMPERATURES,
    COMPARISON_RUNS,
    IMAGE,
    KD_METHODS,
    MAIN_RUNS,
    TEACHER_SETS,
    TEACHERS,
    MethodName,
    describe_teacher_sets,
)


@dataclass
class StudentConfig:
    # r2plus1d-10 (the reference's "depth 18"), -18, -34, or torchvision.NAME for one of
    # torchvision's video models (r3d_18, s3d, mvit_v2_s, ...; docs/METHOD.md §2.1)
    arch: str = "r2plus1d-10"
    width: float = 1.0
    feature_dim: int | None = None  # None: the architecture's own (512 x width)
    # how a narrow student reaches feature_dim (ccl.models.R2Plus1D): "last-stage" widens the
    # last stage, "expand" adds a 1x1x1 convolution after it (X3D's head)
    feature_layer: Literal["last-stage", "expand"] = "last-stage"
    # a state dict loaded before training (ccl.models.pretrained): a ccl checkpoint, a
    # reference checkpoint, a bare state dict or torchvision's file for torchvision.NAME
    weights: str | None = None
    # train from this module on, the earlier ones frozen (the reference's --ft_begin_module,
    # e.g. conv4; the classifier is always trained); None trains every module
    finetune_from: str | None = None


@dataclass
class ImageTeacherConfig:
    arch: str = "resnet34"  # any torchvision image classification model (docs/METHOD.md §2.2)
    weights: str | None = None  # a torchvision state-dict file
    allow_random: bool = False  # permit random weights (smoke tests only)
    frame_choice: Literal["batch-random", "sample-random", "center"] = "batch-random"
    input_size: int | None = None  # None: the clip's size (reference: 112)
    normalization: Literal["clip", "imagenet"] = "clip"


@dataclass
class ObjectiveConfig:
    method: MethodName = BASELINE  # ccl.objectives.registry
    teachers: tuple[str, ...] = ()
    loss_weight: float | None = None  # None: 1 with one teacher, 0.5 with both
    audio_temperature: float = CCL_TEMPERATURES[AUDIO]
    image_temperature: float = CCL_TEMPERATURES[IMAGE]
    # Which loss trains each composition head (docs/METHOD.md §4). "reference": L_head only,
    # the rule of the reference's first release (5c18684, the paper's numbers); "joint":
    # L_head + L_v, the rule of its current release (b590483, "fit to pytorch 1.7");
    # "paper": CE only (the paper's Algorithm A).
    head_update: Literal["reference", "paper", "joint"] = "reference"
    # head_update=paper only: the student's contrastive terms become
    # lambda * S(v, x_t) + (1 - lambda) * S(v, m) (the paper's Algorithm A; 0.5 is this
    # package's choice, not the paper's); none keeps the unweighted sum (docs/METHOD.md §4.3)
    paper_lambda: float | None = 0.5
    divergence: Literal["symmetric-kl", "js"] = "symmetric-kl"
    jsd_weight: float = 0.5
    normalize_composition: bool = True
    nce_eps: float = 1e-10
    # the compared distillation methods (ccl.objectives.kd); None: the original paper's value
    kd_weight: float | None = None
    kd_temperature: float | None = None  # CRD and CMC
    kd_negatives: int | None = None  # CRD's negatives per positive


@dataclass
class OptimConfig:
    # "sgd" as the reference; "adamw" (betas 0.9/0.999, decoupled weight decay) for short
    # budgets such as the CPU demo, where SGD from scratch barely moves in a few hundred steps
    name: Literal["sgd", "adamw"] = "sgd"
    lr: float = 1e-3
    head_lr: float | None = None  # None: same as lr
    momentum: float = 0.9  # SGD only
    dampening: float = 0.0
    weight_decay: float = 5e-4
    nesterov: bool = False
    milestones: tuple[int, ...] = (150, 225)  # the student's MultiStep schedule, in epochs
    gamma: float = 0.1
    schedule_heads: bool = False  # the reference keeps the heads' lr constant
    # torch's fused optimizer kernels (one kernel for every parameter's update instead of a
    # loop of small ops): the same update up to floating-point order; on the demo's CPU
    # AdamW's step takes 6 ms instead of 41 (benchmarks/optimizer_step.py)
    fused: bool = True


@dataclass
class DataConfig:
    source: Literal["synthetic", "prepared"] = "prepared"
    annotations: str | None = None  # annotation JSON (``ccl prepare annotations``)
    frames_dir: str | None = None  # HDF5 frame stores (``ccl prepare videos``)
    audio_dir: str | None = None  # per-video audio embeddings (.npy in class folders)
    val_subset: Literal["validation", "testing"] = "validation"
    clip_frames: int = 16
    frame_stride: int = 1
    size: int = 112
    crop_scale: tuple[float, float] = (0.25, 1.0)  # RandomResizedCrop area range (reference)
    val_clips: int = 3
    # decode JPEG frames at 1/2, 1/4 or 1/8 size when the crop allows (DCT scaling, faster);
    # false decodes at full size: the reference's pixels to +-1 grey level (docs/METHOD.md §8)
    reduced_decode: bool = True
    batch_size: int = 16
    workers: int = 4
    on_error: Literal["skip", "stop"] = "skip"  # an unreadable training sample
    mean: tuple[float, float, float] = KINETICS_MEAN
    std: tuple[float, float, float] = KINETICS_STD
    # synthetic source only: tensors generated in memory, for smoke tests and benchmarks
    synthetic_classes: int = 4
    synthetic_train: int = 64
    synthetic_val: int = 32
    audio_dim: int = 512


@dataclass
class TrainConfig:
    name: str = "run"
    out_dir: str = "runs"
    epochs: int = 300
    seed: int = 1
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    precision: Literal["fp32", "bf16", "fp16"] = "fp32"
    resume: str | None = None  # None | auto | path to a checkpoint
    log_every: int = 10
    save_every: int = 50  # periodic checkpoints, in epochs (0: none)
    val_every: int = 1
    max_steps_per_epoch: int | None = None
    checkpoint_every_steps: int = 0  # also write last.pt mid-epoch (exact resume), 0: off
    # every N steps, log the gradient norm of each part of the student's loss (CE,
    # contrastive, divergence) on the student's parameters as grad/<part>; 0: off.
    # One extra backward pass per part on those steps; single process only.
    grad_norm_every: int = 0
    progress: bool = True
    compile: bool = False  # torch.compile student, teachers and objective (one graph)
    # channels_last_3d memory format: faster convs on GPUs, and on CPUs for the demo's student
    # (docs/PERFORMANCE.md); evaluation uses the run's setting too
    channels_last: bool = False
    sync_bn: bool = False  # SyncBatchNorm across processes (CUDA + torchrun only)
    deterministic: bool = False  # torch.use_deterministic_algorithms
    tensorboard: bool = False  # also log metrics to runs/<name>/tensorboard/ (needs ccl[tb])
    # also log metrics and the config to Weights & Biases (needs ccl[wandb]; rank 0 only);
    # a resumed run continues the same W&B run (ccl.wandblog)
    wandb: bool = False
    # held-out: best epoch by video-level top-1 on the held-out validation subset, full
    # batches only. reference: the reference's protocol exactly (annotations from `ccl
    # prepare annotations --protocol reference`): best epoch by clip-level accuracy on the
    # test split, the last partial batch kept, BatchNorm over 8-clip parts (ccl.protocol)
    protocol: Literal["held-out", "reference"] = "held-out"
    # normalise BatchNorm over each batch split in this many parts, as DataParallel over that
    # many GPUs would; none: the protocol's (1, or 2 with protocol=reference)
    bn_splits: int | None = None


@dataclass
class Config:
    student: StudentConfig = field(default_factory=StudentConfig)
    image_teacher: ImageTeacherConfig = field(default_factory=ImageTeacherConfig)
    objective: ObjectiveConfig = field(default_factory=ObjectiveConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    data: DataConfig = field(default_factory=DataConfig)
    train: TrainConfig = field(default_factory=TrainConfig)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def validate(self) -> Config:
        """Refuse values no run can use, naming the key, before anything is built or written
        (a zero batch size would divide by zero, zero epochs would silently do nothing).
        Called after overrides, on load and at the start of training; returns ``self``."""
        problems = [f"{key} {why}" for key, why in _problems(self)]
        if problems:
            raise ValueError("invalid config: " + "; ".join(problems))
        return self

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Config:
        cfg = cls()
        for section, values in data.items():
            if not hasattr(cfg, section):
                raise ValueError(f"unknown config section {section!r}")
            for key, value in values.items():
                _set_field(getattr(cfg, section), f"{section}.{key}", key, value, parse=False)
        return cfg

    def save(self, path: str | Path) -> None:
        """Write the config as JSON, atomically (the run folder's record of its settings)."""
        from ccl.atomic import write_text_atomic

        write_text_atomic(path, json.dumps(self.to_dict(), indent=2) + "\n")

    @classmethod
    def load(cls, path: str | Path) -> Config:
        return cls.from_dict(json.loads(Path(path).read_text())).validate()


def config_differences(
    old: Config, new: Config, ignore: tuple[str, ...] = ()
) -> list[str]:
    """"section.key: old -> new" for every setting that differs between two configs, in
    field order, leaving out the dotted keys in ``ignore``."""
    out, current = [], new.to_dict()
    for section, values in old.to_dict().items():
        for key, value in values.items():
            now = current[section][key]
            if f"{section}.{key}" not in ignore and value != now:
                out.append(f"{section}.{key}: {_show(value)} -> {_show(now)}")
    return out


def _problems(cfg: Config) -> list[tuple[str, str]]:
    """(key, what is wrong) for every out-of-range value of ``cfg``."""
    out: list[tuple[str, str]] = []

    def need(ok: bool, key: str, rule: str) -> None:
        if not ok:
            out.append((key, f"must be {rule}, got {_show(value(key))}"))

    def value(key: str) -> Any:
        section, _, name = key.partition(".")
        return getattr(getattr(cfg, section), name)

    def at_least(key: str, low: float, optional: bool = False) -> None:
        v = value(key)
        ok = (optional and v is None) or (v is not None and math.isfinite(v) and v >= low)
        need(ok, key, f">= {low}" + (" or none" if optional else ""))

    def positive(key: str, optional: bool = False) -> None:
        v = value(key)
        ok = (optional and v is None) or (v is not None and math.isfinite(v) and v > 0)
        need(ok, key, "> 0" + (" or none" if optional else ""))

    o, opt, d, tr = cfg.objective, cfg.optim, cfg.data, cfg.train
    archs = student_archs()
    need(cfg.student.arch in archs, "student.arch", f"one of {', '.join(archs)}")
    need(
        cfg.image_teacher.arch in image_teacher_archs(),
        "image_teacher.arch",
        "a torchvision image classifier (torchvision.models.list_models(module="
        "torchvision.models)), e.g. resnet34, convnext_tiny, efficientnet_b0, vit_b_16",
    )
    need(cfg.student.weights != "", "student.weights", "a file or none")
    need(cfg.student.finetune_from != "", "student.finetune_from", "a module name or none")
    positive("student.width")
    at_least("student.feature_dim", 1, optional=True)
    at_least("image_teacher.input_size", 1, optional=True)
    need(
        set(o.teachers) <= set(TEACHERS) and len(set(o.teachers)) == len(o.teachers),
        "objective.teachers",
        describe_teacher_sets(),
    )
    at_least("objective.loss_weight", 0, optional=True)
    positive("objective.audio_temperature")
    positive("objective.image_temperature")
    at_least("objective.jsd_weight", 0)
    at_least("objective.nce_eps", 0)
    lam = o.paper_lambda
    need(lam is None or 0 <= lam <= 1, "objective.paper_lambda", "in [0, 1] or none")
    at_least("objective.kd_weight", 0, optional=True)
    positive("objective.kd_temperature", optional=True)
    at_least("objective.kd_negatives", 1, optional=True)
    positive("optim.lr")
    positive("optim.head_lr", optional=True)
    at_least("optim.momentum", 0)
    need(0 <= opt.dampening <= 1, "optim.dampening", "in [0, 1]")
    at_least("optim.weight_decay", 0)
    positive("optim.gamma")
    need(all(m >= 1 for m in opt.milestones), "optim.milestones", "epochs >= 1")
    for key in ("data.clip_frames", "data.frame_stride", "data.size", "data.val_clips"):
        at_least(key, 1)
    at_least("data.batch_size", 1)
    at_least("data.workers", 0)
    need(
        len(d.crop_scale) == 2 and 0 < d.crop_scale[0] <= d.crop_scale[1] <= 1,
        "data.crop_scale",
        "two values lo,hi with 0 < lo <= hi <= 1",
    )
    need(
        len(d.mean) == 3 and all(math.isfinite(v) for v in d.mean),
        "data.mean",
        "three finite values (R,G,B)",
    )
    need(
        len(d.std) == 3 and all(math.isfinite(v) and v > 0 for v in d.std),
        "data.std",
        "three finite values > 0",
    )
    for key in ("data.synthetic_classes", "data.synthetic_train", "data.synthetic_val"):
        at_least(key, 1)
    at_least("data.audio_dim", 1)
    need(
        tr.name not in ("", ".", "..") and "/" not in tr.name and "\\" not in tr.name,
        "train.name",
        "a folder name (no path separators)",
    )
    need(bool(tr.out_dir), "train.out_dir", "a folder")
    need(
        re.fullmatch(r"auto|cpu|mps|cuda(:\d+)?", tr.device) is not None,
        "train.device",
        "auto, cpu, mps, cuda or cuda:N",
    )
    at_least("train.epochs", 1)
    for key in ("train.log_every", "train.save_every", "train.val_every"):
        at_least(key, 0)
    at_least("train.max_steps_per_epoch", 1, optional=True)
    at_least("train.checkpoint_every_steps", 0)
    at_least("train.grad_norm_every", 0)
    at_least("train.bn_splits", 1, optional=True)
    return out


def _show(value: Any) -> str:
    """A value as it is written on the command line (lists comma-separated)."""
    if isinstance(value, (tuple, list)):
        return ",".join(str(v) for v in value) or "(empty)"
    return "none" if value is None else str(value) or "(empty)"


def _ucf51(method: str, teachers: tuple[str, ...]) -> Config:
    """The reference's UCF51 runs as its first release trains them (docs/METHOD.md §5.1):
    300 epochs, batch 16, SGD 1e-3, the student's lr / 10 at epochs 150 and 225, CCL-AI's
    at epoch 250 only."""
    cfg = Config()
    cfg.objective.method = method  # type: ignore[assignment]
    cfg.objective.teachers = teachers
    if method == CCL and set(teachers) == {AUDIO, IMAGE}:
        # run_ccl_ai.sh of 5c18684 passes --multistep_milestones=250 (b590483 drops it)
        cfg.optim.milestones = (250,)
    cfg.data.val_subset = "validation"  # the reference validated on the test split: opt in
    cfg.train.name = "ucf51-" + (BASELINE if method == BASELINE else "ccl-" + _suffix(teachers))
    return cfg


def _suffix(teachers: tuple[str, ...]) -> str:
    return "".join(t[0] for t in teachers)


def _smoke(method: str, teachers: tuple[str, ...]) -> Config:
    """Seconds on a CPU: synthetic tensors, a narrow student, random image teacher."""
    cfg = _ucf51(method, teachers)
    cfg.train.name = "smoke-" + (BASELINE if method == BASELINE else "ccl-" + _suffix(teachers))
    cfg.student.width = 1 / 16
    cfg.student.feature_dim = 512  # the ResNet-18 teacher's width
    cfg.image_teacher.arch = "resnet18"
    cfg.image_teacher.allow_random = True
    cfg.data.source = "synthetic"
    cfg.data.audio_dim = 512
    cfg.data.clip_frames = 8
    cfg.data.size = 32
    cfg.data.batch_size = 8
    cfg.data.workers = 0
    cfg.optim.lr = 0.05
    cfg.optim.head_lr = 0.05
    cfg.optim.milestones = (8,)
    cfg.train.epochs = 10
    cfg.train.log_every = 4
    cfg.train.save_every = 0
    return cfg


# One entry per run of the comparison; a chosen entry has above it the command that chose
# it and every candidate's validation mean. `ccl demo --tune` prints the entries of its
# choice in this form, each ready to replace its run's line.
DEMO_CHOSEN: dict[str, tuple[str, ...]] = {
    # ccl demo --tune --seeds 1 2 3 4 5: last validation top-1, mean over seeds: reference 45.9,
    # lr0.002 21.6, wd0.05 42.7
    "baseline": (),
    # ccl demo --tune --seeds 1 2 3 4 5: last validation top-1, mean over seeds: reference 37.6,
    # w0.25 34.7, w0.0625 43.5
    "ccl-a": ("objective.loss_weight=0.0625",),
    # ccl demo --tune --seeds 1 2 3 4 5: last validation top-1, mean over seeds: reference 40.4,
    # w0.25 46.1, t0.5 42.7
    "ccl-i": ("objective.loss_weight=0.25",),
    # ccl demo --tune --seeds 1 2 3 4 5: last validation top-1, mean over seeds: reference 39.6,
    # w0.125 49.0, t0.5 40.0
    "ccl-ai": ("objective.loss_weight=0.125",),
    # ccl demo --tune --seeds 1 2 3 4 5: last validation top-1, mean over seeds: reference 8.7,
    # w0.1 32.4, w0.01 46.4
    "fitnet-a": ("objective.kd_weight=0.01",),
    # ccl demo --tune --seeds 1 2 3 4 5: last validation top-1, mean over seeds: reference 24.5,
    # w0.1 28.1, w0.01 52.8
    "fitnet-i": ("objective.kd_weight=0.01",),
    # ccl demo --tune --seeds 1 2 3 4 5: last validation top-1, mean over seeds: reference 23.5,
    # w0.1 41.8, w0.01 47.4
    "fitnet-ai": ("objective.kd_weight=0.01",),
    # ccl demo --tune --seeds 1 2 3 4 5: last validation top-1, mean over seeds: reference 11.4,
    # w9000 35.6, w3000 43.7
    "pkt-a": ("objective.kd_weight=3000",),
    # ccl demo --tune --seeds 1 2 3 4 5: last validation top-1, mean over seeds: reference 11.6,
    # w9000 11.8, w3000 28.9
    "pkt-i": ("objective.kd_weight=3000",),
    # ccl demo --tune --seeds 1 2 3 4 5: last validation top-1, mean over seeds: reference 10.5,
    # w9000 25.0, w3000 43.0
    "pkt-ai": ("objective.kd_weight=3000",),
    # ccl demo --tune --seeds 1 2 3 4 5: last validation top-1, mean over seeds: reference 43.6,
    # w10 51.4, w50 47.2
    "cc-a": ("objective.kd_weight=10",),
    # ccl demo --tune --seeds 1 2 3 4 5: last validation top-1, mean over seeds: reference 45.2,
    # w10 45.1, w50 40.3
    "cc-i": (),
    # ccl demo --tune --seeds 1 2 3 4 5: last validation top-1, mean over seeds: reference 48.1,
    # w10 49.2, w50 42.9
    "cc-ai": ("objective.kd_weight=10",),
    # ccl demo --tune --seeds 1 2 3 4 5: last validation top-1, mean over seeds: reference 10.3,
    # w0.3 12.8, w0.1 33.7
    "rkd-a": ("objective.kd_weight=0.1",),
    # ccl demo --tune --seeds 1 2 3 4 5: last validation top-1, mean over seeds: reference 11.1,
    # w0.3 27.9, w0.1 41.3
    "rkd-i": ("objective.kd_weight=0.1",),
    # ccl demo --tune --seeds 1 2 3 4 5: last validation top-1, mean over seeds: reference 10.5,
    # w0.3 15.5, w0.1 41.7
    "rkd-ai": ("objective.kd_weight=0.1",),
    # ccl demo --tune --seeds 1 2 3 4 5: last validation top-1, mean over seeds: reference 31.0,
    # w0.24 44.1, w0.08 45.4
    "crd-a": ("objective.kd_weight=0.08",),
    # ccl demo --tune --seeds 1 2 3 4 5: last validation top-1, mean over seeds: reference 45.0,
    # w0.24 44.3, w0.08 41.6
    "crd-i": (),
    # ccl demo --tune --seeds 1 2 3 4 5: last validation top-1, mean over seeds: reference 46.3,
    # w0.24 42.2, w0.08 45.3
    "crd-ai": (),
    # ccl demo --tune --seeds 1 2 3 4 5: last validation top-1, mean over seeds: reference 37.9,
    # w0.3 47.2, w0.1 45.5
    "cmc-a": ("objective.kd_weight=0.3",),
    # ccl demo --tune --seeds 1 2 3 4 5: last validation top-1, mean over seeds: reference 38.0,
    # w0.3 48.4, w0.1 49.9
    "cmc-i": ("objective.kd_weight=0.1",),
    # ccl demo --tune --seeds 1 2 3 4 5: last validation top-1, mean over seeds: reference 42.6,
    # w0.3 51.0, w0.1 47.9
    "cmc-ai": ("objective.kd_weight=0.3",),
}
"""The ``demo-*`` presets' settings chosen on the demo's validation groups, by run name
(``baseline``, ``ccl-a``, ``fitnet-ai``, ...; the candidates are ``ccl.demo.tune``'s): the
overrides applied on top of the reference's setting. ``demo-reference-*`` presets leave them
out (``ccl demo --settings reference``). ``ccl demo --tune`` says whether these still hold
its choice."""


def describe_settings(settings: str, runs: Sequence[str]) -> str:
    """One line for a demo table: which settings ``runs`` (run names: ``baseline``,
    ``ccl-a``, ...) trained with: ``settings`` "reference" (``ccl demo --settings
    reference``) or "chosen" (the ``demo-*`` presets, :data:`DEMO_CHOSEN`)."""
    if settings == "reference":
        return (
            "Settings: the reference's (--settings reference): the demo's optimiser, the "
            "papers' loss weights and temperatures"
        )
    changed = [f"{run} {setting_tag(DEMO_CHOSEN[run])}" for run in runs if DEMO_CHOSEN.get(run)]
    held = ", ".join(changed) + "; the others the reference's" if changed else (
        "every run at the reference's"
    )
    return f"Settings: the demo-* presets' (ccl.config.DEMO_CHOSEN): {held}"


def _run_name(method: str, teachers: tuple[str, ...]) -> str:
    """The comparison's name of a method with a teacher setting: baseline, ccl-a, pkt-ai."""
    return BASELINE if method == BASELINE else f"{method}-{_suffix(teachers)}"


# short names of the knobs a demo setting changes, for run folder names
_SETTING_KEYS = {
    "objective.loss_weight": "w",
    "objective.kd_weight": "w",
    "objective.image_temperature": "t",
    "objective.audio_temperature": "ta",
    "optim.lr": "lr",
    "optim.head_lr": "hlr",
    "optim.weight_decay": "wd",
}


def setting_tag(overrides: Sequence[str]) -> str:
    """A setting's short name, the suffix of its run folders: ``reference`` for none (the
    reference's setting), else its knobs and values: ``w0.25``, ``t0.5``, ``lr0.002``,
    ``wd0.05``, joined by ``-``. A head learning rate equal to the student's is left out
    (the demo moves both together)."""
    values = dict(item.split("=", 1) for item in overrides)
    if values.get("optim.head_lr") == values.get("optim.lr"):
        values.pop("optim.head_lr", None)
    parts = [
        _SETTING_KEYS.get(key, key.rpartition(".")[2]) + re.sub(r"[^A-Za-z0-9.+-]", "_", value)
        for key, value in values.items()
    ]
    return "-".join(parts) or "reference"


def demo_run_name(prefix: str, run: str, overrides: Sequence[str]) -> str:
    """The run folder of a demo run with a setting: ``<prefix>-<run>`` for the reference's
    setting, ``<prefix>-<run>-<tag>`` (:func:`setting_tag`) for another. One setting, one
    folder, whichever command trains it: ``ccl demo``, ``--compare`` and ``--tune`` reuse
    each other's runs."""
    return f"{prefix}-{run}" if not overrides else f"{prefix}-{run}-{setting_tag(overrides)}"


def _demo(method: str, teachers: tuple[str, ...], chosen: bool = True) -> Config:
    """The embedded demo (``ccl demo``): prepared synthetic videos, demo teachers, a narrow
    student at 8x32x32. AdamW rather than the reference's SGD: in the few hundred steps a CPU
    affords, SGD from scratch barely leaves chance (docs/DEMO.md). ``chosen``: with the
    settings chosen on validation (:data:`DEMO_CHOSEN`, preset ``demo-<run>``), else the
    reference's loss weights and temperatures (``demo-reference-<run>``); the run folder is
    the setting's (:func:`demo_run_name`). ``ccl demo`` sets the data and teacher paths."""
    cfg = _ucf51(method, teachers)
    run = _run_name(method, teachers)
    settings = tuple(DEMO_CHOSEN.get(run, ())) if chosen else ()
    cfg.train.name = demo_run_name("demo", run, settings)
    cfg.student.width = 0.25
    cfg.student.feature_dim = 512  # the teachers' width ...
    # ... reached by a 1x1x1 expansion after a 128-wide last stage: widening that stage to
    # 512 costs 9x the parameters and 1.6x the step (docs/PERFORMANCE.md)
    cfg.student.feature_layer = "expand"
    cfg.train.channels_last = True  # 1.3x for this student on a CPU (docs/PERFORMANCE.md)
    cfg.image_teacher.arch = "resnet18"
    cfg.image_teacher.input_size = 32  # the demo teacher's training size
    cfg.data.clip_frames = 8
    cfg.data.size = 32
    cfg.data.crop_scale = (0.8, 1.0)  # small objects: a 25 % crop would often lose them
    cfg.data.batch_size = 16
    cfg.data.workers = 0  # measured faster than 2 workers on 2 cores for these tiny clips
    cfg.optim.name = "adamw"
    cfg.optim.lr = 1e-3
    cfg.optim.head_lr = 1e-3
    cfg.optim.weight_decay = 1e-4
    cfg.optim.milestones = (9,)
    cfg.train.epochs = 10
    cfg.train.log_every = 10
    # which loss part drives the student (docs/DEMO.md): about once an epoch, a few % of its time
    cfg.train.grad_norm_every = 50
    cfg.train.save_every = 0
    apply_overrides(cfg, list(settings))
    return cfg


def _demo_gpu(method: str, teachers: tuple[str, ...], chosen: bool = True) -> Config:
    """``ccl demo --device cuda``: the demo's student and optimiser on the larger ``gpu``
    benchmark (``ccl.demo.synth``), with a GPU's budget: 15 epochs at batch 32, the lr / 10
    for the last 2 (docs/DEMO.md, "GPU scale": at 30 epochs the baseline reaches 98 % on
    validation, where methods cannot be told apart)."""
    cfg = _demo(method, teachers, chosen)
    cfg.train.name = cfg.train.name.replace("demo-", "demo-gpu-", 1)
    cfg.train.device = "cuda"
    cfg.data.batch_size = 32
    # several seeds train side by side on one machine: a few loader processes each
    cfg.data.workers = 2
    cfg.optim.milestones = (13,)
    cfg.train.epochs = 15
    return cfg


PRESETS = {
    **{f"ucf51-{name}": (lambda m=m, t=t: _ucf51(m, t)) for name, (m, t) in MAIN_RUNS.items()},
    **{f"smoke-{name}": (lambda m=m, t=t: _smoke(m, t)) for name, (m, t) in MAIN_RUNS.items()},
}
# The demo's presets: every run of the comparison, with the settings chosen on validation
# (demo-<run>) and with the reference's (demo-reference-<run>), on the CPU and GPU scales.
PRESETS.update(
    {
        f"{prefix}{settings}{name}": (
            lambda make=make, m=m, t=t, chosen=not settings: make(m, t, chosen)
        )
        for prefix, make in (("demo-", _demo), ("demo-gpu-", _demo_gpu))
        for settings in ("", "reference-")
        for name, (m, t) in COMPARISON_RUNS.items()
    }
)


# The paper's comparison (docs/METHOD.md §7): each method with each teacher setting, UCF51.
PRESETS.update(
    {
        f"ucf51-{kd}-{short}": (
            lambda kd=kd, t=t: _named(_ucf51(kd, t), f"ucf51-{kd}-{_suffix(t)}")
        )
        for kd in KD_METHODS
        for short, t in TEACHER_SETS.items()
    }
)


def _named(cfg: Config, name: str) -> Config:
    cfg.train.name = name
    return cfg


def preset(name: str) -> Config:
    if name not in PRESETS:
        raise ValueError(f"unknown preset {name!r}; choose from {', '.join(sorted(PRESETS))}")
    return PRESETS[name]()


def apply_overrides(cfg: Config, overrides: list[str]) -> Config:
    """Apply ``section.key=value`` strings (lists comma-separated, ``none`` for None)."""
    for item in overrides:
        if "=" not in item:
            raise ValueError(f"override {item!r} is not of the form section.key=value")
        dotted, raw = item.split("=", 1)
        section, _, key = dotted.partition(".")
        if not key or not hasattr(cfg, section):
            raise ValueError(f"override {item!r}: unknown section {section!r}")
        _set_field(getattr(cfg, section), dotted, key, raw, parse=True)
    return cfg.validate()


def _set_field(obj: Any, dotted: str, key: str, value: Any, *, parse: bool) -> None:
    hints = typing.get_type_hints(type(obj))
    if key not in hints:
        known = ", ".join(f.name for f in dataclasses.fields(obj))
        raise ValueError(f"unknown config key {dotted!r}; known: {known}")
    try:
        setattr(obj, key, _coerce(hints[key], value, parse))
    except (TypeError, ValueError) as err:
        raise ValueError(f"bad value for {dotted}: {value!r} ({err})") from err


def _coerce(tp: Any, value: Any, parse: bool) -> Any:
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):
        if value is None or (parse and str(value).lower() in ("none", "null")):
            if type(None) in args:
                return None
        inner = [a for a in args if a is not type(None)]
        return _coerce(inner[0], value, parse)
    if origin is Literal:
        if value not in args:
            raise ValueError(f"choose from {args}")
        return value
    if origin is tuple:
        items = [s for s in value.split(",") if s] if parse and isinstance(value, str) else value
        inner = args[0]
        return tuple(_coerce(inner, v, parse) for v in items)
    if tp is bool:
        if isinstance(value, bool):
            return value
        if parse and str(value).lower() in ("1", "true", "yes", "on", "0", "false", "no", "off"):
            return str(value).lower() in ("1", "true", "yes", "on")
        raise ValueError("expected a boolean")
    if tp is int:
        if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
            raise ValueError("expected an integer")
        return int(value)
    if tp is float:
        return float(value)
    if tp is str:
        return str(value)
    raise TypeError(f"unsupported config type {tp}")
