"""Small fakes injected into the optimizer service in tests (no monkeypatching)."""

from __future__ import annotations

import threading

from faro.optimizer.metrics.base import JobMetrics, MetricsError


class FakeMetrics:
    """A MetricsSource whose per-Deployment load the test sets; ``down`` makes every answer unavailable."""

    def __init__(self, default_rpm: float = 600.0) -> None:
        self.default_rpm = default_rpm
        self.timeline: dict[tuple[str, str], list[tuple[float, float]]] = {}  # key -> [(since_s, rpm)]
        self.last_now_s = float("-inf")
        self.down = False
        self.calls = 0
        self._lock = threading.Lock()

    def set_load(self, key: tuple[str, str], rpm: float) -> None:
        """From the last observation on, ``key`` gets ``rpm`` requests per minute (history keeps the past)."""
        with self._lock:
            self.timeline.setdefault(key, []).append((self.last_now_s, rpm))

    def _rpm_at(self, key: tuple[str, str], t_s: float) -> float:
        rpm = self.default_rpm
        for since_s, value in self.timeline.get(key, []):
            if t_s > since_s:
                rpm = value
        return rpm

    def observe(self, deployments, *, now_s, history_minutes):
        with self._lock:
            self.calls += 1
            self.last_now_s = now_s
            out = {}
            for ref in deployments:
                if self.down:
                    out[ref.key] = MetricsError("Prometheus unreachable: connection refused", kind="unavailable")
                    continue
                history = tuple(self._rpm_at(ref.key, now_s - 60.0 * (history_minutes - 1 - i))
                                for i in range(history_minutes))
                rpm = history[-1]
                out[ref.key] = JobMetrics(rate_history_rpm=history, rate_rps=rpm / 60,
                                          latency_ms=50.0, observed_at_s=now_s)
            return out


class AcceleratedClock:
    """Wall time sped up ``factor`` times from ``start_s`` (so minute-scale policies run in seconds)."""

    def __init__(self, *, start_s: float = 1_700_000_000.0, factor: float = 60.0) -> None:
        import time

        self._t0 = time.monotonic()
        self._start_s = start_s
        self.factor = factor
        self._monotonic = time.monotonic

    def __call__(self) -> float:
        return self._start_s + (self._monotonic() - self._t0) * self.factor
