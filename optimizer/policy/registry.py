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
from faro.optimizer.policy.oneshot import OneshotPolicy

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

POLICY_NAMES: tuple[str, ...] = tuple(_FACTORIES)
FARO_POLICY_NAMES: tuple[str, ...] = tuple(n for n in POLICY_NAMES if n.startswith("faro-"))
LLM_POLICY_NAMES: tuple[str, ...] = (*FARO_POLICY_NAMES, "oracle", *_LLM_FACTORIES)
"""Policies for LLM jobs: Faro's (they plan ``JobSpec.llm`` jobs with the continuous-batching model), the
Oracle, and the LLM baselines."""


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
