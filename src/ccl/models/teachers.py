"""Frozen teachers (docs/METHOD.md §2.2, §2.3): an ImageNet classifier (the reference's
ResNet, or any torchvision image model) on one frame of the clip.
The audio teacher's precomputed embeddings are data: :class:`ccl.data.audio.AudioEmbeddings`."""

from __future__ import annotations

import random
from collections.abc import Mapping
from pathlib import Path
from typing import Literal

import torch
import torch.nn.functional as F
import torchvision
from torch import nn

from ccl.checkpoint import load_weights

FrameChoice = Literal["batch-random", "sample-random", "center"]
TeacherNorm = Literal["clip", "imagenet"]

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
# The reference's video statistics (Kinetics), also what its image teacher sees.
KINETICS_MEAN = (0.4345, 0.4051, 0.3775)
KINETICS_STD = (0.2768, 0.2713, 0.2737)

# The ResNets of the reference and of the demo's teacher pretraining (ccl.demo.pretrain);
# image_teacher.arch takes any torchvision image classifier (image_teacher_archs()).
IMAGE_TEACHER_ARCHS = {
    "resnet18": torchvision.models.resnet18,
    "resnet34": torchvision.models.resnet34,
    "resnet50": torchvision.models.resnet50,
}
TORCHVISION_WEIGHT_FILES = {
    "resnet18": "resnet18-f37072fd.pth",
    "resnet34": "resnet34-b627a593.pth",
    "resnet50": "resnet50-0676ba61.pth (or resnet50-11ad3fa6.pth)",
}
# the attributes that hold torchvision's classifiers: fc (ResNets, RegNets, GoogLeNet, ...),
# classifier (ConvNeXt, EfficientNet, MobileNets, VGG, ...), heads (ViT), head (Swin)
CLASSIFIER_ATTRIBUTES = ("fc", "classifier", "heads", "head")


def image_teacher_archs() -> list[str]:
    """Every ``image_teacher.arch``: torchvision's image classification models
    (``torchvision.models.list_models(module=torchvision.models)``; SqueezeNet, which has no
    linear classifier, is refused when built)."""
    return sorted(torchvision.models.list_models(module=torchvision.models))


def final_linear(net: nn.Module, arch: str = "model") -> str:
    """The name of ``net``'s classifier: its last ``nn.Linear``, which in every torchvision
    image classifier sits in ``fc``, ``classifier``, ``heads`` or ``head`` and runs last.
    Its input is the teacher's feature."""
    names = [n for n, m in net.named_modules() if isinstance(m, nn.Linear)]
    if not names or names[-1].split(".")[0] not in CLASSIFIER_ATTRIBUTES:
        raise ValueError(
            f"torchvision's {arch} ends in no linear classifier (in "
            f"{'/'.join(CLASSIFIER_ATTRIBUTES)}), so it has no penultimate feature to distil"
        )
    return names[-1]


def image_trunk(arch: str) -> tuple[nn.Module, int, str]:
    """torchvision's ``arch`` (random weights) with its final linear layer replaced by the
    identity, so it returns the penultimate feature; returns (trunk, feature width,
    the classifier's name)."""
    if arch not in image_teacher_archs():
        raise ValueError(
            f"unknown image teacher {arch!r}: image_teacher.arch takes a torchvision image "
            "classification model, torchvision.models.list_models(module=torchvision.models)"
        )
    builder = IMAGE_TEACHER_ARCHS.get(arch)
    net = builder(weights=None) if builder is not None else torchvision.models.get_model(arch)
    name = final_linear(net, arch)
    parent_name, _, child = name.rpartition(".")
    parent = net.get_submodule(parent_name) if parent_name else net
    width = getattr(parent, child).in_features
    setattr(parent, child, nn.Identity())
    return net, width, name


