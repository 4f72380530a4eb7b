"""MArk-style predictive baseline: provision for the forecast peak, plus the reactive +1.

Long-horizon step (same grid as Faro, 300 s): forecast each job's next ``horizon`` minutes at
``quantile`` and size it for the peak: ``ceil(peak_rps / capacity_rps)`` replicas, where a
replica's capacity is ``SLO/s`` requests per second, the Faro artifact's ``pred_darts`` rule
(``ceil(rate × s / SLO)``: 4 req/s at s = 180 ms and SLO = 720 ms, i.e. 72% busy), capped at
``rho_max/s``. No cluster-wide optimisation: scale-ups that do not fit the free quota are clipped
(``quota_order``). In between, the reactive +1 (``hybrid.py``). Registered as ``mark``.

``quota_order="job"`` (the default) clips as the Faro artifact's controller does: scale-downs first,
then each job's scale-up in job order, granted as far as the quota still allows, so the excess is
trimmed from the last jobs (``autoscaler.py``: ``sort_actions_by_delta(only_downscale_first=True)``,
then ``check_action`` grants ``delta + remained_cpu``). MArk sizes every job for its own peak and knows
nothing of the others, so this first-come-first-served split is part of the baseline the paper
measured. ``quota_order="fair"`` splits the free quota max-min fairly (``common.fit_to_quota``) — a
kinder MArk than the paper's: 1.18 instead of 1.73 lost utility at 32 CPUs (``docs/fidelity.md``).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import replace
from typing import Any

import numpy as np
from faro.optimizer.policy.base import ClusterView, Plan
from faro.optimizer.policy.common import clip_to_quota, make_plan
from faro.optimizer.policy.forecasting import LoadForecaster
from faro.optimizer.policy.hybrid import HybridPolicy, HybridState


def mark_replicas(peak_rps: float, *, processing_time_ms: float, slo_ms: float, rho_max: float = 0.95) -> int:
    """Replicas for a peak rate: ``ceil(peak / min(SLO/s, rho_max/s))`` with s in seconds."""
    s = processing_time_ms / 1000.0
    capacity_rps = min(slo_ms / processing_time_ms, rho_max / s)
    return math.ceil(peak_rps / capacity_rps - 1e-9)


class MArkPolicy(HybridPolicy):
    name = "mark"

    def __init__(
        self,
        *,
        horizon: int = 7,
        quantile: float = 0.6,
        rho_max: float = 0.95,
        forecaster: str = "auto",
        forecaster_options: dict[str, Any] | None = None,
        forecaster_factory: Callable[[], Any] | None = None,
        min_history_min: int = 15,
        refit_every_min: int = 60,
        recent_floor_min: int = 3,
        quota_order: str = "job",
        **hybrid: Any,
    ) -> None:
        super().__init__(quota_order=quota_order, **hybrid)
        if horizon < 1 or not 0 < quantile < 1:
            raise ValueError("mark: need horizon >= 1 and 0 < quantile < 1")
        self.horizon = int(horizon)
        self.quantile = float(quantile)
        self.rho_max = float(rho_max)
        self._forecaster = LoadForecaster(
            name=forecaster,
            options=forecaster_options,
            factory=forecaster_factory,
            min_history_min=min_history_min,
            refit_every_min=refit_every_min,
            recent_floor_min=recent_floor_min,
        )

    def long_step(self, view: ClusterView, state: HybridState) -> tuple[Plan, HybridState]:
        tables, fstate, source = self._forecaster.forecast(
            view, state.forecast, horizon=self.horizon, quantiles=[self.quantile]
        )
        peak_rps = tables[self.quantile].max(axis=1) / 60.0
        desired = np.array(
            [
                mark_replicas(
                    float(peak_rps[i]),
                    processing_time_ms=jv.spec.processing_time_ms,
                    slo_ms=jv.spec.slo.latency_ms,
                    rho_max=self.rho_max,
                )
                for i, jv in enumerate(view.jobs)
            ],
            dtype=np.int64,
        )
        desired = clip_to_quota(view, desired, self.quota_order)
        status = f"mark ({source}; {self.quota_order} order)"
        plan = make_plan(view, desired, kind="solve", forecast_rps=peak_rps, solver_status=status)
        return plan, replace(state, forecast=fstate, quantile=self.quantile)
