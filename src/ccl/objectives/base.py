"""The one interface every training method implements; the training loop knows nothing else."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn

from ccl.models.r2plus1d import StudentOutput


@dataclass
class Batch:
    """One training batch on the training device, clip already normalised.

    ``audio`` is (B, D) teacher embeddings with ``audio_available`` (B,) bool; both are
    None when the data has no audio. ``index`` is each sample's index in the training set.
    """

    clip: torch.Tensor
    label: torch.Tensor
    audio: torch.Tensor | None = None
    audio_available: torch.Tensor | None = None
    index: torch.Tensor | None = None  # dataset index of each sample (memory-bank methods)

    def __len__(self) -> int:
        return self.label.shape[0]


@dataclass
class ObjectiveOutput:
    """``loss`` is the single scalar the loop back-propagates once; its gradient gives every
    trainable parameter exactly the update its method prescribes. ``terms`` are detached
    scalars for logging."""

    loss: torch.Tensor
    terms: dict[str, torch.Tensor] = field(default_factory=dict)
    # The student's loss L_v split by kind (``ce``, ``contrast``, ``divergence``), each
    # weighted as in L_v and still in the graph: ``train.grad_norm_every`` logs the norm of
    # each one's gradient on the student's parameters (which term drives the student).
    student_terms: dict[str, torch.Tensor] = field(default_factory=dict)


def teacher_features(
    teacher: str,
    batch: Batch,
    image_teacher: nn.Module | None,
    audio_dim: int,
    fix_hint: str,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """(B, D) frozen features of one teacher and its availability mask (None: all present).

    The image teacher runs on the clip without autograd; audio comes precomputed with the
    batch and must be ``audio_dim`` wide (``fix_hint`` says how to change that)."""
    if teacher == "image":
        if image_teacher is None:
            raise ValueError("the image teacher is used but none was given")
        return image_teacher(batch.clip), None
    if batch.audio is None or batch.audio_available is None:
        raise ValueError("the audio teacher is used but the batch carries no audio embeddings")
    if batch.audio.shape[1] != audio_dim:
        raise ValueError(
            f"audio embeddings are {batch.audio.shape[1]}-d but {audio_dim}-d are expected; "
            + fix_hint
        )
    return batch.audio, batch.audio_available


def keep_in_graph(module: nn.Module, like: torch.Tensor, distributed: bool) -> torch.Tensor:
    """0 * the sum of a skipped module's parameters: under DDP every parameter must take part
    in each step's graph; elsewhere a plain zero (the parameters then get no gradient)."""
    params = [p for p in module.parameters() if p.requires_grad]
    if not distributed or not params:
        return like.new_zeros(())
    return 0.0 * sum(p.sum() for p in params)


class Objective(nn.Module):
    """A training method: owns its trainable heads (``heads``) and frozen teachers.

    ``forward(student_out, batch)`` returns the loss for one step. ``heads`` holds every
    parameter the method trains besides the student; it is what checkpoints store (frozen
    teachers are reloaded from their own files).
    """

    heads: nn.ModuleDict

    def __init__(self) -> None:
        super().__init__()
        self.heads = nn.ModuleDict()

    def forward(self, student_out: StudentOutput, batch: Batch) -> ObjectiveOutput:
        raise NotImplementedError
