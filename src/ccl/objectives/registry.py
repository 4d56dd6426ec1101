"""The training methods and their teachers in one table.

The config's type for ``objective.method``, the CLI's choices, the presets, the demo's runs
and :func:`ccl.objectives.build_objective` all read this module, so a method or teacher is
named here once. Methods (docs/METHOD.md §3.3, §3.5, §7): the baseline (cross-entropy
only), CCL, and the feature-distillation methods the paper compares CCL against; every
method but the baseline takes one teacher setting: audio, image or both (the paper's A, I
and AI columns).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

AUDIO, IMAGE = "audio", "image"
TEACHERS = (AUDIO, IMAGE)  # the order in which CCL-AI and the KD methods sum their terms
# The teacher settings by their short names (preset and run names: ccl-a, crd-ai).
TEACHER_SETS: dict[str, tuple[str, ...]] = {"a": (AUDIO,), "i": (IMAGE,), "ai": TEACHERS}
# CCL's NCE temperature per teacher, the reference's (docs/METHOD.md §3.1).
CCL_TEMPERATURES: dict[str, float] = {AUDIO: 0.5, IMAGE: 0.1}

MethodKind = Literal["baseline", "ccl", "kd"]


@dataclass(frozen=True)
class Method:
    """One training method: ``name`` as configs and the command line spell it, ``label`` as
    the paper's tables print it, ``kind`` the objective that trains it."""

    name: str
    label: str
    kind: MethodKind

    @property
    def teacher_sets(self) -> tuple[tuple[str, ...], ...]:
        """The teacher settings the method is trained with (the baseline: none)."""
        return ((),) if self.kind == "baseline" else tuple(TEACHER_SETS.values())


BASELINE, CCL = "baseline", "ccl"
METHODS: dict[str, Method] = {
    m.name: m
    for m in (
        Method(BASELINE, "baseline", "baseline"),
        Method(CCL, "CCL", "ccl"),
        # the compared distillation methods (ccl.objectives.kd), in the paper's order
        Method("fitnet", "FitNet", "kd"),
        Method("pkt", "PKT", "kd"),
        Method("cc", "COR (CC)", "kd"),
        Method("rkd", "RKD", "kd"),
        Method("crd", "CRD", "kd"),
        Method("cmc", "CMC", "kd"),
    )
}
METHOD_NAMES = tuple(METHODS)
KD_METHODS = tuple(name for name, m in METHODS.items() if m.kind == "kd")
# The type of ``objective.method``, built from the table at run time so that the config
# parser's choices follow it (static type checkers cannot see its values).
MethodName = Literal[METHOD_NAMES]  # type: ignore[valid-type]

# The paper's main runs as the presets name them: the baseline, CCL with each teacher setting.
MAIN_RUNS: dict[str, tuple[str, tuple[str, ...]]] = {
    BASELINE: (BASELINE, ()),
    **{f"{CCL}-{short}": (CCL, teachers) for short, teachers in TEACHER_SETS.items()},
}

# Every run of the paper's comparison by name: the main runs, then each other distillation
# method with each teacher setting (fitnet-a, fitnet-i, fitnet-ai, pkt-a, ...).
COMPARISON_RUNS: dict[str, tuple[str, tuple[str, ...]]] = {
    **MAIN_RUNS,
    **{
        f"{kd}-{short}": (kd, teachers)
        for kd in KD_METHODS
        for short, teachers in TEACHER_SETS.items()
    },
}


def describe_teacher_sets() -> str:
    """The teacher settings as ``objective.teachers=`` takes them: ``audio, image or
    audio,image`` (for error messages)."""
    sets = [",".join(t) for t in TEACHER_SETS.values()]
    return ", ".join(sets[:-1]) + " or " + sets[-1]
