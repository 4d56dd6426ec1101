"""The interface of a feature-distillation loss: what :class:`DistillationObjective` and
:func:`build_kd_objective` rely on, declared by every loss of :mod:`ccl.objectives.kd`.
"""

from __future__ import annotations

from typing import ClassVar

import torch
from torch import nn


class KDLoss(nn.Module):
    """A distillation term ``D(v, x_t)`` between (B, Ds) student and (B, Dt) teacher features.

    Constructor: ``cls(student_dim, teacher_dim, *, weight=..., **options)``: the two feature
    widths positionally, then the method's options keyword-only with the original paper's
    values as defaults (``build_kd_objective`` refuses unknown ones). A loss with
    ``needs_num_samples`` takes the training-set size as a third positional argument; a loss
    with a ``seed`` option draws its random numbers from a generator seeded by it.

    ``forward(student, teacher, index)`` returns the weighted scalar term; ``index`` are the
    samples' dataset indices, given when ``needs_index``. Class attributes:

    - ``needs_index``: ``forward`` needs the dataset indices (memory banks, CRD);
    - ``min_batch``: the fewest samples the term is defined for (relations between samples
      need two); with fewer, the objective skips the term for that step;
    - ``needs_num_samples``: the constructor takes the training-set size (bank rows).
    """

    needs_index: ClassVar[bool] = False
    min_batch: ClassVar[int] = 1
    needs_num_samples: ClassVar[bool] = False

    def forward(
        self, student: torch.Tensor, teacher: torch.Tensor, index: torch.Tensor | None = None
    ) -> torch.Tensor:
        raise NotImplementedError
