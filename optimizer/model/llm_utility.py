"""Utilities of LLM jobs: the min of the relaxed TTFT and ITL utilities over the horizon.

Called by ``utility.utility_curves`` (policies' shrink step, the COBYLA reference) and by the integer
utility tables (``optimizer/solve/tables.py``) for the jobs of a problem that have ``Job.llm`` set, so
every objective (Sum, Fair, FairSum, the Penalty variants with admission) and every solver works on
LLM jobs unchanged. Pure numpy.

Notes
-----
At horizon step h with rate ``λ_h``, admission ``d`` and effective replicas ``x_h`` (``min(x, current)``
for the first ``⌈model_load_s/step_s⌉`` steps of a job that grows: a new LLM replica serves only
after its model is loaded), the step utility is

    U_h = min( min(1, TTFT_SLO/TTFT_p(dλ_h, x_h))^α , min(1, ITL_SLO/ITL_p(dλ_h, x_h))^α )

over the declared SLOs, and the job's utility is the mean over h. ``TTFT_p``/``ITL_p`` come from
``LLMCurves`` (``llm_latency.py``); both are non-decreasing in the per-replica load, so ``U`` is
non-decreasing in replicas, and it reaches 1 (saturates) once every step meets both SLOs.

A job with scenarios (``Job.rate_spread_rps``: offsets ``o_s`` per step, the planner's forecast quantiles
about their median) has the mean of that utility over the scenario rates ``max(0, λ_h + o_{s,h})``: its
expected utility over the forecast, saturated only when every scenario is; the reported latencies are
the planned rates'.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from faro.optimizer.model.llm_latency import U_GRID, LLMCurves, interp_load, overload_factor, overload_load
from faro.optimizer.model.llm_profile import EngineProfile, TokenMix
from faro.optimizer.model.problem import Job, ModelConfig
from faro.optimizer.model.utility import ADMISSION_GRID, ADMISSION_MIN_GAIN, drop_penalty, relaxed_utility
from numpy.typing import ArrayLike, NDArray


def cached_curves(
    profiles: Sequence[EngineProfile], mixes: Sequence[TokenMix], percentiles: Sequence[float]
) -> LLMCurves:
    """``LLMCurves.build`` with each row remembered on its (immutable) token mix, so the several
    solves of one planning step (quantile levels, shrink, admission rates) build each curve once.

    A mix remembers its row as (curves built together, row index): rows built together are gathered
    in one ``take``, and a job list whose rows are one build's, in order, gets that build itself."""
    rows: list[tuple[LLMCurves, int] | None] = []
    missing: list[int] = []
    for i, (profile, mix, pct) in enumerate(zip(profiles, mixes, percentiles, strict=True)):
        found = mix.__dict__.get("_faro_curves", {}).get((profile, float(pct)))
        rows.append(found)
        if found is None:
            missing.append(i)
    if missing:
        built = LLMCurves.build([profiles[i] for i in missing], [mixes[i] for i in missing],
                                [percentiles[i] for i in missing])
        for k, i in enumerate(missing):
            rows[i] = (built, k)
            mixes[i].__dict__.setdefault("_faro_curves", {})[(profiles[i], float(percentiles[i]))] = rows[i]
    if not rows:
        return LLMCurves.build([], [])
    batches: dict[int, tuple[LLMCurves, list[int], list[int]]] = {}
    for position, (batch, k) in enumerate(r for r in rows if r is not None):
        _, at, index = batches.setdefault(id(batch), (batch, [], []))
        at.append(position)
        index.append(k)
    if len(batches) == 1:
        batch, _, index = next(iter(batches.values()))
        if index == list(range(batch.capacity_rps.size)):
            return batch
        return batch.take(index)
    parts = [batch.take(index) for batch, _, index in batches.values()]
    positions = np.concatenate([at for _, at, _ in batches.values()])
    return LLMCurves.concat(parts).take(np.argsort(positions))


