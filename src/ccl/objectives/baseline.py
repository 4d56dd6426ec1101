"""Baseline: the student trained with cross-entropy alone (no distillation)."""

from __future__ import annotations

import torch.nn.functional as F

from ccl.models.r2plus1d import StudentOutput
from ccl.objectives.base import Batch, Objective, ObjectiveOutput


class BaselineObjective(Objective):
    """``L_v = CE(v)`` (docs/METHOD.md §3.3, "baseline")."""

    def forward(self, student_out: StudentOutput, batch: Batch) -> ObjectiveOutput:
        ce = F.cross_entropy(student_out.logits, batch.label)
        return ObjectiveOutput(loss=ce, terms={"ce": ce.detach()}, student_terms={"ce": ce})
