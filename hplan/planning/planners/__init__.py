"""Planners over action sequences: gradient (optax), CEM, MPPI and their composition."""

from hplan.planning.planners.base import (
    CostFn,
    Planner,
    PlannerState,
    project,
    shift,
    solve,
)
from hplan.planning.planners.constrained import solve_al
from hplan.planning.planners.gradient import gradient
from hplan.planning.planners.hybrid import hybrid
from hplan.planning.planners.sampling import cem, cem_weights, mppi, mppi_weights

__all__ = [
    "CostFn", "Planner", "PlannerState", "cem", "cem_weights", "gradient", "hybrid", "mppi",
    "mppi_weights", "project", "shift", "solve", "solve_al",
]
