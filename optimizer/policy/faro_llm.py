"""The LLM side of Faro's planning: LLM jobs for the solver, the horizon a model load needs, the
reactive check on TTFT/ITL.

Called by ``faro.py`` (``build_problem`` turns a job with ``JobSpec.llm`` into an LLM ``Job`` here,
``FaroPolicy``/``OraclePolicy`` ask ``planning_horizon`` how far to forecast) and by ``common.py``
(``observed_latency_ms`` asks ``equivalent_latency_ms`` for an LLM job's reactive check). Everything
else — forecasting requests per minute, quantile raising, shrinking, the solvers under GPU quotas and
the cluster cap — is Faro's own code path, shared with the other jobs. Pure.

An LLM job is planned for the request mix observed last (``JobObservation.llm.token_mix``), else the
one its spec declares (``LLMSpec.token_mix``), else ``DEFAULT_TOKEN_MIX`` (1,024 prompt and 128
output tokens). A new replica serves only after ``profile.model_load_s`` (the model's cold start), so
the horizon is extended to cover the load plus ``SERVING_STEPS`` steps in which the replica serves.

Because a replica given up costs a model load to get back, LLM jobs are planned conservatively on the
way down: the forecast never goes below the busiest of the last ``⌈HOLD_LOADS · model_load_s/60⌉``
minutes, up to what the replicas asked for now serve within both SLOs (a dip shorter than that is ridden
out, as an HPA's scale-down stabilization window does, but a burst that has passed adds no replica: it
would serve a model load later), and the shrink step never drops an LLM replica that is running now
unless the solver wanted it elsewhere.
Requests already waiting (``JobObservation.llm.num_waiting``) are added to the load of every step up to
the first one a new replica serves in, so a backlog left by an overload is planned for instead of ignored
by the steady-state model: the replicas running now cannot drain it (they left it), and the observed rate
of a saturated replica is its throughput, not the arrivals.

For the Fair and FairSum objectives an LLM job's utility is its expected utility over forecast scenarios
(``SCENARIO_LEVELS``, ``llm_scenario_spread``): its SLO-vs-load curve is a cliff, and a count just under it
at the planned rates is worth less than 1 when the forecast's upper scenarios cross it.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from faro.optimizer.model.llm_latency import DEFAULT_TOKEN_MIX
from faro.optimizer.model.llm_profile import TokenMix
from faro.optimizer.model.llm_utility import LLMJobs
from faro.optimizer.model.problem import Job, ModelConfig, Problem
from faro.optimizer.policy.base import ClusterView, JobView
from numpy.typing import NDArray

SERVING_STEPS = 4
"""Horizon steps an LLM replica must serve after its model load for the plan to weigh it."""

HOLD_LOADS = 2.0
"""An LLM job's forecast is floored at its busiest minute over this many model-load times."""


SCENARIO_LEVELS: tuple[float, ...] = (0.1, 0.3, 0.5, 0.7, 0.9)
"""Forecast quantiles whose spread about the median (equal weights: the midpoints of five equal bins of the
distribution) an LLM job's utility is averaged over, around its planned rates (``llm_scenario_spread``)."""


def llm_scenario_spread(tables: dict[float, NDArray]) -> NDArray[np.float64] | None:
    """(jobs, scenarios, horizon) offsets ``Q_s − Q_0.5`` of the forecast at ``SCENARIO_LEVELS``, or None when
    the tables lack them (the naive start-up forecast, the Oracle's truth).

    An LLM job's SLO-vs-load curve is a cliff and a replica lent away comes back a model load later, so
    its utility at a count is the mean over the planned rates shifted by each offset: a count whose
    replicas would run just under the cliff at the planned rates scores below 1 when the upper scenarios
    cross it (measured in docs/llm.md)."""
    if any(q not in tables for q in SCENARIO_LEVELS):
        return None
    mid = tables[0.5]
    if all(np.array_equal(tables[q], mid) for q in SCENARIO_LEVELS):
        return None
    return np.stack([tables[q] - mid for q in SCENARIO_LEVELS], axis=1)


