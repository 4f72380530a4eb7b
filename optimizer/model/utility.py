"""Utilities: how much a job is worth at a given replica count (design §3).

Called by solvers (utility curves per job over candidate replica counts) and by policies and the
simulator (utility of an observed latency). Pure numpy.

Notes
-----
Step utility ``U = 1[latency_p ≤ SLO]`` is what users care about; the "sloppified" utility
``U = min(1, SLO/latency_p)^α`` is what the solvers optimise. Over a forecast horizon the utility is
the mean over steps. Cold start: a job that grows keeps its old replica count for the first
``cold_start_steps`` steps, so the effective count at those steps is ``min(x, current)``.

Penalty variants admit a fraction ``d`` of the load; the latency model sees ``λ·d`` and the utility is
multiplied by ``1 − P(1 − d)``, with ``P`` piecewise linear through
(0, 0), (0.001, 0), (0.03, 0.25), (0.08, 0.5), (1, 1).
"""

from __future__ import annotations

import numpy as np
from faro.optimizer.model.latency import tail_latency_ms
from faro.optimizer.model.problem import Job, ModelConfig
from numpy.typing import ArrayLike, NDArray

PENALTY_DROP = np.array([0.0, 0.001, 0.03, 0.08, 1.0])
PENALTY_VALUE = np.array([0.0, 0.0, 0.25, 0.5, 1.0])

ADMISSION_GRID = 1.0 - np.array(
    [0.0, 0.001, 0.005, 0.01, 0.02, 0.03, 0.04, 0.05, 0.065, 0.08, 0.1, 0.13, 0.16, 0.2, 0.25, 0.3,
     0.4, 0.5, 0.6, 0.7, 0.8, 0.9]
)
"""Admission rates the Penalty objectives try per job and replica count; dense near the kinks of P."""

ADMISSION_MIN_GAIN = 0.01
"""Least modelled utility a lower admission rate must add to be chosen. P is 0 up to 0.1% drops, so
without a margin the model drops 0.1% whenever that shaves any latency at all; measured, those "free"
drops each zero a low-traffic minute's p99 (a drop counts as infinite latency)."""


def step_utility(latency_ms: ArrayLike, slo_ms: ArrayLike) -> NDArray[np.float64]:
    """1 where the latency meets the SLO, else 0."""
    return (np.asarray(latency_ms) <= np.asarray(slo_ms)).astype(float)


def relaxed_utility(latency_ms: ArrayLike, slo_ms: ArrayLike, alpha: float = 1.0) -> NDArray[np.float64]:
    """``min(1, SLO/latency)^α``; 0 for infinite latency."""
    lat = np.asarray(latency_ms, dtype=float)
    with np.errstate(divide="ignore"):
        ratio = np.where(lat > 0, np.asarray(slo_ms, dtype=float) / lat, 1.0)
    return np.minimum(1.0, ratio) ** alpha


def drop_penalty(drop_fraction: ArrayLike) -> NDArray[np.float64]:
    """``P(1 − d)``: the share of utility lost when a fraction of requests is dropped."""
    return np.interp(np.asarray(drop_fraction, dtype=float), PENALTY_DROP, PENALTY_VALUE)


def effective_replicas(replicas: ArrayLike, current: ArrayLike, horizon: int, cold_start_steps: int) -> NDArray:
    """Replicas serving at each horizon step: ``min(x, current)`` during cold start, then ``x``.

    Broadcasts ``replicas`` (…) against ``current`` (…) and returns shape (…, horizon).
    """
    x = np.asarray(replicas, dtype=float)[..., None]
    cur = np.asarray(current, dtype=float)[..., None]
    steps = np.arange(horizon)
    return np.where(steps < cold_start_steps, np.minimum(x, cur), x)


