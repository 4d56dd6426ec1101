"""``build_objective``: a run's ``objective``, ``image_teacher`` and ``data`` config sections
-> the method's objective with its teachers."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ccl.models import ImageTeacher
from ccl.objectives.base import Objective
from ccl.objectives.baseline import BaselineObjective
from ccl.objectives.ccl import CCLObjective
from ccl.objectives.registry import AUDIO, BASELINE, CCL, IMAGE, describe_teacher_sets

if TYPE_CHECKING:  # for the annotations only: ccl.config sits above ccl.objectives
    from ccl.config import DataConfig, ImageTeacherConfig, ObjectiveConfig


def build_objective(
    objective: ObjectiveConfig,
    image_teacher: ImageTeacherConfig,
    data: DataConfig,
    *,
    num_classes: int,
    feature_dim: int,
    seed: int,
    num_samples: int | None = None,
) -> Objective:
    """The method of ``objective`` with its teachers: the image teacher as ``image_teacher``
    describes it, seeing clips normalised by ``data.mean`` / ``data.std``; audio embeddings
    of ``data.audio_dim``. ``feature_dim``: the student's; ``seed`` draws CRD's negatives;
    ``num_samples`` (training-set size) sizes memory banks (CRD)."""
    o = objective
    if o.method == BASELINE:
        if o.teachers:
            raise ValueError("the baseline uses no teachers; set objective.teachers= (empty)")
        return BaselineObjective()
    if not o.teachers:
        raise ValueError(f"method {o.method!r} needs objective.teachers={describe_teacher_sets()}")
    teacher = None
    if IMAGE in o.teachers:
        t = image_teacher
        if t.weights is None and not t.allow_random:
            raise ValueError(
                "the image teacher needs pretrained weights: set image_teacher.weights=PATH to a "
                "torchvision state-dict file (e.g. resnet34-b627a593.pth)"
            )
        teacher = ImageTeacher(
            t.arch,
            t.weights,
            frame_choice=t.frame_choice,
            input_size=t.input_size,
            normalization=t.normalization,
            clip_mean=data.mean,
            clip_std=data.std,
        )
    if o.method != CCL:
        from ccl.objectives.kd import KD_LOSSES, build_kd_objective
        from ccl.objectives.kd.objective import describe_options

        options: dict[str, Any] = {"audio_dim": data.audio_dim} if AUDIO in o.teachers else {}
        if o.kd_weight is not None:
            options["weight"] = o.kd_weight
        if o.kd_temperature is not None:
            options["temperature"] = o.kd_temperature
        if o.kd_negatives is not None:
            options["num_negatives"] = o.kd_negatives
        if "seed" in describe_options(KD_LOSSES[o.method]):  # CRD's negatives
            options["seed"] = seed
        return build_kd_objective(
            o.method,
            num_classes=num_classes,
            feature_dim=feature_dim,
            teachers=o.teachers,
            image_teacher=teacher,
            num_samples=num_samples,
            loss_weight=o.loss_weight,
            options=options,
        )
    return CCLObjective(
        num_classes,
        feature_dim,
        o.teachers,
        image_teacher=teacher,
        loss_weight=o.loss_weight,
        temperatures={AUDIO: o.audio_temperature, IMAGE: o.image_temperature},
        head_update=o.head_update,
        divergence=o.divergence,
        jsd_weight=o.jsd_weight,
        normalize_composition=o.normalize_composition,
        nce_eps=o.nce_eps,
        paper_lambda=o.paper_lambda,
    )
