"""The Ray Serve direct actuator (``faro optimizer --actuator ray-serve``): sets each deployment's replicas
through Ray's external-scaler API.

The control loop calls ``RayServeActuator.apply(plan)`` after each new plan. For every target it
POSTs ``{"target_num_replicas": N}`` to
``{dashboard}/api/v1/applications/{app}/deployments/{deployment}/scale`` — the contract of Ray
2.60.0's dashboard (``ray/dashboard/modules/serve/serve_head.py``, ``ScaleDeploymentRequest`` in
``ray/serve/schema.py``), which only works for applications deployed with
``external_scaler_enabled: true``. Ray answers 200 (accepted, scaled asynchronously), 400 (bad body),
404 (application or deployment not found), 412 (external scaling disabled, or the deployment is
being deleted), 503 (Serve controller down or an internal error), 401/403 with token
authentication. Every failure is that job's error message; the job is retried on later plans after
an exponential back-off, and never delays or disturbs the other jobs.

Kubernetes-style job keys map to Ray names by ``resolve(namespace, name) -> (app, deployment)``:
by default the direct-mode convention namespace = application, name = deployment; the service
passes a resolver built from the ``faro.dev/ray-app`` / ``faro.dev/ray-deployment`` annotations
(``RayNames``, fed each cycle's ``DeploymentRef``s). A resolver returning None skips the job
(e.g. a job scaled by an HPA instead).
"""

from __future__ import annotations

import json
import logging
import math
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from faro.optimizer.errors import InvalidInputError
from faro.optimizer.http import Transport, urllib_post
from faro.optimizer.metrics.base import DeploymentRef
from faro.optimizer.policy.base import Plan, Target

log = logging.getLogger(__name__)

Resolver = Callable[[str, str], tuple[str, str] | None]


def direct_names(namespace: str, name: str) -> tuple[str, str]:
    """Direct-mode convention: the job's namespace is the Ray Serve application, its name the deployment."""
    return namespace, name


class RayNames:
    """A resolver fed with each cycle's ``DeploymentRef``s: a job goes to Ray when its metrics preset
    is ``ray-serve`` or it names a Ray application/deployment by annotation; its Ray names are
    ``ref.app_label`` / ``ref.deployment_label`` (annotations, else namespace / name). Jobs it has not
    seen resolve by the direct-mode convention until the first ``update``."""

    def __init__(self) -> None:
        self._names: dict[tuple[str, str], tuple[str, str] | None] | None = None
        self._lock = threading.Lock()

    def update(self, refs: Iterable[DeploymentRef]) -> None:
        names = {
            ref.key: (ref.app_label, ref.deployment_label)
            if ref.preset == "ray-serve" or ref.app or ref.deployment
            else None
            for ref in refs
        }
        with self._lock:
            self._names = names

    def __call__(self, namespace: str, name: str) -> tuple[str, str] | None:
        with self._lock:
            if self._names is None:
                return direct_names(namespace, name)
            return self._names.get((namespace, name))


@dataclass
class _JobState:
    failures: int = 0
    retry_at_s: float = 0.0
    last_error: str = ""
    applied_replicas: int | None = None
    applied_at_s: float = -math.inf


