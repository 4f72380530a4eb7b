"""Latency model, utilities and objectives (pure numpy/scipy)."""

from faro.optimizer.model.latency import erlang_c, mmc_wait_percentile_s, tail_latency_ms
from faro.optimizer.model.objective import objective_value
from faro.optimizer.model.problem import (
    OBJECTIVES,
    SLO,
    Constraints,
    Job,
    ModelConfig,
    Problem,
    Quota,
)
from faro.optimizer.model.utility import relaxed_utility, step_utility, utility_curves

__all__ = [
    "OBJECTIVES",
    "SLO",
    "Constraints",
    "Job",
    "ModelConfig",
    "Problem",
    "Quota",
    "erlang_c",
    "mmc_wait_percentile_s",
    "objective_value",
    "relaxed_utility",
    "step_utility",
    "tail_latency_ms",
    "utility_curves",
]
