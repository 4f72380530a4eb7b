"""Faro's error hierarchy; mapped to HTTP/gRPC codes only at the edges (service, adapter, CLI)."""


class FaroError(Exception):
    """Base of every error Faro raises on purpose."""


class PermanentError(FaroError):
    """Retrying will not help: bad input or configuration."""


class TransientError(FaroError):
    """May succeed later: a peer is down, a series is stale, a watch was dropped."""


class InvalidInputError(PermanentError, ValueError):
    """A value in a problem file, annotation or flag is invalid.

    ``where`` names the object and field (e.g. ``jobs[2].slo.latency_ms`` or
    ``Deployment team-a/resnet annotation faro.dev/slo-latency-ms``).
    """

    def __init__(self, where: str, reason: str) -> None:
        super().__init__(f"{where}: {reason}")
        self.where = where
        self.reason = reason