def token_mix_of(jv: JobView) -> TokenMix:
    """The mix to plan an LLM job for: observed, else declared, else ``DEFAULT_TOKEN_MIX``."""
    observed = jv.observation.llm.token_mix if jv.observation.llm is not None else None
    if observed is not None:
        return observed
    declared = jv.spec.llm.token_mix if jv.spec.llm is not None else None
    return declared if declared is not None else DEFAULT_TOKEN_MIX


def llm_job(
    jv: JobView, rates_rps: Sequence[float], *, replica_slo_rps: float, step_s: float = 60.0,
    spread_rps: NDArray | None = None,
) -> Job:
    """The solver's ``Job`` for an LLM job of the view (``rates_rps``: its forecast per step), with the
    forecast floored at the recent busiest minute — at most what its current replicas serve at
    ``replica_slo_rps`` each (``llm_replica_slo_rps``) — and the waiting backlog added to the steps up to
    the first one a new replica serves in; ``spread_rps`` (scenarios × steps, ``llm_scenario_spread``)
    becomes the job's ``rate_spread_rps``, each scenario floored and given the backlog the same way."""
    spec = jv.spec
    assert spec.llm is not None
    rates = np.asarray(list(rates_rps) or [0.0], dtype=float)
    hold_min = math.ceil(HOLD_LOADS * spec.llm.profile.model_load_s / 60.0)
    recent = np.asarray(jv.observation.rate_history_rpm[-hold_min:], dtype=float) if hold_min else np.zeros(0)
    busiest = float(np.nanmax(recent)) / 60.0 if recent.size and np.isfinite(recent).any() else 0.0
    # the floor holds replicas through a dip; it does not grow the job for a burst that has passed
    floor = min(busiest, max(0, int(jv.current_replicas)) * replica_slo_rps)
    scenarios = None  # each scenario's rates, floored and given the backlog as the planned rates are
    if spread_rps is not None:
        offsets = np.asarray(spread_rps, dtype=float)[:, : rates.size]
        scenarios = np.maximum(rates[None, : offsets.shape[1]] + offsets, floor)
    rates = np.maximum(rates, floor)
    waiting = jv.observation.llm.num_waiting if jv.observation.llm is not None else None
    if waiting is not None and waiting > 0 and math.isfinite(waiting):
        first_warm = math.ceil(spec.llm.profile.model_load_s / step_s)
        rates[: first_warm + 1] += float(waiting) / step_s
        if scenarios is not None:
            scenarios[:, : first_warm + 1] += float(waiting) / step_s
    spread = () if scenarios is None else tuple(map(tuple, (scenarios - rates[None, : scenarios.shape[1]]).tolist()))
    return Job.for_llm(
        spec.name,
        llm=spec.llm,
        token_mix=token_mix_of(jv),
        rate_rps=tuple(rates.tolist()),
        namespace=spec.namespace,
        resources=spec.resources,
        limits=spec.limits,
        weight=spec.weight,
        min_replicas=spec.min_replicas,
        max_replicas=spec.max_replicas,
        current_replicas=max(0, int(jv.current_replicas)),
        rate_spread_rps=spread,
    )


def llm_replica_slo_rps(views: Sequence[JobView], config: ModelConfig) -> NDArray[np.float64]:
    """Per LLM job view (in order), the requests per second one replica serves within both SLOs for the mix
    it is planned for (``token_mix_of``), as the plan's model sees it: the largest per-replica load meeting
    both (``LLMJobs.max_load``, at most ``config.rho_max``) times the replica's capacity."""
    if not views:
        return np.zeros(0)
    jobs = []
    for jv in views:
        assert jv.spec.llm is not None
        jobs.append(Job.for_llm(jv.spec.name, llm=jv.spec.llm, token_mix=token_mix_of(jv), rate_rps=(0.0,),
                                namespace=jv.spec.namespace))
    llm = LLMJobs.of(jobs, config)
    return llm.max_load() * llm.curves.capacity_rps


