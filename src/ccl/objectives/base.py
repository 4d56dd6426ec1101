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
    None when the data has no audio.
    """

    clip: torch.Tensor
    label: torch.Tensor
    audio: torch.Tensor | None = None
    audio_available: torch.Tensor | None = None

    def __len__(self) -> int:
        return self.label.shape[0]


@dataclass
class ObjectiveOutput:
    """``loss`` is the single scalar the loop back-propagates once; its gradient gives every
    trainable parameter exactly the update its method prescribes. ``terms`` are detached
    scalars for logging."""

    loss: torch.Tensor
    terms: dict[str, torch.Tensor] = field(default_factory=dict)


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
