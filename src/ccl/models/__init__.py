"""Networks: the R(2+1)D student, the frozen teachers and the composition heads."""

from ccl.models.build import build_model
from ccl.models.composition import CompositionHead
from ccl.models.panns import Cnn14, Cnn14Emb512, LogMelFrontEnd, load_cnn14
from ccl.models.r2plus1d import ARCH_BLOCKS, R2Plus1D, StudentOutput, build_student
from ccl.models.teachers import ImageTeacher, legacy_availability

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
    "legacy_availability",
]