@dataclass(frozen=True)
class LLMJobs:
    """The LLM jobs of a job list as arrays: where they are, their curves, SLOs and cold starts, and
    their step utility on the load grid (built once per job list and model settings)."""

    index: NDArray[np.int64]  # positions in the job list
    curves: LLMCurves
    slo_ttft_ms: NDArray[np.float64]  # NaN where not declared
    slo_itl_ms: NDArray[np.float64]
    load_steps: NDArray[np.int64]  # horizon steps a new replica needs before it serves
    grid_utility: NDArray[np.float64]  # (n, G) step utility on U_GRID
    beyond: NDArray[np.float64]  # (n,) SLO/latency ratio at u_max (above it: min(1, beyond/overload_factor)^α)
    u_max: float
    alpha: float
    spread: NDArray[np.float64] | None = None  # (n, S, H) scenario offsets of the rates (req/s)

    @classmethod
    def of(cls, jobs: Sequence[Job], config: ModelConfig) -> LLMJobs:
        idx = [i for i, j in enumerate(jobs) if j.llm is not None]
        specs = [jobs[i].llm for i in idx]
        mixes = [jobs[i].token_mix for i in idx]
        assert all(s is not None for s in specs) and all(m is not None for m in mixes)  # Job checks
        curves = cached_curves([s.profile for s in specs], mixes, [s.slo.percentile for s in specs])  # type: ignore[union-attr,arg-type]
        nan = math.nan
        slo_t = np.array([s.slo.ttft_ms if s.slo.ttft_ms is not None else nan for s in specs], dtype=float)  # type: ignore[union-attr]
        slo_i = np.array([s.slo.itl_ms if s.slo.itl_ms is not None else nan for s in specs], dtype=float)  # type: ignore[union-attr]
        itl = np.where(curves.has_itl[:, None], curves.itl_ms, 0.0)
        grid_utility = llm_step_utility(curves.ttft_ms, itl, slo_t[:, None], slo_i[:, None], config.alpha)
        u_max = float(config.rho_max)
        at = np.full((len(idx), 1), u_max)
        ttft_max = interp_load(curves.ttft_ms, at, u_max)[:, 0]
        itl_max = np.where(curves.has_itl, interp_load(curves.itl_ms, at, u_max)[:, 0], 0.0)
        with np.errstate(divide="ignore", invalid="ignore"):
            ratio = np.minimum(np.where(np.isnan(slo_t), np.inf, slo_t / ttft_max),
                               np.where(np.isnan(slo_i) | (itl_max <= 0), np.inf, slo_i / itl_max))
        # continuous at u_max: the utility the grid gives there, carried on as latencies grow
        u_at = interp_load(grid_utility, at, 2.0)[:, 0] if len(idx) else np.zeros(0)
        beyond = np.where(u_at < 1.0, u_at ** (1.0 / config.alpha), np.maximum(ratio, 1.0))
        return cls(
            index=np.array(idx, dtype=np.int64),
            curves=curves,
            slo_ttft_ms=slo_t,
            slo_itl_ms=slo_i,
            load_steps=np.array([config.startup_steps(jobs[i]) for i in idx], dtype=np.int64),
            grid_utility=grid_utility,
            beyond=beyond,
            u_max=u_max,
            alpha=float(config.alpha),
            spread=_spread([jobs[i] for i in idx]),
        )

    def __len__(self) -> int:
        return int(self.index.size)

    def load(self, rate_rps: NDArray, replicas: NDArray, rows: NDArray[np.int64] | None = None) -> NDArray[np.float64]:
        """Per-replica load ``u = rate/(replicas·λ_max)`` with jobs on the first axis (``inf``: load on no
        replica; 0: no load). ``rows``: the job of each entry of the first axis (default: every job in order)."""
        rate = np.asarray(rate_rps, dtype=float)
        c = np.asarray(replicas, dtype=float)
        cap = self.curves.capacity_rps if rows is None else self.curves.capacity_rps[rows]
        cap = cap.reshape((-1,) + (1,) * (max(rate.ndim, c.ndim) - 1))
        with np.errstate(divide="ignore", invalid="ignore"):
            u = np.where(rate > 0, rate / (np.maximum(c, 0.0) * cap), 0.0)
        return np.where((rate > 0) & (c <= 0), np.inf, u)

    def max_load(self) -> NDArray[np.float64]:
        """Per job, the largest per-replica load at which ``utility_at`` is 1 (both SLOs met): the last
        grid point before the first one below 1, or where the overload growth uses up ``beyond`` when all
        up to ``u_max`` are 1."""
        inner = self.u_max + 1e-12 >= U_GRID
        grid = U_GRID[inner]
        met = self.grid_utility[:, inner] >= 1.0
        k = np.argmin(met, axis=1)  # first grid point below 1 (0 if none met … handled below)
        all_met = met.all(axis=1)
        last_ok = np.where(k > 0, grid[np.maximum(k - 1, 0)], 0.0)
        none = ~met[:, 0]
        out = np.where(all_met, np.where(self.beyond >= 1.0, overload_load(self.beyond, self.u_max), grid[-1]), last_ok)
        return np.where(none, 0.0, out)

    def utility_at(self, u: NDArray, rows: NDArray[np.int64] | None = None) -> NDArray[np.float64]:
        """Step utility at per-replica loads ``u`` (jobs on the first axis, or the jobs ``rows``): the grid's
        utility interpolated up to ``u_max``, ``min(1, beyond/overload_factor(u))^α`` above it, 0 at ``inf``.
        Utility never rises with the load."""
        u = np.asarray(u, dtype=float)
        shape = (-1,) + (1,) * (u.ndim - 1)
        grid = self.grid_utility if rows is None else self.grid_utility[rows]
        beyond = self.beyond if rows is None else self.beyond[rows]
        out = interp_load(grid, np.minimum(u, self.u_max), 2.0)
        over = u > self.u_max
        if over.any():
            u_over = u[over]
            with np.errstate(divide="ignore", invalid="ignore"):
                growth = np.broadcast_to(beyond.reshape(shape), u.shape)[over] / overload_factor(u_over, self.u_max)
                out[over] = np.where(np.isinf(u_over), 0.0, np.minimum(1.0, growth) ** self.alpha)
        return out


