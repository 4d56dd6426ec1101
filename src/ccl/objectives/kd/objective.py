"""Feature-distillation baselines of the CCL paper (docs/METHOD.md §3.5) as one objective.

``L = CE(student logits) + w * sum_t D_t(v, x_t)`` with ``v`` the student's pooled feature,
``x_t`` teacher t's frozen feature and ``D_t`` the chosen method's loss module (one per
teacher, its trainable parts and buffers in ``self.heads[t]``). ``w`` defaults to 1 with one
teacher and 0.5 each with both, as CCL-AI weights its teacher terms (docs/METHOD.md §3.3).

As in :mod:`ccl.objectives.ccl`: samples without audio are dropped from the audio term only
(a step where too few samples have audio skips that term); under DDP the distillation terms
see the global batch (student features gathered with their gradient, teacher features and
dataset indices without), so every rank computes the same terms and applies the same
memory-bank updates; a skipped branch still puts its head parameters in the graph (0 * sum).
"""

from __future__ import annotations

import inspect
from collections.abc import Mapping
from typing import Any

import torch
import torch.nn.functional as F

from ccl.distributed import gather_no_grad, gather_with_grad
from ccl.distributed import info as dist_info
from ccl.models.r2plus1d import StudentOutput
from ccl.models.teachers import ImageTeacher
from ccl.objectives.base import (
    Batch,
    Objective,
    ObjectiveOutput,
    keep_in_graph,
    teacher_features,
)
from ccl.objectives.kd.base import KDLoss
from ccl.objectives.registry import TEACHERS


class DistillationObjective(Objective):
    """CE plus one feature-distillation loss per teacher (FitNet, PKT, CC, RKD, CRD, CMC).

    ``losses`` maps each teacher to its loss module (the :class:`KDLoss` interface: called as
    ``loss(v, x_t, index)``, with ``needs_index`` and ``min_batch``). Build it with
    :func:`ccl.objectives.kd.build_kd_objective`.
    """

    def __init__(
        self,
        method: str,
        num_classes: int,
        feature_dim: int,
        losses: Mapping[str, KDLoss],
        *,
        image_teacher: ImageTeacher | None = None,
        audio_dim: int | None = None,
        loss_weight: float | None = None,
    ) -> None:
        super().__init__()
        teachers = tuple(losses)
        if not teachers or set(teachers) - set(TEACHERS):
            raise ValueError(f"teachers must be a non-empty subset of {TEACHERS}, got {teachers}")
        for t in teachers:
            if not isinstance(losses[t], KDLoss):
                raise TypeError(f"the {t} loss is a {type(losses[t]).__name__}, not a KDLoss")
        if "image" in teachers and image_teacher is None:
            raise ValueError("the image teacher is used but none was given")
        self.method = method
        self.num_classes = num_classes
        self.feature_dim = feature_dim
        self.teachers = teachers
        self.image_teacher = image_teacher if "image" in teachers else None
        self.audio_dim = audio_dim if audio_dim is not None else feature_dim
        self.loss_weight = loss_weight if loss_weight is not None else 1.0 / len(teachers)
        for t in teachers:
            self.heads[t] = losses[t]

    def teacher_features(
        self, teacher: str, batch: Batch
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        x_t, available = teacher_features(
            teacher,
            batch,
            self.image_teacher,
            self.audio_dim,
            f"the {self.method} audio head was built for {self.audio_dim}-d; pass "
            f"options={{'audio_dim': {batch.audio.shape[1] if batch.audio is not None else 0}}}",
        )
        return x_t.detach(), available

    def _keep_in_graph(self, teacher: str, like: torch.Tensor) -> torch.Tensor:
        return keep_in_graph(self.heads[teacher], like, dist_info().enabled)

    def forward(self, student_out: StudentOutput, batch: Batch) -> ObjectiveOutput:
        v_local, logits = student_out.feature, student_out.logits
        if v_local.ndim != 2 or v_local.shape[1] != self.feature_dim:
            raise ValueError(
                f"student features have shape {tuple(v_local.shape)}; the {self.method} "
                f"objective was built for (B, {self.feature_dim})"
            )
        ce = F.cross_entropy(logits, batch.label)
        terms: dict[str, torch.Tensor] = {"ce": ce.detach()}
        v = gather_with_grad(v_local)
        needs_index = any(self.heads[t].needs_index for t in self.teachers)
        index = None
        if needs_index:
            if batch.index is None:
                raise ValueError(f"{self.method} needs the samples' dataset indices (batch.index)")
            index = gather_no_grad(batch.index)
        distill = v.new_zeros(())
        for t in self.teachers:
            x_t, available = self.teacher_features(t, batch)
            x_t = gather_no_grad(x_t)
            if x_t.shape[0] != v.shape[0]:
                raise ValueError(f"{t} teacher gave {x_t.shape[0]} rows for {v.shape[0]} samples")
            tv, t_index = v, index
            if available is not None:
                available = gather_no_grad(available).bool()
                terms[f"{t}/available"] = available.float().mean()
                if int(available.sum()) < self.heads[t].min_batch:
                    distill = distill + self._keep_in_graph(t, v)
                    continue  # too few samples have this teacher: its term is absent
                if not bool(available.all()):
                    tv, x_t = v[available], x_t[available]
                    t_index = index[available] if index is not None else None
            elif v.shape[0] < self.heads[t].min_batch:
                distill = distill + self._keep_in_graph(t, v)
                continue
            term = self.heads[t](tv, x_t.to(tv.dtype), t_index)
            terms[f"{t}/{self.method}"] = term.detach()
            distill = distill + term
        loss = ce + self.loss_weight * distill
        terms["loss"] = loss.detach()
        return ObjectiveOutput(
            loss=loss,
            terms=terms,
            student_terms={"ce": ce, self.method: self.loss_weight * distill},
        )


def describe_options(cls: type[KDLoss]) -> list[str]:
    """Keyword options a loss module accepts (for error messages)."""
    sig = inspect.signature(cls.__init__)
    return [n for n, p in sig.parameters.items() if p.kind is inspect.Parameter.KEYWORD_ONLY]


def check_options(cls: type[KDLoss], options: Mapping[str, Any], method: str) -> None:
    allowed = describe_options(cls)
    unknown = sorted(set(options) - set(allowed))
    if unknown:
        raise ValueError(
            f"unknown {method} options {unknown}; accepted: {sorted([*allowed, 'audio_dim'])}"
        )