def horizon_utility(
    rates_rps: NDArray,
    processing_time_ms: NDArray,
    slo_ms: NDArray,
    percentile: NDArray,
    replicas: NDArray,
    current: NDArray,
    *,
    config: ModelConfig,
    admission: ArrayLike = 1.0,
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """Mean relaxed utility over the horizon and the mean p-latency (ms), for jobs × candidates.

    Shapes: ``rates_rps`` (N, H); per-job arrays (N,); ``replicas`` (N, X) or (X,); ``current`` (N,);
    ``admission`` broadcastable to (N, X). Returns two (N, X) arrays. The returned latency is the
    worst step's latency, the number users compare with their SLO.
    """
    rates = np.asarray(rates_rps, dtype=float)
    n, horizon = rates.shape
    x = np.broadcast_to(np.asarray(replicas, dtype=float), (n, np.shape(replicas)[-1]))
    eff = effective_replicas(x, np.asarray(current)[:, None], horizon, config.cold_start_steps)
    adm = np.broadcast_to(np.asarray(admission, dtype=float), x.shape)[..., None]
    lat = tail_latency_ms(
        rates[:, None, :] * adm,
        np.asarray(processing_time_ms, dtype=float)[:, None, None],
        eff,
        percentile=np.asarray(percentile, dtype=float)[:, None, None],
        rho_max=config.rho_max,
    )
    util = relaxed_utility(lat, np.asarray(slo_ms, dtype=float)[:, None, None], config.alpha)
    return util.mean(axis=-1), lat.max(axis=-1)


def utility_curves(
    jobs: tuple[Job, ...] | list[Job],
    replicas: NDArray,
    *,
    config: ModelConfig,
    penalty: bool = False,
) -> UtilityCurves:
    """Each job's horizon utility at each candidate replica count.

    ``replicas`` is (N, X) or (X,). With ``penalty`` the best admission rate on ``ADMISSION_GRID`` is
    chosen per job and count, and the utility includes the drop penalty. LLM jobs (``Job.llm``) are
    evaluated by the continuous-batching model (``llm_utility.py``); ``ttft_ms``/``itl_ms`` are then
    set (NaN for the other jobs).
    """
    if any(j.llm is not None for j in jobs):
        return _mixed_curves(list(jobs), replicas, config=config, penalty=penalty)
    rates = _rates_matrix(jobs)
    s = np.array([j.processing_time_ms for j in jobs], dtype=float)
    slo = np.array([j.slo.latency_ms for j in jobs], dtype=float)
    pct = np.array([j.slo.percentile for j in jobs], dtype=float)
    cur = np.array([j.current_replicas for j in jobs], dtype=float)
    x = np.broadcast_to(np.asarray(replicas, dtype=float), (len(jobs), np.shape(replicas)[-1]))
    util, lat = horizon_utility(rates, s, slo, pct, x, cur, config=config)
    admission = np.ones_like(util)
    if penalty:
        for d in ADMISSION_GRID[1:]:
            u_d, lat_d = horizon_utility(rates, s, slo, pct, x, cur, config=config, admission=d)
            u_d = u_d * (1.0 - drop_penalty(1.0 - d))
            better = u_d > util + ADMISSION_MIN_GAIN
            util = np.where(better, u_d, util)
            lat = np.where(better, lat_d, lat)
            admission = np.where(better, d, admission)
    return UtilityCurves(replicas=x, utility=util, latency_ms=lat, admission=admission)


def _mixed_curves(jobs: list[Job], replicas: NDArray, *, config: ModelConfig, penalty: bool) -> UtilityCurves:
    """``utility_curves`` for a job list with LLM jobs: the others as usual, the LLM ones by their model."""
    from faro.optimizer.model.llm_utility import LLMJobs, llm_best_admission, llm_horizon_utility, reported_latency_ms

    n = len(jobs)
    x = np.broadcast_to(np.asarray(replicas, dtype=float), (n, np.shape(replicas)[-1]))
    llm = LLMJobs.of(jobs, config)
    plain = np.setdiff1d(np.arange(n), llm.index)
    util = np.empty(x.shape)
    lat = np.empty(x.shape)
    admission = np.ones(x.shape)
    ttft = np.full(x.shape, np.nan)
    itl = np.full(x.shape, np.nan)
    if plain.size:
        part = utility_curves([jobs[i] for i in plain], x[plain], config=config, penalty=penalty)
        util[plain], lat[plain], admission[plain] = part.utility, part.latency_ms, part.admission
    rates = _rates_matrix([jobs[i] for i in llm.index])
    cur = np.array([jobs[i].current_replicas for i in llm.index], dtype=float)
    xl = x[llm.index]
    best = llm_horizon_utility(llm, rates, xl, cur, config=config)
    u_best, t_best, i_best, adm = best.utility, best.ttft_ms, best.itl_ms, np.ones(xl.shape)
    if penalty:
        chosen = llm_best_admission(llm, rates, xl, cur, best)
        u_best, t_best, i_best, adm = chosen.utility, chosen.ttft_ms, chosen.itl_ms, chosen.admission
    util[llm.index], lat[llm.index], admission[llm.index] = u_best, reported_latency_ms(llm, t_best, i_best), adm
    ttft[llm.index], itl[llm.index] = t_best, i_best
    return UtilityCurves(replicas=x, utility=util, latency_ms=lat, admission=admission, ttft_ms=ttft, itl_ms=itl)


def _rates_matrix(jobs: tuple[Job, ...] | list[Job]) -> NDArray[np.float64]:
    """Rates as (N, H), padding shorter forecasts with their last value."""
    horizon = max(len(j.rate_rps) for j in jobs)
    out = np.empty((len(jobs), horizon))
    for i, job in enumerate(jobs):
        r = np.asarray(job.rate_rps, dtype=float)
        out[i, : len(r)] = r
        out[i, len(r):] = r[-1]
    return out


class UtilityCurves:
    """Per-job tables over candidate replica counts: utility, worst-step latency, admission rate
    (and, when the list has LLM jobs, their worst-step TTFT/ITL percentiles; NaN for other jobs)."""

    __slots__ = ("admission", "itl_ms", "latency_ms", "replicas", "ttft_ms", "utility")

    def __init__(self, *, replicas: NDArray, utility: NDArray, latency_ms: NDArray, admission: NDArray,
                 ttft_ms: NDArray | None = None, itl_ms: NDArray | None = None):
        self.replicas = replicas
        self.utility = utility
        self.latency_ms = latency_ms
        self.admission = admission
        self.ttft_ms = ttft_ms
        self.itl_ms = itl_ms
