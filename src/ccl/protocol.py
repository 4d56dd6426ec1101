"""Training protocols: this package's held-out validation, or the reference's, exactly
(docs/METHOD.md §5.3).

``train.protocol=held-out`` (default): the student trains on the training subset (the
official training list minus the validation groups that ``ccl prepare annotations`` holds
out), the epoch with the best video-level validation top-1 is kept, every batch is full (a
last partial batch is dropped) and BatchNorm normalises over each process's whole batch.

``train.protocol=reference`` repeats what the reference's UCF51 runs did, with annotations
made by ``ccl prepare annotations ... --protocol reference`` (no hold-out; the test split
validates):

- the epoch with the best **clip-level** accuracy on the test split is kept (model selection
  on the test set, as the reference did; the reported accuracy is then optimistic);
- the last, partial batch of each epoch is trained on too (the reference's DataLoader kept
  it);
- BatchNorm normalises over the parts of each batch that the reference's DataParallel on 2
  GPUs gave each replica (8 clips of a batch of 16), and the running statistics follow the
  first part only, as DataParallel keeps those of the replica on the first GPU.

The reference ran these in one process; so does this protocol (no torchrun).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from ccl.models.r2plus1d import StudentOutput

# The reference's CCL runs: DataParallel over 2 GPUs, batch 16 -> 8 clips per BatchNorm
REFERENCE_BN_SPLITS = 2


@dataclass(frozen=True)
class Protocol:
    """What a run's ``train.protocol`` (and ``train.bn_splits``) mean for the loop."""

    name: str
    select_by: str  # the validation metric that chooses best.pt: "top1" or "clip_top1"
    keep_last_batch: bool  # train on the last, partial batch of an epoch
    bn_splits: int  # parts each batch is normalised in (1: the whole batch)


def resolve(train_cfg: Any) -> Protocol:
    """The protocol of a ``TrainConfig``; ``bn_splits`` None means the protocol's own."""
    reference = train_cfg.protocol == "reference"
    splits = train_cfg.bn_splits
    if splits is None:
        splits = REFERENCE_BN_SPLITS if reference else 1
    return Protocol(
        name=train_cfg.protocol,
        select_by="clip_top1" if reference else "top1",
        keep_last_batch=reference,
        bn_splits=splits,
    )


def check_annotations(path: str, val_subset: str) -> None:
    """``train.protocol=reference`` trains on the whole official training list and validates
    on the test split: refuse an annotation file that holds videos out of training, or
    whose validation set is not the test split."""
    from ccl.data.annotations import load_annotations

    data = load_annotations(path)
    held = sum(1 for e in data["database"].values() if e["subset"] == "validation")
    if held:
        raise ValueError(
            f"{path}: holds {held} training videos out as validation; train.protocol=reference "
            "trains on the whole training list and validates on the test split: write the "
            "annotations with `ccl prepare annotations ... --protocol reference`"
        )
    validates_on = val_subset
    if val_subset == "validation":
        validates_on = data.get("validation_subset", "validation")
    if validates_on != "testing":
        raise ValueError(
            f"{path}: validates on {validates_on!r}, not the test split; "
            "train.protocol=reference needs annotations from `ccl prepare annotations ... "
            "--protocol reference` (or data.val_subset=testing)"
        )


def forward_in_splits(student: nn.Module, clip: torch.Tensor, splits: int) -> StudentOutput:
    """The student on ``clip`` split as ``torch.nn.DataParallel`` scatters a batch over
    ``splits`` GPUs (``torch.chunk``: parts of ``ceil(B / splits)`` clips, fewer parts for a
    small batch), so in training mode BatchNorm normalises each part over its own clips.
    As under DataParallel, BatchNorm's running statistics keep the update of the first part
    alone. Outputs are concatenated in batch order."""
    parts = clip.chunk(splits) if splits > 1 else (clip,)
    if len(parts) == 1:
        return student(clip)
    outputs = [student(parts[0])]
    # The other parts update stand-in copies of the running statistics, dropped afterwards;
    # the originals are swapped back, not overwritten: autograd saved them for backward.
    originals = _swap_running_stats(student) if student.training else []
    outputs += [student(part) for part in parts[1:]]
    for module, name, tensor in originals:
        setattr(module, name, tensor)
    return StudentOutput(*(torch.cat(tensors) for tensors in zip(*outputs)))


def _swap_running_stats(module: nn.Module) -> list[tuple[nn.Module, str, torch.Tensor]]:
    """Give every BatchNorm of ``module`` copies of its running statistics to update;
    returns (module, buffer name, original tensor) to put back."""
    originals = []
    for m in module.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.track_running_stats:
            for name in ("running_mean", "running_var", "num_batches_tracked"):
                tensor = getattr(m, name)
                if tensor is not None:
                    originals.append((m, name, tensor))
                    setattr(m, name, tensor.detach().clone())
    return originals
