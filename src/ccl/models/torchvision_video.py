"""torchvision's video classifiers as students (``student.arch=torchvision.NAME``).

Their stems and stage layouts differ from the reference's R(2+1)D (docs/METHOD.md §2.1), so
they are architectures of their own, not key-mapped onto :class:`ccl.models.R2Plus1D`. Each is
wrapped so that it returns what the package's student returns, a
:class:`ccl.models.StudentOutput` of logits and the pooled penultimate feature, the input of
torchvision's classifier. torchvision's weight files (e.g. Kinetics-400, downloaded by the
user) load through :func:`torchvision_state_to_student`.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
import torchvision
from torch import nn

from ccl.models.r2plus1d import ARCH_BLOCKS, StudentOutput

TORCHVISION_PREFIX = "torchvision."

# What each model takes, as measured with torchvision 0.29 (tests/test_pretrained.py checks
# the limits; ccl.preflight tries the run's clip size before anything is written).
VIDEO_INPUT_LIMITS: dict[str, str] = {
    "r3d_18": "any clip of at least 1x16x16 (trained at 16x112x112)",
    "mc3_18": "any clip of at least 1x16x16 (trained at 16x112x112)",
    "r2plus1d_18": "any clip of at least 1x16x16 (trained at 16x112x112)",
    "s3d": "at least 13 frames of 224x224 (a fixed 2x7x7 average pool after a 8x32 stride)",
    "mvit_v1_b": "exactly 16x224x224 (learned position embeddings of that size)",
    "mvit_v2_s": "exactly 16x224x224 (relative positions sized for it)",
    "swin3d_t": "any clip (padded to its 8x7x7 windows; trained at 16x224x224)",
    "swin3d_s": "any clip (padded to its 8x7x7 windows; trained at 16x224x224)",
    "swin3d_b": "any clip (padded to its 8x7x7 windows; trained at 16x224x224)",
}

# torchvision's classifier of each family: its state-dict prefix in the published files
CLASSIFIER_NAMES = ("fc", "head", "classifier")


def torchvision_video_models() -> list[str]:
    """torchvision's video classification models (``r3d_18``, ``s3d``, ``mvit_v2_s``, ...)."""
    return sorted(torchvision.models.list_models(module=torchvision.models.video))


def student_archs() -> list[str]:
    """Every ``student.arch``: the reference's R(2+1)D depths and torchvision's video models
    as ``torchvision.NAME``."""
    return [*ARCH_BLOCKS, *(TORCHVISION_PREFIX + n for n in torchvision_video_models())]


def is_torchvision_arch(arch: str) -> bool:
    """Whether ``student.arch`` names a torchvision video model (``torchvision.NAME``)."""
    return arch.startswith(TORCHVISION_PREFIX)


class TorchvisionStudent(nn.Module):
    """A torchvision video classifier returning :class:`StudentOutput`.

    ``backbone`` is torchvision's model with its classifier replaced by the identity, so its
    output is the pooled feature (``feature_dim`` wide, read from the classifier);
    ``head_dropout`` is the dropout torchvision applies before the classifier (MViT, S3D;
    identity for the ResNets and Swin), ``linear`` the classifier. The feature the teachers'
    terms compare is taken before that dropout. S3D's 1x1x1 convolution classifier becomes an
    equal ``nn.Linear`` (averaging and a 1x1x1 convolution commute)."""

    def __init__(self, name: str, num_classes: int) -> None:
        super().__init__()
        if name not in torchvision_video_models():
            raise ValueError(
                f"unknown torchvision video model {name!r}; choose from "
                f"{', '.join(torchvision_video_models())}"
            )
        backbone = torchvision.models.get_model(name, weights=None)
        head_name = next(n for n in CLASSIFIER_NAMES if hasattr(backbone, n))
        head = getattr(backbone, head_name)
        layers = list(head) if isinstance(head, nn.Sequential) else [head]
        classifier = layers[-1]
        if isinstance(classifier, nn.Linear):
            width = classifier.in_features
        elif isinstance(classifier, nn.Conv3d) and classifier.kernel_size == (1, 1, 1):
            width = classifier.in_channels
        else:
            raise ValueError(f"torchvision's {name} has no linear classifier to replace")
        setattr(backbone, head_name, nn.Identity())
        self.arch = name
        self.head_name = head_name
        self.head_is_sequential = isinstance(head, nn.Sequential)
        self.feature_dim = width
        self.backbone = backbone
        self.head_dropout: nn.Module = nn.Sequential(*layers[:-1]) if len(layers) > 1 else (
            nn.Identity()
        )
        self.linear = nn.Linear(width, num_classes)

    def forward(self, clip: torch.Tensor) -> StudentOutput:
        """``clip``: (B, 3, T, H, W), normalised as the weights expect (Kinetics statistics
        for torchvision's Kinetics-400 weights: ``data.mean``/``data.std``)."""
        feature = self.backbone(clip).flatten(1)
        return StudentOutput(logits=self.linear(self.head_dropout(feature)), feature=feature)

    def classifier_key(self, suffix: str) -> str:
        """The key of the classifier's ``suffix`` (weight, bias) in torchvision's files."""
        index = f"{len(self.head_dropout)}." if self.head_is_sequential else ""
        return f"{self.head_name}.{index}{suffix}"


def torchvision_state_to_student(
    state: Mapping[str, torch.Tensor], student: TorchvisionStudent
) -> dict[str, torch.Tensor]:
    """A state dict of torchvision's layout (a published weight file) in the layout of
    :class:`TorchvisionStudent`: the classifier's weights under ``linear.``, everything else
    under ``backbone.``. A state dict already in the student's layout (this package's
    checkpoints) is returned unchanged."""
    if any(k.startswith(("backbone.", "linear.")) for k in state):
        return dict(state)
    out: dict[str, torch.Tensor] = {}
    for suffix in ("weight", "bias"):
        key = student.classifier_key(suffix)
        if key in state:
            value = state[key]
            out[f"linear.{suffix}"] = value.flatten(1) if suffix == "weight" else value
    classifier = {student.classifier_key(s) for s in ("weight", "bias")}
    out.update({f"backbone.{k}": v for k, v in state.items() if k not in classifier})
    return out
