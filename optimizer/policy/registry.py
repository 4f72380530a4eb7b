"""The one registry of scaling policies by name. Called by the simulator (``faro simulate``) and the
live controller: ``make_policy(name, **options)`` builds a policy whose options are validated in its
constructor; ``POLICY_NAMES`` lists every name in the order reports show them."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from faro.optimizer.errors import InvalidInputError
from faro.optimizer.policy.aiad import AIADPolicy
from faro.optimizer.policy.fairshare import FairSharePolicy
from faro.optimizer.policy.faro import FaroPolicy, OraclePolicy
from faro.optimizer.policy.hpa_cpu import HPACPUPolicy
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

POLICY_NAMES: tuple[str, ...] = tuple(_FACTORIES)
FARO_POLICY_NAMES: tuple[str, ...] = tuple(n for n in POLICY_NAMES if n.startswith("faro-"))


def make_policy(name: str, **options: Any) -> Any:
    """Build the policy called ``name`` (see ``POLICY_NAMES``) with keyword ``options``.

    Unknown names or options raise ``InvalidInputError`` naming the policy and the problem.
    """
    factory = _FACTORIES.get(name)
    if factory is None:
        raise InvalidInputError("policy", f"unknown policy {name!r}; known: {', '.join(POLICY_NAMES)}")
    try:
        return factory(**options)
    except TypeError as exc:
        raise InvalidInputError(f"policy {name}", f"bad option: {exc}") from exc
    except ValueError as exc:
        raise InvalidInputError(f"policy {name}", str(exc)) from exc
