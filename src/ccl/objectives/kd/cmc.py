"""Contrastive Multiview Coding (Tian, Krishnan & Isola, ECCV 2020) between the student's
view and a teacher's view.

Each view is projected by a linear head and L2-normalised (128-d). For the two views the
contrastive loss (Eq. 2) is ``L(V1, V2) = -E log [h(v1_i, v2_i) / sum_j h(v1_i, v2_j)]``
with critic ``h(a, b) = exp(a.b / tau)``, tau = 0.07, and the two-view objective (Eq. 3) is
symmetric, ``L = L(V1, V2) + L(V2, V1)``. The paper draws the negatives from a memory bank
(NCE or softmax); here they are the other samples of the (global) batch, the InfoNCE form.
CRD with ``loss="softmax"`` is the memory-bank (softmax) form of this objective.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ccl.objectives.kd.base import KDLoss


class Embed(nn.Module):
    """Linear projection followed by L2 normalisation (CMC's and CRD's embedding head)."""

    def __init__(self, dim_in: int, dim_out: int = 128) -> None:
        super().__init__()
        self.linear = nn.Linear(dim_in, dim_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.linear(x.flatten(1)), p=2, dim=1)


class CMCLoss(KDLoss):
    """``weight * (CE(z_s z_t^T / tau, diag) + CE(z_t z_s^T / tau, diag))``."""

    needs_index = False
    min_batch = 2

    def __init__(
        self,
        student_dim: int,
        teacher_dim: int,
        *,
        weight: float = 1.0,
        feat_dim: int = 128,
        temperature: float = 0.07,
    ) -> None:
        super().__init__()
        self.embed_s = Embed(student_dim, feat_dim)
        self.embed_t = Embed(teacher_dim, feat_dim)
        self.weight = weight
        self.temperature = temperature

    def forward(
        self, student: torch.Tensor, teacher: torch.Tensor, index: torch.Tensor | None = None
    ) -> torch.Tensor:
        zs, zt = self.embed_s(student), self.embed_t(teacher.detach())
        logits = zs @ zt.t() / self.temperature
        target = torch.arange(len(zs), device=zs.device)
        loss = F.cross_entropy(logits, target) + F.cross_entropy(logits.t(), target)
        return self.weight * loss
