"""Faro's hybrid policies (Faro-Sum, -Fair, -FairSum, -PenaltySum, -PenaltyFairSum) and the Oracle.

Long-horizon step (every ``interval_s``): forecast each job's per-minute load over ``horizon``
steps, feed the ``quantile`` of that forecast (in req/s) with the view's jobs, quotas and current
replicas (cold start included through ``ModelConfig``) into ``solve``, and plan its answer. Faro
raises the quantile while resources are left over (the artifact: from 0.6 in steps of 0.1 up to
0.9, keeping the last plan that still left room — a plan that eats every free CPU to cover one
job's pessimistic forecast is not taken). "Left over" is judged on the *shrunk* plan: replicas
that do not change the job's modelled utility by more than 1e-4 are dropped first, as the
artifact's ``adjust`` does, which is also what leaves the reactive step room to work.

The levels are searched top first, then by bisection (``quantile_search="bisect"``, the default):
two solves instead of four when the cluster has room, and the same level as the artifact's
one-at-a-time raise whenever a higher quantile never leaves *more* room; ``"linear"`` is the
artifact's order exactly.

Calibrated headroom (``coverage``, default 0.9; ``calibration.py``): every job keeps the scores of
its own recent misses (busiest minute seen − busiest minute forecast) and the raising tries, after the
base plan, the base forecast plus that job's conformal headroom at a few levels — insurance for bursty
jobs out of spare quota, never at another job's expense. The forecaster (``forecasting.py``) chooses per
job among models with a 6-hour and a daily season.

Between long steps, the reactive step (``hybrid.py``): burst-aware scaling sized from the observed
arrival rate (on for Faro and the Oracle) and the artifact's +1. The Oracle is Faro-FairSum fed the true
coming minutes (``needs_future``), with the same planner. Registered in ``registry.py``; defaults shared by
``faro simulate`` and ``faro optimizer`` (``registry.planning_options``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from typing import Any

import numpy as np
from faro.optimizer.model.objective import is_penalty
from faro.optimizer.model.problem import OBJECTIVES, Job, ModelConfig, Problem
from faro.optimizer.model.utility import utility_curves
from faro.optimizer.policy.base import ClusterView, Plan
from faro.optimizer.policy.calibration import ConformalHeadroom, CoverageState
from faro.optimizer.policy.common import (
    constraint_matrix,
    current_replicas,
    fit_to_quota,
    hpa_deadband,
    make_plan,
)
from faro.optimizer.policy.faro_llm import (
    SCENARIO_LEVELS,
    llm_job,
    llm_keep,
    llm_replica_slo_rps_by_position,
    llm_scenario_spread,
    planning_horizon,
)
from faro.optimizer.policy.forecasting import LoadForecaster, history_matrix, oracle_forecast
from faro.optimizer.policy.hybrid import HybridPolicy, HybridState
from numpy.typing import NDArray

SolveFn = Callable[..., Any]

FAIR_QUANTILE = 0.8
"""Default forecast quantile of Faro-Fair/-FairSum/-PenaltyFairSum (the artifact's 0.6 measured worse)."""
SUM_QUANTILE = 0.6
"""Default forecast quantile of Faro-Sum/-PenaltySum (the artifact's; 0.8 measured worse)."""
COVERAGE = 0.9
"""Coverage the per-job calibrated headroom aims at: the job's busiest minute until the next long step
within plan 90% of the time (``calibration.ConformalHeadroom``)."""
COVERAGE_OFFSETS = (-0.2, -0.1, 0.0)
"""The headroom levels (relative to each job's calibrated one) the quantile raising tries when resources
are left: insurance from spare quota, never at the expense of another job's base plan."""


def build_problem(view: ClusterView, rates_rpm: NDArray[np.float64], *, objective: str, model: ModelConfig,
                  spread_rpm: NDArray[np.float64] | None = None,
                  replica_slo_rps: dict[int, float] | None = None) -> Problem:
    """A ``Problem`` from the view's jobs and quotas and a (jobs × horizon) requests-per-minute table
    (``replica_slo_rps``: ``llm_replica_slo_rps_by_position``, computed when not given)."""
    table = np.asarray(rates_rpm, dtype=float).reshape(len(view.jobs), -1)
    # one vectorised clean-up and unit change instead of one per job (1,000 jobs × 4 quantiles a step)
    rows = (np.maximum(0.0, np.nan_to_num(table, nan=0.0)) / 60.0).tolist()
    if replica_slo_rps is None:
        replica_slo_rps = llm_replica_slo_rps_by_position(view, model)
    jobs = []
    for i, (jv, rates) in enumerate(zip(view.jobs, rows, strict=True)):
        spec = jv.spec
        if spec.llm is not None:  # continuous-batching model, GPUs, observed token mix (faro_llm.py)
            jobs.append(llm_job(jv, rates, replica_slo_rps=replica_slo_rps[i],
                                spread_rps=None if spread_rpm is None else spread_rpm[i] / 60.0))
            continue
        jobs.append(
            Job(
                name=spec.name,
                namespace=spec.namespace,
                slo=spec.slo,
                processing_time_ms=spec.processing_time_ms,
                rate_rps=tuple(rates) or (0.0,),
                resources=spec.resources,
                limits=spec.limits,
                weight=spec.weight,
                min_replicas=spec.min_replicas,
                max_replicas=spec.max_replicas,
                current_replicas=max(0, int(jv.current_replicas)),
            )
        )
    return Problem(jobs=tuple(jobs), quotas=view.quotas, objective=objective, model=model)


def shrink(problem: Problem, replicas: NDArray[np.int64], *, tol: float = 1e-4) -> NDArray[np.int64]:
    """Per job, the fewest replicas (≥ min) whose modelled utility is within ``tol`` of the plan's."""
    x = np.asarray(replicas, dtype=np.int64)
    if x.size == 0:
        return x
    top = int(x.max())
    grid = np.arange(0, top + 1)
    curves = utility_curves(problem.jobs, grid, config=problem.model, penalty=is_penalty(problem.objective))
    rows = np.arange(x.size)
    target = curves.utility[rows, x]
    # first count ≤ x whose utility reaches the plan's (x itself always does): all jobs at once
    ok = (curves.utility >= (target - tol)[:, None]) & (grid[None, :] <= x[:, None])
    first = np.where(ok.any(axis=1), np.argmax(ok, axis=1), x)  # NaN utility: keep the plan's count
    lo = np.array([job.min_replicas for job in problem.jobs], dtype=np.int64)
    lo = np.maximum(lo, llm_keep(problem, x))  # LLM replicas are not shed for nothing (faro_llm.py)
    return np.maximum(lo, first).astype(np.int64)


Matrix = tuple[NDArray[np.float64], NDArray[np.float64]]


def has_room(
    view: ClusterView, replicas: NDArray[np.int64], *, slack: float = 0.0, constraints: Matrix | None = None
) -> bool:
    """Whether one more replica of some job (below its max) would still fit every quota with
    ``slack`` to spare on each row. ``constraints`` is ``constraint_matrix(view)`` when the caller
    already has it (it costs more than the check at 1,000 jobs)."""
    matrix, bound = constraint_matrix(view) if constraints is None else constraints
    if matrix.shape[0] == 0:
        return True
    x = np.asarray(replicas)
    free = bound - matrix @ x
    below = np.array([x[i] < jv.spec.max_replicas for i, jv in enumerate(view.jobs)], dtype=bool)
    fits = np.all(free[:, None] - matrix >= slack - 1e-9, axis=0)
    return bool(np.any(below & fits))


def hold_scale_downs(
    view: ClusterView,
    desired: NDArray[np.int64],
    *,
    reserve: float,
    constraints: Matrix | None = None,
    only: NDArray[np.bool_] | None = None,
) -> NDArray[np.int64]:
    """Keep replicas a plan would release while the quota stays free anyway: a job (of ``only``, default
    all) keeps its current count (warm for its next burst) as long as every quota row keeps ``reserve``
    of its bound free. Largest planned releases are held first, one replica at a time round-robin."""
    matrix, bound = constraint_matrix(view) if constraints is None else constraints
    x = np.asarray(desired, dtype=np.int64).copy()
    cur = current_replicas(view)
    if only is not None:
        cur = np.where(only, cur, np.minimum(cur, x))
    if matrix.shape[0] == 0:
        return np.maximum(x, cur)
    limit = bound - reserve * np.abs(bound) + 1e-9
    order = sorted(np.flatnonzero(cur > x), key=lambda i: -(cur[i] - x[i]))
    progressed = True
    while progressed:
        progressed = False
        for i in order:
            if x[i] >= cur[i]:
                continue
            x[i] += 1
            if np.all(matrix @ x <= limit):
                progressed = True
            else:
                x[i] -= 1
    return x


class FaroPolicy(HybridPolicy):
    """A Faro variant: ``objective`` is one of ``sum``, ``fair``, ``fairsum``, ``penaltysum``,
    ``penaltyfairsum``."""

    def __init__(
        self,
        objective: str = "fairsum",
        *,
        name: str | None = None,
        horizon: int = 7,
        quantile: float | None = None,
        max_quantile: float = 0.9,
        quantile_step: float = 0.1,
        raise_quantile: bool = True,
        slack_cpus: float = 0.0,
        shrink_plan: bool = True,
        cold_start_s: float = 35.0,
        alpha: float = 1.0,
        rho_max: float = 0.9,
        solver: str = "auto",
        time_limit_s: float | None = None,
        hpa_tolerance: float = 0.0,
        forecaster: str = "auto",
        forecaster_options: dict[str, Any] | None = None,
        forecaster_factory: Callable[[], Any] | None = None,
        min_history_min: int = 15,
        refit_every_min: int = 60,
        recent_floor_min: int = 3,
        refit_slices: int | None = None,
        solve_fn: SolveFn | None = None,
        quantile_search: str = "bisect",
        coverage: float | None = COVERAGE,
        coverage_gamma: float = 0.05,
        coverage_window: int = 288,
        coverage_offsets: tuple[float, ...] | None = COVERAGE_OFFSETS,
        rate_floor: bool = False,
        keep_warm: float | None = None,
        hold_llm_releases: bool = True,
        llm_scenarios: bool | None = None,
        **hybrid: Any,
    ) -> None:
        if objective not in OBJECTIVES:
            raise ValueError(f"faro: objective must be one of {', '.join(OBJECTIVES)}, got {objective!r}")
        self.name = name or f"faro-{objective}"
        hybrid.setdefault("initial_split", True)
        hybrid.setdefault("burst_scaling", True)
        super().__init__(**hybrid)
        if horizon < 1:
            raise ValueError(f"{self.name}: horizon must be >= 1")
        if quantile is None:
            # the sum objectives sacrifice whole jobs when the forecast says the cluster is short, so
            # a pessimistic quantile makes them drop more; the fair ones spread a higher one evenly
            quantile = SUM_QUANTILE if objective in ("sum", "penaltysum") else FAIR_QUANTILE
        if not 0 < quantile < 1 or not 0 < max_quantile < 1 or max_quantile < quantile:
            raise ValueError(f"{self.name}: need 0 < quantile <= max_quantile < 1")
        if not quantile_step > 0:
            raise ValueError(f"{self.name}: quantile_step must be > 0")
        if quantile_search not in ("bisect", "linear"):
            raise ValueError(f"{self.name}: quantile_search must be 'bisect' or 'linear', got {quantile_search!r}")
        if hpa_tolerance < 0:
            raise ValueError(f"{self.name}: hpa_tolerance must be >= 0")
        self.objective = objective
        self.horizon = int(horizon)
        self.quantile = float(quantile)
        self.max_quantile = float(max_quantile)
        self.quantile_step = float(quantile_step)
        self.raise_quantile = bool(raise_quantile)
        self.quantile_search = quantile_search
        self.slack_cpus = float(slack_cpus)
        self.shrink_plan = bool(shrink_plan)
        self.model = ModelConfig(rho_max=rho_max, alpha=alpha, cold_start_s=cold_start_s)
        self.solver = solver
        self.time_limit_s = time_limit_s
        self.hpa_tolerance = float(hpa_tolerance)
        self._forecaster = LoadForecaster(
            name=forecaster,
            options=forecaster_options,
            factory=forecaster_factory,
            min_history_min=min_history_min,
            refit_every_min=refit_every_min,
            recent_floor_min=recent_floor_min,
            # by default one slice of the fleet refitted per long step (12 at 300 s steps and hourly
            # refits), slices of ≥ 50 jobs: small fleets (the paper's 10 jobs) refit all at once
            refit_slices=refit_slices or max(1, round(refit_every_min * 60 / self.interval_s)),
            min_slice_jobs=1 if refit_slices else 50,
        )
        self._solve_fn = solve_fn
        # plan at least for the load arriving now over the first minutes (a burst the minutes don't show yet)
        self.rate_floor = bool(rate_floor)
        if keep_warm is not None and not 0 <= keep_warm < 1:
            raise ValueError(f"{self.name}: keep_warm must be in [0, 1) or None")
        self.keep_warm = None if keep_warm is None else float(keep_warm)
        # a GPU budget is paid for used or not, and an LLM replica given up costs a model load (minutes
        # of missed SLOs) to get back: release one only when the plan needs its GPUs for another job
        self.hold_llm_releases = bool(hold_llm_releases)
        # LLM jobs by expected utility over forecast scenarios (``SCENARIO_LEVELS``) for Fair and FairSum; not
        # for the sum objectives, for the reason their quantile is lower (pessimism makes them give up whole
        # jobs), nor the Penalty ones, whose admission search per count would cost five times as much
        self.llm_scenarios = objective in ("fair", "fairsum") if llm_scenarios is None else bool(llm_scenarios)
        # per-job levels calibrated on the job's own misses (None: every job plans at ``quantile``)
        self.coverage = None if coverage is None else float(coverage)
        # None: the calibrated headroom is part of every plan (raised by ``quantile_step``); a tuple: the
        # plan is the base forecast, and base + headroom at the job's level + each offset (never below the
        # base) are what the quantile raising tries while resources are left — insurance from spare quota
        self.coverage_offsets = None if coverage_offsets is None else tuple(float(o) for o in coverage_offsets)
        self._calibrator = None if coverage is None else ConformalHeadroom(
            target=coverage, gamma=coverage_gamma, window=coverage_window)

    # -- pieces -------------------------------------------------------------------------------
    def quantile_levels(self) -> list[float]:
        levels = [self.quantile]
        while self.raise_quantile and levels[-1] + self.quantile_step <= self.max_quantile + 1e-9:
            levels.append(round(levels[-1] + self.quantile_step, 6))
        return levels

    def _solve(self, problem: Problem) -> Any:
        fn = self._solve_fn
        if fn is None:
            from faro.optimizer.solve import solve as fn
        return fn(problem, solver=self.solver, time_limit_s=self.time_limit_s)

    def planned_quantiles(self) -> list[float]:
        """The forecast levels the plans are made from: the base one when calibrated, else every level."""
        return [self.quantile] if self._calibrator is not None else self.quantile_levels()

    def forecast_tables(self, view: ClusterView, state: HybridState) -> tuple[dict[float, NDArray], HybridState, str]:
        quantiles = self.planned_quantiles()
        if self.llm_scenarios and any(jv.spec.llm is not None for jv in view.jobs):
            quantiles += [q for q in SCENARIO_LEVELS if q not in quantiles]
        tables, fstate, source = self._forecaster.forecast(
            view, state.forecast, horizon=planning_horizon(view, self.horizon, self.model), quantiles=quantiles
        )
        return tables, replace(state, forecast=fstate), source

    def candidate_tables(
        self, view: ClusterView, state: HybridState
    ) -> tuple[list[NDArray], list[str], HybridState, str, NDArray | None]:
        """The forecast tables the quantile raising tries, lowest first, with a label each: one level
        for every job (``quantile_levels``), or each job's base forecast plus its calibrated headroom,
        the headroom's level raised by the same steps; and the LLM jobs' scenario spread
        (``llm_scenario_spread``, None without one)."""
        tables, state, source = self.forecast_tables(view, state)
        spread = llm_scenario_spread(tables) if self.llm_scenarios else None
        tables = {q: tables[q] for q in self.planned_quantiles() if q in tables}
        levels = self.quantile_levels()
        cal = self._calibrator
        if cal is None or set(tables) != {self.quantile}:
            return [tables[q] for q in levels], [f"{q:g}" for q in levels], state, source, spread
        keys = [jv.spec.key for jv in view.jobs]
        now_min = int(view.now_s // 60)
        cstate = cal.score(state.calibration or CoverageState(), history_matrix(view), now_min)
        base = tables[self.quantile]
        if self.coverage_offsets is None:
            offsets = [k * self.quantile_step for k in range(len(levels))]
            rooms = [cal.headroom(cstate, keys, raise_level=o) for o in offsets]
            out = [np.maximum(0.0, base + room[:, None]) for room in rooms]
            cstate = cal.planned(cstate, keys, now_min, base, rooms[0])
        else:
            offsets = list(self.coverage_offsets)
            rooms = [np.maximum(0.0, cal.headroom(cstate, keys, raise_level=o)) for o in offsets]
            out = [base] + [base + room[:, None] for room in rooms]
            cstate = cal.planned(cstate, keys, now_min, base, cal.headroom(cstate, keys))
        labels = ([f"{self.quantile:g}"] if self.coverage_offsets is not None else []) + [
            f"{self.quantile:g}+headroom@{cal.target:g}{o:+g}" for o in offsets]
        return out, labels, replace(state, calibration=cstate), source, spread

    def _plan_at(
        self, view: ClusterView, rates_rpm: NDArray, spread_rpm: NDArray | None = None,
        replica_slo_rps: dict[int, float] | None = None,
    ) -> tuple[Problem, Any, NDArray[np.int64]]:
        problem = build_problem(view, rates_rpm, objective=self.objective, model=self.model, spread_rpm=spread_rpm,
                                replica_slo_rps=replica_slo_rps)
        result = self._solve(problem)
        if not result.ok:
            return problem, result, current_replicas(view)
        x = np.asarray(result.replicas, dtype=np.int64)
        if self.shrink_plan:
            x = shrink(problem, x)
        return problem, result, x

    # -- the long-horizon step -------------------------------------------------------------------
    def long_step(self, view: ClusterView, state: HybridState) -> tuple[Plan, HybridState]:
        tables, labels, state, source, spread = self.candidate_tables(view, state)
        if self.rate_floor:
            now_rpm = 60.0 * np.array([jv.observation.arrival_rate_rps or 0.0 for jv in view.jobs])
            steps = min(self.horizon, self.model.cold_start_steps + 1)
            for t in tables:
                t[:, :steps] = np.maximum(t[:, :steps], now_rpm[:, None])
        levels = list(range(len(tables)))
        cons = constraint_matrix(view)  # once per step: has_room asks it up to once per level
        slo_rps = llm_replica_slo_rps_by_position(view, self.model)  # once per step, like the constraints
        solve_ms = 0.0
        _, result, x = self._plan_at(view, tables[levels[0]], spread, slo_rps)
        solve_ms += float(getattr(result, "solve_ms", 0.0))
        if not result.ok:
            plan = make_plan(
                view,
                fit_to_quota(view, current_replicas(view)),
                kind="hold",
                solver_status=f"{result.status}: {result.message}",
                solve_ms=solve_ms,
            )
            return plan, replace(state, quantile=None)
        chosen = 0
        if len(levels) > 1 and has_room(view, x, slack=self.slack_cpus, constraints=cons):
            plans = {0: (result, x)}

            def accepted(k: int) -> bool:
                """Solve at level k (unless its forecast equals the best accepted one's, e.g. the
                Oracle) and whether the plan is usable and still leaves room."""
                nonlocal solve_ms
                if np.allclose(tables[levels[k]], tables[levels[chosen]]):
                    plans[k] = plans[chosen]  # same forecast: nothing to re-solve
                    return True
                _, res, cand = self._plan_at(view, tables[levels[k]], spread, slo_rps)
                solve_ms += float(getattr(res, "solve_ms", 0.0))
                plans[k] = (res, cand)
                return bool(res.ok) and has_room(view, cand, slack=self.slack_cpus, constraints=cons)

            if self.quantile_search == "linear":
                # the artifact: raise one level at a time, keep the last plan that still left room
                for k in range(1, len(levels)):
                    if not accepted(k):
                        break
                    chosen = k
            else:
                # the same answer when a higher quantile never leaves *more* room (the forecast
                # tables grow with q): try the top level first, then bisect between the known
                # good and bad levels — 2 solves when the cluster has room, ≤ 1 + ⌈log2⌉ + 1 else
                bad = len(levels)
                k = len(levels) - 1
                while k > chosen:
                    if accepted(k):
                        chosen = k
                    else:
                        bad = k
                    k = (chosen + bad) // 2
            result, x = plans[chosen]
        chosen_q = levels[chosen]
        desired = fit_to_quota(view, x)
        if self.keep_warm is not None:
            desired = hold_scale_downs(view, desired, reserve=self.keep_warm, constraints=cons)
        llm = np.array([jv.spec.llm is not None for jv in view.jobs], dtype=bool)
        if self.hold_llm_releases and llm.any():
            desired = hold_scale_downs(view, desired, reserve=0.0, constraints=cons, only=llm)
        held: dict[int, str] = {}
        if self.hpa_tolerance > 0:
            desired, held = hpa_deadband(view, desired, tolerance=self.hpa_tolerance)
            desired = fit_to_quota(view, desired)
        rates = tables[chosen_q] / 60.0
        admission = np.asarray(result.admission, dtype=float)
        if admission.size != len(view.jobs):
            admission = np.ones(len(view.jobs))
        plan = make_plan(
            view,
            desired,
            kind="solve",
            forecast_rps=rates.max(axis=1),
            latency_ms=np.asarray(result.latency_ms, dtype=float),
            utility=np.asarray(result.utility, dtype=float),
            admission=admission,
            held=held,
            objective_value=float(result.objective_value),
            solver_status=f"{result.status} ({result.solver}; q={labels[chosen_q]}; {source})",
            solve_ms=solve_ms,
        )
        levels_q = self.quantile_levels()
        return plan, replace(state, quantile=levels_q[min(chosen_q, len(levels_q) - 1)])


class OraclePolicy(FaroPolicy):
    """Faro (FairSum by default) with the true coming load instead of a forecast."""

    needs_future = True

    def __init__(self, objective: str = "fairsum", **options: Any) -> None:
        options.setdefault("raise_quantile", False)
        options.setdefault("coverage", None)  # the truth needs no headroom
        super().__init__(objective, name="oracle", **options)

    def forecast_tables(self, view: ClusterView, state: HybridState) -> tuple[dict[float, NDArray], HybridState, str]:
        table, complete = oracle_forecast(view, planning_horizon(view, self.horizon, self.model))
        source = "oracle" if complete else "oracle (future missing for some jobs: last minute used)"
        return {q: table for q in self.quantile_levels()}, state, source
