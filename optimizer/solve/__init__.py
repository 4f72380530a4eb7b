"""Solvers for the allocation problem: ``solve(problem, solver=...)`` and the ``SOLVERS`` registry.

Pure (numpy/scipy/cvxpy). Called by policies, the live optimizer, ``faro plan`` and ``bench/solver.py``.
"""

from faro.optimizer.solve.api import SOLVERS, solve
from faro.optimizer.solve.result import STATUSES, SolveResult

__all__ = ["SOLVERS", "STATUSES", "SolveResult", "solve"]