def llm_replica_slo_rps_by_position(view: ClusterView, config: ModelConfig) -> dict[int, float]:
    """``llm_replica_slo_rps`` for the view's LLM jobs, by their position in the view (once per long step:
    every quantile the step tries plans the same replicas)."""
    rows = [i for i, jv in enumerate(view.jobs) if jv.spec.llm is not None]
    return dict(zip(rows, llm_replica_slo_rps([view.jobs[i] for i in rows], config).tolist(), strict=True))


def llm_burst_need(view: ClusterView, *, rho: float, drain_s: float) -> dict[int, int]:
    """Per LLM job of the view (by position), the replicas its load arriving *now* needs: the window's
    arrival rate plus the waiting requests drained within ``drain_s``, over the per-replica load that
    meets both SLOs (at most ``rho``, ``llm_replica_slo_rps``) for the observed token mix. Jobs without a
    measured rate are left out."""
    positions, views, demand = [], [], []
    for i, jv in enumerate(view.jobs):
        obs = jv.observation
        rate = obs.arrival_rate_rps
        if jv.spec.llm is None or rate is None or not math.isfinite(rate) or rate <= 0:
            continue
        waiting = obs.llm.num_waiting if obs.llm is not None else None
        queue = waiting if waiting is not None and math.isfinite(waiting) and waiting > 0 else 0.0
        positions.append(i)
        views.append(jv)
        demand.append(rate + queue / drain_s)
    if not views:
        return {}
    per_replica = llm_replica_slo_rps(views, ModelConfig(rho_max=rho))
    with np.errstate(divide="ignore", invalid="ignore"):
        need = np.where(per_replica > 0, np.ceil(np.asarray(demand) / per_replica - 1e-9), 0.0)
    return {i: int(n) for i, n in zip(positions, need, strict=True) if math.isfinite(n)}


def llm_keep(problem: Problem, replicas: NDArray[np.int64]) -> NDArray[np.int64]:
    """Per job, the count the shrink step may not go below: an LLM job keeps what it runs now (up to the
    plan's count); other jobs 0."""
    x = np.asarray(replicas, dtype=np.int64)
    keep = [min(int(xi), job.current_replicas) if job.llm is not None else 0
            for job, xi in zip(problem.jobs, x, strict=True)]
    return np.asarray(keep, dtype=np.int64)


def planning_horizon(view: ClusterView, horizon: int, config: ModelConfig | None = None) -> int:
    """``horizon`` steps, or more when an LLM job's model load would leave fewer than ``SERVING_STEPS``
    steps in which a new replica serves; never one that ends before a new replica serves after its cold
    start (as ``serving_horizon`` does for problem files: a 1-step horizon would never scale a job up)."""
    config = config or ModelConfig()
    horizon = max(horizon, config.cold_start_steps + 1)
    loads = [jv.spec.llm.profile.model_load_s for jv in view.jobs if jv.spec.llm is not None]
    if not loads:
        return horizon
    return max(horizon, math.ceil(max(loads) / config.step_s) + SERVING_STEPS)


def equivalent_latency_ms(jv: JobView) -> float | None:
    """An LLM job's observed TTFT/ITL as one latency in its primary SLO's units, for the reactive
    check and the latency-ratio baselines: ``max(TTFT/TTFT_SLO, ITL/ITL_SLO) · spec.slo.latency_ms``
    over the declared and observed SLOs (so it exceeds ``spec.slo.latency_ms`` exactly when some
    declared SLO is violated). None when nothing was observed."""
    spec, obs = jv.spec.llm, jv.observation.llm
    if spec is None or obs is None:
        return None
    ratios = []
    for observed, slo in ((obs.ttft_ms, spec.slo.ttft_ms), (obs.itl_ms, spec.slo.itl_ms)):
        if observed is not None and slo is not None:
            ratios.append(observed / slo if math.isfinite(observed) else math.inf)
    if not ratios:
        return None
    return max(ratios) * jv.spec.slo.latency_ms
