"""Networks: the R(2+1)D student, the frozen teachers and the composition heads."""

from ccl.models.build import build_model
from ccl.models.composition import CompositionHead
from ccl.models.panns import Cnn14, Cnn14Emb512, LogMelFrontEnd, load_cnn14
from ccl.models.pretrained import freeze_before, load_student_weights, prepare_student
from ccl.models.r2plus1d import ARCH_BLOCKS, R2Plus1D, StudentOutput, build_student
from ccl.models.teachers import ImageTeacher, legacy_availability
from ccl.models.torchvision_video import (
    TorchvisionStudent,
    student_archs,
    torchvision_video_models,
)

__all__ = [
    "ARCH_BLOCKS",
    "Cnn14",
    "Cnn14Emb512",
    "LogMelFrontEnd",
    "load_cnn14",
    "CompositionHead",
    "ImageTeacher",
    "R2Plus1D",
    "StudentOutput",
    "build_model",
    "build_student",
    "freeze_before",
    "load_student_weights",
    "prepare_student",
    "student_archs",
    "TorchvisionStudent",
    "torchvision_video_models",
    "legacy_availability",
]
