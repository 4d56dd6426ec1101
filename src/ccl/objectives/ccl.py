"""Compositional Contrastive Learning (Chen et al., CVPR 2021; docs/METHOD.md §2 and §3).

Per teacher t with student feature v, teacher feature x_t and composed feature m = x_tv:

    student terms  S(v, m) + S(v, x_t) + J(v_logits, m_logits)
    head loss      CE(m_logits) + S(v, m) + S(m, x_t) + J(v_logits, m_logits)
    L_v            CE(v_logits) + w * sum_t (student terms of t)      (w = 1, or 0.5 with both)

Gradient routing (``head_update``; docs/METHOD.md §4). One scalar,
``L_v + sum_t L_head_t``, is backpropagated once; L_v sees each head through detached
parameters (``functional_call``) and each head loss sees a detached student, so

- ``reference`` (default): the student receives grad L_v only (including the part that flows
  through the composed feature m into v), each head grad L_head_t only: the rule of the
  reference's first release (``5c18684``, which produced the paper's numbers). That release
  steps each head's optimizer right after ``L_head_t.backward(retain_graph=True)``, then
  clears the student's gradients and backpropagates L_v; what L_v leaves on the heads is
  cleared unused at the next step. One difference remains: on the PyTorch it ran on (1.1;
  releases from 1.5 refuse its sequence, pytorch/pytorch#39141), the part of the student's
  gradient that passes through a head used the head's weights as already stepped; here it
  uses the weights of the forward pass (a difference of the order of the head's lr).
- ``joint``: as ``reference``, but L_v also reaches the heads: head t receives
  grad(L_head_t + L_v). The rule of the reference's current release (``b590483``, "fit to
  pytorch 1.7"), which steps every optimizer after L_v's backward: exactly its gradients.
- ``paper`` (Algorithm A of the paper): each head's loss is its CE only, and the student's
  contrastive terms are weighted as the paper writes them, ``lambda * S(v, x_t) + (1 - lambda)
  * S(v, m)`` (``paper_lambda``; 0.5 by default, this package's choice, not a value taken
  from the paper; None keeps the unweighted sum of the other rules).

Launch cost: the step makes no host synchronisation and has no data-dependent control
flow. Samples without a teacher (missing audio) are not selected out of the batch; a
(B,) mask leaves them out of that teacher's terms instead (contrastive anchors and
candidates, cross-entropy, divergence: Eq. 3 and 5 over the valid samples), with the same
values and gradients as on the selected subset. The contrastive terms of one teacher come
from one stacked similarity (``MultiClassNCELoss.symmetric_pairs``), the student's and the
head's divergence from one stacked call. When no sample of the step has audio, the audio
terms contribute exactly 0 and their logged values are 0 (not absent); the heads stay in
the graph with zero gradients (under DDP every parameter must take part in each step's
graph), so an optimizer with momentum or weight decay still moves them that step.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal, get_args

import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call

from ccl.distributed import gather_no_grad, gather_with_grad
from ccl.losses import MultiClassNCELoss, SymmetricKLLoss
from ccl.losses.divergence import Divergence
from ccl.losses.masking import masked_mean
from ccl.models.composition import CompositionHead
from ccl.models.r2plus1d import StudentOutput
from ccl.models.teachers import ImageTeacher
from ccl.objectives.base import (
    Batch,
    Objective,
    ObjectiveOutput,
    teacher_features,
)
from ccl.objectives.registry import CCL_TEMPERATURES, TEACHERS

HeadUpdate = Literal["reference", "paper", "joint"]
# The reference's temperatures (docs/METHOD.md §3.1), kept in the method table.
DEFAULT_TEMPERATURES = CCL_TEMPERATURES


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
        paper_lambda: float | None = 0.5,
    ) -> None:
        super().__init__()
        teachers = tuple(teachers)
        if not teachers or len(set(teachers)) != len(teachers) or set(teachers) - set(TEACHERS):
            raise ValueError(f"teachers must be a non-empty subset of {TEACHERS}, got {teachers}")
        if head_update not in get_args(HeadUpdate):
            raise ValueError(
                f"head_update must be one of {get_args(HeadUpdate)}, got {head_update!r}"
            )
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
        if paper_lambda is not None and not 0 <= paper_lambda <= 1:
            raise ValueError(f"paper_lambda must be in [0, 1] or None, got {paper_lambda}")
        self.head_update = head_update
        self.paper_lambda = paper_lambda  # head_update="paper" only
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
        contrast = v.new_zeros(())
        divergence = v.new_zeros(())
        heads_loss = v.new_zeros(())
        for t in self.teachers:
            x_t, available = self.teacher_features(t, batch)
            x_t = gather_no_grad(x_t)
            if available is not None:
                available = gather_no_grad(available)
                terms[f"{t}/available"] = available.float().mean()
                # Rows without this teacher are zeroed (whatever they held cannot reach the
                # valid terms) and left out of every term of t by the mask.
                x_t = x_t.masked_fill(~available.unsqueeze(1), 0.0)
            t_contrast, t_divergence, head_loss = self._branch(
                t, v, v_logits, y, x_t, available, terms
            )
            contrast = contrast + t_contrast
            divergence = divergence + t_divergence
            heads_loss = heads_loss + head_loss
        w = self.loss_weight
        loss_v = ce + w * (contrast + divergence)
        terms["loss_v"] = loss_v.detach()
        terms["loss_heads"] = heads_loss.detach()
        return ObjectiveOutput(
            loss=loss_v + heads_loss,
            terms=terms,
            student_terms={"ce": ce, "contrast": w * contrast, "divergence": w * divergence},
        )

    def _branch(
        self,
        t: str,
        v: torch.Tensor,
        v_logits: torch.Tensor,
        y: torch.Tensor,
        x_t: torch.Tensor,
        valid: torch.Tensor | None,
        terms: dict[str, torch.Tensor],
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(the student's contrastive terms S(v,m) + S(v,x_t) of teacher t, its divergence
        J(v, m), the head loss evaluated on a detached student), all over the ``valid``
        samples only (None: all)."""
        head, contrast = self.heads[t], self.contrast[t]
        v_d, v_logits_d = v.detach(), v_logits.detach()
        # For L_v, the head composes the student's feature with its parameters held fixed:
        # L_v's gradient reaches the student through m, not the head ("joint" lets it in).
        if self.head_update == "joint":
            m_logits, m = head(x_t, v)
        else:
            fixed = {k: p.detach() for k, p in head.named_parameters()}
            m_logits, m = functional_call(head, fixed, (x_t, v))
        # For the head loss, the head composes a detached student: it trains the head only.
        h_logits, h = head(x_t, v_d)
        head_ce = _cross_entropy(h_logits, y, valid)
        if self.head_update == "paper":
            s_vm, s_vt = contrast.symmetric_pairs((v, v), (m, x_t), y, valid).unbind()
            jsd = self.jsd(v_logits, m_logits, valid)
            head_loss = head_ce
        else:
            # S(v, m), S(v, x_t) for the student; S(v_d, h), S(h, x_t) for the head.
            s_vm, s_vt, s_vh, s_mt = contrast.symmetric_pairs(
                (v, v, v_d, h), (m, x_t, h, x_t), y, valid
            ).unbind()
            jsd, jsd_head = self.jsd(
                torch.stack((v_logits, v_logits_d)), torch.stack((m_logits, h_logits)), valid
            ).unbind()
            head_loss = head_ce + s_vh + s_mt + jsd_head
            terms[f"{t}/contrast_mt"] = s_mt.detach()
        correct = h_logits.argmax(1) == y
        terms[f"{t}/contrast_vm"] = s_vm.detach()
        terms[f"{t}/contrast_vt"] = s_vt.detach()
        terms[f"{t}/jsd"] = jsd.detach()
        terms[f"{t}/head_ce"] = head_ce.detach()
        terms[f"{t}/head_acc"] = masked_mean(correct.float(), valid)
        if self.head_update == "paper" and self.paper_lambda is not None:
            # Algorithm A: lambda * L(v, x_t) + (1 - lambda) * L(v, m), each symmetric here
            lam = self.paper_lambda
            return lam * s_vt + (1 - lam) * s_vm, jsd, head_loss
        return s_vm + s_vt, jsd, head_loss


def _cross_entropy(
    logits: torch.Tensor, targets: torch.Tensor, valid: torch.Tensor | None
) -> torch.Tensor:
    """Mean cross-entropy over the ``valid`` samples (None: all); 0 when there is none."""
    if valid is None:
        return F.cross_entropy(logits, targets)
    return masked_mean(F.cross_entropy(logits, targets, reduction="none"), valid)