def _spread(jobs: Sequence[Job]) -> NDArray[np.float64] | None:
    """The jobs' ``rate_spread_rps`` as (n, S, H), zero-padded; None when no job has one."""
    if not any(j.rate_spread_rps for j in jobs):
        return None
    s = max(len(j.rate_spread_rps) for j in jobs)
    h = max(len(row) for j in jobs for row in j.rate_spread_rps)
    out = np.zeros((len(jobs), s, h))
    for i, j in enumerate(jobs):
        for k, row in enumerate(j.rate_spread_rps):
            out[i, k, : len(row)] = row
    return out


def _scenario_rates(llm: LLMJobs, rate: NDArray, rows: NDArray[np.int64]) -> list[NDArray]:
    """Each scenario's rates for the entries ``rows`` (jobs of ``rate``'s rows; a spread shorter than the
    horizon repeats its last step): ``[rate]`` itself when no job has a spread."""
    if llm.spread is None:
        return [rate]
    h = rate.shape[1]
    spread = llm.spread[rows]
    if spread.shape[2] < h:
        spread = np.concatenate([spread, np.repeat(spread[:, :, -1:], h - spread.shape[2], axis=2)], axis=2)
    return [np.maximum(rate + spread[:, k, :h], 0.0) for k in range(spread.shape[1])]


