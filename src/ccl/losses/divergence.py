"""Posterior-matching term of CCL, the "JSD" of the reference (docs/METHOD.md §3.2)."""

from __future__ import annotations

import math
from typing import Literal

import torch
from torch import nn

from ccl.losses.masking import check_valid, masked_mean

Divergence = Literal["symmetric-kl", "js"]


class SymmetricKLLoss(nn.Module):
    """``weight * mean_b [ KL(p || q) + KL(q || p) ]`` on softmax posteriors of two logits.

    With the default ``weight=0.5`` this is what the reference calls "JSD" (paper Eq. 5):
    half the symmetric KL, no temperature, gradients into both sides. ``divergence="js"``
    gives the textbook Jensen-Shannon form instead, ``weight * mean_b [ KL(p || m) +
    KL(q || m) ]`` with ``m = (p + q) / 2``, which at ``weight=0.5`` is JS(p, q) itself.
    Computed from ``log_softmax`` (the reference adds 1e-10 inside its log; the difference
    is below float32 resolution unless a probability ratio falls under 1e-10).

    Logits are (B, C), or (..., B, C) stacks of such pairs, which give one value per
    leading index (several terms in one launch). ``valid`` (optional (B,) bool) takes the
    mean over the valid samples only, without selecting them: value and gradient equal
    those on ``logits[valid]``, invalid samples get a zero gradient, and with no valid
    sample the value is exactly 0.
    """

    def __init__(self, weight: float = 0.5, divergence: Divergence = "symmetric-kl") -> None:
        super().__init__()
        if divergence not in ("symmetric-kl", "js"):
            raise ValueError(f"unknown divergence {divergence!r}; use 'symmetric-kl' or 'js'")
        self.weight = weight
        self.divergence = divergence

    def forward(
        self,
        logits_p: torch.Tensor,
        logits_q: torch.Tensor,
        valid: torch.Tensor | None = None,
    ) -> torch.Tensor:
        if logits_p.shape != logits_q.shape or logits_p.ndim < 2:
            raise ValueError(
                f"logits must both be (B, C) or (..., B, C); got {tuple(logits_p.shape)} "
                f"and {tuple(logits_q.shape)}"
            )
        check_valid(valid, logits_p.shape[-2])
        dtype = torch.promote_types(logits_p.dtype, torch.float32)
        log_p = torch.log_softmax(logits_p.to(dtype), dim=-1)
        log_q = torch.log_softmax(logits_q.to(dtype), dim=-1)
        if self.divergence == "symmetric-kl":
            per_sample = ((log_p.exp() - log_q.exp()) * (log_p - log_q)).sum(-1)
        else:
            log_m = torch.logaddexp(log_p, log_q) - math.log(2.0)
            per_sample = (log_p.exp() * (log_p - log_m)).sum(-1) + (
                log_q.exp() * (log_q - log_m)
            ).sum(-1)
        return self.weight * masked_mean(per_sample, valid)
