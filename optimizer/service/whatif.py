"""Bounded what-if solves for the plan API's ``Solve``: size caps, a solver allow-list, per-caller and total
concurrency, and a time limit enforced by running each solve in its own process that is killed at the deadline.

Used by ``grpc_api.PlanServicer.Solve``; limits come from ``faro optimizer``'s ``--solve-*`` flags.

Why a process and not a thread: a CPU-bound solve in a thread holds the GIL for most of its run, so the control
loop and every other RPC of this process would slow down while it runs, and a thread cannot be stopped at its
deadline. A child process shares no GIL and is killed (SIGKILL) when its time is up. Children come from a
``forkserver`` started once with the solver modules imported, so a solve starts in milliseconds, not the
seconds a fresh interpreter needs to import numpy/scipy/cvxpy.

The forkserver imports the program's main module once, as ``multiprocessing`` does: ``faro`` and
``python -m faro.optimizer.cli`` guard theirs; a program embedding the service must too
(``if __name__ == "__main__":``).

Every refusal is decided before any work: too many jobs, steps, quotas or table cells (the utility tables are
jobs × steps × replica counts wide: the memory a solve needs) → ``SolveRefused(RESOURCE_EXHAUSTED)``; a solver
not on the list → ``SolveRefused(INVALID_ARGUMENT)``; more solves in flight than allowed (in total or for this
caller) → ``SolveRefused(RESOURCE_EXHAUSTED)``. A solve still running at its time limit → ``SolveTimedOut``.
"""

from __future__ import annotations

import contextlib
import logging
import math
import multiprocessing
import multiprocessing.connection
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from faro.optimizer.errors import InvalidInputError

if TYPE_CHECKING:  # imported by `faro optimizer`'s flag parser: keep it light
    from faro.v1 import plan_pb2

log = logging.getLogger(__name__)

DEFAULT_MAX_REPLICAS = 100  # a SolveJob that gives no max_replicas (grpc_api.problem_from_request)
DEFAULT_SOLVERS = ("auto", "greedy", "dp", "cvxpy")  # not cobyla: seconds to minutes, a benchmark reference
_PRELOAD = ["faro.optimizer.solve", "faro.optimizer.service.whatif"]


@dataclass(frozen=True)
class SolveLimits:
    """What one ``Solve`` may ask for (every field has a ``--solve-*`` flag)."""

    max_jobs: int = 500
    max_horizon: int = 60  # rate_rps steps per job
    max_quotas: int = 100
    max_cells: int = 4_000_000  # jobs × steps × replica counts of the widest job: the utility tables' size
    max_time_s: float = 10.0  # the caller's time_limit_s and gRPC deadline can only lower it
    solvers: tuple[str, ...] = DEFAULT_SOLVERS
    max_concurrent: int = 2  # solves in flight on this replica (each a process)
    max_per_caller: int = 1  # solves in flight per caller identity

    def __post_init__(self) -> None:
        for name in ("max_jobs", "max_horizon", "max_quotas", "max_cells", "max_concurrent", "max_per_caller"):
            if getattr(self, name) < 1:
                raise InvalidInputError(f"--solve-{name.removeprefix('max_').replace('_', '-')}",
                                        f"must be >= 1, got {getattr(self, name)}")
        if not (self.max_time_s > 0 and math.isfinite(self.max_time_s)):
            raise InvalidInputError("--solve-max-time-s", f"must be a positive number, got {self.max_time_s!r}")
        from faro.optimizer.solve import SOLVERS

        unknown = [s for s in self.solvers if s not in SOLVERS]
        if unknown or not self.solvers:
            raise InvalidInputError("--solve-solvers", f"must name solvers among {', '.join(SOLVERS)}; got "
                                    f"{', '.join(self.solvers) or 'none'}")


class SolveRefused(Exception):
    """Refused before any work; ``code`` is the gRPC status name (RESOURCE_EXHAUSTED or INVALID_ARGUMENT)."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


class SolveTimedOut(Exception):
    """The solve was still running at its time limit and its process was killed."""


class SolveCrashed(Exception):
    """The solve's process died without an answer (e.g. killed for memory)."""


class SolveError(Exception):
    """The solver raised (a bug or an input the model cannot take): answered as status ``error``."""


def check_request(request: plan_pb2.SolveRequest, limits: SolveLimits) -> None:
    """Refuse an oversize or disallowed request from the message alone (before building a ``Problem``)."""
    jobs = request.jobs
    if len(jobs) > limits.max_jobs:
        raise SolveRefused("RESOURCE_EXHAUSTED", f"jobs: {len(jobs)} jobs, more than --solve-max-jobs "
                           f"{limits.max_jobs}")
    if len(request.quotas) > limits.max_quotas:
        raise SolveRefused("RESOURCE_EXHAUSTED", f"quotas: {len(request.quotas)} quotas, more than "
                           f"--solve-max-quotas {limits.max_quotas}")
    horizon, width = 0, 0
    for i, job in enumerate(jobs):
        if len(job.rate_rps) > limits.max_horizon:
            raise SolveRefused("RESOURCE_EXHAUSTED", f"jobs[{i}] ({job.namespace}/{job.name}).rate_rps: "
                               f"{len(job.rate_rps)} steps, more than --solve-max-horizon {limits.max_horizon}")
        horizon = max(horizon, len(job.rate_rps))
        top = job.max_replicas or DEFAULT_MAX_REPLICAS
        width = max(width, top - max(0, job.min_replicas) + 1)
    cells = len(jobs) * horizon * width
    if cells > limits.max_cells:
        raise SolveRefused("RESOURCE_EXHAUSTED", f"jobs: {len(jobs)} jobs × {horizon} steps × {width} replica "
                           f"counts = {cells:,} table cells, more than --solve-max-cells {limits.max_cells:,}")
    solver = request.solver or "auto"
    if solver not in limits.solvers:
        raise SolveRefused("INVALID_ARGUMENT", f"solver: {solver!r} is not allowed on this server "
                           f"(--solve-solvers: {', '.join(limits.solvers)})")


