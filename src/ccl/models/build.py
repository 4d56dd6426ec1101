"""The student network a config describes, for training, evaluation and prediction alike."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ccl.models.r2plus1d import R2Plus1D, build_student

if TYPE_CHECKING:  # ccl.config imports ccl.models
    from ccl.config import Config


def build_model(cfg: Config, num_classes: int) -> R2Plus1D:
    """The student of ``cfg.student`` with ``num_classes`` outputs (untrained)."""
    s = cfg.student
    return build_student(s.arch, num_classes, width=s.width, feature_dim=s.feature_dim)
