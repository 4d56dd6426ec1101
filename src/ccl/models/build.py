"""The student network a config's ``student`` section describes, for training, evaluation
and prediction alike."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ccl.models.r2plus1d import R2Plus1D, build_student

if TYPE_CHECKING:  # for the annotation only: ccl.config sits above ccl.models
    from ccl.config import StudentConfig


def build_model(student: StudentConfig, num_classes: int) -> R2Plus1D:
    """The student of a ``student`` config section with ``num_classes`` outputs
    (untrained)."""
    return build_student(
        student.arch,
        num_classes,
        width=student.width,
        feature_dim=student.feature_dim,
        feature_layer=student.feature_layer,
    )
