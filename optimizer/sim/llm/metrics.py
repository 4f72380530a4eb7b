"""Scores of an LLM simulation run: per model and minute SLO satisfaction, TTFT/ITL percentiles, tokens/s,
GPU-minutes; cluster totals. Called by ``faro simulate --workload llm`` and ``bench/llm.py`` on a
``cluster.LLMSimResult``.

Definitions (precise, since they are what the benchmark compares):

* A request **satisfies** its model's SLOs when it did not fail (refused, dropped by a draining pod, or
  unfinished at the end) and, for each SLO the model declares, its TTFT (arrival → first token) ≤
  ``slo.ttft_ms`` and its TPOT (mean gap between its output tokens, (last − first token) / (outputs −
  1)) ≤ ``slo.itl_ms``; a one-token output meets any ITL SLO. This is the per-request "SLO attainment"
  of the LLM-serving literature (DistServe, Splitwise).
* Per model and minute (by arrival): satisfaction = satisfied / arrived; TTFT p50/pN over every arrived
  request with failures and never-served requests as ∞ (linear interpolation).
* Per model and minute (by the start of the step that emitted them): ITL p50/pN over every
  inter-token gap (token-weighted, inverted CDF — what vLLM's ``vllm:inter_token_latency_seconds``
  histogram measures); output tokens emitted (first tokens by their time) → tokens/s.
* Per model and minute (by arrival): TPOT pN over the requests with more than one output token
  (failed ones as ∞) — the population the satisfaction counts (MLPerf's TPOT constraint).
* Utility of a model-minute: min over its declared SLOs of min(1, SLO / pN) (1 without data), pN at
  the SLO percentile: TTFT by arrival minute, ITL over the minute's token gaps (the SLO's own
  definition, what the LLM latency model predicts).
* Only the minutes after the workload's warm-up (``warmup_s``) are scored; minute 0 is the first of them.
* Cluster: ``slo_violation`` = 1 − mean satisfaction over model-minutes with arrivals;
  ``request_slo_violation`` = 1 − satisfied / arrived over all requests; ``ttft_violation`` /
  ``itl_violation`` the same as ``slo_violation`` for one SLO alone; ``lost_utility`` = N − mean over
  minutes of Σ utility; ``gpu_minutes`` = GPUs held by pods (starting, ready, draining) over the
  trace's duration.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from faro.optimizer.sim.llm.cluster import LLMSimResult
from faro.optimizer.sim.llm.engine import weighted_percentile
from numpy.typing import NDArray


@dataclass(frozen=True)
class LLMMinuteStats:
    """Arrays ``[model, minute]``; NaN where there was nothing to measure."""

    arrived: NDArray[np.int64]
    satisfied: NDArray[np.int64]
    ttft_ok: NDArray[np.int64]
    itl_ok: NDArray[np.int64]
    failed: NDArray[np.int64]
    satisfaction: NDArray[np.float64]
    ttft_p50_ms: NDArray[np.float64]
    ttft_tail_ms: NDArray[np.float64]  # at the model's SLO percentile
    tpot_tail_ms: NDArray[np.float64]
    itl_p50_ms: NDArray[np.float64]
    itl_tail_ms: NDArray[np.float64]
    tokens_per_s: NDArray[np.float64]
    utility: NDArray[np.float64]


@dataclass(frozen=True)
class LLMSummary:
    slo_violation: float
    request_slo_violation: float
    ttft_violation: float
    itl_violation: float
    lost_utility: float
    gpu_minutes: float
    requests: int
    failed: int
    preemptions: int
    tokens_per_s: float
    worst_ttft_tail_ms: float  # the largest over models of the model's whole-run TTFT pN
    worst_itl_tail_ms: float
    max_gpus_used: float

    def as_dict(self) -> dict[str, float]:
        return {k: float(v) for k, v in self.__dict__.items()}


def _satisfied(result: LLMSimResult) -> tuple[NDArray[np.bool_], NDArray[np.bool_], NDArray[np.bool_]]:
    """Per request: TTFT within its SLO, TPOT within its SLO, both (and not failed)."""
    ttft_slo = np.array([s.llm.slo.ttft_ms if s.llm.slo.ttft_ms is not None else np.inf for s in result.specs])  # type: ignore[union-attr]
    itl_slo = np.array([s.llm.slo.itl_ms if s.llm.slo.itl_ms is not None else np.inf for s in result.specs])  # type: ignore[union-attr]
    job = result.req_job
    ok_fail = ~result.req_failed
    ttft_ok = ok_fail & (result.req_ttft_ms <= ttft_slo[job])
    tpot = result.req_tpot_ms
    itl_ok = ok_fail & (np.isnan(tpot) | (tpot <= itl_slo[job]))
    return ttft_ok, itl_ok, ttft_ok & itl_ok


def _group_percentile(
    values: NDArray[np.float64], cell: NDArray[np.int64], size: int, pct: NDArray[np.float64]
) -> NDArray[np.float64]:
    """Per cell, the ``pct[cell]``-th percentile (linear) of ``values`` (inf allowed); NaN for empty cells."""
    big = np.finfo(np.float64).max
    filled = np.where(np.isfinite(values), values, big)
    order = np.lexsort((filled, cell))
    sorted_v = filled[order]
    counts = np.bincount(cell, minlength=size)
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    out = np.full(size, np.nan)
    has = counts > 0
    pos = (counts[has] - 1) * (pct[has] / 100.0)
    lo = np.floor(pos).astype(np.int64)
    hi = np.minimum(lo + 1, counts[has] - 1)
    v_lo, v_hi = sorted_v[starts[has] + lo], sorted_v[starts[has] + hi]
    with np.errstate(over="ignore", invalid="ignore"):
        out[has] = v_lo + (v_hi - v_lo) * (pos - lo)
    out[out > big / 4] = np.inf
    return out


def minute_stats(result: LLMSimResult) -> LLMMinuteStats:
    """Per model and scored minute (minute 0 = the first after the warm-up)."""
    n_jobs = len(result.job_names)
    w = round(result.warmup_s / 60.0)
    n_min = max(1, math.ceil((result.duration_s - result.warmup_s) / 60.0 - 1e-9))
    size = n_jobs * n_min
    shape = (n_jobs, n_min)
    pct_job = np.array([s.llm.slo.percentile for s in result.specs])  # type: ignore[union-attr]
    scored = result.req_arrival_s >= result.warmup_s
    minute = np.minimum((result.req_arrival_s[scored] // 60.0).astype(np.int64) - w, n_min - 1)
    cell = result.req_job[scored].astype(np.int64) * n_min + minute
    ttft_ok, itl_ok, both = (x[scored] for x in _satisfied(result))
    arrived = np.bincount(cell, minlength=size)
    sat = np.bincount(cell, weights=both, minlength=size).astype(np.int64)
    t_ok = np.bincount(cell, weights=ttft_ok, minlength=size).astype(np.int64)
    i_ok = np.bincount(cell, weights=itl_ok, minlength=size).astype(np.int64)
    failed = np.bincount(cell, weights=result.req_failed[scored], minlength=size).astype(np.int64)
    satisfaction = np.full(size, np.nan)
    has = arrived > 0
    satisfaction[has] = sat[has] / arrived[has]
    cell_pct = np.repeat(pct_job, n_min)
    ttft = result.req_ttft_ms[scored]
    ttft_tail = _group_percentile(ttft, cell, size, cell_pct)
    ttft_p50 = _group_percentile(ttft, cell, size, np.full(size, 50.0))
    tpot = result.req_tpot_ms[scored]
    multi = ~np.isnan(tpot)
    tpot_tail = _group_percentile(tpot[multi], cell[multi], size, cell_pct)
    # ITL by emission minute (only minutes of the trace; the tail after it is not scored per minute)
    itl_tail = np.full(size, np.nan)
    itl_p50 = np.full(size, np.nan)
    tokens = np.zeros(size)
    keep = (result.itl_minute >= w) & (result.itl_minute < w + n_min)
    icell = result.itl_job.astype(np.int64)[keep] * n_min + result.itl_minute[keep] - w
    gaps, cnts = result.itl_gap_ms[keep], result.itl_count[keep]
    np.add.at(tokens, icell, cnts)
    order = np.argsort(icell, kind="stable")
    icell_s, gaps_s, cnts_s = icell[order], gaps[order], cnts[order]
    bounds = np.flatnonzero(np.diff(icell_s)) + 1
    for lo, hi in zip(np.concatenate([[0], bounds]), np.concatenate([bounds, [icell_s.size]]), strict=True):
        if hi <= lo:
            continue
        c = int(icell_s[lo])
        itl_tail[c] = weighted_percentile(gaps_s[lo:hi], cnts_s[lo:hi], cell_pct[c])
        itl_p50[c] = weighted_percentile(gaps_s[lo:hi], cnts_s[lo:hi], 50.0)
    first = result.req_first_token_s
    got = np.isfinite(first) & (first >= w * 60.0) & (first < (w + n_min) * 60.0)
    np.add.at(tokens, result.req_job.astype(np.int64)[got] * n_min + (first[got] // 60.0).astype(np.int64) - w, 1)
    # utility: min over declared SLOs of min(1, SLO / tail)
    utility = np.ones(size)
    for j, spec in enumerate(result.specs):
        slo = spec.llm.slo  # type: ignore[union-attr]
        sl = slice(j * n_min, (j + 1) * n_min)
        with np.errstate(divide="ignore", invalid="ignore"):
            if slo.ttft_ms is not None:
                t = ttft_tail[sl]
                utility[sl] = np.minimum(utility[sl], np.where(np.isnan(t), 1.0, np.minimum(1.0, slo.ttft_ms / t)))
            if slo.itl_ms is not None:
                t = itl_tail[sl]
                utility[sl] = np.minimum(utility[sl], np.where(np.isnan(t), 1.0, np.minimum(1.0, slo.itl_ms / t)))
    return LLMMinuteStats(
        arrived=arrived.reshape(shape), satisfied=sat.reshape(shape), ttft_ok=t_ok.reshape(shape),
        itl_ok=i_ok.reshape(shape), failed=failed.reshape(shape), satisfaction=satisfaction.reshape(shape),
        ttft_p50_ms=ttft_p50.reshape(shape), ttft_tail_ms=ttft_tail.reshape(shape),
        tpot_tail_ms=tpot_tail.reshape(shape), itl_p50_ms=itl_p50.reshape(shape),
        itl_tail_ms=itl_tail.reshape(shape), tokens_per_s=(tokens / 60.0).reshape(shape),
        utility=utility.reshape(shape),
    )


def gpu_minutes_per_job(result: LLMSimResult) -> NDArray[np.float64]:
    """GPUs held by each model's pods over the scored minutes (after the warm-up), in GPU-minutes."""
    gpus = np.array([s.resources.get("nvidia.com/gpu", 0.0) for s in result.specs])
    within = (result.tick_time_s >= result.warmup_s) & (result.tick_time_s < result.duration_s)
    return result.pods[within].sum(axis=0) * gpus * result.tick_s / 60.0


