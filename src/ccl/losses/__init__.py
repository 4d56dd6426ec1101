"""Losses of CCL, one small module each, every docstring citing its equation."""

from ccl.losses.contrastive import MultiClassNCELoss, symmetric_contrastive
from ccl.losses.divergence import SymmetricKLLoss

__all__ = ["MultiClassNCELoss", "SymmetricKLLoss", "symmetric_contrastive"]
