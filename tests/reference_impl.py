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


def ccl_reference_step(student, objective, batch, teachers, head_lr=None):
    """One training step of the reference's CCL-A / CCL-I / CCL-AI (its ``train_*_epoch``),
    in its order, on the test's models (``objective`` supplies the heads and image teacher).

    Per head t in turn: clear head t's gradients, ``L_head_t.backward(retain_graph=True)``,
    record head t's gradients (what its optimizer steps with); then clear the student's
    gradients, ``L_v.backward()``, record the student's. Returns ``(applied, left)``: the
    gradients each optimizer steps with, and what the heads' ``.grad`` hold after L_v's
    backward (grad L_head_t + grad L_v, which the next step clears unused).

    ``head_lr=None`` does not step the heads, so every gradient is taken at the forward pass's
    weights. A float steps each head by plain SGD through ``.data`` after recording its
    gradient, as PyTorch < 1.5 did: autograd does not see the change, and L_v's backward
    then uses the stepped head weights (PyTorch >= 1.5 refuses ``optimizer.step()`` there).
    """
    out = student(batch.clip)
    v, logits, y = out.feature, out.logits, batch.label
    w = 1.0 / len(teachers)
    student_terms, head_losses = [], {}
    for t in teachers:
        head, tau = objective.heads[t], {"audio": 0.5, "image": 0.1}[t]
        if t == "audio":
            keep = batch.audio.sum(1) != 0  # the reference's availability rule
            x_t, tv, tl, ty = batch.audio[keep], v[keep], logits[keep], y[keep]
        else:
            with torch.no_grad():
                x_t = objective.image_teacher.net(batch.clip[:, :, batch.clip.shape[2] // 2])
            tv, tl, ty = v, logits, y
        m_logits, m = head(x_t, tv)
        s_vm, s_vt, s_mt = (
            sym_nce(tv, m, ty, tau),
            sym_nce(tv, x_t, ty, tau),
            sym_nce(m, x_t, ty, tau),
        )
        j = jsd_reference(tl, m_logits)
        student_terms.append(s_vm + s_vt + j)
        head_losses[t] = F.cross_entropy(m_logits, ty) + s_vm + s_mt + j
    loss_v = F.cross_entropy(logits, y) + w * sum(student_terms)
    applied = {}
    for t in teachers:
        params = list(objective.heads[t].named_parameters(prefix=t))
        for _, p in params:
            p.grad = None
        head_losses[t].backward(retain_graph=True)
        applied.update({n: p.grad.clone() for n, p in params})
        if head_lr is not None:
            for _, p in params:
                p.data.add_(p.grad, alpha=-head_lr)
    for p in student.parameters():
        p.grad = None
    loss_v.backward()
    applied.update({n: p.grad.clone() for n, p in student.named_parameters()})
    left = {n: p.grad.clone() for n, p in objective.heads.named_parameters()}
    return applied, left