def llm_step_utility(
    ttft_ms: NDArray, itl_ms: NDArray, slo_ttft_ms: NDArray, slo_itl_ms: NDArray, alpha: float = 1.0
) -> NDArray[np.float64]:
    """Per-step utility: the min of the relaxed utilities of the declared SLOs (NaN SLO = not declared)."""
    u_ttft = np.where(np.isnan(slo_ttft_ms), 1.0, relaxed_utility(ttft_ms, np.nan_to_num(slo_ttft_ms, nan=1.0), alpha))
    u_itl = np.where(np.isnan(slo_itl_ms), 1.0, relaxed_utility(itl_ms, np.nan_to_num(slo_itl_ms, nan=1.0), alpha))
    return np.minimum(u_ttft, u_itl)


@dataclass(frozen=True)
class LLMHorizon:
    """Per job and candidate count: mean utility and the worst step's TTFT/ITL percentiles."""

    utility: NDArray[np.float64]
    ttft_ms: NDArray[np.float64]
    itl_ms: NDArray[np.float64]
    saturated: NDArray[np.bool_]  # every step meets every declared SLO, or is a cold-start step frozen
    # at the current count (x ≥ current): more replicas cannot raise the utility


def llm_horizon_utility(
    llm: LLMJobs,
    rates_rps: NDArray,
    replicas: NDArray,
    current: ArrayLike,
    *,
    config: ModelConfig,
    admission: ArrayLike = 1.0,
    where: NDArray[np.bool_] | None = None,
) -> LLMHorizon:
    """Mean relaxed utility over the horizon and the worst step's TTFT/ITL, for LLM jobs × candidates.

    Shapes: ``rates_rps`` (n, H) for the n LLM jobs; ``replicas`` (n, X) or (X,); ``current`` (n,);
    ``admission`` broadcastable to (n, X). Returns (n, X) arrays; with ``where`` (n, X) only those
    entries are evaluated (the others hold NaN and are not saturated). ``config`` must be the one ``llm``
    was built with (its ``rho_max`` and ``alpha`` are in the grid utility).
    """
    e = _Entries.of(llm, rates_rps, replicas, current, where)
    adm = np.broadcast_to(np.asarray(admission, dtype=float), e.shape)[e.job, e.col]
    u = llm.load(e.rate * adm[:, None], e.eff, e.job)
    worst = u.max(axis=1)  # latencies rise with the load: the worst step is the most loaded one
    utility, ttft, itl = np.full(e.shape, np.nan), np.full(e.shape, np.nan), np.full(e.shape, np.nan)
    saturated = np.zeros(e.shape, dtype=bool)
    at = (e.job, e.col)
    total, sat = np.zeros(e.job.size), np.ones(e.job.size, dtype=bool)
    scenarios = _scenario_rates(llm, e.rate, e.job)
    for rate in scenarios:
        steps = llm.utility_at(llm.load(rate * adm[:, None], e.eff, e.job), e.job)
        total += _step_mean(steps)
        sat &= np.all((steps >= 1.0) | e.frozen, axis=1)
    utility[at] = total / len(scenarios)
    saturated[at] = sat
    ttft[at] = interp_load(llm.curves.ttft_ms[e.job], worst, llm.u_max)
    itl[at] = np.where(llm.curves.has_itl[e.job], interp_load(llm.curves.itl_ms[e.job], worst, llm.u_max), 0.0)
    return LLMHorizon(utility=utility, ttft_ms=ttft, itl_ms=itl, saturated=saturated)


