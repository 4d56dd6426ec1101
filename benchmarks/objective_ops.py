"""Launch cost of the CCL objective alone: ATen ops and host synchronisations per step.

One forward and backward of ``CCLObjective`` on random student features (batch 32, 512-d,
51 classes, one sample without audio so the masked path runs), counted with a
``TorchDispatchMode``; then the median wall time of the step on the CPU (one thread). On a
GPU every op is a kernel launch and every sync stalls the launch queue, which is what makes
CCL cost more than the baseline there (docs/PERFORMANCE.md). Op counts are deterministic;
to compare two versions, run the script in a worktree of each.

Prints one line per setting:
``teachers=<a+i> head_update=<rule> aten_ops=<n> non_view_ops=<n> host_syncs=<n> ms=<t>``
"""

from __future__ import annotations

import statistics
import time

import torch
from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode

from ccl.models.r2plus1d import StudentOutput
from ccl.objectives import Batch, CCLObjective

B, D, C = 32, 512, 51
SYNC_OPS = ("_local_scalar_dense", "nonzero", "nonzero_static", "masked_select", "is_nonzero")


class FixedTeacher(nn.Module):
    """Stands in for the image teacher: returns fixed features (its cost is not counted)."""

    feature_dim = D

    def __init__(self, features: torch.Tensor) -> None:
        super().__init__()
        self.features = features

    def forward(self, clip: torch.Tensor) -> torch.Tensor:
        return self.features


class CountOps(TorchDispatchMode):
    def __init__(self) -> None:
        super().__init__()
        self.ops = self.views = self.syncs = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):  # noqa: ANN001
        self.ops += 1
        if func.__name__.split(".")[0] in SYNC_OPS:
            self.syncs += 1
        if not func._schema.is_mutable and any(r.alias_info for r in func._schema.returns):
            self.views += 1
        return func(*args, **(kwargs or {}))


def measure(teachers: tuple[str, ...], head_update: str) -> tuple[int, int, int, float]:
    torch.manual_seed(0)
    objective = CCLObjective(
        C, D, teachers, image_teacher=FixedTeacher(torch.randn(B, D)), head_update=head_update
    )
    available = torch.ones(B, dtype=torch.bool)
    available[0] = False
    audio = torch.rand(B, D) * available[:, None]
    batch = Batch(torch.zeros(B, 1), torch.arange(B) % 6, audio, available)
    feature, logits = torch.randn(B, D), torch.randn(B, C)

    def step() -> None:
        out = StudentOutput(
            feature=feature.clone().requires_grad_(), logits=logits.clone().requires_grad_()
        )
        objective(out, batch).loss.backward()
        objective.zero_grad(set_to_none=True)

    for _ in range(5):
        step()
    with CountOps() as count:
        step()
    times = []
    for _ in range(7):
        t0 = time.perf_counter()
        for _ in range(20):
            step()
        times.append((time.perf_counter() - t0) / 20)
    return count.ops, count.ops - count.views, count.syncs, statistics.median(times) * 1e3


def main() -> None:
    torch.set_num_threads(1)
    for teachers in (("audio", "image"), ("audio",), ("image",)):
        for rule in ("reference", "paper", "joint"):
            ops, non_view, syncs, ms = measure(teachers, rule)
            print(
                f"teachers={'+'.join(teachers)} head_update={rule} aten_ops={ops} "
                f"non_view_ops={non_view} host_syncs={syncs} ms={ms:.2f}"
            )


if __name__ == "__main__":
    main()
