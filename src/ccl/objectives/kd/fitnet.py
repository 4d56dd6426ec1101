"""FitNet hint loss (Romero et al., "FitNets: Hints for Thin Deep Nets", ICLR 2015).

Eq. (3) of the paper: ``L_HT = 1/2 || u_h(x) - r(v_g(x)) ||^2`` with ``u_h`` the teacher's
hint, ``v_g`` the student's guided layer and ``r`` a learned regressor (a convolution in
the paper, so that student and teacher widths may differ). Here hint and guided layer are
the pooled (B, D) features, so the regressor is a linear map (a 1x1 convolution on a 1x1
map), optionally followed by BN and ReLU as in RepDistiller's ``ConvReg``.

Default weight. RepDistiller (Tian et al.'s CRD benchmark) uses ``beta = 100`` on the
*element-wise mean* squared error of conv feature maps. For pooled features we keep the
paper's own equation, ``1/2 ||.||^2`` summed over the D dimensions and averaged over the
batch, with weight 1: at D = 512 that is 256 x the element-wise MSE, the same order as
RepDistiller's 100, and pooled features have a smaller per-element error than conv maps
(averaging over positions), so the hint keeps a comparable pull without an invented constant.
``reduction="mean"`` with ``weight=100`` gives RepDistiller's form instead.
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import nn

from ccl.objectives.kd.base import KDLoss

Regressor = Literal["linear", "linear-bn-relu"]
Reduction = Literal["half_sum", "mean"]


class FitNetLoss(KDLoss):
    """``weight * 1/2 ||t - r(s)||^2`` (batch mean), with a learned regressor ``r``."""

    needs_index = False
    min_batch = 1

    def __init__(
        self,
        student_dim: int,
        teacher_dim: int,
        *,
        weight: float = 1.0,
        regressor: Regressor = "linear",
        reduction: Reduction = "half_sum",
    ) -> None:
        super().__init__()
        if regressor == "linear":
            self.regressor: nn.Module = nn.Linear(student_dim, teacher_dim)
        elif regressor == "linear-bn-relu":
            self.regressor = nn.Sequential(
                nn.Linear(student_dim, teacher_dim),
                nn.BatchNorm1d(teacher_dim),
                nn.ReLU(),
            )
        else:
            raise ValueError(f"regressor must be 'linear' or 'linear-bn-relu', got {regressor!r}")
        if reduction not in ("half_sum", "mean"):
            raise ValueError(f"reduction must be 'half_sum' or 'mean', got {reduction!r}")
        self.weight = weight
        self.reduction = reduction

    def forward(
        self, student: torch.Tensor, teacher: torch.Tensor, index: torch.Tensor | None = None
    ) -> torch.Tensor:
        diff = self.regressor(student) - teacher.detach()
        if self.reduction == "half_sum":
            loss = 0.5 * diff.pow(2).sum(dim=1).mean()
        else:
            loss = diff.pow(2).mean()
        return self.weight * loss
