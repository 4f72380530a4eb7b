"""Per-job utility tables over integer replica counts, built fast for the integer solvers.

Called by every solver in ``faro.optimizer.solve`` (and their tests). A table row covers the replica
counts ``lo_i … hi_i`` of one job, where ``lo_i`` is its minimum and ``hi_i`` the smallest of its
maximum, what the quotas could ever give it, and its *saturation point* (the count from which more
replicas no longer raise its utility). Column ``k`` of a row is the count ``lo_i + k``.

Notes
-----
This evaluates the same model as :func:`faro.optimizer.model.utility.horizon_utility` (the tests
check they agree to 1e-9), but only at integer counts, which allows the Erlang B recursion

    B(0) = 1,   B(c) = a·B(c−1) / (c + a·B(c−1)),   C(c, a) = c·B / (c − a·(1 − B))   (c > a)

to produce every count of a row in one vectorised sweep of cheap arithmetic instead of one
incomplete-gamma evaluation per point (≈ 20× faster). Above ``ρ_max`` the model evaluates the queue
at ``λ_cap = ρ_max·c/s``, i.e. at offered load ``ρ_max·c``, whose Erlang C depends on ``c`` alone and
is tabulated once per solve with the model's own :func:`erlang_c`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from faro.optimizer.model.latency import erlang_c
from faro.optimizer.model.llm_utility import (
    LLMHorizon,
    LLMJobs,
    llm_best_admission,
    llm_horizon_utility,
    llm_saturation_count,
    reported_latency_ms,
)
from faro.optimizer.model.objective import is_penalty
from faro.optimizer.model.problem import Constraints, ModelConfig, Problem
from faro.optimizer.model.utility import ADMISSION_GRID, ADMISSION_MIN_GAIN, drop_penalty
from numpy.typing import NDArray

_STACK_BUDGET = 4_000_000
"""Most latency entries (jobs × steps × counts) one stacked sweep over admission rates holds."""


@dataclass(frozen=True)
class JobArrays:
    """The per-job numbers of a ``Problem`` as arrays (built once per solve)."""

    rates_rps: NDArray[np.float64]  # (N, H)
    processing_time_ms: NDArray[np.float64]
    slo_ms: NDArray[np.float64]
    percentile: NDArray[np.float64]
    weight: NDArray[np.float64]
    min_replicas: NDArray[np.int64]
    max_replicas: NDArray[np.int64]
    current: NDArray[np.int64]

    def take(self, rows: NDArray[np.int64]) -> JobArrays:
        """The arrays of the jobs at ``rows`` (in that order)."""
        return JobArrays(**{name: getattr(self, name)[rows] for name in self.__dataclass_fields__})

    @classmethod
    def of(cls, problem: Problem) -> JobArrays:
        jobs = problem.jobs
        horizon = max((len(j.rate_rps) for j in jobs), default=1)
        rates = np.empty((len(jobs), horizon))
        for i, job in enumerate(jobs):
            r = job.rate_rps
            rates[i, : len(r)] = r
            rates[i, len(r):] = r[-1]  # shorter forecasts hold their last value (as the model does)
        return cls(
            rates_rps=rates,
            processing_time_ms=np.array([j.processing_time_ms for j in jobs], dtype=float),
            slo_ms=np.array([j.slo.latency_ms for j in jobs], dtype=float),
            percentile=np.array([j.slo.percentile for j in jobs], dtype=float),
            weight=np.array([j.weight for j in jobs], dtype=float),
            min_replicas=np.array([j.min_replicas for j in jobs], dtype=np.int64),
            max_replicas=np.array([j.max_replicas for j in jobs], dtype=np.int64),
            current=np.array([j.current_replicas for j in jobs], dtype=np.int64),
        )


@dataclass(frozen=True)
class Tables:
    """Utility, worst-step latency and admission per job and candidate count.

    ``utility[i, k]`` is job i's utility at ``lo[i] + k`` replicas for ``k < width[i]``; beyond its
    width a row holds ``-inf`` (utility) so no solver can pick it. ``ttft_ms``/``itl_ms`` are set when
    the problem has LLM jobs (their worst-step TTFT/ITL percentiles; NaN in the other jobs' rows), and
    ``latency_ms`` then holds an LLM job's TTFT (its ITL when it declares only an ITL SLO).
    """

    lo: NDArray[np.int64]
    hi: NDArray[np.int64]
    utility: NDArray[np.float64]
    latency_ms: NDArray[np.float64]
    admission: NDArray[np.float64]
    ttft_ms: NDArray[np.float64] | None = None
    itl_ms: NDArray[np.float64] | None = None

    @property
    def width(self) -> NDArray[np.int64]:
        return self.hi - self.lo + 1

    def at(self, replicas: NDArray) -> tuple[NDArray, NDArray, NDArray]:
        """Utility, latency and admission of each job at ``replicas`` (within ``lo … hi``)."""
        k = np.asarray(replicas, dtype=np.int64) - self.lo
        rows = np.arange(len(k))
        return self.utility[rows, k], self.latency_ms[rows, k], self.admission[rows, k]


def resource_caps(constraints: Constraints, lo: NDArray[np.int64], hi: NDArray[np.int64]) -> NDArray[np.int64]:
    """Largest count each job could get if every other job stayed at ``lo`` (never below ``lo``)."""
    if constraints.matrix.shape[0] == 0:
        return hi.copy()
    slack = constraints.bound - constraints.matrix @ lo
    with np.errstate(divide="ignore", invalid="ignore"):
        room = np.where(constraints.matrix > 0, slack[:, None] / constraints.matrix, np.inf)
    extra = np.floor(np.min(room, axis=0) + 1e-9)
    extra = np.where(np.isfinite(extra), np.maximum(extra, 0), np.iinfo(np.int64).max // 4)
    return np.minimum(hi, lo + extra.astype(np.int64))


def build_tables(
    problem: Problem,
    *,
    arrays: JobArrays | None = None,
    lo: NDArray[np.int64] | None = None,
    hi: NDArray[np.int64] | None = None,
    penalty: bool | None = None,
) -> Tables:
    """Tables over ``lo … min(hi, saturation)`` for every job of ``problem``.

    ``lo``/``hi`` default to the jobs' min/max replicas (callers pass lowered mins for degraded
    problems and quota-derived caps). ``penalty`` defaults to the problem's objective.
    """
    arr = arrays or JobArrays.of(problem)
    cfg = problem.model
    lo = arr.min_replicas.copy() if lo is None else np.asarray(lo, dtype=np.int64)
    hi = arr.max_replicas.copy() if hi is None else np.asarray(hi, dtype=np.int64)
    hi = np.maximum(hi, lo)
    penalty = is_penalty(problem.objective) if penalty is None else penalty
    n = arr.rates_rps.shape[0]
    if n == 0:
        empty = np.zeros((0, 1))
        return Tables(lo=lo, hi=hi, utility=empty, latency_ms=empty, admission=empty)
    if any(job.llm is not None for job in problem.jobs):
        return _mixed_tables(problem, arr, lo, hi, penalty)
    return _plain_tables(arr, cfg, lo, hi, penalty)


def _plain_tables(
    arr: JobArrays, cfg: ModelConfig, lo: NDArray[np.int64], hi: NDArray[np.int64], penalty: bool
) -> Tables:
    """Tables of jobs served by the M/D/c model (every job of a problem without LLM jobs)."""
    n, horizon = arr.rates_rps.shape
    if n == 0:
        empty = np.zeros((0, 1))
        return Tables(lo=lo, hi=hi, utility=empty, latency_ms=empty, admission=empty)
    cold = np.arange(horizon) < cfg.cold_start_steps  # (H,)
    cap_table = _capped_erlang_c(int(hi.max()), cfg.rho_max)

    lat, lat_cur, hi = _latency_rows(arr, arr.rates_rps, lo, hi, cold, cap_table, cfg.rho_max, find_saturation=True)
    util, worst = _horizon_utility(arr, lat, lat_cur, lo, hi, cold, cfg.alpha)
    admission = np.ones_like(util)
    if penalty:
        # Every admission rate in one Erlang sweep: the grid is stacked as extra rows (D·N jobs),
        # which costs one Python loop over counts instead of one per rate.
        grid = ADMISSION_GRID[1:]
        width = util.shape[1]
        chunk = max(1, _STACK_BUDGET // max(1, n * horizon * width))  # bounds the (D·N, H, W) array
        for first in range(0, grid.size, chunk):
            part = grid[first : first + chunk]
            reps = part.size
            rates = (part[:, None, None] * arr.rates_rps[None, :, :]).reshape(reps * n, horizon)
            stacked = _tile(arr, reps)
            lo_s, hi_s = np.tile(lo, reps), np.tile(hi, reps)
            lat_s, lat_cur_s, _ = _latency_rows(
                stacked, rates, lo_s, hi_s, cold, cap_table, cfg.rho_max, find_saturation=False
            )
            u_s, worst_s = _horizon_utility(stacked, lat_s, lat_cur_s, lo_s, hi_s, cold, cfg.alpha)
            u_s = u_s[:, :width].reshape(reps, n, width) * (1.0 - drop_penalty(1.0 - part))[:, None, None]
            worst_s = worst_s[:, :width].reshape(reps, n, width)
            for j, d in enumerate(part):  # in grid order: the first strictly better rate wins, as in the model
                better = u_s[j] > util + ADMISSION_MIN_GAIN
                util = np.where(better, u_s[j], util)
                worst = np.where(better, worst_s[j], worst)
                admission = np.where(better, d, admission)
    valid = np.arange(util.shape[1])[None, :] < (hi - lo + 1)[:, None]
    util = np.where(valid, util, -np.inf)
    worst = np.where(valid, worst, np.inf)
    return Tables(lo=lo, hi=hi, utility=util, latency_ms=worst, admission=np.where(valid, admission, 1.0))


def _mixed_tables(
    problem: Problem, arr: JobArrays, lo: NDArray[np.int64], hi: NDArray[np.int64], penalty: bool
) -> Tables:
    """Tables of a problem with LLM jobs: the others by ``_plain_tables``, the LLM ones by their model,
    merged into one set of rows in problem order."""
    cfg = problem.model
    llm = LLMJobs.of(problem.jobs, cfg)
    n = len(problem.jobs)
    plain = np.setdiff1d(np.arange(n), llm.index)
    parts = []
    if plain.size:
        t = _plain_tables(arr.take(plain), cfg, lo[plain], hi[plain], penalty)
        nan = np.full(t.utility.shape, np.nan)
        parts.append((plain, t.hi, t.utility, t.latency_ms, t.admission, nan, nan))
    parts.append((llm.index, *_llm_rows(llm, arr.take(llm.index), lo[llm.index], hi[llm.index], cfg, penalty)))
    width = max(p[2].shape[1] for p in parts)
    out_hi = hi.copy()
    util = np.full((n, width), -np.inf)
    lat, ttft, itl = np.full((n, width), np.inf), np.full((n, width), np.nan), np.full((n, width), np.nan)
    adm = np.ones((n, width))
    for rows, h, u, la, ad, tt, it in parts:
        w = u.shape[1]
        out_hi[rows] = h
        util[rows, :w], lat[rows, :w], adm[rows, :w], ttft[rows, :w], itl[rows, :w] = u, la, ad, tt, it
    return Tables(lo=lo, hi=out_hi, utility=util, latency_ms=lat, admission=adm, ttft_ms=ttft, itl_ms=itl)


def _llm_rows(
    llm: LLMJobs, arr: JobArrays, lo: NDArray[np.int64], hi: NDArray[np.int64], cfg: ModelConfig, penalty: bool
) -> tuple[NDArray, ...]:
    """LLM jobs' rows over ``lo … min(hi, saturation)``: hi, utility, latency, admission, TTFT, TPOT."""
    sat = llm_saturation_count(llm, arr.rates_rps, arr.current, config=cfg)
    hi = np.where(np.isfinite(sat), np.minimum(hi, np.maximum(sat + 1, lo)).astype(np.int64), hi)
    width = int((hi - lo).max()) + 1
    counts = lo[:, None] + np.arange(width)[None, :]
    inside = counts <= hi[:, None]
    best = llm_horizon_utility(llm, arr.rates_rps, counts, arr.current, config=cfg, where=inside)
    # cut at the first saturated count: utility is flat from there on
    done = best.saturated & inside
    first = np.where(done.any(axis=1), np.argmax(done, axis=1), hi - lo)
    hi = lo + first
    width = int(first.max()) + 1
    counts = counts[:, :width]
    util, ttft, itl = best.utility[:, :width], best.ttft_ms[:, :width], best.itl_ms[:, :width]
    admission = np.ones_like(util)
    valid = np.arange(width)[None, :] <= (hi - lo)[:, None]
    if penalty:
        cut = LLMHorizon(utility=util, ttft_ms=ttft, itl_ms=itl, saturated=best.saturated[:, :width])
        chosen = llm_best_admission(llm, arr.rates_rps, counts, arr.current, cut, where=valid)
        util, ttft, itl, admission = chosen.utility, chosen.ttft_ms, chosen.itl_ms, chosen.admission
    lat = reported_latency_ms(llm, ttft, itl)
    util = np.where(valid, util, -np.inf)
    lat = np.where(valid, lat, np.inf)
    return hi, util, lat, np.where(valid, admission, 1.0), np.where(valid, ttft, np.nan), np.where(valid, itl, np.nan)


