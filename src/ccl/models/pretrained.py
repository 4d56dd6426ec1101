"""Start a student from pretrained weights (``student.weights``) and train it from one module
on (``student.finetune_from``): the reference's ``--pretrain_path`` and ``--ft_begin_module``
(its ``main.py`` and ``model.py``, after 3D-ResNets-PyTorch).

Weight files: this package's checkpoints (their ``student`` entry), a bare state dict, the
reference's checkpoints (a dict with ``state_dict``, keys prefixed ``module.`` when saved from
DataParallel) and, for ``student.arch=torchvision.NAME``, torchvision's weight files. Every
file is read with ``weights_only=True`` (:func:`ccl.checkpoint.load_weights`).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING

import torch
from torch import nn

from ccl.checkpoint import load_weights
from ccl.errors import WeightsError
from ccl.models.torchvision_video import TorchvisionStudent, torchvision_state_to_student

if TYPE_CHECKING:  # for the annotation only: ccl.config sits above ccl.models
    from ccl.config import StudentConfig

CLASSIFIER = "linear"  # the student's classifier, always trained and replaced when it differs
# "fc": the 3D-ResNets-PyTorch name users pass to --ft_begin_module for the classifier
CLASSIFIER_ALIASES = ("linear", "fc")
SHOWN_KEYS = 4  # keys an error names before it gives the count of the others


def read_student_weights(path: str | Path) -> dict[str, torch.Tensor]:
    """The student's state dict stored in ``path``: a ccl checkpoint's ``student``, a
    reference checkpoint's ``state_dict`` or a bare state dict, without DataParallel's
    ``module.`` prefix. Anything else is a :class:`WeightsError` naming the file."""
    state = load_weights(path, what="student weights (student.weights)")
    if isinstance(state, dict) and isinstance(state.get("student"), Mapping):
        state = state["student"]  # ccl.checkpoint: this package's checkpoints
    elif isinstance(state, dict) and isinstance(state.get("state_dict"), Mapping):
        state = state["state_dict"]  # the reference's save_checkpoint (3D-ResNets-PyTorch)
    if not isinstance(state, Mapping) or not all(
        isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in state.items()
    ):
        raise WeightsError(
            f"student.weights {path} holds no state dict (names -> tensors), nor a ccl or "
            "reference checkpoint with one"
        )
    return {k.removeprefix("module."): v for k, v in state.items()}


def load_student_weights(student: nn.Module, path: str | Path) -> list[str]:
    """Load ``path`` (:func:`read_student_weights`) into ``student``; returns notes to show.

    A classifier (``linear``) for another number of classes is left as initialised and a
    note says so (fine-tuning on new classes). Any other key the file lacks, has in excess or
    holds in another shape is one :class:`WeightsError` naming the file and the keys. The
    reference's unused ``fc`` (its ``load_pretrained_model`` sets ``model.fc``, which its
    R(2+1)D never calls) is dropped. A student on the meta device is only checked."""
    state = read_student_weights(path)
    if isinstance(student, TorchvisionStudent):
        state = torchvision_state_to_student(state, student)
    else:
        state = {k: v for k, v in state.items() if not k.startswith("fc.")}
    own = student.state_dict()
    notes = []
    theirs, ours = state.get(f"{CLASSIFIER}.weight"), own.get(f"{CLASSIFIER}.weight")
    if theirs is not None and ours is not None and theirs.shape[0] != ours.shape[0]:
        if theirs.shape[1:] == ours.shape[1:]:
            state = {k: v for k, v in state.items() if not k.startswith(f"{CLASSIFIER}.")}
            own = {k: v for k, v in own.items() if not k.startswith(f"{CLASSIFIER}.")}
            notes.append(
                f"student.weights {path}: its classifier for {theirs.shape[0]} classes is "
                f"replaced by a new one for {ours.shape[0]} classes (freshly initialised)"
            )
    # BatchNorm's step counter is absent from files saved before PyTorch 0.4.1: keep ours
    missing = [k for k in own if k not in state and not k.endswith("num_batches_tracked")]
    unexpected = [k for k in state if k not in own]
    misshaped = [
        f"{k} {tuple(state[k].shape)} (student {tuple(v.shape)})"
        for k, v in own.items()
        if k in state and state[k].shape != v.shape
    ]
    problems = [
        f"{what} {shown(keys)}"
        for what, keys in (
            ("missing", missing),
            ("unexpected", unexpected),
            ("shaped otherwise", misshaped),
        )
        if keys
    ]
    if problems:
        raise WeightsError(
            f"student.weights {path} does not fit the student ({describe_student(student)}): "
            + "; ".join(problems)
            + ". Check student.arch, student.width and student.feature_dim"
        )
    if not any(t.is_meta for t in own.values()):
        student.load_state_dict(state, strict=False)
    return notes


def shown(keys: list[str]) -> str:
    """The first few of ``keys`` and how many more there are."""
    more = len(keys) - SHOWN_KEYS
    return ", ".join(keys[:SHOWN_KEYS]) + (f" and {more} more" if more > 0 else "")


def describe_student(student: nn.Module) -> str:
    if isinstance(student, TorchvisionStudent):
        return f"torchvision.{student.arch}"
    return f"{type(student).__name__}, feature_dim {getattr(student, 'feature_dim', '?')}"


def trainable_modules(student: nn.Module) -> list[str]:
    """The names ``student.finetune_from`` may take: the student's top-level modules with
    parameters, in the order they run (for torchvision students, the backbone's)."""
    root = student.backbone if isinstance(student, TorchvisionStudent) else student
    names = [n for n, m in root.named_children() if any(True for _ in m.parameters())]
    if isinstance(student, TorchvisionStudent):
        names.append(CLASSIFIER)
    return names


def freeze_before(student: nn.Module, module: str) -> list[str]:
    """Freeze every parameter registered before ``module`` (a top-level name such as
    ``conv4``, or a dotted one such as ``blocks.8``), except the classifier: the reference's
    ``get_fine_tuning_parameters`` (``--ft_begin_module``), which trains ``module``, all
    after it and ``fc``. Frozen parameters get ``requires_grad=False``, so the optimiser
    never sees them (the reference leaves them out of its SGD); their BatchNorm layers keep
    training mode and update their running statistics, as in the reference. Returns the
    names frozen; an unknown ``module`` is a ``ValueError`` listing the names allowed."""
    torchvision_student = isinstance(student, TorchvisionStudent)
    if module in CLASSIFIER_ALIASES:
        module = CLASSIFIER

    def relative(name: str) -> str:
        return name.removeprefix("backbone.") if torchvision_student else name

    named = list(student.named_parameters())
    start = next(
        (
            i
            for i, (name, _) in enumerate(named)
            if relative(name) == module or relative(name).startswith(module + ".")
        ),
        None,
    )
    if start is None:
        raise ValueError(
            f"student.finetune_from={module!r} names no module of the student; choose from "
            f"{', '.join(trainable_modules(student))}, or a dotted sub-module of one"
        )
    frozen = []
    for name, param in named[:start]:
        if not name.startswith(f"{CLASSIFIER}."):
            param.requires_grad_(False)
            frozen.append(name)
    return frozen


def prepare_student(
    student: nn.Module, settings: StudentConfig, *, load_weights_file: bool = True
) -> list[str]:
    """Apply ``student.weights`` (when ``load_weights_file``: a resumed run takes its weights
    from its checkpoint instead) and ``student.finetune_from`` to a freshly built student;
    returns the notes to show (a replaced classifier, the modules frozen)."""
    notes = []
    if settings.weights is not None and load_weights_file:
        notes += load_student_weights(student, settings.weights)
    if settings.finetune_from is not None:
        frozen = freeze_before(student, settings.finetune_from)
        notes.append(
            f"student.finetune_from={settings.finetune_from}: {len(frozen)} parameter tensors "
            "before it are frozen"
        )
    return notes