class RayServeActuator:
    """``Actuator`` that scales Ray Serve deployments directly.

    ``token``/``token_file``: bearer token for Ray's token authentication (the file is re-read on
    every apply, so a rotated token is picked up). ``backoff_s`` doubles per consecutive failure of
    a job up to ``max_backoff_s``; while a job backs off, ``apply`` reports it without calling Ray.
    ``resync_s``: an unchanged target is re-sent at most this often (Ray resets replicas on
    redeploy, so the plan is re-asserted periodically). ``clock`` is injected for tests.
    """

    name = "ray-serve"

    def __init__(
        self,
        dashboard_url: str,
        *,
        token: str | None = None,
        token_file: str | Path | None = None,
        resolve: Resolver = direct_names,
        timeout_s: float = 5.0,
        backoff_s: float = 5.0,
        max_backoff_s: float = 300.0,
        resync_s: float = 60.0,
        max_workers: int = 4,
        transport: Transport = urllib_post,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        parsed = urllib.parse.urlparse(dashboard_url)
        if parsed.scheme not in ("http", "https") or not parsed.netloc:
            raise InvalidInputError("--ray-dashboard-url", f"must be an http(s) URL, got {dashboard_url!r}")
        if token and token_file:
            raise InvalidInputError("--ray-token-file", "give a token or a token file, not both")
        if token_file is not None and not Path(token_file).is_file():
            raise InvalidInputError("--ray-token-file", f"{token_file} is not a readable file")
        for flag, value in (("timeout_s", timeout_s), ("backoff_s", backoff_s), ("max_backoff_s", max_backoff_s)):
            if not value > 0:
                raise InvalidInputError(f"ray-serve actuator {flag}", f"must be > 0, got {value!r}")
        self.dashboard_url = dashboard_url.rstrip("/")
        self._token = token
        self._token_file = Path(token_file) if token_file is not None else None
        self._resolve = resolve
        self.timeout_s = timeout_s
        self.backoff_s = backoff_s
        self.max_backoff_s = max_backoff_s
        self.resync_s = resync_s
        self.max_workers = max(1, max_workers)
        self._transport = transport
        self._clock = clock
        self._jobs: dict[tuple[str, str], _JobState] = {}

    def update_deployments(self, refs: Iterable[DeploymentRef]) -> None:
        """Feed this cycle's Deployments to a ``RayNames`` resolver (the loop calls this each cycle)."""
        if isinstance(self._resolve, RayNames):
            self._resolve.update(refs)

    def scale_url(self, app: str, deployment: str) -> str:
        quote = urllib.parse.quote
        return (
            f"{self.dashboard_url}/api/v1/applications/{quote(app, safe='')}"
            f"/deployments/{quote(deployment, safe='')}/scale"
        )

    def apply(self, plan: Plan) -> dict[tuple[str, str], str]:
        """Send every target's replicas to Ray; returns ``{(namespace, name): error}`` for the jobs that failed."""
        now_s = self._clock()
        headers = self._headers()
        errors: dict[tuple[str, str], str] = {}
        todo: list[tuple[Target, str, str]] = []
        for target in plan.targets:
            key = (target.namespace, target.name)
            try:
                names = self._resolve(target.namespace, target.name)
            except Exception as exc:  # a resolver bug must not lose the other jobs
                errors[key] = f"cannot map to a Ray Serve deployment: {exc!r}"
                continue
            if names is None:
                continue
            state = self._jobs.setdefault(key, _JobState())
            if state.failures and now_s < state.retry_at_s:
                errors[key] = f"{state.last_error} (backing off; next attempt in {state.retry_at_s - now_s:.0f} s)"
                continue
            if (
                not state.failures
                and state.applied_replicas == target.desired_replicas
                and now_s - state.applied_at_s < self.resync_s
            ):
                continue
            todo.append((target, *names))
        if isinstance(headers, str):  # the token file could not be read: every job fails the same way
            for target, _app, _dep in todo:
                errors[(target.namespace, target.name)] = self._failed((target.namespace, target.name), headers, now_s)
            return errors

        def send(item: tuple[Target, str, str]) -> tuple[tuple[str, str], str | None]:
            target, app, deployment = item
            return (target.namespace, target.name), self._scale(app, deployment, target.desired_replicas, headers)

        if len(todo) <= 1 or self.max_workers == 1:
            outcomes = [send(item) for item in todo]
        else:
            with ThreadPoolExecutor(max_workers=min(self.max_workers, len(todo))) as pool:
                outcomes = list(pool.map(send, todo))
        desired = {(t.namespace, t.name): t.desired_replicas for t, _a, _d in todo}
        for key, error in outcomes:
            if error is None:
                self._jobs[key] = _JobState(applied_replicas=desired[key], applied_at_s=now_s)
            else:
                errors[key] = self._failed(key, error, now_s)
        return errors

    def _failed(self, key: tuple[str, str], error: str, now_s: float) -> str:
        state = self._jobs.setdefault(key, _JobState())
        state.failures += 1
        delay_s = min(self.max_backoff_s, self.backoff_s * 2 ** (state.failures - 1))
        state.retry_at_s = now_s + delay_s
        state.last_error = error
        state.applied_replicas = None
        log.warning("ray-serve: %s/%s: %s (retry in %.0f s)", key[0], key[1], error, delay_s)
        return error

    def _headers(self) -> dict[str, str] | str:
        headers = {"Content-Type": "application/json", "Accept": "application/json"}
        token = self._token
        if self._token_file is not None:
            try:
                token = self._token_file.read_text().strip()
            except OSError as exc:
                return f"cannot read the Ray token file {self._token_file}: {exc}"
        if token:
            headers["Authorization"] = f"Bearer {token}"
        return headers

    def _scale(self, app: str, deployment: str, replicas: int, headers: Mapping[str, str]) -> str | None:
        """POST one scale request; None when Ray accepted it, else the error message."""
        if replicas < 0:
            return f"refusing to ask Ray for {replicas} replicas"
        url = self.scale_url(app, deployment)
        body = json.dumps({"target_num_replicas": int(replicas)}).encode()
        where = f"Ray Serve application {app!r} deployment {deployment!r}"
        try:
            status, payload = self._transport(url, body, headers, self.timeout_s)
        except (OSError, TimeoutError) as exc:
            return f"{where}: Ray dashboard {self.dashboard_url} unreachable: {exc}"
        if 200 <= status < 300:
            return None
        detail = _error_text(payload)
        if status == 404:
            return f"{where}: not found (HTTP 404: {detail}); check faro.dev/ray-app / faro.dev/ray-deployment"
        if status == 412:
            return (
                f"{where}: Ray refused to scale (HTTP 412: {detail}); deploy the application with "
                "external_scaler_enabled: true"
            )
        if status == 503:
            return f"{where}: Serve controller unavailable (HTTP 503: {detail})"
        if status in (401, 403):
            return f"{where}: not authorised by the Ray dashboard (HTTP {status}: {detail}); check --ray-token-file"
        return f"{where}: HTTP {status}: {detail}"


def _error_text(payload: bytes) -> str:
    try:
        answer = json.loads(payload)
    except ValueError:
        return payload[:200].decode(errors="replace").strip() or "no body"
    if isinstance(answer, dict) and "error" in answer:
        return str(answer["error"])[:300]
    return str(answer)[:200]
