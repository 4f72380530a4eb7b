"""MArk-style predictive baseline: provision for the forecast peak, plus the reactive +1.

Long-horizon step (same grid as Faro, 300 s): forecast each job's next ``horizon`` minutes at
``quantile`` and size it for the peak: ``ceil(peak_rps / capacity_rps)`` replicas, where a
replica's capacity is ``SLO/s`` requests per second, the Faro artifact's ``pred_darts`` rule
(``ceil(rate × s / SLO)``: 4 req/s at s = 180 ms and SLO = 720 ms, i.e. 72% busy), capped at
``rho_max/s``. No cluster-wide optimisation: scale-ups are clipped to the free quota fairly. In
between, the reactive +1 (``hybrid.py``). Registered as ``mark``.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import replace
from typing import Any

import numpy as np
from faro.optimizer.policy.base import ClusterView, Plan
from faro.optimizer.policy.common import fit_to_quota, make_plan
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
        **hybrid: Any,
    ) -> None:
        super().__init__(**hybrid)
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
        desired = fit_to_quota(view, desired)
        plan = make_plan(view, desired, kind="solve", forecast_rps=peak_rps, solver_status=f"mark ({source})")
        return plan, replace(state, forecast=fstate, quantile=self.quantile)