def solve_in_child(problem: Any, *, solver: str, time_limit_s: float) -> Any:
    """What a child process runs by default: the real solver, with a clock for ``solve_ms`` and the soft limit."""
    import time

    from faro.optimizer.solve import solve

    return solve(problem, solver=solver, time_limit_s=time_limit_s, clock=time.perf_counter)


def _child(conn: multiprocessing.connection.Connection, fn: Callable[..., Any], problem: Any, solver: str,
           time_limit_s: float) -> None:
    try:
        result = fn(problem, solver=solver, time_limit_s=time_limit_s)
    except InvalidInputError as exc:
        conn.send(("invalid", str(exc)))
    except Exception as exc:  # reported to the caller as a status "error" response
        conn.send(("error", f"{type(exc).__name__}: {exc}"))
    else:
        conn.send(("ok", result))
    conn.close()


class WhatIfSolver:
    """Runs what-if solves in killable child processes within ``limits`` (thread-safe; one per server)."""

    def __init__(self, limits: SolveLimits, *, solve: Callable[..., Any] = solve_in_child,
                 start_method: str = "forkserver") -> None:
        self.limits = limits
        self._solve = solve
        self._start_method = start_method
        self._ctx = multiprocessing.get_context(start_method)
        if start_method == "forkserver":
            self._ctx.set_forkserver_preload(_PRELOAD)
        self._lock = threading.Lock()
        self._in_flight = 0
        self._per_caller: dict[str, int] = {}
        self._pids: set[int] = set()

    def warm_up(self) -> None:
        """Start the forkserver in the background now, so the first Solve does not wait for its imports."""
        if self._start_method == "forkserver":
            from multiprocessing import forkserver

            threading.Thread(target=forkserver.ensure_running, name="faro-whatif-warm-up", daemon=True).start()

    @contextlib.contextmanager
    def admit(self, caller: str) -> Iterator[None]:
        """Hold one of the solve slots for ``caller``; SolveRefused(RESOURCE_EXHAUSTED) when none is free."""
        with self._lock:
            if self._in_flight >= self.limits.max_concurrent:
                raise SolveRefused("RESOURCE_EXHAUSTED", f"{self._in_flight} what-if solves already running on "
                                   f"this replica (--solve-max-concurrent {self.limits.max_concurrent}); retry later")
            mine = self._per_caller.get(caller, 0)
            if mine >= self.limits.max_per_caller:
                raise SolveRefused("RESOURCE_EXHAUSTED", f"{caller} already has {mine} what-if solve(s) running "
                                   f"(--solve-max-per-caller {self.limits.max_per_caller}); retry later")
            self._in_flight += 1
            self._per_caller[caller] = mine + 1
        try:
            yield
        finally:
            with self._lock:
                self._in_flight -= 1
                left = self._per_caller[caller] - 1
                if left:
                    self._per_caller[caller] = left
                else:
                    del self._per_caller[caller]

    @property
    def in_flight(self) -> int:
        with self._lock:
            return self._in_flight

    @property
    def pids(self) -> frozenset[int]:
        """Process ids of the solves running now (for tests and debugging)."""
        with self._lock:
            return frozenset(self._pids)

    def time_limit_s(self, requested_s: float, deadline_s: float | None) -> float:
        """The limit of one solve: the server's maximum, lowered by the request's and by the call's deadline."""
        limit = self.limits.max_time_s
        if requested_s > 0 and math.isfinite(requested_s):
            limit = min(limit, requested_s)
        if deadline_s is not None:
            limit = min(limit, max(0.0, deadline_s))
        return limit

    def run(self, problem: Any, *, solver: str, time_limit_s: float) -> Any:
        """The solver's result, computed in a child process killed after ``time_limit_s``.

        Raises SolveTimedOut, SolveCrashed, SolveError or InvalidInputError (the problem was rejected by the model)."""
        receive, send = self._ctx.Pipe(duplex=False)
        # The solver's own (soft) limit is a little shorter, so iterative solvers can still return their best.
        soft_s = 0.8 * time_limit_s
        process = self._ctx.Process(target=_child, args=(send, self._solve, problem, solver, soft_s),
                                    name="faro-whatif-solve", daemon=True)
        try:
            process.start()
        except Exception as exc:  # e.g. no forkserver (its start failed): an answer, not a crash of the call
            receive.close()
            send.close()
            log.error("cannot start a what-if solve process: %s", exc)
            raise SolveCrashed(f"could not start a solve process: {exc}") from exc
        try:
            with self._lock:
                self._pids.add(process.pid or 0)
            send.close()  # the child holds the only writer: EOF when it dies
            if not receive.poll(time_limit_s):
                raise SolveTimedOut(f"the solve did not finish within its time limit of {time_limit_s:.3g} s "
                                    "(min of --solve-max-time-s, the request's time_limit_s and the call deadline)")
            try:
                kind, value = receive.recv()
            except (EOFError, OSError) as exc:
                process.join(5)
                raise SolveCrashed(f"the solve's process died without an answer (exit code {process.exitcode}); "
                                   "a problem this size may need more memory than the optimizer has") from exc
        finally:
            receive.close()
            if process.is_alive():
                process.kill()
            process.join(5)
            with self._lock:
                self._pids.discard(process.pid or 0)
            with contextlib.suppress(ValueError):
                process.close()
        if kind == "invalid":
            raise InvalidInputError("SolveRequest", value)
        if kind == "error":
            raise SolveError(value)
        return value
