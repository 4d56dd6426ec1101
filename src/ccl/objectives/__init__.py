"""Training methods behind one interface: ``Objective.forward(student_out, batch)``.

The names below load on first use (PEP 562), so that ``ccl.objectives.registry`` (the table
of methods the CLI reads to build its choices) imports without torch: ``ccl --help`` and the
data-preparation commands stay light."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ccl.objectives.base import Batch, Objective, ObjectiveOutput
    from ccl.objectives.baseline import BaselineObjective
    from ccl.objectives.build import build_objective
    from ccl.objectives.ccl import CCLObjective

_HOMES = {
    "Batch": "ccl.objectives.base",
    "Objective": "ccl.objectives.base",
    "ObjectiveOutput": "ccl.objectives.base",
    "BaselineObjective": "ccl.objectives.baseline",
    "build_objective": "ccl.objectives.build",
    "CCLObjective": "ccl.objectives.ccl",
}

__all__ = [
    "Batch",
    "BaselineObjective",
    "CCLObjective",
    "Objective",
    "ObjectiveOutput",
    "build_objective",
]


def __getattr__(name: str) -> Any:
    if name in _HOMES:
        return getattr(importlib.import_module(_HOMES[name]), name)
    raise AttributeError(f"module 'ccl.objectives' has no attribute {name!r}")
