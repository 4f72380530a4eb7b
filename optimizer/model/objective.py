"""Cluster objectives over per-job utilities (design §3). Called by solvers and reports.

``sum``/``penaltysum``: Σ wᵢUᵢ.  ``fair``: min Uᵢ (max-min fairness; ties broken by the sum in the
solvers).  ``fairsum``/``penaltyfairsum``: Σ Uᵢ + N·(min Uᵢ − max Uᵢ + 1).
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike


def is_penalty(objective: str) -> bool:
    return objective.startswith("penalty")


def base_objective(objective: str) -> str:
    """The objective without its penalty prefix: ``penaltyfairsum`` → ``fairsum``."""
    return objective.removeprefix("penalty")


def objective_value(objective: str, utilities: ArrayLike, weights: ArrayLike | None = None) -> float:
    """Value of ``objective`` for per-job utilities (already including any drop penalty)."""
    u = np.asarray(utilities, dtype=float)
    if u.size == 0:
        return 0.0
    w = np.ones_like(u) if weights is None else np.asarray(weights, dtype=float)
    kind = base_objective(objective)
    if kind == "sum":
        return float(np.dot(w, u))
    if kind == "fair":
        return float(u.min())
    if kind == "fairsum":
        return float(u.sum() + u.size * (u.min() - u.max() + 1.0))
    raise ValueError(f"unknown objective {objective!r}")
