"""Where plans come from: the optimizer's ``WatchPlans`` stream or a static plan file.

Started by ``adapter/app.py`` as asyncio tasks that put every plan into a ``PlanStore``. ``PlanWatcher`` holds one
subscription per adapter replica (TLS and credentials from ``faro.optimizer.service.plan_client``) and reconnects
with capped exponential back-off (with jitter) when the stream ends or fails; ``PlanFileSource`` re-reads a
protobuf-JSON ``Plan`` when the file's mtime/size change. Neither ever raises out of its loop: failures are logged
and counted (``AdapterMetrics``).
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import random
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

import grpc
from faro.adapter.metrics import AdapterMetrics
from faro.adapter.provider import PlanStore
from faro.optimizer.errors import InvalidInputError
from faro.optimizer.service.plan_client import PlanClientTLS
from faro.v1 import plan_pb2, plan_pb2_grpc
from google.protobuf import json_format

log = logging.getLogger("faro.adapter.sources")


@dataclass(frozen=True)
class Backoff:
    """Reconnect delays: ``initial_s · factor^n`` capped at ``max_s``, each scaled by a random [1−jitter, 1]."""

    initial_s: float = 0.5
    factor: float = 2.0
    max_s: float = 30.0
    jitter: float = 0.2

    def delay_s(self, attempt: int, rand: Callable[[], float] = random.random) -> float:
        base = min(self.max_s, self.initial_s * self.factor ** min(attempt, 64))
        return base * (1.0 - self.jitter * rand())

    def capped(self, max_s: float) -> Backoff:
        """The same back-off with its cap lowered to ``max_s`` (never raised)."""
        return replace(self, max_s=min(self.max_s, max_s))


class PlanWatcher:
    """One ``WatchPlans`` subscription to ``address`` feeding ``store``; ``run()`` loops until cancelled."""

    def __init__(
        self,
        address: str,
        *,
        store: PlanStore,
        metrics: AdapterMetrics,
        tls: PlanClientTLS,
        backoff: Backoff = Backoff(),
    ) -> None:
        self._address = address
        self._store = store
        self._metrics = metrics
        self.backoff = backoff
        self._tls = tls
        self.connected = False

    async def run(self) -> None:
        attempt = 0
        while True:
            try:
                channel = self._tls.aio_channel(self._address)  # certificate files re-read on every reconnect
            except InvalidInputError as exc:  # e.g. a rotated file briefly unreadable: retry with back-off
                log.warning("cannot open the plan API channel: %s", exc)
                channel = None
            try:
                if channel is None:
                    raise ConnectionError("no channel")
                stub = plan_pb2_grpc.PlanServiceStub(channel)
                # after_generation=0: the current plan at once, also after an optimizer restart reset generations.
                call = stub.WatchPlans(plan_pb2.WatchPlansRequest(after_generation=0))
                async for plan in call:
                    if not self.connected:
                        log.info("WatchPlans stream to %s open", self._address)
                    self.connected = True
                    attempt = 0
                    self._store.put(plan)
                    self._metrics.plan_received(plan)
                log.warning("WatchPlans stream to %s ended", self._address)
            except asyncio.CancelledError:
                raise
            except grpc.aio.AioRpcError as exc:
                log.warning("WatchPlans to %s failed: %s %s", self._address, exc.code().name, exc.details())
            except ConnectionError:
                pass
            except Exception:  # one bad message or a library bug must not end the subscription
                log.exception("WatchPlans to %s failed unexpectedly", self._address)
            finally:
                self.connected = False
                if channel is not None:
                    await channel.close(grace=None)
            self._metrics.watch_reconnects.inc()
            delay_s = self.backoff.delay_s(attempt)
            attempt += 1
            log.info("reconnecting to %s in %.1f s", self._address, delay_s)
            await asyncio.sleep(delay_s)


def read_plan_file(path: Path) -> plan_pb2.Plan:
    """Parse a protobuf-JSON ``faro.v1.Plan``; InvalidInputError names the file and what is wrong."""
    try:
        text = path.read_text()
    except OSError as exc:
        raise InvalidInputError(f"--plan-file {path}", f"cannot read: {exc.strerror or exc}") from exc
    try:
        data = json.loads(text)
        if not isinstance(data, dict):
            raise json_format.ParseError(f"expected a JSON object, got {type(data).__name__}")
        return json_format.ParseDict(data, plan_pb2.Plan())
    except (ValueError, json_format.ParseError) as exc:
        raise InvalidInputError(f"--plan-file {path}", f"not a faro.v1.Plan in protobuf JSON: {exc}") from exc


class PlanFileSource:
    """Serves the plan in ``path``; ``run()`` polls the file every ``poll_interval_s`` and re-reads on change.

    A file that becomes unreadable or invalid keeps the previous plan (logged and counted), so a half-written
    edit never takes the adapter down; staleness rules still apply to the previous plan.
    """

    def __init__(self, path: Path, *, store: PlanStore, metrics: AdapterMetrics, poll_interval_s: float = 1.0) -> None:
        self._path = path
        self._store = store
        self._metrics = metrics
        self._poll_interval_s = poll_interval_s
        self._stamp: tuple[int, int, int] | None = None

    def _file_stamp(self) -> tuple[int, int, int] | None:
        try:
            st = os.stat(self._path)
        except OSError:
            return None
        return (st.st_mtime_ns, st.st_size, st.st_ino)

    def load(self) -> None:
        """Read the file now (raises InvalidInputError: used at start-up to fail fast)."""
        stamp = self._file_stamp()
        plan = read_plan_file(self._path)
        self._stamp = stamp
        self._store.put(plan)
        self._metrics.plan_received(plan)

    async def run(self) -> None:
        while True:
            await asyncio.sleep(self._poll_interval_s)
            stamp = self._file_stamp()
            if stamp is None or stamp == self._stamp:
                continue
            try:
                self.load()
                log.info("re-read plan file %s", self._path)
            except InvalidInputError as exc:
                self._stamp = stamp  # do not log the same broken version every poll
                self._metrics.plan_file_errors.inc()
                log.error("%s; keeping the previous plan", exc)
