"""Scores of a simulation run: per job-minute SLO satisfaction, tail latency, utility, drops; cluster totals.

Called by ``faro simulate`` and ``bench/simulate.py`` on an ``engine.SimResult``.

Definitions (as the Faro artifact computes them): a request is *satisfied* when its latency is ≤ the
SLO; drops count as violations (latency ∞). Per job and minute (by arrival): satisfaction = satisfied /
arrived, pN = the N-th percentile latency of all arrived requests with drops as ∞ (linear interpolation;
the artifact's ``analyze`` script fills drops with the largest float before its per-minute quantile), so
a minute with about 1% or more drops has pN = ∞ and utility 0; utility = min(1, SLO/pN) (1 for a minute
without requests). Cluster: ``slo_violation`` = 1 − mean satisfaction over job-minutes
with requests; ``request_slo_violation`` = 1 − satisfied/arrived over all requests; ``lost_utility`` =
N − mean over minutes of Σ_jobs utility; ``cpu_minutes`` = CPU held by pods (running, starting, idle).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from faro.optimizer.sim.engine import SimResult
from numpy.typing import NDArray


@dataclass(frozen=True)
class JobMinuteStats:
    """Arrays ``[job, minute]``."""

    arrived: NDArray[np.int64]
    satisfied: NDArray[np.int64]
    dropped: NDArray[np.int64]
    tail_latency_ms: NDArray[np.float64]  # NaN where no request arrived
    satisfaction: NDArray[np.float64]  # NaN where no request arrived
    utility: NDArray[np.float64]


@dataclass(frozen=True)
class Summary:
    slo_violation: float
    request_slo_violation: float
    lost_utility: float
    cpu_minutes: float
    requests: int
    dropped: int
    mean_latency_ms: float
    max_cpus_used: float

    def as_dict(self) -> dict[str, float]:
        return {k: float(v) for k, v in self.__dict__.items()}


def job_minute_stats(result: SimResult) -> JobMinuteStats:
    cfg = result.config
    num_jobs = len(result.job_names)
    num_minutes = max(1, int(np.ceil(result.duration_s / 60.0)))
    minute = np.minimum((result.req_arrival_s // 60.0).astype(np.int64), num_minutes - 1)
    cell = result.req_job.astype(np.int64) * num_minutes + minute
    size = num_jobs * num_minutes
    lat = result.req_latency_ms.astype(np.float64)
    arrived = np.bincount(cell, minlength=size)
    satisfied = np.bincount(cell, weights=(lat <= cfg.slo_ms), minlength=size).astype(np.int64)
    dropped = np.bincount(cell, weights=~np.isfinite(lat), minlength=size).astype(np.int64)
    # Group-wise percentile over every arrived request, a drop counting as an infinite latency: the
    # artifact's analysis fills drops with np.nan_to_num(inf) (the largest float) before the per-minute
    # quantile, so a minute with ≥ ~1% drops has utility ≈ 0. A finite stand-in keeps the interpolation
    # free of inf − inf; anything that large is reported as inf.
    big = np.finfo(np.float64).max
    filled = np.where(np.isfinite(lat), lat, big)
    order = np.lexsort((filled, cell))
    sorted_lat = filled[order]
    starts = np.concatenate([[0], np.cumsum(arrived)[:-1]])
    tail = np.full(size, np.nan)
    has_any = arrived > 0
    pos = (arrived[has_any] - 1) * (cfg.slo_percentile / 100.0)
    lo = np.floor(pos).astype(np.int64)
    hi = np.minimum(lo + 1, arrived[has_any] - 1)
    frac = pos - lo
    v_lo = sorted_lat[starts[has_any] + lo]
    v_hi = sorted_lat[starts[has_any] + hi]
    with np.errstate(over="ignore", invalid="ignore"):
        tail[has_any] = v_lo + (v_hi - v_lo) * frac
    tail[tail > big / 4] = np.inf
    has = arrived > 0
    satisfaction = np.full(size, np.nan)
    satisfaction[has] = satisfied[has] / arrived[has]
    utility = np.ones(size)
    with np.errstate(divide="ignore"):
        utility[has] = np.minimum(1.0, cfg.slo_ms / tail[has])
    shape = (num_jobs, num_minutes)
    return JobMinuteStats(
        arrived=arrived.reshape(shape),
        satisfied=satisfied.reshape(shape),
        dropped=dropped.reshape(shape),
        tail_latency_ms=tail.reshape(shape),
        satisfaction=satisfaction.reshape(shape),
        utility=utility.reshape(shape),
    )


def summarize(result: SimResult, stats: JobMinuteStats | None = None) -> Summary:
    s = stats or job_minute_stats(result)
    num_jobs = len(result.job_names)
    arrived = int(s.arrived.sum())
    sat = s.satisfaction[~np.isnan(s.satisfaction)]
    finite = result.req_latency_ms[np.isfinite(result.req_latency_ms)]
    cpu_minutes = float(result.pods.sum()) * result.config.cpu_per_replica * result.config.step_s / 60.0
    return Summary(
        slo_violation=float(1.0 - sat.mean()) if sat.size else 0.0,
        request_slo_violation=float(1.0 - s.satisfied.sum() / arrived) if arrived else 0.0,
        lost_utility=float(num_jobs - s.utility.sum(axis=0).mean()),
        cpu_minutes=cpu_minutes,
        requests=arrived,
        dropped=int(s.dropped.sum()),
        mean_latency_ms=float(finite.mean()) if finite.size else float("nan"),
        max_cpus_used=float(result.max_cpus_used),
    )


BREAKDOWN_CAUSES = ("burst_onset", "pod_starting", "under_forecast", "quota_full", "other")
"""Where violations happen, in the order a violating job-minute is attributed (first that applies):

