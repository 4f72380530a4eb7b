"""Leader election on a ``coordination.k8s.io/v1`` Lease, so several optimizer replicas run with one active.

Created by ``app.py``; ``is_leader()`` gates the control loop and the plan API. The decision logic
and the Lease I/O are ``kubernetes.leaderelection`` (``LeaderElection.try_acquire_or_renew`` and
``LeaseLock``, with our ``ApiClient`` injected). Its ``run()`` loops forever with ``time.sleep``
and exits the process on a bad config, which does not fit a service that must stop cleanly, so the
acquire/renew loops are re-done here on a stop ``Event``, and a stopping leader *releases* the
Lease (empty holder, as client-go's ReleaseOnCancel does) so a follower takes over within one
retry period instead of waiting for the lease to expire. A leader that dies without releasing is
replaced after ``lease_duration_s`` (+ one retry period), as with client-go.
"""

from __future__ import annotations

import datetime
import logging
import threading
import time
from collections.abc import Callable

from faro.optimizer.errors import InvalidInputError
from kubernetes import client
from kubernetes.leaderelection.electionconfig import Config
from kubernetes.leaderelection.leaderelection import LeaderElection
from kubernetes.leaderelection.leaderelectionrecord import LeaderElectionRecord
from kubernetes.leaderelection.resourcelock.leaselock import LeaseLock

log = logging.getLogger(__name__)


class LeaseElector:
    def __init__(self, api_client: client.ApiClient, *, name: str, namespace: str, identity: str,
                 lease_duration_s: int = 15, renew_deadline_s: int = 10, retry_period_s: int = 2,
                 on_change: Callable[[bool], None] = lambda leading: None) -> None:
        # kubernetes.leaderelection's Config calls sys.exit on these; say it as an input error instead.
        ok = retry_period_s >= 1 and renew_deadline_s > 1.2 * retry_period_s and lease_duration_s > renew_deadline_s
        if not ok:
            raise InvalidInputError("leader election", "needs lease duration > renew deadline > 1.2 × retry period "
                                    f">= 1.2 s, got {lease_duration_s}/{renew_deadline_s}/{retry_period_s}")
        self.lock = LeaseLock(name, namespace, identity)
        self.lock.api_instance = client.CoordinationV1Api(api_client)
        self.identity = identity
        self.lease_duration_s = lease_duration_s
        self._config = Config(self.lock, lease_duration_s, renew_deadline_s, retry_period_s,
                              onstarted_leading=lambda: None, onstopped_leading=lambda: None)
        self._election = LeaderElection(self._config)
        self._on_change = on_change
        self._leading = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def is_leader(self) -> bool:
        return self._leading.is_set()

    def leader_name(self) -> str:
        record = self._election.observed_record
        return (record.holder_identity or "") if record is not None else ""

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="faro-leader-election", daemon=True)
        self._thread.start()

    def stop(self, *, release: bool = True) -> None:
        """Stop campaigning; a leader releases the Lease unless ``release`` is False (a crash)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=self._config.retry_period + 5)
        if release and self._leading.is_set():
            self._release()
        self._set(False)

    def _set(self, leading: bool) -> None:
        if leading != self._leading.is_set():
            (self._leading.set if leading else self._leading.clear)()
            log.info("%s %s the Lease %s/%s", self.identity, "acquired" if leading else "lost",
                     self.lock.namespace, self.lock.name)
            self._on_change(leading)

    def _try(self) -> bool:
        try:
            return bool(self._election.try_acquire_or_renew())
        except Exception as exc:  # API down: not leading this round
            log.warning("leader election: %s", exc)
            return False

    def _run(self) -> None:
        retry_s = self._config.retry_period
        while not self._stop.is_set():
            if not self._try():  # follower: try every retry period
                self._stop.wait(retry_s)
                continue
            self._set(True)
            last_renew = time.monotonic()
            while not self._stop.wait(retry_s):  # leader: renew; give up after the renew deadline
                if self._try():
                    last_renew = time.monotonic()
                elif time.monotonic() - last_renew > self._config.renew_deadline:
                    break
            if self._stop.is_set():
                return  # keep "leading" until stop() has released the Lease
            self._set(False)

    def _release(self) -> None:
        now = str(datetime.datetime.now())
        try:
            # LeaseLock.update does not keep the replaced object, so its resourceVersion is stale after
            # a renew: read the Lease again, and only give it up if it is still ours.
            found, record = self.lock.get(self.lock.name, self.lock.namespace)
            if not found or record.holder_identity != self.identity:
                return
            self.lock.update(self.lock.name, self.lock.namespace, LeaderElectionRecord("", "1", now, now))
        except Exception as exc:
            log.warning("could not release the Lease: %s", exc)
