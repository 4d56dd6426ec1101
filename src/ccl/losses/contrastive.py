"""Multi-class (label-aware) contrastive loss of CCL (paper Eq. 3; spec section 3)."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

# log(p + eps) with the reference's eps keeps our value equal to the reference's; it is
# evaluated as logaddexp(log p, log eps) so nothing leaves log space.
REFERENCE_EPS = 1e-10


def log1mexp(x: torch.Tensor) -> torch.Tensor:
    """log(1 - exp(x)) for x < 0, accurate at both ends (Maechler 2012).

    Each branch is evaluated only on inputs valid for it, so the unused branch of the
    ``where`` cannot put inf * 0 = NaN into the gradient.
    """
    near_zero = x > -math.log(2.0)
    safe = torch.full_like(x, -1.0)
    small = torch.log(-torch.expm1(torch.where(near_zero, x, safe)))
    large = torch.log1p(-torch.exp(torch.where(near_zero, safe, x)))
    return torch.where(near_zero, small, large)


class MultiClassNCELoss(nn.Module):
    """Label-aware contrastive loss between anchors ``f1`` and candidates ``f2``.

    With both sides L2-normalised and ``p_ij = softmax_j(cos(f1_i, f2_j) / tau)``,
    positives ``P(i) = {j : y_j = y_i}`` (``i`` included) and negatives ``N(i)`` the rest::

        L = mean_i [ -1/|P(i)| sum_{j in P(i)} log(p_ij + eps)
                     -1/|N(i)| sum_{j in N(i)} log(1 - p_ij + eps) ]

    ``eps`` is the reference's 1e-10 by default (so values match it), 0 for the exact form.
    The reference returns NaN for a row without negatives (every candidate shares its
    label, or a batch of one); here that row's negative term is defined as 0.
    Everything is computed from ``log_softmax``, so no probability underflows to log(0).
    The loss is not symmetric; CCL always uses ``L(a, b) + L(b, a)``.
    """

    def __init__(self, temperature: float, eps: float = REFERENCE_EPS) -> None:
        super().__init__()
        if temperature <= 0:
            raise ValueError(f"temperature must be positive, got {temperature}")
        if eps < 0:
            raise ValueError(f"eps must be >= 0, got {eps}")
        self.temperature = temperature
        self.eps = eps

    def forward(
        self, anchors: torch.Tensor, candidates: torch.Tensor, targets: torch.Tensor
    ) -> torch.Tensor:
        if anchors.ndim != 2 or anchors.shape != candidates.shape:
            raise ValueError(
                f"anchors and candidates must both be (B, D); got {tuple(anchors.shape)} "
                f"and {tuple(candidates.shape)}"
            )
        if targets.shape != anchors.shape[:1]:
            raise ValueError(f"targets must be (B,), got {tuple(targets.shape)}")
        # Float32 at least: the softmax over B and the log1mexp need it under autocast.
        dtype = torch.promote_types(anchors.dtype, torch.float32)
        a = F.normalize(anchors.to(dtype), dim=1)
        c = F.normalize(candidates.to(dtype), dim=1)
        log_p = torch.log_softmax(a @ c.t() / self.temperature, dim=1)
        positive = targets.unsqueeze(1) == targets.unsqueeze(0)
        negative = ~positive
        # log(1 - p) is needed on negatives only. Positives get a harmless stand-in, and a
        # negative whose p rounded to 1 (log p == 0 in float) is clamped just below 0: its
        # value is then log(tiny), and no inf reaches the gradient.
        tiny = torch.finfo(dtype).tiny
        log_not_p = log1mexp(log_p.masked_fill(positive, -1.0).clamp(max=-tiny))
        if self.eps > 0:
            log_eps = torch.tensor(math.log(self.eps), dtype=dtype, device=log_p.device)
            log_p = torch.logaddexp(log_p, log_eps)
            log_not_p = torch.logaddexp(log_not_p, log_eps)
        n_pos = positive.sum(1)  # >= 1: the diagonal
        n_neg = negative.sum(1)
        pos_term = -(log_p * positive).sum(1) / n_pos
        # A row without negatives has a negative term of 0 by definition (the reference: NaN).
        neg_sum = -(log_not_p.masked_fill(positive, 0.0)).sum(1)
        neg_term = torch.where(n_neg > 0, neg_sum / n_neg.clamp(min=1), torch.zeros_like(neg_sum))
        return (pos_term + neg_term).mean()


def symmetric_contrastive(
    loss: MultiClassNCELoss, a: torch.Tensor, b: torch.Tensor, targets: torch.Tensor
) -> torch.Tensor:
    """``S(a, b) = L(a, b) + L(b, a)``, the form every CCL term takes (spec section 3)."""
    return loss(a, b, targets) + loss(b, a, targets)
