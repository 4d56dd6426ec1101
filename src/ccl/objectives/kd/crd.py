"""Contrastive Representation Distillation (Tian, Krishnan & Isola, ICLR 2020).

Student and teacher features are embedded (linear + L2 norm, ``feat_dim`` 128). A memory
bank per side holds one embedding per training sample (``num_samples`` rows, the original's
``ContrastMemory``). For a batch with dataset indices ``y`` the bank rows
``[y, n_1..n_K]`` are read, positive first then K negatives drawn uniformly over the training
set, and each side's anchor is scored against the *other* side's bank:
``h(a, m) = exp(a.m / T) / Z`` (T = 0.07), with ``Z`` fixed on the first call to
``mean(exp(a.m / T)) * N`` (Monte-Carlo estimate of the partition function, as the original).

Loss, ``loss="nce"`` (default, the original's ``ContrastLoss``, Eq. 18 of the paper):
with noise probability ``Pn = 1/N`` and ``m = K``,
``L = -1/B sum_i [ log(h_i0 / (h_i0 + m Pn + eps)) + sum_k log(m Pn / (h_ik + m Pn + eps)) ]``
for each direction (student anchor / teacher bank, teacher anchor / student bank), summed.
``loss="softmax"`` uses the cross-entropy over the K + 1 scores (CMC's NCESoftmax form).

After scoring, the bank rows of the batch are updated (no gradient):
``m_y <- normalize(momentum * m_y + (1 - momentum) * z_y)`` (momentum 0.5).

Negatives: ``negatives="uniform"`` draws with replacement over all N samples, so the
positive may also appear among the negatives, as the original's alias sampler does;
``"exclude-positive"`` draws over the other N - 1 samples. The draws use a seeded
``torch.Generator`` whose state lives in the ``rng_state`` buffer, so a checkpoint of the
module (banks, Z, generator) resumes exactly. Default K = min(4096, N - 1); default weight
0.8 (the CRD authors' RepDistiller setting for CRD alongside cross-entropy).
"""

from __future__ import annotations

import math
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from ccl.objectives.kd.base import KDLoss
from ccl.objectives.kd.cmc import Embed

CRDLossType = Literal["nce", "softmax"]
NegativeSampling = Literal["uniform", "exclude-positive"]


def nce_contrast_loss(scores: torch.Tensor, num_samples: int, eps: float = 1e-7) -> torch.Tensor:
    """Eq. 18 on (B, K + 1) normalised scores ``h`` (positive in column 0)."""
    m = scores.shape[1] - 1
    noise = m / float(num_samples)
    log_d1 = torch.log(scores[:, 0] / (scores[:, 0] + noise + eps))
    log_d0 = torch.log(noise / (scores[:, 1:] + noise + eps))
    return -(log_d1.sum() + log_d0.sum()) / scores.shape[0]


class ContrastMemory(nn.Module):
    """Two momentum memory banks (student, teacher) over the training set, with a seeded
    negative sampler; every piece of state is a buffer (saved by ``state_dict``)."""

    def __init__(
        self,
        feat_dim: int,
        num_samples: int,
        num_negatives: int,
        *,
        momentum: float = 0.5,
        negatives: NegativeSampling = "uniform",
        seed: int = 0,
    ) -> None:
        super().__init__()
        if num_samples < 2:
            raise ValueError(
                f"the memory bank needs at least 2 training samples, got {num_samples}"
            )
        if num_negatives < 1:
            raise ValueError(f"num_negatives must be >= 1, got {num_negatives}")
        if negatives not in ("uniform", "exclude-positive"):
            raise ValueError(
                f"negatives must be 'uniform' or 'exclude-positive', got {negatives!r}"
            )
        if not 0.0 <= momentum < 1.0:
            raise ValueError(f"momentum must be in [0, 1), got {momentum}")
        self.num_samples = num_samples
        self.num_negatives = num_negatives
        self.momentum = momentum
        self.negatives = negatives
        self.generator = torch.Generator().manual_seed(seed)
        stdv = 1.0 / math.sqrt(feat_dim / 3)
        init = [
            torch.rand(num_samples, feat_dim, generator=self.generator) * 2 * stdv - stdv
            for _ in range(2)
        ]
        self.register_buffer("memory_s", init[0])
        self.register_buffer("memory_t", init[1])
        self.register_buffer("z", torch.full((2,), -1.0))  # (Z_student, Z_teacher), -1: unset
        self.register_buffer("rng_state", self.generator.get_state())

    def sample(self, index: torch.Tensor) -> torch.Tensor:
        """(B,) dataset indices -> (B, K + 1) bank rows: the positive, then K negatives."""
        self.generator.set_state(self.rng_state.cpu())
        b, k, n = index.shape[0], self.num_negatives, self.num_samples
        pos = index.detach().cpu().long()
        if self.negatives == "uniform":
            neg = torch.randint(0, n, (b, k), generator=self.generator)
        else:
            neg = torch.randint(0, n - 1, (b, k), generator=self.generator)
            neg = neg + (neg >= pos.unsqueeze(1)).long()
        self.rng_state.copy_(self.generator.get_state())
        return torch.cat([pos.unsqueeze(1), neg], dim=1).to(index.device)

    @torch.no_grad()
    def update(self, index: torch.Tensor, z_s: torch.Tensor, z_t: torch.Tensor) -> None:
        """``m_y <- normalize(momentum * m_y + (1 - momentum) * z_y)`` for both banks."""
        for bank, z in ((self.memory_s, z_s), (self.memory_t, z_t)):
            mixed = bank.index_select(0, index) * self.momentum + z.detach().to(bank.dtype) * (
                1 - self.momentum
            )
            bank.index_copy_(0, index, F.normalize(mixed, p=2, dim=1))


