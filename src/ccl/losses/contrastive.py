"""Multi-class (label-aware) contrastive loss of CCL (paper Eq. 3; docs/METHOD.md §3.1)."""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ccl.losses.masking import check_valid, masked_mean

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


def _stack_features(
    features: torch.Tensor | Sequence[torch.Tensor], dtype: torch.dtype
) -> torch.Tensor:
    if isinstance(features, torch.Tensor):
        return features.to(dtype)
    return torch.stack([f.to(dtype) for f in features])


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
    The loss is not symmetric; CCL always uses ``L(a, b) + L(b, a)``
    (:meth:`symmetric_pairs` evaluates several such sums at once).

    ``valid`` (optional (B,) bool) restricts the loss to a subset of the batch without
    selecting it: anchors are the valid rows, candidates the valid columns (the softmax
    runs over valid candidates only) and the mean is over valid anchors, so value and
    gradient equal those of the loss on ``f1[valid], f2[valid], y[valid]``. Invalid
    samples get an exactly zero gradient; with no valid sample the loss is exactly 0.
    No host synchronisation and no data-dependent control flow are involved.
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
        self,
        anchors: torch.Tensor,
        candidates: torch.Tensor,
        targets: torch.Tensor,
        valid: torch.Tensor | None = None,
    ) -> torch.Tensor:
        if anchors.ndim != 2 or anchors.shape != candidates.shape:
            raise ValueError(
                f"anchors and candidates must both be (B, D); got {tuple(anchors.shape)} "
                f"and {tuple(candidates.shape)}"
            )
        if targets.shape != anchors.shape[:1]:
            raise ValueError(f"targets must be (B,), got {tuple(targets.shape)}")
        check_valid(valid, anchors.shape[0])
        # Float32 at least: the softmax over B and the log1mexp need it under autocast.
        dtype = torch.promote_types(anchors.dtype, torch.float32)
        a = F.normalize(anchors.to(dtype), dim=1)
        c = F.normalize(candidates.to(dtype), dim=1)
        return self._from_logits(a @ c.t() / self.temperature, targets, valid, dtype)

    def symmetric_pairs(
        self,
        a: torch.Tensor | Sequence[torch.Tensor],
        b: torch.Tensor | Sequence[torch.Tensor],
        targets: torch.Tensor,
        valid: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """``S(a_k, b_k) = L(a_k, b_k) + L(b_k, a_k)`` for K pairs at once, as a (K,) tensor.

        ``a`` and ``b`` are K (B, D) tensors each (or (K, B, D) stacks). One (K, B, B)
        similarity ``cos(a_k_i, b_k_j) / tau`` serves both directions: ``L(b, a)`` is the
        same matrix with the softmax taken along the other axis (its transpose), and the
        positives are symmetric. Each value is the sum of two :meth:`forward` evaluations
        (Eq. 3), ``valid`` included; autograd follows each pair's own inputs, so the K
        terms may have different gradient paths (detached or not).
        """
        dtype = torch.float32  # at least, as in forward
        for side in (a, b):
            for f in [side] if isinstance(side, torch.Tensor) else side:
                dtype = torch.promote_types(dtype, f.dtype)
        a_k, b_k = _stack_features(a, dtype), _stack_features(b, dtype)
        if a_k.ndim != 3 or a_k.shape != b_k.shape:
            raise ValueError(
                f"a and b must both be K (B, D) tensors; got {tuple(a_k.shape)} "
                f"and {tuple(b_k.shape)}"
            )
        if targets.shape != a_k.shape[1:2]:
            raise ValueError(f"targets must be (B,), got {tuple(targets.shape)}")
        check_valid(valid, a_k.shape[1])
        k = a_k.shape[0]
        sim = F.normalize(a_k, dim=2) @ F.normalize(b_k, dim=2).mT / self.temperature
        both = self._from_logits(torch.cat((sim, sim.mT)), targets, valid, dtype)
        return both.view(2, k).sum(0)

    def _from_logits(
        self,
        logits: torch.Tensor,
        targets: torch.Tensor,
        valid: torch.Tensor | None,
        dtype: torch.dtype,
    ) -> torch.Tensor:
        """Eq. 3 from (..., B, B) logits ``cos / tau`` (rows: anchors, columns: candidates);
        one value per leading index."""
        same = targets.unsqueeze(1) == targets.unsqueeze(0)
        if valid is None:
            positive = same
            negative = ~same
        else:
            # A valid anchor sees the valid candidates only (the others leave its softmax);
            # an invalid anchor keeps all of them, so its row stays finite (it is weighted
            # 0 below, and a NaN there would still reach the gradient as 0 * NaN).
            seen = valid.unsqueeze(0) | ~valid.unsqueeze(1)
            logits = logits.masked_fill(~seen, -math.inf)
            positive = same & seen
            negative = ~same & seen
        log_p = torch.log_softmax(logits, dim=-1)
        # log(1 - p) is needed on negatives only. Other entries get a harmless stand-in, and
        # a negative whose p rounded to 1 (log p == 0 in float) is clamped just below 0: its
        # value is then log(tiny), and no inf reaches the gradient.
        tiny = torch.finfo(dtype).tiny
        log_not_p = log1mexp(log_p.masked_fill(~negative, -1.0).clamp(max=-tiny))
        if self.eps > 0:
            log_eps = torch.tensor(math.log(self.eps), dtype=dtype, device=log_p.device)
            log_p = torch.logaddexp(log_p, log_eps)
            log_not_p = torch.logaddexp(log_not_p, log_eps)
        n_pos = positive.sum(-1)  # >= 1: the diagonal
        n_neg = negative.sum(-1)
        # masked_fill, not a product: a left-out candidate has log p = -inf.
        pos_term = -log_p.masked_fill(~positive, 0.0).sum(-1) / n_pos
        # A row without negatives has a negative term of 0 by definition (the reference:
        # NaN): its sum is 0, divided by max(|N(i)|, 1).
        neg_term = -log_not_p.masked_fill(~negative, 0.0).sum(-1) / n_neg.clamp(min=1)
        return masked_mean(pos_term + neg_term, valid)  # over valid anchors


def symmetric_contrastive(
    loss: MultiClassNCELoss,
    a: torch.Tensor,
    b: torch.Tensor,
    targets: torch.Tensor,
    valid: torch.Tensor | None = None,
) -> torch.Tensor:
    """``S(a, b) = L(a, b) + L(b, a)``, the form every CCL term takes (docs/METHOD.md §3.1)."""
    return loss(a, b, targets, valid) + loss(b, a, targets, valid)
