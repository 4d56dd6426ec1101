"""Straightforward re-statements of the reference's formulas (docs/METHOD.md §3), for tests.

Written from the formulas, deliberately naive: probabilities (not log space), the
reference's 1e-10 inside each log, explicit Python loops where that is the obvious form.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

EPS = 1e-10


def nce_reference(f1: torch.Tensor, f2: torch.Tensor, y: torch.Tensor, tau: float) -> torch.Tensor:
    """Vectorised as the reference does it: cos from the squared distance, softmax, masks."""
    f1, f2 = F.normalize(f1, dim=1), F.normalize(f2, dim=1)
    neg = (y.unsqueeze(1) - y) != 0
    cos = 1 - 0.5 * (f1.unsqueeze(1) - f2).pow(2).sum(2)
    p = torch.softmax(cos / tau, dim=1)
    pos_t = (-torch.log(p + EPS) * (~neg)).sum(1) / (~neg).sum(1)
    neg_t = (-torch.log(1 - p + EPS) * neg).sum(1) / neg.sum(1)
    return (pos_t + neg_t).mean()


def nce_loops(
    f1: torch.Tensor, f2: torch.Tensor, y: torch.Tensor, tau: float, eps: float = EPS
) -> float:
    """Double loop over anchors and candidates; a row without negatives contributes 0."""
    b = len(y)
    total = 0.0
    for i in range(b):
        sims = [float(F.cosine_similarity(f1[i], f2[j], dim=0)) / tau for j in range(b)]
        z = sum(torch.tensor(s, dtype=torch.float64).exp().item() for s in sims)
        pos, neg = [], []
        for j in range(b):
            p = torch.tensor(sims[j], dtype=torch.float64).exp().item() / z
            if y[j] == y[i]:
                pos.append(-torch.log(torch.tensor(p + eps, dtype=torch.float64)).item())
            else:
                neg.append(-torch.log(torch.tensor(1 - p + eps, dtype=torch.float64)).item())
        total += sum(pos) / len(pos) + (sum(neg) / len(neg) if neg else 0.0)
    return total / b


def tiny_image_teacher(feature_dim: int = 32):
    """The real ImageTeacher (frame choice, freezing) around a small trunk, for fast tests."""
    from ccl.models import ImageTeacher

    teacher = ImageTeacher("resnet18", frame_choice="center")
    teacher.net = torch.nn.Sequential(
        torch.nn.Conv2d(3, feature_dim, 3, stride=2),
        torch.nn.ReLU(),
        torch.nn.AdaptiveAvgPool2d(1),
        torch.nn.Flatten(),
    ).requires_grad_(False)
    teacher.feature_dim = feature_dim
    return teacher


def sym_nce(f1, f2, y, tau):
    return nce_reference(f1, f2, y, tau) + nce_reference(f2, f1, y, tau)


def jsd_reference(
    p_logits: torch.Tensor, q_logits: torch.Tensor, weight: float = 0.5
) -> torch.Tensor:
    p, q = torch.softmax(p_logits, 1), torch.softmax(q_logits, 1)
    kl_pq = (p * torch.log(p / q + EPS)).sum(1)
    kl_qp = (q * torch.log(q / p + EPS)).sum(1)
    return (kl_pq + kl_qp).mean() * weight
