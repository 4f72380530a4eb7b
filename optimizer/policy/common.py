"""Guardrails every policy shares: quota accounting, min/max clamps, fair clipping of scale-ups,
the reactive over-SLO counter, and turning desired replicas into a ``Plan``.

Called by every policy module in this package. Pure numpy; no clock, no I/O.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
from faro.optimizer.model.problem import Job, Problem
from faro.optimizer.policy.base import ClusterView, JobView, Plan, Target
from faro.optimizer.policy.faro_llm import equivalent_latency_ms
from numpy.typing import NDArray

Key = tuple[str, str]


def keys(view: ClusterView) -> list[Key]:
    return [jv.spec.key for jv in view.jobs]


def current_replicas(view: ClusterView) -> NDArray[np.int64]:
    return np.array([jv.current_replicas for jv in view.jobs], dtype=np.int64)


def bounds(view: ClusterView) -> tuple[NDArray[np.int64], NDArray[np.int64]]:
    lo = np.array([jv.spec.min_replicas for jv in view.jobs], dtype=np.int64)
    hi = np.array([jv.spec.max_replicas for jv in view.jobs], dtype=np.int64)
    return lo, hi


def constraint_matrix(view: ClusterView) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """``A @ replicas <= b`` over every quota and resource of the view (same rules as ``Problem``)."""
    jobs = tuple(
        Job(
            name=jv.spec.name,
            namespace=jv.spec.namespace,
            slo=jv.spec.slo,
            processing_time_ms=jv.spec.processing_time_ms,
            rate_rps=(0.0,),
            resources=jv.spec.resources,
            limits=jv.spec.limits,
        )
        for jv in view.jobs
    )
    cons = Problem(jobs=jobs, quotas=view.quotas).constraints()
    return cons.matrix, cons.bound


def _fits(matrix: NDArray, bound: NDArray, x: NDArray) -> bool:
    if matrix.shape[0] == 0:
        return True
    return bool(np.all(matrix @ x <= bound + 1e-9 * np.maximum(1.0, np.abs(bound))))


def fit_to_quota(view: ClusterView, desired: Sequence[int] | NDArray) -> NDArray[np.int64]:
    """Clamp ``desired`` to each job's [min, max] and make the plan fit every quota.

    Decreases are applied as asked. Increases are granted one replica at a time, round-robin, to
    the job that has so far been granted the fewest (ties: the largest remaining request first),
    skipping any increment that would break a quota — a max-min fair split of the free quota.
    If even the current counts (after decreases) break a quota, jobs above their minimum give
    replicas back, largest first, until the plan fits or every job is at its minimum.
    """
    lo, hi = bounds(view)
    want = np.clip(np.asarray(desired, dtype=np.int64), lo, hi)
    cur = current_replicas(view)
    matrix, bound = constraint_matrix(view)
    x = np.minimum(want, np.maximum(cur, lo))
    x = np.maximum(x, lo)
    if matrix.shape[0] == 0:
        return want
    # Shrink when already over quota (e.g. a quota was lowered): largest jobs above min first.
    while not _fits(matrix, bound, x):
        over = matrix @ x > bound + 1e-9 * np.maximum(1.0, np.abs(bound))
        uses = (matrix[over] > 0).any(axis=0) & (x > lo)
        if not uses.any():
            break
        idx = int(np.argmax(np.where(uses, x - lo, -1)))
        x[idx] -= 1
    remaining = want - x
    granted = np.zeros_like(x)
    active = remaining > 0
    while active.any():
        order = sorted(np.flatnonzero(active), key=lambda i: (granted[i], -remaining[i], i))
        progressed = False
        for i in order:
            x[i] += 1
            if _fits(matrix, bound, x):
                granted[i] += 1
                remaining[i] -= 1
                progressed = True
                if remaining[i] == 0:
                    active[i] = False
                break
            x[i] -= 1
            active[i] = False
        if not progressed and not active.any():
            break
    return x


QUOTA_ORDERS = ("job", "fair", "none")


def fit_in_job_order(view: ClusterView, desired: Sequence[int] | NDArray) -> NDArray[np.int64]:
    """Clamp ``desired`` to each job's [min, max] and fit it to every quota first come, first served.

    Decreases are applied as asked; then, in view order, each job gets as much of its increase as
    still fits every quota (the Faro artifact's ``check_action``), so later jobs absorb the shortfall.
    If even the current counts (after decreases) break a quota, ``fit_to_quota`` decides (it shrinks).
    """
    lo, hi = bounds(view)
    want = np.clip(np.asarray(desired, dtype=np.int64), lo, hi)
    matrix, bound = constraint_matrix(view)
    if matrix.shape[0] == 0:
        return want
    tol = 1e-9 * np.maximum(1.0, np.abs(bound))
    x = np.maximum(np.minimum(want, np.maximum(current_replicas(view), lo)), lo)
    if np.any(matrix @ x > bound + tol):
        return fit_to_quota(view, x)
    for i in np.flatnonzero(want > x):
        # the largest grant k ≤ want − x that fits: a quota row's use grows linearly in k
        free = bound + tol - matrix @ x
        per = matrix[:, i]
        need = per > 0
        k = int(want[i] - x[i])
        if need.any():
            k = min(k, int(np.floor(np.min(free[need] / per[need]))))
        x[i] += max(0, k)
    return x


def quota_order_of(owner: str, order: str) -> str:
    """``order`` if it is one of ``QUOTA_ORDERS``, else a ``ValueError`` naming ``owner`` (a policy)."""
    if order not in QUOTA_ORDERS:
        raise ValueError(f"{owner}: quota_order must be one of {', '.join(QUOTA_ORDERS)}, got {order!r}")
    return order


def clip_to_quota(view: ClusterView, desired: Sequence[int] | NDArray, order: str = "fair") -> NDArray[np.int64]:
    """``fit_to_quota`` (``order="fair"``: max-min fair split of the free quota), ``fit_in_job_order``
    (``"job"``: first come, first served, as uncoordinated per-job autoscalers get it) or only the
    [min, max] clamp (``"none"``: the plan may exceed a quota and the cluster settles it — pods over a
    ResourceQuota are refused and retried, as under standard HPAs)."""
    order = quota_order_of("clip_to_quota", order)
    if order == "none":
        lo, hi = bounds(view)
        return np.clip(np.asarray(desired, dtype=np.int64), lo, hi)
    return fit_in_job_order(view, desired) if order == "job" else fit_to_quota(view, desired)



def free_capacity(view: ClusterView, replicas: NDArray) -> NDArray[np.float64]:
    """What each quota row has left after ``replicas`` (``b − A x``); empty without quotas."""
    matrix, bound = constraint_matrix(view)
    return bound - matrix @ np.asarray(replicas, dtype=float)


def observed_latency_ms(jv: JobView, *, metric: str = "mean") -> float | None:
    """The latency a reactive rule compares with the SLO: the window mean (as the artifact) or the
    SLO percentile; falls back to whichever was measured."""
    obs = jv.observation
    if jv.spec.llm is not None:  # TTFT/ITL against their SLOs, in the primary SLO's units
        return equivalent_latency_ms(jv)
    if metric == "mean":
        return obs.mean_latency_ms if obs.mean_latency_ms is not None else obs.latency_ms
    return obs.latency_ms if obs.latency_ms is not None else obs.mean_latency_ms


def last_rate_rpm(jv: JobView, *, minutes: int = 1) -> float:
    """Mean of the last ``minutes`` completed minutes (NaN-aware); 0 without history."""
    hist = np.asarray(jv.observation.rate_history_rpm[-minutes:], dtype=float)
    if hist.size == 0 or np.all(np.isnan(hist)):
        return 0.0
    return float(np.nanmean(hist))


@dataclass(frozen=True)
class CounterState:
    """Consecutive checks above (``up``) and at/below (``down``) the SLO, per job key."""

    up: Mapping[Key, int] = field(default_factory=dict)
    down: Mapping[Key, int] = field(default_factory=dict)


def count_checks(
    view: ClusterView,
    counters: CounterState,
    *,
    metric: str = "mean",
    skip_scaling: bool = False,
    cumulative_up: bool = False,
) -> tuple[CounterState, NDArray[np.bool_], NDArray[np.bool_]]:
    """Advance the per-job counters by one check.

    A check is "over" when the observed latency exceeds the job's SLO latency; no data counts as
    under (the artifact parses a missing latency as 0). ``skip_scaling`` leaves a job's counters
    untouched while it has replicas not yet ready (the artifact skips jobs whose scaling action is
    still running). With ``cumulative_up`` an under check does not reset the up counter (the
    artifact's reactive "AI" step behaves so between long-horizon solves).

    Returns the new counters and the up/down streak lengths as arrays (the caller decides the
    thresholds and resets a counter when it acts).
    """
    up: dict[Key, int] = {}
    down: dict[Key, int] = {}
    ups = np.zeros(len(view.jobs), dtype=np.int64)
    downs = np.zeros(len(view.jobs), dtype=np.int64)
    for i, jv in enumerate(view.jobs):
        key = jv.spec.key
        u, d = counters.up.get(key, 0), counters.down.get(key, 0)
        if not (skip_scaling and jv.ready_replicas < jv.current_replicas):
            latency = observed_latency_ms(jv, metric=metric)
            if latency is not None and (not math.isfinite(latency) or latency > jv.spec.slo.latency_ms):
                u, d = u + 1, 0
            else:
                u, d = (u if cumulative_up else 0), d + 1
        up[key], down[key] = u, d
        ups[i], downs[i] = u, d
    return CounterState(up=up, down=down), ups, downs


def reset(counters: CounterState, view: ClusterView, mask: NDArray[np.bool_], *, which: str) -> CounterState:
    """Zero the ``which`` ("up"/"down") counter of the jobs where ``mask`` holds."""
    table = dict(getattr(counters, which))
    for jv, hit in zip(view.jobs, mask, strict=True):
        if hit:
            table[jv.spec.key] = 0
    if which == "up":
        return CounterState(up=table, down=counters.down)
    return CounterState(up=counters.up, down=table)


def make_plan(
    view: ClusterView,
    desired: Sequence[int] | NDArray,
    *,
    kind: str,
    forecast_rps: Sequence[float] | None = None,
    latency_ms: Sequence[float] | None = None,
    utility: Sequence[float] | None = None,
    admission: Sequence[float] | None = None,
    held: Mapping[int, str] | None = None,
    objective_value: float | None = None,
    solver_status: str = "",
    solve_ms: float = 0.0,
) -> Plan:
    """A ``Plan`` with one ``Target`` per job of the view, in view order."""
    held = held or {}
    targets = []
    for i, jv in enumerate(view.jobs):
        targets.append(
            Target(
                namespace=jv.spec.namespace,
                name=jv.spec.name,
                desired_replicas=int(desired[i]),
                current_replicas=int(jv.current_replicas),
                forecast_rps=float(forecast_rps[i]) if forecast_rps is not None else 0.0,
                expected_latency_ms=float(latency_ms[i]) if latency_ms is not None else 0.0,
                expected_utility=float(utility[i]) if utility is not None else 0.0,
                held_reason=held.get(i, ""),
                admission=float(admission[i]) if admission is not None else 1.0,
            )
        )
    return Plan(
        targets=tuple(targets),
        objective_value=objective_value,
        solver_status=solver_status,
        solve_ms=solve_ms,
        kind=kind,
    )


def hpa_deadband(
    view: ClusterView, desired: NDArray[np.int64], *, tolerance: float
) -> tuple[NDArray[np.int64], dict[int, str]]:
    """Adjust moves the HPA would ignore (|desired/current − 1| ≤ tolerance, inclusive).

    Scale-ups inside the band are raised to the smallest count outside it (under-provisioning
    costs SLO; the caller re-fits the result to the quota); scale-downs inside the band are held.
    Returns the adjusted counts and a reason per held job.
    """
    out = desired.copy()
    held: dict[int, str] = {}
    if tolerance <= 0:
        return out, held
    cur = current_replicas(view)
    for i, (d, c) in enumerate(zip(desired, cur, strict=True)):
        if c <= 0 or d == c or abs(d / c - 1.0) > tolerance + 1e-9:
            continue
        if d > c:
            out[i] = math.floor(c * (1.0 + tolerance)) + 1
        else:
            out[i] = c
            held[i] = f"hpa dead-band: {d} is within {tolerance:.0%} of {c}"
    return out, held
