"""Solve functions injected into the plan API's what-if worker processes by tests (importable by name there).

Light on imports: the optimizer's forkserver children import this module to unpickle the function.
"""

from __future__ import annotations

import os
import time
from typing import Any


def spin_forever(problem: Any, *, solver: str, time_limit_s: float) -> Any:
    """A pure-Python busy loop that holds the GIL and never returns: what a runaway solve looks like."""
    x = 0
    while True:
        x = (x * 31 + 7) % 1_000_003


def report_limit(problem: Any, *, solver: str, time_limit_s: float) -> Any:
    """Answers at once, reporting the soft time limit and its process id in ``message``."""
    from faro.optimizer.solve import solve

    result = solve(problem, solver=solver, clock=time.perf_counter)
    import dataclasses

    return dataclasses.replace(result, message=f"time_limit_s={time_limit_s:.6f} pid={os.getpid()}")


def die(problem: Any, *, solver: str, time_limit_s: float) -> Any:
    """The process dies without an answer, as if the kernel killed it for memory."""
    os._exit(137)


def release_path(name: str) -> str:
    import tempfile

    return os.path.join(tempfile.gettempdir(), f"faro-whatif-release-{name}")


def hold_until_released(problem: Any, *, solver: str, time_limit_s: float) -> Any:
    """Holds its solve slot (no CPU) until the test creates ``release_path(first job's name)``, then solves."""
    path = release_path(problem.jobs[0].name)
    while not os.path.exists(path):
        time.sleep(0.01)
    from faro.optimizer.solve import solve

    return solve(problem, solver=solver, clock=time.perf_counter)