@dataclass(frozen=True)
class _Entries:
    """The (job, count) entries to evaluate, one row each over the horizon steps: rates, effective
    replicas (``min(x, current)`` in a growing job's cold-start steps) and the frozen cold-start steps."""

    shape: tuple[int, int]  # (n, X)
    job: NDArray[np.int64]
    col: NDArray[np.int64]
    rate: NDArray[np.float64]  # (m, H)
    eff: NDArray[np.float64]
    frozen: NDArray[np.bool_]

    @classmethod
    def of(
        cls, llm: LLMJobs, rates_rps: NDArray, replicas: NDArray, current: ArrayLike, where: NDArray[np.bool_] | None
    ) -> _Entries:
        rates = np.asarray(rates_rps, dtype=float)
        n, horizon = rates.shape
        x = np.broadcast_to(np.asarray(replicas, dtype=float), (n, np.shape(replicas)[-1]))
        cur = np.asarray(current, dtype=float)
        mask = np.ones(x.shape, dtype=bool) if where is None else np.asarray(where, dtype=bool)
        job, col = np.nonzero(mask)
        count = x[job, col][:, None]
        cold = np.arange(horizon)[None, :] < llm.load_steps[job][:, None]
        eff = np.where(cold, np.minimum(count, cur[job][:, None]), count)
        return cls(x.shape, job, col, rates[job], eff, cold & (count >= cur[job][:, None]))


def _step_mean(steps: NDArray[np.float64]) -> NDArray[np.float64]:
    """Mean over the horizon steps (axis 1), summed step by step in order (the same bits for any subset)."""
    total = steps[:, 0].copy()
    for h in range(1, steps.shape[1]):
        total += steps[:, h]
    return total / steps.shape[1]


_BOUND_RUNGS = (0.1, 0.5, 0.8, 0.95)
"""Admission rates whose utilities bound the search's (each rate of ``ADMISSION_GRID`` at or above them; the
grid's lowest always is one)."""


@dataclass(frozen=True)
class LLMAdmission:
    """Per job and candidate count: the admission rate the Penalty objectives take, the utility with its
    drop penalty and the worst step's TTFT/ITL at that rate."""

    utility: NDArray[np.float64]
    ttft_ms: NDArray[np.float64]
    itl_ms: NDArray[np.float64]
    admission: NDArray[np.float64]


def llm_best_admission(
    llm: LLMJobs,
    rates_rps: NDArray,
    replicas: NDArray,
    current: ArrayLike,
    full: LLMHorizon,
    where: NDArray[np.bool_] | None = None,
) -> LLMAdmission:
    """The admission rate per job and count: in ``ADMISSION_GRID`` order, a rate ``d`` replaces the best
    so far when ``llm_horizon_utility`` at ``d`` times ``1 − P(1 − d)`` beats it by more than
    ``ADMISSION_MIN_GAIN`` (``full``: the horizon at ``d = 1``). Counts outside ``where`` keep ``full``.

    Gives what evaluating every rate at every count gives, at a fraction of the cost: the utility never
    rises with the load and the load falls with ``d``, so the utility at a lower rate bounds a higher
    one's. The rates of ``_BOUND_RUNGS`` are evaluated first, and a count is evaluated at ``d`` only while
    the utility at the rung at or below ``d`` times ``1 − P(1 − d)`` could still win (the penalty grows
    fast, so past the first few rates few counts are left).
    """
    e = _Entries.of(llm, rates_rps, replicas, current, where)
    job, col, rate, eff = e.job, e.col, e.rate, e.eff
    best = full.utility.copy()
    ttft, itl = full.ttft_ms.copy(), full.itl_ms.copy()
    admission = np.ones(e.shape)

    def mean_utility(d: float, rows: NDArray[np.int64]) -> NDArray[np.float64]:
        scenarios = _scenario_rates(llm, rate[rows], job[rows])
        total = sum(_step_mean(llm.utility_at(llm.load(r * d, eff[rows], job[rows]), job[rows])) for r in scenarios)
        return total / len(scenarios)

    grid = ADMISSION_GRID[1:]
    flat_best = best[job, col]
    flat_adm = np.ones(job.size)
    # Bounds from a ladder of rates (lowest first): the utility at rate L bounds every rate d ≥ L. Each rung
    # is evaluated only where the rung below leaves room to gain, and its values are kept for the search.
    known: dict[float, tuple[NDArray[np.int64], NDArray[np.float64]]] = {}
    on_rung = np.isclose(grid[:, None], np.array(_BOUND_RUNGS)[None, :]).any(axis=1) | (grid == grid.min())
    rungs = [float(r) for r in np.sort(grid[on_rung])]
    rows = np.arange(job.size)
    bounds = []
    for rung in rungs:
        if bounds:
            rows = np.nonzero(bounds[-1] > flat_best + ADMISSION_MIN_GAIN - 1e-9)[0]
        value = mean_utility(rung, rows)
        known[rung] = (rows, value)
        bound = np.full(job.size, -np.inf) if bounds else value.copy()
        bound[rows] = value
        bounds.append(bound)
    for d in grid:
        factor = 1.0 - drop_penalty(1.0 - d)
        bound = bounds[int(np.searchsorted(rungs, d, side="right")) - 1]
        # 1e-9 covers rounding in the bound (an interpolation need not be monotone to the last bit)
        rows = np.nonzero(factor * bound > flat_best + ADMISSION_MIN_GAIN - 1e-9)[0]
        if rows.size == 0:
            continue
        if float(d) in known:  # a rung: evaluated on a superset of these rows
            kept, value = known[float(d)]
            u_d = value[np.searchsorted(kept, rows)] * factor
        else:
            u_d = mean_utility(float(d), rows) * factor
        better = u_d > flat_best[rows] + ADMISSION_MIN_GAIN
        flat_best[rows[better]] = u_d[better]
        flat_adm[rows[better]] = d
    chose = np.nonzero(flat_adm < 1.0)[0]
    if chose.size:
        d = flat_adm[chose][:, None]
        rows = job[chose]
        worst = llm.load(rate[chose] * d, eff[chose], rows).max(axis=1)
        at = (rows, col[chose])
        ttft[at] = interp_load(llm.curves.ttft_ms[rows], worst, llm.u_max)
        itl[at] = np.where(llm.curves.has_itl[rows], interp_load(llm.curves.itl_ms[rows], worst, llm.u_max), 0.0)
    best[job, col] = flat_best
    admission[job, col] = flat_adm
    return LLMAdmission(utility=best, ttft_ms=ttft, itl_ms=itl, admission=admission)