def summarize(result: LLMSimResult, stats: LLMMinuteStats | None = None) -> LLMSummary:
    s = stats or minute_stats(result)
    has = s.arrived > 0
    arrived = int(s.arrived.sum())

    def one_minus_mean(num: NDArray[np.int64]) -> float:
        return float(1.0 - (num[has] / s.arrived[has]).mean()) if has.any() else 0.0

    worst_ttft = worst_itl = 0.0
    w = round(result.warmup_s / 60.0)
    for j, spec in enumerate(result.specs):
        pct = spec.llm.slo.percentile  # type: ignore[union-attr]
        m = (result.req_job == j) & (result.req_arrival_s >= result.warmup_s)
        if m.any():
            t = np.where(np.isfinite(result.req_ttft_ms[m]), result.req_ttft_ms[m], np.finfo(float).max)
            v = float(np.percentile(t, pct))
            worst_ttft = max(worst_ttft, math.inf if v > np.finfo(float).max / 4 else v)
        k = (result.itl_job == j) & (result.itl_minute >= w)
        if k.any():
            worst_itl = max(worst_itl, weighted_percentile(result.itl_gap_ms[k], result.itl_count[k], pct))
    n_jobs = len(result.job_names)
    return LLMSummary(
        slo_violation=one_minus_mean(s.satisfied),
        request_slo_violation=float(1.0 - s.satisfied.sum() / arrived) if arrived else 0.0,
        ttft_violation=one_minus_mean(s.ttft_ok),
        itl_violation=one_minus_mean(s.itl_ok),
        lost_utility=float(n_jobs - s.utility.sum(axis=0).mean()),
        gpu_minutes=float(gpu_minutes_per_job(result).sum()),
        requests=arrived,
        failed=int(result.req_failed[result.req_arrival_s >= result.warmup_s].sum()),
        preemptions=int(result.req_preemptions[result.req_arrival_s >= result.warmup_s].sum()),
        tokens_per_s=float(s.tokens_per_s.sum(axis=0).mean()),
        worst_ttft_tail_ms=worst_ttft,
        worst_itl_tail_ms=worst_itl,
        max_gpus_used=float(result.max_gpus_used),
    )
