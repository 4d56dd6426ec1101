"""Correlation Congruence (Peng et al., "Correlation Congruence for Knowledge Distillation",
ICCV 2019), "COR" in the CCL paper's tables.

The correlation between instances uses the Gaussian RBF kernel
``k(x, y) = exp(-gamma |x - y|^2)`` on L2-normalised features, approximated by its P-order
Taylor expansion (Eq. 10): with ``|x| = |y| = 1``,
``k(x, y) ~= sum_{p=0}^{P} exp(-2 gamma) (2 gamma)^p / p! (x.y)^p``.
The loss (Eq. 6) is ``L_CC = 1/n^2 || psi(F_t) - psi(F_s) ||_F^2`` with ``psi`` the (n, n)
correlation matrix of the batch. Defaults P = 2, gamma = 0.4 (the paper's setting).

``psi`` is (n, n) whatever the feature width, so student and teacher widths may differ.
``student_embed=True`` adds a learned linear map from the student's feature to the teacher's
width before the kernel (the "embedding of the same dimension" variant); the teacher side is
never transformed (a trainable teacher embedding could simply collapse onto the student).
Default weight 1 (the paper's beta depends on the task; tune it with ``weight``).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from ccl.objectives.kd.base import KDLoss


def taylor_rbf_correlation(x: torch.Tensor, gamma: float = 0.4, order: int = 2) -> torch.Tensor:
    """(B, D) -> (B, B) P-order Taylor approximation of the RBF kernel (Eq. 10)."""
    x = F.normalize(x, p=2, dim=1)
    sim = x @ x.t()
    corr = torch.zeros_like(sim)
    for p in range(order + 1):
        corr = corr + math.exp(-2 * gamma) * (2 * gamma) ** p / math.factorial(p) * sim.pow(p)
    return corr


class CorrelationCongruenceLoss(KDLoss):
    """``weight * 1/n^2 ||psi(t) - psi(s)||_F^2`` with the Taylor-RBF correlation ``psi``."""

    needs_index = False
    min_batch = 2

    def __init__(
        self,
        student_dim: int,
        teacher_dim: int,
        *,
        weight: float = 1.0,
        gamma: float = 0.4,
        order: int = 2,
        student_embed: bool = False,
    ) -> None:
        super().__init__()
        if order < 0:
            raise ValueError(f"order must be >= 0, got {order}")
        self.embed: nn.Module = (
            nn.Linear(student_dim, teacher_dim) if student_embed else nn.Identity()
        )
        self.weight = weight
        self.gamma = gamma
        self.order = order

    def forward(
        self, student: torch.Tensor, teacher: torch.Tensor, index: torch.Tensor | None = None
    ) -> torch.Tensor:
        n = student.shape[0]
        cs = taylor_rbf_correlation(self.embed(student), self.gamma, self.order)
        with torch.no_grad():
            ct = taylor_rbf_correlation(teacher.detach(), self.gamma, self.order)
        return self.weight * (ct - cs).pow(2).sum() / n**2
