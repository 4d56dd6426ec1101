"""Probabilistic Knowledge Transfer (Passalis & Tefas, "Learning Deep Representations with
Probabilistic Knowledge Transfer", ECCV 2018).

Cosine-similarity kernel ``K(a, b) = 1/2 (a.b / (|a||b|) + 1)`` (Eq. 12), turned into
conditional probabilities ``p_{j|i} = K(x_i, x_j) / sum_k K(x_i, x_k)`` (Eqs. 7-8) for the
teacher (``p``) and the student (``q``), and the divergence ``KL(p || q) =
sum_i sum_j p_{j|i} log(p_{j|i} / q_{j|i})`` (Eq. 10). As in the authors' code (the one
every later benchmark uses): the kernel row includes the sample itself (``include_self``),
vectors are divided by ``|x| + eps`` and the logs take ``+eps`` (eps = 1e-7), and the sum is
replaced by the mean over the B x B entries.

Default weight 30000: RepDistiller's value for PKT trained alongside cross-entropy (the CRD
paper's benchmark, batch 64). The B x B mean makes the term scale like 1/B.
"""

from __future__ import annotations

import torch

from ccl.objectives.kd.base import KDLoss


def cosine_conditional(
    x: torch.Tensor, include_self: bool = True, eps: float = 1e-7
) -> torch.Tensor:
    """(B, D) -> (B, B) rows ``p_{j|i}`` of the PKT cosine kernel (Eqs. 7-8, 12)."""
    x = x / (x.norm(dim=1, keepdim=True) + eps)
    kernel = (x @ x.t() + 1.0) / 2.0
    if not include_self:
        kernel = kernel * (1 - torch.eye(len(x), dtype=x.dtype, device=x.device))
    return kernel / kernel.sum(dim=1, keepdim=True)


class PKTLoss(KDLoss):
    """``weight * mean_{i,j} p_{j|i} log((p_{j|i} + eps) / (q_{j|i} + eps))``; no parameters."""

    needs_index = False
    min_batch = 2

    def __init__(
        self,
        student_dim: int | None = None,
        teacher_dim: int | None = None,
        *,
        weight: float = 30000.0,
        include_self: bool = True,
        eps: float = 1e-7,
    ) -> None:
        super().__init__()
        self.weight = weight
        self.include_self = include_self
        self.eps = eps

    def forward(
        self, student: torch.Tensor, teacher: torch.Tensor, index: torch.Tensor | None = None
    ) -> torch.Tensor:
        q = cosine_conditional(student, self.include_self, self.eps)
        with torch.no_grad():
            p = cosine_conditional(teacher.detach(), self.include_self, self.eps)
        kl = p * torch.log((p + self.eps) / (q + self.eps))
        return self.weight * kl.mean()
