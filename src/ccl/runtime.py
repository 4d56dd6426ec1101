"""What every command that runs a network needs, apart from the training loop: the device,
the seeds, mixed precision, and moving a collated batch onto the device normalised.

``ccl train``, ``ccl evaluate``, ``ccl predict`` and ``ccl pretrain-teacher`` share these, so
a change to the training loop (``engine.py``) cannot change how evaluation runs.
"""

from __future__ import annotations

import contextlib
import random
from collections.abc import Iterable
from typing import Any

import numpy as np
import torch

from ccl.objectives.base import Batch


def resolve_device(name: str) -> torch.device:
    """``'auto'`` is CUDA when there is a GPU, else the CPU. A CUDA device asked for by name
    on a machine without one is an error rather than a silent, much slower CPU run."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise RuntimeError(f"device {name!r} requested but CUDA is not available")
    return device


def seed_everything(seed: int) -> None:
    """Seed Python's, NumPy's and torch's generators: every RNG the loop and data draw from."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def to_batch(
    raw: dict[str, Any], device: torch.device, mean: torch.Tensor, std: torch.Tensor
) -> Batch:
    """Move a collated sample dict to ``device``; uint8 clips become normalised floats there
    (4x less host-to-device traffic than float clips)."""
    clip = raw["clip"].to(device, non_blocking=True)
    if clip.dtype == torch.uint8:
        clip = clip.float().div_(255.0)
    clip = (clip - mean) / std
    audio = raw.get("audio")
    available = raw.get("audio_available")
    index = raw.get("index")
    return Batch(
        clip=clip,
        label=torch.as_tensor(raw["label"]).to(device, non_blocking=True),
        audio=audio.to(device, non_blocking=True) if audio is not None else None,
        audio_available=available.to(device, non_blocking=True) if available is not None else None,
        index=torch.as_tensor(index).to(device, non_blocking=True) if index is not None else None,
    )


def stats_tensor(values: Iterable[float], device: torch.device) -> torch.Tensor:
    """Per-channel clip mean or std as a (1, 3, 1, 1, 1) tensor on ``device``, the shape
    :func:`to_batch` broadcasts over (B, C, T, H, W) clips."""
    return torch.tensor(list(values), dtype=torch.float32, device=device).view(1, 3, 1, 1, 1)


def autocast_context(device: torch.device, precision: str) -> contextlib.AbstractContextManager:
    """Autocast to ``precision`` (``fp32``: none, ``bf16``, ``fp16``); training and evaluation
    use this one switch so a model is scored at the precision it was asked for."""
    if precision == "fp32":
        return contextlib.nullcontext()
    dtype = torch.bfloat16 if precision == "bf16" else torch.float16
    return torch.autocast(device_type=device.type, dtype=dtype)
