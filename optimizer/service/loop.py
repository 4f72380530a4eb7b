"""The control loop: cluster state + metrics → ``ClusterView`` → policy → versioned plan → publish.

Created by ``app.py`` (or a test) with everything injected: the policy (the same objects the
simulator uses), a snapshot function over the informers, the metrics source, the plan store the
gRPC API reads, actuators, an Event recorder, telemetry and the clock. ``tick()`` is one cycle;
``run()`` ticks every ``reactive_interval_s`` while this replica leads (the policy itself decides
when a long-horizon solve is due from ``view.now_s``).

Nothing in a cycle takes the loop down: a metrics outage keeps the last good observations (marked
stale), a Deployment with bad annotations is held and reported, a policy error publishes a hold
plan, an actuator failure is counted.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from faro.optimizer.kube.events import EventRecorder
from faro.optimizer.kube.state import DeploymentInfo, KubeSnapshot
from faro.optimizer.policy.base import Plan, Target
from faro.optimizer.service.actuator import Actuator, DeploymentAware
from faro.optimizer.service.config import ServiceConfig
from faro.optimizer.service.explain import explain_targets
from faro.optimizer.service.plans import PlanStore, PublishedPlan
from faro.optimizer.service.telemetry import Telemetry
from faro.optimizer.service.view import Cycle, Observed, _demand, build_cycle, is_metrics, parse_all, refs_for

log = logging.getLogger(__name__)

INVALID_REASON = "FaroInvalidSLO"
HPA_REASON = "FaroHPAMissing"
UNSYNCED_RETRY_S = 1.0  # while the caches fill at start-up, look again this often, not one reactive interval later


def hpa_hint(info: DeploymentInfo) -> str:
    return (f"No HorizontalPodAutoscaler scales Deployment {info.namespace}/{info.name} on Faro's plan: create an "
            f"autoscaling/v2 HPA with scaleTargetRef Deployment/{info.name} and metric type External, metric.name "
            f"faro_desired_replicas, selector matchLabels deployment={info.name}, target type AverageValue "
            f"averageValue \"1\" (see docs/annotations.md)")


def _usable(value: Any) -> bool:
    """An observation the loop can plan with: metrics carrying at least one minute of history."""
    return is_metrics(value) and len(getattr(value, "rate_history_rpm", ())) > 0


_STEP_FIELDS = ("step_base_ms", "decode_ms_per_seq", "prefill_ms_per_token", "kv_cache_tokens", "ttft_overhead_ms")


def _llm_fields(spec: Any, metrics: Any) -> dict[str, Any]:
    """The plan line's engine-profile fields of an LLM job: the profile it was planned with, where it
    came from, and the calibration's fit error."""
    llm = getattr(spec, "llm", None)
    if llm is None:
        return {}
    profile = llm.profile
    calibrated = getattr(metrics, "llm_profile", None)
    fit = getattr(metrics, "llm_fit", None)
    if calibrated is None:
        source = "declared"
    elif all(getattr(profile, f) == getattr(calibrated, f) for f in _STEP_FIELDS):
        source = "calibrated"
    else:
        source = "calibrated+pinned"
    return {"llm_step_base_ms": float(profile.step_base_ms), "llm_decode_ms_per_seq": float(profile.decode_ms_per_seq),
            "llm_prefill_ms_per_token": float(profile.prefill_ms_per_token),
            "llm_kv_cache_tokens": int(profile.kv_cache_tokens), "llm_profile_source": source,
            "llm_ttft_overhead_ms": float(profile.ttft_overhead_ms),
            "llm_profile_fit_error": float(fit.error) if calibrated is not None and fit is not None else 0.0}


def _reason(value: Any) -> str:
    return str(getattr(value, "message", value))