* ``burst_onset``: the job's load rose more than ``burst_factor``× from the previous minute;
* ``pod_starting``: a replica of the job was starting (cold or hot start) at some step of the minute;
* ``under_forecast``: the minute's load was above the forecast the last long-horizon plan was sized for
  (its planning quantile's peak over the horizon) — only for policies whose plans carry a forecast;
* ``quota_full``: at some step of the minute the cluster had no room for one more pod;
* ``other``: none of these (e.g. the plan's replicas were too few for a load it did foresee).
"""


def _per_minute_any(per_step: NDArray, step_time_s: NDArray, num_minutes: int) -> NDArray[np.bool_]:
    """``[step, job]`` truth values → ``[job, minute]``: true if true at any step of the minute."""
    minute = np.minimum((step_time_s // 60.0).astype(np.int64), num_minutes - 1)
    out = np.zeros((per_step.shape[1], num_minutes), dtype=bool)
    rows, cols = np.nonzero(per_step)
    out[cols, minute[rows]] = True
    return out


def planned_forecast_rpm(result: SimResult, num_minutes: int) -> NDArray[np.float64] | None:
    """``[job, minute]``: the per-minute load the long-horizon plan in force at the minute's start was sized
    for (60 × its ``forecast_rps``), NaN before the first such plan; None when the policy never gave one."""
    if result.plan_forecast_rps is None or result.plan_time_s is None:
        return None
    solve = np.array([k == "solve" for k in result.plan_kind], dtype=bool)
    if not solve.any():
        return None
    times = result.plan_time_s[solve]
    rps = np.asarray(result.plan_forecast_rps, dtype=np.float64)[solve]
    starts = np.arange(num_minutes) * 60.0
    idx = np.searchsorted(times, starts + 1e-6, side="right") - 1
    out = np.full((rps.shape[1], num_minutes), np.nan)
    have = idx >= 0
    out[:, have] = 60.0 * rps[idx[have]].T
    return out


def violation_breakdown(
    result: SimResult, stats: JobMinuteStats | None = None, *, burst_factor: float = 2.0
) -> dict[str, object]:
    """The run's SLO violation split by cause (``BREAKDOWN_CAUSES``, each violating job-minute counted
    once, under the first cause that applies): per cause the share of ``slo_violation`` (fractions that
    add up to it), violating job-minutes, and per job; plus how many job-minutes each condition flags."""
    s = stats or job_minute_stats(result)
    num_jobs, num_minutes = s.arrived.shape
    has = s.arrived > 0
    denom = max(1, int(has.sum()))
    loss = np.where(has, 1.0 - np.nan_to_num(s.satisfaction, nan=1.0), 0.0) / denom
    # the offered load per minute (a minute's last arrivals may spill into the next one's cell of ``arrived``)
    load = np.asarray(result.arrivals_rpm, dtype=np.float64)[:, :num_minutes]
    prev = np.concatenate([np.full((num_jobs, 1), np.inf), load[:, :-1]], axis=1)
    flags: dict[str, NDArray[np.bool_]] = {"burst_onset": has & (load > burst_factor * prev)}
    if result.starting_replicas is not None:
        flags["pod_starting"] = _per_minute_any(result.starting_replicas > 0, result.step_time_s, num_minutes)
    planned = planned_forecast_rpm(result, num_minutes)
    if planned is not None:
        with np.errstate(invalid="ignore"):
            flags["under_forecast"] = load > planned + 0.5  # counts are integers; plans store float32
    cfg = result.config
    used = result.pods.sum(axis=1) * cfg.cpu_per_replica
    full = (used + cfg.cpu_per_replica > cfg.cpus + 1e-9)[:, None] & np.ones((1, num_jobs), dtype=bool)
    flags["quota_full"] = _per_minute_any(full, result.step_time_s, num_minutes)
    left = loss > 0
    out: dict[str, object] = {}
    for cause in BREAKDOWN_CAUSES:
        if cause == "other":
            mask = left
        elif cause in flags:
            mask = left & flags[cause]
        else:
            out[cause] = None  # not applicable (e.g. no forecast)
            continue
        left = left & ~mask
        out[cause] = {
            "violation": float(loss[mask].sum()),
            "job_minutes": int(mask.sum()),
            "per_job": [float(v) for v in np.where(mask, loss, 0.0).sum(axis=1)],
        }
    out["flagged_job_minutes"] = {k: int(v.sum()) for k, v in flags.items()}
    out["slo_violation"] = float(loss.sum())
    out["job_names"] = list(result.job_names)
    return out
