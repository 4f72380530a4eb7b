"""The one registry of scaling policies by name. Called by the simulator (``faro simulate``) and the
live controller: ``make_policy(name, **options)`` builds a policy whose options are validated in its
constructor; ``POLICY_NAMES`` lists every name in the order reports show them. ``LLM_POLICY_NAMES``
are the policies for LLM jobs (``JobSpec.llm``), run by ``faro simulate --workload llm``."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from faro.optimizer.errors import InvalidInputError
from faro.optimizer.policy.aiad import AIADPolicy
from faro.optimizer.policy.fairshare import FairSharePolicy
from faro.optimizer.policy.faro import FaroPolicy, OraclePolicy
from faro.optimizer.policy.hpa_cpu import HPACPUPolicy
from faro.optimizer.policy.llm_fairshare import LLMFairSharePolicy
from faro.optimizer.policy.llm_keda import KEDAWaitingPolicy
from faro.optimizer.policy.llm_kpa import KnativeKPAPolicy
from faro.optimizer.policy.llm_wva import WVAPolicy
from faro.optimizer.policy.mark import MArkPolicy
from faro.optimizer.policy.names import DEFAULT_POLICY, FARO_POLICY_NAMES, POLICY_NAMES
from faro.optimizer.policy.oneshot import OneshotPolicy

__all__ = ["DEFAULT_POLICY", "FARO_POLICY_NAMES", "HPA_TOLERANCE", "POLICY_NAMES", "make_policy", "planning_options"]

_FACTORIES: dict[str, Callable[..., Any]] = {
    "faro-sum": lambda **o: FaroPolicy("sum", **o),
    "faro-fair": lambda **o: FaroPolicy("fair", **o),
    "faro-fairsum": lambda **o: FaroPolicy("fairsum", **o),
    "faro-penaltysum": lambda **o: FaroPolicy("penaltysum", **o),
    "faro-penaltyfairsum": lambda **o: FaroPolicy("penaltyfairsum", **o),
    "aiad": AIADPolicy,
    "oneshot": OneshotPolicy,
    "mark": MArkPolicy,
    "fairshare": FairSharePolicy,
    "hpa-cpu": HPACPUPolicy,
    "oracle": OraclePolicy,
}

# Baselines for LLM jobs (GPU pods, TTFT/ITL SLOs); kept apart so CPU runs do not try them.
_LLM_FACTORIES: dict[str, Callable[..., Any]] = {
    "wva": WVAPolicy,
    "keda-waiting": KEDAWaitingPolicy,
    "kpa": KnativeKPAPolicy,
    "llm-fairshare": LLMFairSharePolicy,
}

LLM_POLICY_NAMES: tuple[str, ...] = (*FARO_POLICY_NAMES, "oracle", *_LLM_FACTORIES)
"""Policies for LLM jobs: Faro's (they plan ``JobSpec.llm`` jobs with the continuous-batching model), the
Oracle, and the LLM baselines."""

assert tuple(_FACTORIES) == POLICY_NAMES, "names.py and the registry list the same policies, in order"

HPA_TOLERANCE = 0.1
"""Kubernetes' default HPA tolerance: plans that reach replicas through standard HPAs account for it."""


def planning_options(
    name: str,
    *,
    actuation: str = "direct",
    interval_s: float | None = None,
    horizon: int | None = None,
    quantile: float | None = None,
) -> dict[str, Any]:
    """The options ``faro simulate`` and ``faro optimizer`` both build policy ``name`` with — the one
    place where what they pass differs from the policy's own defaults (tested equal):

    * ``actuation="hpa"``: a Faro variant accounts for the HPA's ±10% dead-band (``HPA_TOLERANCE``);
    * ``interval_s`` / ``horizon``: the long-step interval and forecast steps, when the user sets them;
    * ``quantile``: the highest forecast quantile the policy raises to (``max_quantile``); its base
      quantile is lowered to it if above.

    ``None`` keeps the policy's default. Options that ``name`` does not take are left out."""
    options: dict[str, Any] = {}
    planner = name.startswith("faro-") or name == "oracle"
    if planner and actuation == "hpa":
        options["hpa_tolerance"] = HPA_TOLERANCE
    if planner or name == "mark":
        if interval_s is not None:
            options["interval_s"] = float(interval_s)
        if horizon is not None:
            options["horizon"] = int(horizon)
    if quantile is not None and name.startswith("faro-"):
        base = make_policy(name).quantile
        options.update(quantile=min(base, float(quantile)), max_quantile=float(quantile))
    return options


def make_policy(name: str, **options: Any) -> Any:
    """Build the policy called ``name`` (see ``POLICY_NAMES``) with keyword ``options``.

    Unknown names or options raise ``InvalidInputError`` naming the policy and the problem.
    """
    factory = _FACTORIES.get(name) or _LLM_FACTORIES.get(name)
    if factory is None:
        known = ", ".join((*POLICY_NAMES, *LLM_POLICY_NAMES))
        raise InvalidInputError("policy", f"unknown policy {name!r}; known: {known}")
    try:
        return factory(**options)
    except TypeError as exc:
        raise InvalidInputError(f"policy {name}", f"bad option: {exc}") from exc
    except ValueError as exc:
        raise InvalidInputError(f"policy {name}", str(exc)) from exc