class ControlLoop:
    def __init__(self, *, config: ServiceConfig, policy: Any, snapshot: Callable[[], KubeSnapshot],
                 metrics_source: Any, store: PlanStore, telemetry: Telemetry, clock: Callable[[], float],
                 events: EventRecorder | None = None, actuators: Sequence[Actuator] = ()) -> None:
        self.config = config
        self.policy = policy
        self._snapshot = snapshot
        self._metrics = metrics_source
        self.store = store
        self.telemetry = telemetry
        self._clock = clock
        self._events = events
        self._actuators = tuple(actuators)
        self._state = policy.initial_state()
        self.last_good: dict[tuple[str, str], Observed] = {}
        self.history: dict[tuple[str, str], tuple[int, list[float]]] = {}  # key -> (first minute index, rpm)
        self.backfilled: set[tuple[str, str]] = set()  # Deployments whose long past window has been merged
        self.max_history_minutes = int(config.max_history_minutes or config.history_backfill_minutes)
        self.last_cycle: Cycle | None = None

    def reset(self) -> None:
        """Start from a fresh policy state and history (on gaining leadership: another replica may have
        planned since, and the minutes this one did not observe are backfilled from the source again)."""
        self._state = self.policy.initial_state()
        self.history.clear()
        self.backfilled.clear()

    # ------------------------------------------------------------------------------------------ one cycle
    def tick(self) -> PublishedPlan | None:
        """One control cycle; returns the published plan (None when the caches are not synced yet)."""
        started = time.perf_counter()
        now_s = self._clock()
        snapshot = self._snapshot()
        if not snapshot.synced:
            log.info("cluster caches not synced yet; no plan this tick")
            return None
        parsed = parse_all(snapshot, default_preset=self.config.metrics_preset)
        self._report_problems(snapshot, parsed)
        errors = self._observe(snapshot, parsed, now_s)
        previous = self.store.current()
        asked = {(t.namespace, t.name): t.desired_replicas for t in previous.targets if not t.held_reason} \
            if previous is not None and previous.leader == self.config.identity else {}
        cycle = build_cycle(snapshot, self.last_good, now_s=now_s, parsed=parsed, errors=errors, asked=asked,
                            cluster_cap=self.config.cluster_cap, default_max_replicas=self.config.default_max_replicas,
                            stale_after_s=1.5 * self.config.reactive_interval_s)
        self.last_cycle = cycle
        for info in cycle.missing_hpa:
            self._event(info, "Normal", HPA_REASON, hpa_hint(info), once=True)
        decide_started = time.perf_counter()
        try:
            decision = self.policy.decide(cycle.view, self._state)
            self._state = decision.state
            plan = decision.plan
        except Exception as exc:  # a policy bug must not stop the loop: hold everything this tick
            log.exception("policy %s failed; holding every Deployment this tick", self.config.policy)
            self.telemetry.cycle_errors.inc()
            plan = Plan(targets=tuple(Target(j.spec.namespace, j.spec.name, j.current_replicas, j.current_replicas,
                                             held_reason=f"policy error: {exc}") for j in cycle.view.jobs),
                        kind="hold", solver_status="error")
        decide_s = time.perf_counter() - decide_started
        published = self._publish(cycle, plan, now_s)
        self.telemetry.solve_seconds.labels(plan.kind or "hold").observe(decide_s)
        self._actuate(published)
        self.telemetry.cycle_seconds.observe(time.perf_counter() - started)
        return published

    def _event(self, info: DeploymentInfo, kind: str, reason: str, message: str, *, once: bool = False) -> None:
        if self._events is not None:
            self._events.record(namespace=info.namespace, name=info.name, uid=info.uid, event_type=kind,
                                reason=reason, message=message, once=once)

    def _report_problems(self, snapshot: KubeSnapshot, parsed: Mapping[tuple[str, str], Any]) -> None:
        for info in snapshot.deployments:
            _, problems = parsed[info.key]
            for problem in problems:
                self.telemetry.invalid.labels(info.namespace, info.name, problem.annotation).inc()
            if problems:
                message = "Faro holds this Deployment at its current replicas: " + "; ".join(map(str, problems))
                self._event(info, "Warning", INVALID_REASON, message)

    def _observe(self, snapshot: KubeSnapshot, parsed: Mapping[tuple[str, str], Any],
                 now_s: float) -> dict[tuple[str, str], str]:
        refs = refs_for(snapshot, parsed)
        for actuator in self._actuators:
            if isinstance(actuator, DeploymentAware):
                actuator.update_deployments(refs)
        errors: dict[tuple[str, str], str] = {}
        results: dict[tuple[str, str], Any] = {}
        # Deployments with no history yet get the long backfill window, in one call for all of them;
        # those it fails for join everyone else's short window and are backfilled on a later cycle.
        new = [ref for ref in refs if ref.key not in self.backfilled] if self.config.backfills else []
        failed: list[Any] = []
        if new:
            results = self._ask(new, now_s, self.config.history_backfill_minutes, what="history backfill")
            failed = [ref for ref in new if not _usable(results.get(ref.key))]
            self.backfilled.update(ref.key for ref in new if _usable(results.get(ref.key)))
            self.telemetry.history_backfills.labels("ok").inc(len(new) - len(failed))
            self.telemetry.history_backfills.labels("failed").inc(len(failed))
        short = [ref for ref in refs if not _usable(results.get(ref.key))]
        if short:
            failed_reasons = {ref.key: _reason(results.get(ref.key, "no result")) for ref in failed}
            results.update(self._ask(short, now_s, self.config.history_minutes, what="metrics"))
            # Only the backfill failed (the short window worked): say why; other failures are the
            # Deployment's ordinary metrics errors, reported below.
            only = [ref for ref in failed if _usable(results.get(ref.key))]
            if only:
                log.warning("history backfill (%d min) failed for %d Deployments (e.g. %s/%s: %s); planning them on "
                            "the %d-minute window and retrying the backfill next cycle",
                            self.config.history_backfill_minutes, len(only), only[0].namespace, only[0].name,
                            failed_reasons[only[0].key], self.config.history_minutes)
        for ref in refs:
            value = results.get(ref.key, "no result from the metrics source")
            if _usable(value):
                self.last_good[ref.key] = Observed(self._accumulate(ref.key, value, now_s), now_s)
            else:
                errors[ref.key] = _reason(value)
                self.telemetry.metrics_errors.inc()
        present = {d.key for d in snapshot.deployments}
        for key in [k for k in self.history if k not in present]:
            self.history.pop(key)
        self.backfilled &= present  # re-annotated later: backfill again
        for key in [k for k in self.last_good if k not in present]:
            del self.last_good[key]  # deleted Deployment: forget it, and its Event dedup state
            if self._events is not None:
                self._events.forget(*key)
        return errors

    def _ask(self, refs: Sequence[Any], now_s: float, minutes: int, *, what: str) -> dict[tuple[str, str], Any]:
        """One call to the metrics source; if it raises anyway (it should report per Deployment), every
        Deployment asked gets the error instead."""
        try:
            return dict(self._metrics.observe(refs, now_s=now_s, history_minutes=minutes))
        except Exception as exc:
            log.warning("%s: metrics source failed: %s", what, exc)
            return {ref.key: f"metrics source failed: {exc}" for ref in refs}

    def _accumulate(self, key: tuple[str, str], metrics: Any, now_s: float) -> Any:
        """Merge the source's window into a growing per-minute history and return metrics carrying it.

        The metrics source answers a fixed window (``history_minutes``) ending at the last completed
        minute; policies (like the simulator) expect the history to grow minute by minute, and fit
        and update their forecasters on that. A backfill (a longer window) reaches further back and
        replaces what is there. Trimmed by up to an hour at ``max_history_minutes`` (the policy then
        refits, as it does hourly anyway), never below the per-cycle window.
        """
        window = [float(x) for x in metrics.rate_history_rpm]
        end = int(now_s // 60) - 1  # index of the last completed minute
        start = end - len(window) + 1
        first, series = self.history.get(key, (start, []))
        if start < first:  # rewind (clock moved back): start over from this window
            first, series = start, []
        series = series + [math.nan] * (start - first - len(series))  # minutes nobody observed
        series = series[: start - first] + window
        if len(series) > self.max_history_minutes:
            # Cut up to an hour more (never into the window): the policy sees the history get
            # shorter, which is how it tells a trim from a minute that did not come.
            slack = max(1, min(60, self.max_history_minutes - self.config.history_minutes))
            cut = len(series) - self.max_history_minutes + slack
            first, series = first + cut, series[cut:]
        self.history[key] = (first, series)
        try:
            return dataclasses.replace(metrics, rate_history_rpm=tuple(series))
        except TypeError:  # not a dataclass: keep the source's window
            return metrics

    def _publish(self, cycle: Cycle, plan: Plan, now_s: float) -> PublishedPlan:
        by_key = {(t.namespace, t.name): t for t in plan.targets}
        # Reactive and hold steps carry no model numbers: keep the last solve's, so that plans and the
        # forecast/latency/utility gauges do not drop to 0 between long-horizon steps.
        previous = self.store.current()
        carried = {(x.namespace, x.name): x for x in previous.targets if not x.held_reason} \
            if plan.kind != "solve" and previous is not None and previous.leader == self.config.identity else {}
        targets: list[Target] = []
        for job in cycle.view.jobs:
            key = job.spec.key
            t = by_key.get(key)
            if t is None:
                t = Target(key[0], key[1], job.current_replicas, job.current_replicas,
                           held_reason="the policy returned no target")
            obs = job.observation
            last = carried.get(key)
            targets.append(Target(
                namespace=key[0], name=key[1], desired_replicas=int(t.desired_replicas),
                current_replicas=cycle.infos[key].replicas,
                forecast_rps=float(t.forecast_rps) or (last.forecast_rps if last else 0.0),
                expected_latency_ms=float(t.expected_latency_ms) or (last.expected_latency_ms if last else 0.0),
                expected_utility=float(t.expected_utility) or (last.expected_utility if last else 0.0),
                held_reason=t.held_reason, slo_latency_ms=job.spec.slo.latency_ms,
                slo_percentile=job.spec.slo.percentile, observed_latency_ms=float(obs.latency_ms or 0.0),
                stale=key in cycle.stale_age_s, observations_age_s=float(cycle.stale_age_s.get(key, 0.0)),
                admission=float(getattr(t, "admission", 1.0)),
                **_llm_fields(job.spec, getattr(self.last_good.get(key), "metrics", None)),
            ))
        for held in cycle.held:
            settings = held.annotations
            targets.append(Target(
                namespace=held.info.namespace, name=held.info.name, desired_replicas=held.info.replicas,
                current_replicas=held.info.replicas, held_reason=held.reason,
                slo_latency_ms=settings.slo_latency_ms if settings else 0.0,
                slo_percentile=settings.slo_percentile if settings else 0.0,
            ))
        targets = explain_targets(targets, cycle, model=getattr(self.policy, "model", None),
                                  quantile=getattr(self._state, "quantile", None))
        targets.sort(key=lambda t: (t.namespace, t.name))
        generation = max(self.store.generation + 1, int(now_s * 1000))  # monotonic across leader changes
        published = PublishedPlan(
            generation=generation, created_s=now_s, valid_until_s=now_s + self.config.plan_ttl_s,
            targets=tuple(targets), policy=self.config.policy, objective=self.config.objective,
            objective_value=float(plan.objective_value or 0.0), solve_ms=float(plan.solve_ms), kind=plan.kind,
            leader=self.config.identity, solver_status=plan.solver_status,
        )
        self.store.publish(published)
        self._report(cycle, published)
        return published

    def _report(self, cycle: Cycle, plan: PublishedPlan) -> None:
        t = self.telemetry
        t.plan_generation.set(plan.generation)
        t.plans_published.labels(plan.kind).inc()
        t.forget_deployments({(x.namespace, x.name) for x in plan.targets})
        for target in plan.targets:
            t.set_target(target)
            if target.held_reason:
                t.held.labels(target.namespace, target.name, target.held_reason.split(":")[0][:60]).set(1)
        t.held_total.set(sum(1 for x in plan.targets if x.held_reason))
        desired = plan.desired()
        for quota in cycle.view.quotas:
            jobs = [j for j in cycle.view.jobs if quota.namespace is None or j.spec.namespace == quota.namespace]
            for resource in quota.hard:
                planned = sum(desired.get(j.spec.key, 0) * _demand(cycle.infos[j.spec.key], resource)
                              for j in jobs if j.spec.key in cycle.infos)
                t.headroom.labels(quota.name, resource).set(quota.free(resource) - planned)
        if plan.kind == "solve" or any(x.held_reason for x in plan.targets):
            log.info("published plan", extra={"generation": plan.generation, "kind": plan.kind,
                                               "targets": len(plan.targets),
                                               "held": sum(1 for x in plan.targets if x.held_reason)})

    def _actuate(self, plan: PublishedPlan) -> None:
        if not self._actuators:
            return
        policy_plan = Plan(targets=plan.targets, kind=plan.kind)
        for actuator in self._actuators:
            try:
                failures = actuator.apply(policy_plan)
            except Exception as exc:
                log.exception("actuator %s failed", actuator.name)
                failures = {("*", "*"): str(exc)}
            for (ns, name), message in failures.items():
                log.warning("actuator %s: %s/%s: %s", actuator.name, ns, name, message)
            if failures:
                self.telemetry.actuator_errors.labels(actuator.name).inc(len(failures))

    # ------------------------------------------------------------------------------------------ the loop
    def run(self, stop: threading.Event, *, is_leader: Callable[[], bool] = lambda: True,
            wake: threading.Event | None = None) -> None:
        """Tick every ``reactive_interval_s`` while leading, until ``stop`` is set.

        ``wake`` (set by the service when leadership changes, and on stop) ends a wait early, so a replica that
        wins the Lease plans at once rather than up to one reactive interval later; while the caches are not
        synced yet the loop looks again every ``UNSYNCED_RETRY_S``."""
        leading = False
        wake = wake or stop
        while not stop.is_set():
            now_leader = is_leader()
            self.telemetry.is_leader.set(1 if now_leader else 0)
            if now_leader and not leading:
                self.reset()
            leading = now_leader
            wait_s = self.config.reactive_interval_s
            if leading:
                try:
                    if self.tick() is None:  # caches not synced yet
                        wait_s = min(wait_s, UNSYNCED_RETRY_S)
                except Exception:
                    log.exception("control cycle failed")
                    self.telemetry.cycle_errors.inc()
            wake.wait(wait_s)
            if wake is not stop:
                wake.clear()
