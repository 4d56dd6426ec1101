"""Compositional Contrastive Learning (Chen et al., CVPR 2021; spec sections 2-3).

Per teacher t with student feature v, teacher feature x_t and composed feature m = x_tv:

    student terms  S(v, m) + S(v, x_t) + J(v_logits, m_logits)
    head loss      CE(m_logits) + S(v, m) + S(m, x_t) + J(v_logits, m_logits)
    L_v            CE(v_logits) + w * sum_t (student terms of t)      (w = 1, or 0.5 with both)

Gradient routing (``head_update``):

- ``reference`` (default; produced the published numbers): the student receives grad L_v
  only, each head grad(L_head + L_v). The reference gets this with two or three backward
  passes through the student (``retain_graph``); here one scalar does it in one pass,
  ``L_v + sum_t L_head_t(v.detach())``: the head losses see a detached student, so they
  reach the heads and not the student, while L_v reaches both.
- ``paper`` (Algorithm A of the paper): each head is trained by its CE only. L_v then
  sees the heads through detached parameters.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call

from ccl.distributed import gather_no_grad, gather_with_grad
from ccl.distributed import info as dist_info
from ccl.losses import MultiClassNCELoss, SymmetricKLLoss, symmetric_contrastive
from ccl.losses.divergence import Divergence
from ccl.models.composition import CompositionHead
from ccl.models.r2plus1d import StudentOutput
from ccl.models.teachers import ImageTeacher
from ccl.objectives.base import (
    Batch,
    Objective,
    ObjectiveOutput,
    keep_in_graph,
    teacher_features,
)

HeadUpdate = Literal["reference", "paper"]
TEACHERS = ("audio", "image")
# The reference's temperatures (spec section 3).
DEFAULT_TEMPERATURES = {"audio": 0.5, "image": 0.1}


class CCLObjective(Objective):
    """CCL-A, CCL-I or CCL-AI, by the teachers given (``audio``, ``image`` or both)."""

    def __init__(
        self,
        num_classes: int,
        feature_dim: int,
        teachers: Sequence[str],
        *,
        image_teacher: ImageTeacher | None = None,
        loss_weight: float | None = None,
        temperatures: dict[str, float] | None = None,
        head_update: HeadUpdate = "reference",
        divergence: Divergence = "symmetric-kl",
        jsd_weight: float = 0.5,
        normalize_composition: bool = True,
        nce_eps: float = 1e-10,
    ) -> None:
        super().__init__()
        teachers = tuple(teachers)
        if not teachers or len(set(teachers)) != len(teachers) or set(teachers) - set(TEACHERS):
            raise ValueError(f"teachers must be a non-empty subset of {TEACHERS}, got {teachers}")
        if head_update not in ("reference", "paper"):
            raise ValueError(f"head_update must be 'reference' or 'paper', got {head_update!r}")
        if "image" in teachers:
            if image_teacher is None:
                raise ValueError("the image teacher is used but none was given")
            if image_teacher.feature_dim != feature_dim:
                raise ValueError(
                    f"image teacher features are {image_teacher.feature_dim}-d but the student's "
                    f"are {feature_dim}-d; set student.feature_dim={image_teacher.feature_dim}"
                )
        self.teachers = teachers
        self.feature_dim = feature_dim
        self.image_teacher = image_teacher if "image" in teachers else None
        self.loss_weight = loss_weight if loss_weight is not None else 1.0 / len(teachers)
        self.head_update = head_update
        temps = {**DEFAULT_TEMPERATURES, **(temperatures or {})}
        self.contrast = nn.ModuleDict(
            {t: MultiClassNCELoss(temps[t], eps=nce_eps) for t in teachers}
        )
        self.jsd = SymmetricKLLoss(jsd_weight, divergence)
        for t in teachers:
            self.heads[t] = CompositionHead(2 * feature_dim, num_classes, normalize_composition)

    def teacher_features(
        self, teacher: str, batch: Batch
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        return teacher_features(
            teacher,
            batch,
            self.image_teacher,
            self.feature_dim,
            "the composition compares them with the student's features",
        )

    def forward(self, student_out: StudentOutput, batch: Batch) -> ObjectiveOutput:
        v_local, logits_local, y_local = student_out.feature, student_out.logits, batch.label
        ce = F.cross_entropy(logits_local, y_local)
        terms: dict[str, torch.Tensor] = {"ce": ce.detach()}
        # Under DDP the teacher terms see the global batch, as the reference's DataParallel
        # did: features are gathered with their gradient, and every rank computes the same
        # global terms (DDP's gradient averaging then gives the single-process gradient).
        v, v_logits, y = (
            gather_with_grad(v_local),
            gather_with_grad(logits_local),
            gather_no_grad(y_local),
        )
        distill = v.new_zeros(())
        heads_loss = v.new_zeros(())
        for t in self.teachers:
            x_t, available = self.teacher_features(t, batch)
            x_t = gather_no_grad(x_t)
            tv, t_logits, ty = v, v_logits, y
            if available is not None:
                available = gather_no_grad(available)
                terms[f"{t}/available"] = available.float().mean()
                if not bool(available.any()):
                    heads_loss = heads_loss + keep_in_graph(self.heads[t], v, dist_info().enabled)
                    continue  # no sample has this teacher: its terms are absent this step
                if not bool(available.all()):
                    tv, t_logits, ty, x_t = (
                        v[available],
                        v_logits[available],
                        y[available],
                        x_t[available],
                    )
            student_terms, head_loss = self._branch(t, tv, t_logits, ty, x_t, terms)
            distill = distill + student_terms
            heads_loss = heads_loss + head_loss
        loss_v = ce + self.loss_weight * distill
        terms["loss_v"] = loss_v.detach()
        terms["loss_heads"] = heads_loss.detach()
        return ObjectiveOutput(loss=loss_v + heads_loss, terms=terms)

    def _branch(
        self,
        t: str,
        v: torch.Tensor,
        v_logits: torch.Tensor,
        y: torch.Tensor,
        x_t: torch.Tensor,
        terms: dict[str, torch.Tensor],
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(student terms of teacher t, head loss evaluated on a detached student)."""
        head, contrast = self.heads[t], self.contrast[t]
        if self.head_update == "reference":
            m_logits, m = head(x_t, v)
        else:
            frozen = {k: p.detach() for k, p in head.named_parameters()}
            m_logits, m = functional_call(head, frozen, (x_t, v))
        s_vm = symmetric_contrastive(contrast, v, m, y)
        s_vt = symmetric_contrastive(contrast, v, x_t, y)
        jsd = self.jsd(v_logits, m_logits)

        v_d, v_logits_d = v.detach(), v_logits.detach()
        h_logits, h = head(x_t, v_d)
        head_ce = F.cross_entropy(h_logits, y)
        head_loss = head_ce
        if self.head_update == "reference":
            s_mt = symmetric_contrastive(contrast, h, x_t, y)
            head_loss = (
                head_ce
                + symmetric_contrastive(contrast, v_d, h, y)
                + s_mt
                + self.jsd(v_logits_d, h_logits)
            )
            terms[f"{t}/contrast_mt"] = s_mt.detach()
        terms[f"{t}/contrast_vm"] = s_vm.detach()
        terms[f"{t}/contrast_vt"] = s_vt.detach()
        terms[f"{t}/jsd"] = jsd.detach()
        terms[f"{t}/head_ce"] = head_ce.detach()
        terms[f"{t}/head_acc"] = (h_logits.argmax(1) == y).float().mean()
        return s_vm + s_vt + jsd, head_loss
