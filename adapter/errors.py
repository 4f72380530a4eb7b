"""Domain errors of the adapter; ``adapter/server.py`` maps them to ``metav1.Status`` codes and
``adapter/keda.py`` to gRPC status codes — nowhere else knows about HTTP or gRPC codes.

| error                     | HTTP (Status reason)        | gRPC              |
| ------------------------- | --------------------------- | ----------------- |
| MetricNotFoundError       | 404 NotFound                | NOT_FOUND         |
| DeploymentNotFoundError   | 404 NotFound                | NOT_FOUND         |
| SelectorError / InvalidInputError | 400 BadRequest      | INVALID_ARGUMENT  |
| NoFreshPlanError          | 503 ServiceUnavailable      | UNAVAILABLE       |
| UnauthenticatedError      | 401 Unauthorized            | —                 |
| ForbiddenError            | 403 Forbidden               | PERMISSION_DENIED |
"""

from __future__ import annotations

from faro.optimizer.errors import PermanentError, TransientError


class NotFoundError(PermanentError):
    """The thing asked for does not exist (``kind``/``name`` name it for the Status details)."""

    kind = ""
    name = ""


class MetricNotFoundError(NotFoundError):
    kind = "externalmetrics"

    def __init__(self, metric_name: str) -> None:
        super().__init__(f"external metric {metric_name!r} not found; this adapter serves faro_desired_replicas")
        self.name = metric_name


class DeploymentNotFoundError(NotFoundError):
    kind = "deployments"

    def __init__(self, namespace: str, deployment: str, generation: int) -> None:
        super().__init__(f"Deployment {namespace}/{deployment} is not in plan generation {generation}")
        self.name = deployment


class NoFreshPlanError(TransientError):
    """No plan, or the plan is past its valid_until / TTL: nothing may be served (the HPA holds)."""


class UnauthenticatedError(PermanentError):
    """The request carries no identity this server can verify."""


class ForbiddenError(PermanentError):
    """The authenticated user may not do this (SubjectAccessReview said no)."""
