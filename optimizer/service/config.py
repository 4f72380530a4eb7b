"""Settings of the live optimizer (``faro optimizer``), with the unit of every field in its name.

Built by ``faro.optimizer.commands.optimizer`` from flags (each also read from ``FARO_<FLAG>``) and
validated here once; the service trusts it afterwards.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field

from faro.optimizer.errors import InvalidInputError
from faro.optimizer.policy.names import DEFAULT_POLICY, FARO_POLICY_NAMES

POLICIES = FARO_POLICY_NAMES


@dataclass(frozen=True)
class ServiceConfig:
    policy: str = DEFAULT_POLICY
    interval_s: float = 300.0  # long-horizon solve interval
    reactive_interval_s: float = 10.0  # control-loop tick: the fast reactive step cadence
    horizon: int = 7  # forecast steps (minutes)
    quantile: float = 0.9
    cluster_cap: Mapping[str, float] = field(default_factory=dict)  # canonical units
    plan_ttl_s: float = 900.0
    history_minutes: int = 60  # per-minute rate history asked from the metrics source every cycle
    # Asked once per Deployment that has no history yet (start, leadership gain, newly annotated):
    # forecasts fitted on a day of past load are far better than on the minutes seen since start.
    history_backfill_minutes: int = 1440
    # Per-Deployment history kept; None = max(1440, the backfill, the window + 60).
    max_history_minutes: int | None = None
    metrics_preset: str = "generic"
    default_max_replicas: int = 100  # when neither an annotation nor an HPA gives one
    namespace: str | None = None
    identity: str = "faro-optimizer"

    def __post_init__(self) -> None:
        for name in ("interval_s", "reactive_interval_s", "plan_ttl_s"):
            value = getattr(self, name)
            if not (value > 0 and math.isfinite(value)):
                raise InvalidInputError(f"--{name.replace('_', '-')}", f"must be a positive number, got {value!r}")
        if self.horizon < 1:
            raise InvalidInputError("--horizon", f"must be >= 1, got {self.horizon}")
        if not 0 < self.quantile < 1:
            raise InvalidInputError("--quantile", f"must be in (0, 1), got {self.quantile}")
        from faro.optimizer.metrics.presets import PRESETS

        if self.metrics_preset not in PRESETS:
            raise InvalidInputError("--metrics-preset",
                                    f"must be one of {sorted(PRESETS)}, got {self.metrics_preset!r}")
        if self.history_minutes < 1:
            raise InvalidInputError("--history-minutes", f"must be >= 1, got {self.history_minutes}")
        if self.history_backfill_minutes < self.history_minutes:
            raise InvalidInputError("--history-backfill-minutes", f"must be >= --history-minutes "
                                    f"({self.history_minutes}), got {self.history_backfill_minutes}")
        if self.max_history_minutes is None:  # frozen: set the resolved default once, here
            default = max(1440, self.history_backfill_minutes, self.history_minutes + 60)
            object.__setattr__(self, "max_history_minutes", default)
        if self.max_history_minutes < self.history_backfill_minutes:
            raise InvalidInputError("--max-history-minutes", f"must be >= --history-backfill-minutes "
                                    f"({self.history_backfill_minutes}), got {self.max_history_minutes}")
        # The loop trims below the cap so the history visibly shrinks: policies count the minutes a
        # trimmed history gained by time only when it got shorter.
        if self.max_history_minutes <= self.history_minutes:
            raise InvalidInputError("--max-history-minutes", f"must be > --history-minutes "
                                    f"({self.history_minutes}), got {self.max_history_minutes}")

    @property
    def backfills(self) -> bool:
        """Whether a Deployment's first observation asks for more than the per-cycle window."""
        return self.history_backfill_minutes > self.history_minutes

    @property
    def objective(self) -> str:
        return self.policy.removeprefix("faro-") if self.policy.startswith("faro-") else ""


def parse_cluster_cap(text: str) -> dict[str, float]:
    """``cpu=320,memory=1Ti,nvidia.com/gpu=8`` → canonical floats (cores, bytes, count)."""
    from kubernetes.utils import parse_quantity

    cap: dict[str, float] = {}
    for item in filter(None, (p.strip() for p in (text or "").split(","))):
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise InvalidInputError("--cluster-cap", f"{item!r} is not RESOURCE=QUANTITY")
        try:
            cap[key.strip()] = float(parse_quantity(value.strip()))
        except ValueError as exc:
            raise InvalidInputError("--cluster-cap", f"{value!r} is not a Kubernetes quantity") from exc
    return cap
