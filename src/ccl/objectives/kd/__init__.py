"""Feature-distillation methods the CCL paper compares against (docs/METHOD.md §3.5, §7), trained by
the same loop as CCL: FitNet, PKT, CC ("COR"), RKD, CRD and CMC.

``build_kd_objective(method, ...)`` returns a :class:`DistillationObjective`:
``L = CE(student) + w * sum over teachers of D(student feature, teacher feature)``, w = 1 with
one teacher and 0.5 each with both (as CCL-AI), the per-teacher loss modules in ``heads``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ccl.models.teachers import ImageTeacher
from ccl.objectives.kd.base import KDLoss
from ccl.objectives.kd.cc import CorrelationCongruenceLoss
from ccl.objectives.kd.cmc import CMCLoss
from ccl.objectives.kd.crd import ContrastMemory, CRDLoss
from ccl.objectives.kd.fitnet import FitNetLoss
from ccl.objectives.kd.objective import DistillationObjective, check_options, describe_options
from ccl.objectives.kd.pkt import PKTLoss
from ccl.objectives.kd.rkd import RKDLoss
from ccl.objectives.registry import KD_METHODS, TEACHERS

# The loss module of each method of ccl.objectives.registry.KD_METHODS.
KD_LOSSES: dict[str, type[KDLoss]] = {
    "fitnet": FitNetLoss,
    "pkt": PKTLoss,
    "cc": CorrelationCongruenceLoss,
    "rkd": RKDLoss,
    "crd": CRDLoss,
    "cmc": CMCLoss,
}


def build_kd_objective(
    method: str,
    *,
    num_classes: int,
    feature_dim: int,
    teachers: Sequence[str],
    image_teacher: ImageTeacher | None = None,
    num_samples: int | None = None,
    loss_weight: float | None = None,
    options: dict[str, Any] | None = None,
) -> DistillationObjective:
    """A distillation objective of ``method`` for the given teachers.

    ``feature_dim`` is the student's pooled feature width; the image teacher's width is
    ``image_teacher.feature_dim`` and the audio embeddings' is ``options["audio_dim"]``
    (default ``feature_dim``). ``num_samples`` (training-set size) is required by CRD's memory
    bank. ``loss_weight`` is w (default 1 / number of teachers). ``options`` are keyword
    arguments of the method's loss module (e.g. ``weight``, ``temperature``, ``num_negatives``),
    shared by both teachers.
    """
    if method not in KD_LOSSES:
        raise ValueError(f"unknown distillation method {method!r}; choose from {KD_METHODS}")
    teachers = tuple(teachers)
    if not teachers or len(set(teachers)) != len(teachers) or set(teachers) - set(TEACHERS):
        raise ValueError(f"teachers must be a non-empty subset of {TEACHERS}, got {teachers}")
    opts = dict(options or {})
    audio_dim = int(opts.pop("audio_dim", feature_dim))
    cls = KD_LOSSES[method]
    check_options(cls, opts, method)
    if feature_dim < 1 or audio_dim < 1:
        raise ValueError(
            f"feature widths must be positive: student {feature_dim}, audio {audio_dim}"
        )
    dims: dict[str, int] = {}
    for t in teachers:
        if t == "image":
            if image_teacher is None:
                raise ValueError("the image teacher is used but none was given")
            dims[t] = int(image_teacher.feature_dim)
        else:
            dims[t] = audio_dim
    losses: dict[str, KDLoss] = {}
    for i, t in enumerate(teachers):
        # a seeded loss (CRD): a distinct random stream per teacher, derived from the given
        # seed (0 by default) so two teachers never draw the same negatives
        t_opts = opts
        if "seed" in describe_options(cls):
            t_opts = {**opts, "seed": int(opts.get("seed", 0)) + i * 1_000_003}
        if cls.needs_num_samples:
            if num_samples is None or num_samples < 2:
                raise ValueError(
                    f"{method} needs num_samples (the training-set size, >= 2) for its memory "
                    f"bank, got {num_samples}"
                )
            losses[t] = cls(feature_dim, dims[t], num_samples, **t_opts)
        else:
            losses[t] = cls(feature_dim, dims[t], **t_opts)
    return DistillationObjective(
        method,
        num_classes,
        feature_dim,
        losses,
        image_teacher=image_teacher,
        audio_dim=audio_dim,
        loss_weight=loss_weight,
    )


__all__ = [
    "KD_LOSSES",
    "KD_METHODS",
    "CMCLoss",
    "CRDLoss",
    "ContrastMemory",
    "CorrelationCongruenceLoss",
    "DistillationObjective",
    "FitNetLoss",
    "KDLoss",
    "PKTLoss",
    "RKDLoss",
    "build_kd_objective",
]
