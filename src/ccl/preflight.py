"""Checks of a run's networks that need the networks, made before anything is written:
each network is built on PyTorch's ``meta`` device (shapes only: no memory, no weights, no
random draws) and given a clip of the run's size.

They refuse, with the setting to change named, what would otherwise fail after the run
folder was made: a clip size a student or image teacher cannot take (docs/METHOD.md §2.1,
§2.2), a ``student.weights`` file that does not fit the student, an unknown
``student.finetune_from``, and for CCL an image teacher whose feature width is not the
student's (the composition W[x_t/|x_t|; v/|v|] + x_t and the contrastive terms compare the
two, docs/METHOD.md §2.4).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

import torch
import torchvision
from torch import nn

from ccl.config import Config
from ccl.models import build_model
from ccl.models.pretrained import freeze_before, load_student_weights
from ccl.models.teachers import image_trunk
from ccl.models.torchvision_video import (
    TORCHVISION_PREFIX,
    VIDEO_INPUT_LIMITS,
    TorchvisionStudent,
)
from ccl.objectives.registry import CCL, IMAGE

T = TypeVar("T")


def check_networks(cfg: Config, *, resuming: bool = False) -> None:
    """Refuse (``ValueError``, :class:`ccl.errors.WeightsError`) a student or image teacher
    the run cannot train, as described above. ``resuming``: the run continues from a
    checkpoint, so ``student.weights`` is not read. A network that cannot be built on the
    meta device (a few torchvision builders read tensor values) is checked when built."""
    s, d = cfg.student, cfg.data
    student = on_meta(lambda: build_model(s, 2))
    if student is not None:
        name = s.arch.removeprefix(TORCHVISION_PREFIX)
        if isinstance(student, TorchvisionStudent) and (
            s.width != 1 or s.feature_dim not in (None, student.feature_dim)
        ):
            raise ValueError(
                f"student.arch={s.arch} has its own width: set student.width=1 and "
                f"student.feature_dim=none (its features are {student.feature_dim}-d)"
            )
        failure = forward_failure(student, (2, 3, d.clip_frames, d.size, d.size))
        if failure:
            limits = VIDEO_INPUT_LIMITS.get(name, "see docs/METHOD.md §2.1")
            raise ValueError(
                f"student.arch={s.arch} cannot take {d.clip_frames}x{d.size}x{d.size} clips "
                f"(data.clip_frames x data.size): {failure}. It takes {limits}"
            )
        if s.weights is not None and not resuming:
            load_student_weights(student, s.weights)
        if s.finetune_from is not None:
            freeze_before(student, s.finetune_from)
    if IMAGE in cfg.objective.teachers:
        check_image_teacher(cfg, student.feature_dim if student is not None else None)


def check_image_teacher(cfg: Config, student_width: int | None) -> None:
    """The image teacher takes the frames it will see, and for CCL its feature width is the
    student's (``student_width``; None: unknown, not compared)."""
    t = cfg.image_teacher
    built = on_meta(lambda: image_trunk(t.arch))
    if built is None:
        return
    trunk, width, _ = built
    size = t.input_size or cfg.data.size
    failure = forward_failure(trunk, (2, 3, size, size))
    if failure:
        raise ValueError(
            f"image_teacher.arch={t.arch} cannot take {size}x{size} frames "
            f"(image_teacher.input_size, else data.size): {failure}. Its weights were trained "
            f"at {trained_size(t.arch)} px: set image_teacher.input_size to that"
        )
    if cfg.objective.method == CCL and student_width is not None and width != student_width:
        raise ValueError(
            f"image_teacher.arch={t.arch} gives {width}-d features but the student's are "
            f"{student_width}-d; CCL composes and contrasts the two: set "
            f"student.feature_dim={width} (or, for a torchvision student, choose an image "
            f"teacher of width {student_width})"
        )


def on_meta(build: Callable[[], T]) -> T | None:
    """``build()`` with every tensor on the meta device, or None when a builder needs real
    tensors (it reads values, e.g. torchvision's RegNets)."""
    try:
        with torch.device("meta"):
            return build()
    except NotImplementedError:
        return None


def forward_failure(net: nn.Module, shape: tuple[int, ...]) -> str | None:
    """Why ``net`` (on the meta device, eval mode) cannot take an input of ``shape``: the
    first line of the error, or None when it can (or an operation has no meta kernel)."""
    was_training = net.training
    net.eval()
    try:
        with torch.no_grad():
            net(torch.empty(shape, device="meta"))
    except NotImplementedError:
        return None
    except (RuntimeError, ValueError, AssertionError, IndexError) as err:
        return (str(err).strip().splitlines() or [type(err).__name__])[0].rstrip(".!")
    finally:
        net.train(was_training)
    return None


def trained_size(arch: str) -> int | str:
    """The frame size torchvision's default weights of ``arch`` were evaluated at (their
    centre crop: 224 for most, 299 for Inception v3, 384 to 600 for larger EfficientNets)."""
    try:
        weights = torchvision.models.get_model_weights(arch).DEFAULT
        return int(weights.transforms().crop_size[0])
    except (ValueError, AttributeError, IndexError, TypeError):
        return "its published size"
