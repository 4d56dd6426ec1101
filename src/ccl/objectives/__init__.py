"""Training methods behind one interface: ``Objective.forward(student_out, batch)``."""

from ccl.objectives.base import Batch, Objective, ObjectiveOutput
from ccl.objectives.baseline import BaselineObjective
from ccl.objectives.build import build_objective
from ccl.objectives.ccl import CCLObjective

__all__ = [
    "Batch",
    "BaselineObjective",
    "CCLObjective",
    "Objective",
    "ObjectiveOutput",
    "build_objective",
]