class ImageTeacher(nn.Module):
    """A torchvision image classifier without its final linear layer (a ResNet in the
    reference; any of :func:`image_teacher_archs`), frozen, always in eval mode. Its feature is
    the penultimate layer's, the classifier's input, ``feature_dim`` wide (read from the
    model: 512 for ResNet-18/34, 768 for ConvNeXt-T and ViT-B, 1280 for EfficientNet-B0).

    ``forward(clip)`` takes the student's normalised (B, 3, T, H, W) clip, picks one frame per
    sample and returns (B, D) pooled features without building an autograd graph.

    Frame choice: ``batch-random`` (the reference: one random index for the whole batch),
    ``sample-random`` (one per sample) or ``center``. Normalisation: ``clip`` feeds the frame
    as normalised for the student (the reference, Kinetics statistics); ``imagenet``
    re-normalises it with ImageNet's statistics. ``input_size`` resizes the frame
    (None keeps the clip's size, 112 px in the reference).
    """

    def __init__(
        self,
        arch: str = "resnet34",
        weights: str | Path | None = None,
        *,
        frame_choice: FrameChoice = "batch-random",
        input_size: int | None = None,
        normalization: TeacherNorm = "clip",
        clip_mean: tuple[float, float, float] = KINETICS_MEAN,
        clip_std: tuple[float, float, float] = KINETICS_STD,
    ) -> None:
        super().__init__()
        if frame_choice not in ("batch-random", "sample-random", "center"):
            raise ValueError(f"unknown frame choice {frame_choice!r}")
        if normalization not in ("clip", "imagenet"):
            raise ValueError(f"unknown teacher normalization {normalization!r}")
        net, self.feature_dim, classifier = image_trunk(arch)
        if weights is not None:
            # The classifier is discarded, so its size may differ from ImageNet's 1000
            # (teachers pre-trained on another label space, e.g. the demo's).
            drop = classifier + "."
            state = {
                k: v
                for k, v in load_torchvision_weights(weights, arch).items()
                if not k.startswith(drop)
            }
            missing, unexpected = net.load_state_dict(state, strict=False)
            if missing or unexpected:
                raise ValueError(
                    f"{weights} does not fit torchvision's {arch}: missing {missing[:4]}, "
                    f"unexpected {unexpected[:4]}"
                )
        self.net = net
        self.frame_choice = frame_choice
        self.input_size = input_size
        self.normalization = normalization
        # (clip statistics) -> (ImageNet statistics) as one affine map per channel.
        clip_mean_t, clip_std_t = torch.tensor(clip_mean), torch.tensor(clip_std)
        scale = clip_std_t / torch.tensor(IMAGENET_STD)
        shift = (clip_mean_t - torch.tensor(IMAGENET_MEAN)) / torch.tensor(IMAGENET_STD)
        self.register_buffer("renorm_scale", scale.view(1, 3, 1, 1), persistent=False)
        self.register_buffer("renorm_shift", shift.view(1, 3, 1, 1), persistent=False)
        self.requires_grad_(False)
        self.eval()

    def train(self, mode: bool = True) -> ImageTeacher:
        # Frozen: BN statistics must never update, whatever the caller's mode.
        return super().train(False)

    def select_frames(self, clip: torch.Tensor) -> torch.Tensor:
        """(B, 3, T, H, W) -> (B, 3, H, W), one frame per sample by ``frame_choice``."""
        b, _, t = clip.shape[:3]
        if self.frame_choice == "batch-random":
            i = random.randrange(t)
            if torch.compiler.is_compiling():
                # traced, the draw is a graph input (a tensor): index by it, never read it back
                return clip.index_select(2, torch.as_tensor(i, device=clip.device).view(1))[:, :, 0]
            return clip[:, :, i]
        if self.frame_choice == "center":
            return clip[:, :, t // 2]
        idx = torch.randint(t, (b,), device=clip.device)
        return clip[torch.arange(b, device=clip.device), :, idx]

    @torch.no_grad()
    def forward(self, clip: torch.Tensor) -> torch.Tensor:
        frames = self.select_frames(clip)
        if self.normalization == "imagenet":
            frames = frames * self.renorm_scale.to(frames.dtype) + self.renorm_shift.to(
                frames.dtype
            )
        if self.input_size is not None and frames.shape[-1] != self.input_size:
            frames = F.interpolate(
                frames,
                size=(self.input_size, self.input_size),
                mode="bilinear",
                align_corners=False,
            )
        return self.net(frames)


def load_torchvision_weights(path: str | Path, arch: str) -> Mapping[str, torch.Tensor]:
    """Read a torchvision state-dict file (published files load unchanged)."""
    path = Path(path)
    state = load_weights(
        path,
        what="image teacher weights",
        hint=f". Download torchvision's {TORCHVISION_WEIGHT_FILES.get(arch, arch)} from "
        "https://download.pytorch.org/models/ on a machine with internet access and pass its "
        "local path.",
    )
    if isinstance(state, dict) and "state_dict" in state:
        state = state["state_dict"]
    if not isinstance(state, Mapping):
        raise ValueError(f"{path} does not hold a state dict")
    return state


def legacy_availability(audio: torch.Tensor) -> torch.Tensor:
    """The reference marks a missing soundtrack with an all-zero vector: mask = any non-zero."""
    return audio.ne(0).any(dim=1)
