"""The student network a config's ``student`` section describes, for training, evaluation
and prediction alike."""

from __future__ import annotations

from typing import TYPE_CHECKING

from torch import nn

from ccl.models.r2plus1d import build_student
from ccl.models.torchvision_video import TORCHVISION_PREFIX, TorchvisionStudent, is_torchvision_arch

if TYPE_CHECKING:  # for the annotation only: ccl.config sits above ccl.models
    from ccl.config import StudentConfig


def build_model(student: StudentConfig, num_classes: int) -> nn.Module:
    """The student of a ``student`` config section with ``num_classes`` outputs
    (untrained; ``student.weights`` is applied by :func:`ccl.models.prepare_student`, for
    training only). Returns a :class:`ccl.models.R2Plus1D` or, for ``torchvision.NAME``, a
    :class:`ccl.models.TorchvisionStudent`; both return a ``StudentOutput``."""
    if is_torchvision_arch(student.arch):
        return TorchvisionStudent(student.arch.removeprefix(TORCHVISION_PREFIX), num_classes)
    return build_student(
        student.arch,
        num_classes,
        width=student.width,
        feature_dim=student.feature_dim,
        feature_layer=student.feature_layer,
    )