def _tile(arr: JobArrays, reps: int) -> JobArrays:
    """``arr`` repeated ``reps`` times along the job axis (rates included; callers replace them)."""
    return JobArrays(
        rates_rps=np.tile(arr.rates_rps, (reps, 1)),
        processing_time_ms=np.tile(arr.processing_time_ms, reps),
        slo_ms=np.tile(arr.slo_ms, reps),
        percentile=np.tile(arr.percentile, reps),
        weight=np.tile(arr.weight, reps),
        min_replicas=np.tile(arr.min_replicas, reps),
        max_replicas=np.tile(arr.max_replicas, reps),
        current=np.tile(arr.current, reps),
    )


def _capped_erlang_c(c_max: int, rho_max: float) -> NDArray[np.float64]:
    """``C(c, ρ_max·c)`` for ``c = 0 … c_max`` (entry 0 unused)."""
    c = np.arange(c_max + 1, dtype=float)
    out = np.ones(c_max + 1)
    out[1:] = erlang_c(c[1:], rho_max * c[1:])
    return out


def _latency_rows(
    arr: JobArrays,
    rates: NDArray[np.float64],
    lo: NDArray[np.int64],
    hi: NDArray[np.int64],
    cold: NDArray[np.bool_],
    cap_table: NDArray[np.float64],
    rho_max: float,
    *,
    find_saturation: bool,
) -> tuple[NDArray[np.float64], NDArray[np.float64], NDArray[np.int64]]:
    """Latency (ms) per job, horizon step and count ``lo … hi``: shape (N, H, W); plus the latency
    at the current count (N, H) for cold-start steps, and ``hi`` cut at saturation when asked."""
    n, horizon = rates.shape
    s = arr.processing_time_ms[:, None] / 1000.0  # (N, 1) seconds
    load = rates * s  # offered load a = λ·s, (N, H)
    tail = 1.0 - arr.percentile[:, None] / 100.0
    slo = arr.slo_ms[:, None]
    hi = hi.copy()
    width_max = int((hi - lo).max()) + 1
    lat = np.full((n, horizon, width_max), np.inf)
    cur = arr.current
    lat_cur = np.where(rates > 0, np.inf, np.broadcast_to(s * 1000.0, rates.shape)).astype(float)
    erlang_b = np.ones_like(load)
    idle = rates <= 0
    done = np.zeros(n, dtype=bool)
    c_stop = int(hi.max())
    for c in range(0, c_stop + 1):
        if c > 0:
            erlang_b = load * erlang_b / (c + load * erlang_b)
            stable = load < rho_max * c  # λ ≤ ρ_max·c/s: the model's uncapped branch
            with np.errstate(divide="ignore", invalid="ignore"):
                prob_wait = np.where(stable, c * erlang_b / (c - load * (1.0 - erlang_b)), cap_table[c])
                lam_cap = np.where(stable, rates, rho_max * c / s)
                drain = c / s - lam_cap
                wait_s = np.maximum(0.0, np.log(prob_wait) - np.log(tail)) / drain
                lat_c = (wait_s / 2.0 + s) * 1000.0 * np.where(stable, 1.0, rates / lam_cap)
            lat_c = np.where(idle, s * 1000.0, lat_c)
        else:
            lat_c = np.where(idle, s * 1000.0, np.inf)
        at_cur = cur == c
        if at_cur.any():
            lat_cur[at_cur] = lat_c[at_cur]
        k = c - lo
        inside = (k >= 0) & (c <= hi)
        if inside.any():
            rows = np.nonzero(inside)[0]
            lat[rows, :, k[rows]] = lat_c[rows]
        if find_saturation:
            # Saturated: every step meets the SLO, or the unmet ones are cold-start steps frozen at
            # the current count (c ≥ current); utility is then flat in c from here on.
            meets = lat_c <= slo
            frozen = cold[None, :] & (c >= cur)[:, None]
            saturated = np.all(meets | frozen, axis=1) & (c >= lo) & ~done
            if saturated.any():
                hi[saturated] = np.minimum(hi[saturated], c)
                done |= saturated
            done |= c >= hi
            if done.all():
                break
    if find_saturation:
        lat = lat[:, :, : int((hi - lo).max()) + 1]
    return lat, lat_cur, hi


def _horizon_utility(
    arr: JobArrays,
    lat: NDArray[np.float64],
    lat_cur: NDArray[np.float64],
    lo: NDArray[np.int64],
    hi: NDArray[np.int64],
    cold: NDArray[np.bool_],
    alpha: float,
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """Mean relaxed utility over the horizon and the worst step's latency, per job and count."""
    width = lat.shape[2]
    if cold.any():
        counts = lo[:, None] + np.arange(width)[None, :]  # (N, W)
        grows = counts > arr.current[:, None]  # cold-start steps run on the current count
        cold_grow = cold[None, :, None] & grows[:, None, :]
        lat = np.where(cold_grow, lat_cur[:, :, None], lat)
    with np.errstate(divide="ignore"):
        ratio = np.where(lat > 0, arr.slo_ms[:, None, None] / lat, 1.0)
    util = np.minimum(1.0, ratio)
    if alpha != 1.0:
        util = util**alpha
    return util.mean(axis=1), lat.max(axis=1)
