"""Relational Knowledge Distillation (Park et al., CVPR 2019).

Distance-wise potential (Eqs. 3-4): ``psi_D(t_i, t_j) = |t_i - t_j| / mu`` with ``mu`` the
mean distance over the batch's pairs (i != j), each side normalised by its own mu.
Angle-wise potential (Eqs. 5-6): ``psi_A(t_i, t_j, t_k) = <e_ij, e_kj>`` with
``e_ij = (t_i - t_j) / |t_i - t_j|``. Both are matched with the Huber loss ``l_delta``
(delta = 1, i.e. smooth L1), averaged over all B^2 pairs and B^3 triplets as in the authors'
code. ``L = w_d * L_D + w_a * L_A`` with the paper's classification weights 25 and 50.
Relations are (B, B) or (B, B, B), so student and teacher widths may differ.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ccl.objectives.kd.base import KDLoss


def pairwise_distance(x: torch.Tensor, eps: float = 1e-12) -> torch.Tensor:
    """(B, D) -> (B, B) Euclidean distances, 0 on the diagonal (finite gradient there)."""
    sq = x.pow(2).sum(dim=1)
    d2 = (sq.unsqueeze(1) + sq.unsqueeze(0) - 2 * x @ x.t()).clamp(min=eps)
    off = 1 - torch.eye(len(x), dtype=x.dtype, device=x.device)
    return d2.sqrt() * off


def distance_potential(x: torch.Tensor) -> torch.Tensor:
    """``psi_D``: distances divided by their mean over pairs i != j (Eq. 4)."""
    d = pairwise_distance(x)
    n = len(x)
    mu = d.sum() / (n * (n - 1))
    return d / mu


def angle_potential(x: torch.Tensor) -> torch.Tensor:
    """``psi_A``: (B, B, B) cosines ``<e_ji, e_ki>`` of the angle at vertex i (Eq. 5)."""
    e = F.normalize(x.unsqueeze(0) - x.unsqueeze(1), p=2, dim=2)  # e[i, j] ~ x_j - x_i
    return torch.bmm(e, e.transpose(1, 2))


class RKDLoss(KDLoss):
    """``weight * (w_d * huber(psi_D(s), psi_D(t)) + w_a * huber(psi_A(s), psi_A(t)))``."""

    needs_index = False
    min_batch = 2

    def __init__(
        self,
        student_dim: int | None = None,
        teacher_dim: int | None = None,
        *,
        weight: float = 1.0,
        distance_weight: float = 25.0,
        angle_weight: float = 50.0,
    ) -> None:
        super().__init__()
        self.weight = weight
        self.distance_weight = distance_weight
        self.angle_weight = angle_weight

    def forward(
        self, student: torch.Tensor, teacher: torch.Tensor, index: torch.Tensor | None = None
    ) -> torch.Tensor:
        with torch.no_grad():
            t = teacher.detach()
            td, ta = distance_potential(t), angle_potential(t)
        loss_d = F.smooth_l1_loss(distance_potential(student), td)
        loss_a = F.smooth_l1_loss(angle_potential(student), ta)
        return self.weight * (self.distance_weight * loss_d + self.angle_weight * loss_a)
