"""Compositional embedding head (CCL paper, section 3.2; docs/METHOD.md §2.4)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class CompositionHead(nn.Module):
    """Compose a teacher feature with the student's: ``x_tv = x_t + W [x_t/|x_t|; x_v/|x_v|] + b``.

    ``mlp`` is the single linear layer W (in_dim -> in_dim/2, no non-linearity), ``fc`` the
    classifier on the composed feature. ``in_dim`` is the width of the concatenation, so with
    512-d teacher and student features ``in_dim = 1024``. The teacher feature enters the
    residual sum un-normalised, as in the reference.
    """

    def __init__(self, in_dim: int, num_classes: int, normalize: bool = True) -> None:
        super().__init__()
        if in_dim % 2:
            raise ValueError(f"in_dim must be even (teacher + student widths), got {in_dim}")
        self.normalize = normalize
        self.mlp = nn.Linear(in_dim, in_dim // 2)
        self.fc = nn.Linear(in_dim // 2, num_classes)

    def forward(
        self, teacher_feat: torch.Tensor, video_feat: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Return ``(logits, composed_feat)`` for (B, D) teacher and (B, D) video features."""
        if self.normalize:
            pair = torch.cat((F.normalize(teacher_feat, dim=1), F.normalize(video_feat, dim=1)), 1)
        else:
            pair = torch.cat((teacher_feat, video_feat), 1)
        composed = teacher_feat + self.mlp(pair)
        return self.fc(composed), composed