def llm_saturation_count(
    llm: LLMJobs, rates_rps: NDArray, current: ArrayLike, *, config: ModelConfig
) -> NDArray[np.float64]:
    """Per LLM job, an estimate of the fewest replicas at which every step meets both SLOs (``inf``
    where an SLO cannot be met at any count); the tables evaluate up to one past it."""
    curves = llm.curves
    n = len(llm)
    if n == 0:
        return np.zeros(0)
    cap = curves.capacity_rps
    u_ok = llm.max_load()  # the per-replica load meeting both SLOs
    rates = np.asarray(rates_rps, dtype=float)
    rates = np.max(_scenario_rates(llm, rates, np.arange(n)), axis=0)  # the busiest scenario's
    with np.errstate(divide="ignore", invalid="ignore"):
        need = np.where(rates > 0, rates / (u_ok * cap)[:, None], 0.0)  # (n, H) real counts
    cold = np.arange(rates.shape[1])[None, :] < llm.load_steps[:, None]
    warm_need = np.where(cold, 0.0, need).max(axis=1)
    all_need = need.max(axis=1)
    cur = np.asarray(current, dtype=float)
    c_warm = np.ceil(warm_need - 1e-9)
    c_all = np.ceil(all_need - 1e-9)
    return np.maximum(c_warm, np.where(c_warm < cur, np.minimum(c_all, cur), c_warm))


def reported_latency_ms(llm: LLMJobs, ttft_ms: NDArray, itl_ms: NDArray) -> NDArray[np.float64]:
    """Worst-step TTFT for jobs with a TTFT SLO, worst-step ITL for ITL-only jobs (jobs × counts)."""
    return np.where(np.isnan(llm.slo_ttft_ms)[:, None], itl_ms, ttft_ms)