class CRDLoss(KDLoss):
    """CRD between (B, Ds) student and (B, Dt) teacher features; ``index`` are the samples'
    dataset indices (bank rows). Updates the banks as a side effect of ``forward``."""

    needs_index = True
    min_batch = 1
    needs_num_samples = True

    def __init__(
        self,
        student_dim: int,
        teacher_dim: int,
        num_samples: int,
        *,
        weight: float = 0.8,
        feat_dim: int = 128,
        num_negatives: int | None = None,
        temperature: float = 0.07,
        momentum: float = 0.5,
        loss: CRDLossType = "nce",
        negatives: NegativeSampling = "uniform",
        seed: int = 0,
        eps: float = 1e-7,
    ) -> None:
        super().__init__()
        if loss not in ("nce", "softmax"):
            raise ValueError(f"loss must be 'nce' or 'softmax', got {loss!r}")
        if num_negatives is None:
            num_negatives = min(4096, num_samples - 1)
        self.embed_s = Embed(student_dim, feat_dim)
        self.embed_t = Embed(teacher_dim, feat_dim)
        self.memory = ContrastMemory(
            feat_dim,
            num_samples,
            num_negatives,
            momentum=momentum,
            negatives=negatives,
            seed=seed,
        )
        self.weight = weight
        self.temperature = temperature
        self.loss_type = loss
        self.eps = eps

    def forward(
        self, student: torch.Tensor, teacher: torch.Tensor, index: torch.Tensor | None = None
    ) -> torch.Tensor:
        if index is None:
            raise ValueError("CRD needs the samples' dataset indices (batch.index)")
        index = index.long()
        n = self.memory.num_samples
        if bool((index < 0).any()) or bool((index >= n).any()):
            raise ValueError(f"dataset indices must lie in [0, {n}); the memory bank has {n} rows")
        z_s, z_t = self.embed_s(student), self.embed_t(teacher.detach())
        rows = self.memory.sample(index)  # (B, K + 1)
        # exp(a.m / T) reaches e^(1/T) ~ 1.6e6: score in at least fp32, outside autocast.
        dtype = torch.promote_types(z_s.dtype, torch.float32)
        with torch.autocast(z_s.device.type, enabled=False):
            a_s, a_t = z_s.to(dtype), z_t.to(dtype)
            bank_t = self.memory.memory_t[rows].to(dtype)  # (B, K + 1, d), no grad
            bank_s = self.memory.memory_s[rows].to(dtype)
            logits_s = torch.bmm(bank_t, a_s.unsqueeze(2)).squeeze(2) / self.temperature
            logits_t = torch.bmm(bank_s, a_t.unsqueeze(2)).squeeze(2) / self.temperature
            loss = self._contrast(logits_s, logits_t)
        self.memory.update(index, z_s, z_t)
        return self.weight * loss

    def _contrast(self, logits_s: torch.Tensor, logits_t: torch.Tensor) -> torch.Tensor:
        """Both directions' loss from (B, K + 1) logits, positive in column 0."""
        if self.loss_type == "softmax":
            target = torch.zeros(len(logits_s), dtype=torch.long, device=logits_s.device)
            return F.cross_entropy(logits_s, target) + F.cross_entropy(logits_t, target)
        n = self.memory.num_samples
        out_s, out_t = logits_s.exp(), logits_t.exp()
        with torch.no_grad():
            for j, out in enumerate((out_s, out_t)):
                if float(self.memory.z[j]) < 0:  # first call: fix Z (the original's rule)
                    self.memory.z[j] = out.mean() * n
        z_norm = self.memory.z.to(out_s.dtype)
        return nce_contrast_loss(out_s / z_norm[0], n, self.eps) + nce_contrast_loss(
            out_t / z_norm[1], n, self.eps
        )
