"""Restricting a loss to the samples that have a teacher, without selecting them.

Selecting ``x[valid]`` makes shapes depend on data (a host synchronisation on a GPU, and a
graph break under ``torch.compile``); weighting by the mask gives the same value and the
same gradient, with an exactly zero gradient for the left-out samples.
"""

from __future__ import annotations

import torch


def check_valid(valid: torch.Tensor | None, batch: int) -> None:
    """``valid`` must be None or a (batch,) bool tensor."""
    if valid is not None and (valid.dtype != torch.bool or valid.shape != (batch,)):
        raise ValueError(
            f"valid must be a ({batch},) bool tensor, got {valid.dtype} {tuple(valid.shape)}"
        )


def masked_mean(values: torch.Tensor, valid: torch.Tensor | None) -> torch.Tensor:
    """Mean over the last dimension, over the ``valid`` entries only (None: all of them);
    exactly 0 when none is valid."""
    if valid is None:
        return values.mean(-1)
    weight = valid.to(values.dtype) / valid.sum().clamp(min=1)
    return (values * weight).sum(-1)
