"""The LLM cluster simulator: GPU pods of several models under quotas, a load balancer, a scaling policy.

Called by ``faro simulate --workload llm`` and ``bench/llm.py`` through ``simulate_llm(workload, policy,
config)``. Pure and deterministic: the workload fixes every request (its seed), so the same inputs give
the same result.

Model
-----
* **Replicas**: one pod = one engine replica (``engine.Replica``, vLLM V1's continuous batching) using
  ``profile.gpus`` GPUs. A new pod serves ``profile.model_load_s`` after it is created (image, weights,
  warm-up). Pods that exist — starting, ready or draining — never use more GPUs than the cluster cap
  (``gpus``) or a namespace's ``requests.nvidia.com/gpu`` quota; a pod that does not fit is not created
  and the controller retries at every tick (as a ReplicaSet retries against a ResourceQuota); models
  are served in their workload order when several want the same free GPUs.
* **Scale-down**: starting pods go first (newest first), then ready pods with the shortest time ready
  (the ReplicaSet's ranking). A removed ready pod leaves the balancer and drains: it finishes its
  waiting and running requests and frees its GPUs when empty, at most ``grace_period_s`` (Kubernetes'
  default terminationGracePeriodSeconds, 30 s) later; requests still there then fail.
* **Load balancer**: ``least-outstanding`` (default) sends a request to the ready replica with the fewest
  waiting + running requests at its arrival (ties: the oldest pod), like the queue-depth scorer of llm-d's
  endpoint picker; ``round-robin`` cycles over ready replicas like a Kubernetes Service. With no ready
  replica the gateway holds requests until one is ready.
* **Control**: every tick (the gcd of the policy interval and the HPA sync period) pods are reconciled
  to the target; every ``policy_interval_s`` (10 s; or the policy's own ``interval_s``, except for hybrid
  policies — Faro, the Oracle — whose ``interval_s`` is their long-step grid) the policy gets a
  ``ClusterView`` whose jobs carry ``JobObservation.llm`` (TTFT, ITL and TPOT at the SLO percentile over
  the last ``observation_window_s``, KV use and queue gauges at the tick, per-replica window maxima of KV use
  and waiting requests, the token mix of requests finished in the last ``token_mix_window_s``).
  ``actuation="direct"`` sets targets to the plan; ``"hpa"`` feeds the plan to an emulated HPA per job
  (``optimizer/sim/hpa.py``, 15 s sync) as the adapter's External metric.
* **Start and end**: at time 0 each model has its initial pods ready (``initial="fairshare"``: an equal
  split of the GPUs; ``"min"``: its minimum; or given counts). After the last arrival the cluster runs on (policy
  included) until every request is done, at most ``tail_s``; what is left then fails.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
from faro.optimizer.errors import InvalidInputError
from faro.optimizer.model.llm_profile import LLMObservation, LLMSpec, TokenMix
from faro.optimizer.model.problem import SLO, Quota
from faro.optimizer.policy.base import ClusterView, JobObservation, JobSpec, JobView
from faro.optimizer.policy.hybrid import HybridPolicy
from faro.optimizer.policy.llm_fairshare import equal_gpu_split
from faro.optimizer.sim.engine import percentile_linear
from faro.optimizer.sim.hpa import HPABehavior, HPASpec, HPAState, hpa_step
from faro.optimizer.sim.llm.engine import NEVER, US_PER_S, Replica, Requests, weighted_percentile
from faro.optimizer.sim.llm.workload import LLMWorkload, ModelSpec
from numpy.typing import NDArray

GPU = "nvidia.com/gpu"


@dataclass(frozen=True)
class LLMSimConfig:
    """Settings of one LLM cluster run; times in seconds, GPUs as counts."""

    gpus: float = 32.0
    namespace_gpus: tuple[tuple[str, float], ...] = ()  # (namespace, requests.nvidia.com/gpu quota)
    policy_interval_s: float = 10.0
    observation_window_s: float = 60.0
    token_mix_window_s: float = 300.0
    token_mix_samples: int = 2000
    actuation: Literal["direct", "hpa"] = "direct"
    hpa_behavior: HPABehavior = field(default_factory=HPABehavior.recommended_for_faro)
    hpa_sync_period_s: float = 15.0
    balancer: Literal["least-outstanding", "round-robin"] = "least-outstanding"
    initial: Literal["fairshare", "min"] | tuple[int, ...] = "fairshare"  # or replicas per model
    grace_period_s: float = 30.0
    tail_s: float = 600.0
    future_minutes: int = 60
    skip: bool = True  # False: every engine step one at a time (same results, slower; for tests)

    def __post_init__(self) -> None:
        if not self.gpus > 0:
            raise InvalidInputError("--gpus", f"must be > 0, got {self.gpus}")
        for ns, q in self.namespace_gpus:
            if not q >= 0:
                raise InvalidInputError(f"namespace_gpus.{ns}", f"must be >= 0, got {q}")
        if self.actuation not in ("direct", "hpa"):
            raise InvalidInputError("--actuation", f"must be direct or hpa, got {self.actuation!r}")
        if self.balancer not in ("least-outstanding", "round-robin"):
            raise InvalidInputError("balancer", f"must be least-outstanding or round-robin, got {self.balancer!r}")
        if isinstance(self.initial, tuple):
            if any(k < 0 for k in self.initial):
                raise InvalidInputError("initial", f"replicas must be >= 0, got {self.initial!r}")
        elif self.initial not in ("fairshare", "min"):
            raise InvalidInputError("initial", f"must be fairshare, min or replicas per model, got {self.initial!r}")
        for name in ("policy_interval_s", "hpa_sync_period_s"):
            v = getattr(self, name)
            if not (v >= 1 and float(v).is_integer()):
                raise InvalidInputError(name, f"must be a whole number of seconds >= 1, got {v}")
        if not (self.observation_window_s > 0 and self.grace_period_s >= 0 and self.tail_s >= 0):
            raise InvalidInputError("config", "observation_window_s > 0, grace_period_s >= 0, tail_s >= 0")


@dataclass(frozen=True, eq=False)
class LLMSimResult:
    """Everything an LLM run produced (see ``metrics.py`` for the scores).

    Per request (all models, model-major, arrival order): ``req_ttft_ms`` (inf = no first token),
    ``req_tpot_ms`` (mean inter-token gap; NaN for one-token outputs, inf if unfinished), ``req_failed``
    (refused, dropped by a draining pod, or unfinished at the end). Inter-token gaps aggregated per
    (model, minute of the step start, gap): ``itl_*``. Per tick: targets, ready replicas, pods (starting,
    ready, draining) and GPUs in use.
    """

    job_names: tuple[str, ...]
    specs: tuple[JobSpec, ...]
    config: LLMSimConfig
    policy: str
    duration_s: float
    warmup_s: float  # scores leave [0, warmup_s) out
    arrivals_rpm: NDArray[np.int64]
    req_job: NDArray[np.int32]
    req_arrival_s: NDArray[np.float64]
    req_prompt_tokens: NDArray[np.int64]
    req_output_tokens: NDArray[np.int64]
    req_ttft_ms: NDArray[np.float64]
    req_tpot_ms: NDArray[np.float64]
    req_first_token_s: NDArray[np.float64]
    req_finish_s: NDArray[np.float64]
    req_preemptions: NDArray[np.int64]
    req_generated: NDArray[np.int64]  # output tokens emitted (= output tokens unless failed)
    req_failed: NDArray[np.bool_]
    itl_job: NDArray[np.int32]
    itl_minute: NDArray[np.int64]
    itl_gap_ms: NDArray[np.float64]
    itl_count: NDArray[np.int64]
    tick_s: float
    tick_time_s: NDArray[np.float64]
    target_replicas: NDArray[np.int32]  # [tick, job]
    ready_replicas: NDArray[np.int32]
    pods: NDArray[np.int32]
    gpus_used: NDArray[np.float64]  # [tick]
    namespace_gpus_used: dict[str, float]  # most GPUs held at once per namespace
    max_gpus_used: float
    policy_calls: int
    policy_time_s: float
    engine_steps: int


class _Pod:
    __slots__ = ("created_us", "drain_deadline_us", "id", "peaks", "ready_us", "released", "replica")

    def __init__(self, pid: int, created_us: int, ready_us: int) -> None:
        self.id = pid
        self.created_us = created_us
        self.ready_us = ready_us
        self.replica: Replica | None = None
        self.drain_deadline_us: int | None = None
        self.released = False
        self.peaks: deque[tuple[float, int]] = deque()  # per tick: (max KV use, max waiting)

    @property
    def draining(self) -> bool:
        return self.drain_deadline_us is not None


class _Job:
    """One model's runtime state: requests, pods, gateway queue and observation buffers."""

    def __init__(self, index: int, model: ModelSpec, spec: JobSpec, req: Requests, window_ticks: int) -> None:
        self.index = index
        self.model = model
        self.profile = model.engine
        self.spec = spec
        self.req = req
        self.next_arrival = 0
        self.pods: list[_Pod] = []
        self.next_pod_id = 0
        self.gateway: deque[int] = deque()
        self.rr = 0
        self.target = 0
        self.failed: set[int] = set()
        self.done = 0  # finished or failed
        # one entry per tick: the window's ticks plus the tick about to run
        self.ttft_log: deque[NDArray[np.float64]] = deque(maxlen=window_ticks + 1)
        self.tpot_log: deque[NDArray[np.float64]] = deque(maxlen=window_ticks + 1)
        self.itl_log: deque[tuple[NDArray[np.int64], NDArray[np.int64]]] = deque(maxlen=window_ticks + 1)
        self.mix_log: deque[tuple[int, list[int]]] = deque()  # (tick, finished rids)
        self.prompt_np = np.asarray(req.prompt, dtype=float)
        self.output_np = np.asarray(req.output, dtype=float)
        self.itl_parts: list[tuple[NDArray[np.int64], NDArray[np.int64], NDArray[np.int64]]] = []
        self.steps = 0

    def active(self) -> list[_Pod]:
        return [p for p in self.pods if not p.released and not p.draining]

    def ready(self) -> list[_Pod]:
        return [p for p in self.pods if p.replica is not None and not p.draining and not p.released]

    def serving(self) -> list[_Pod]:
        return [p for p in self.pods if p.replica is not None and not p.released]


def job_spec_for(model: ModelSpec) -> JobSpec:
    """The ``JobSpec`` a policy sees for a model (GPU request per replica, LLM SLOs and profile)."""
    prof = model.engine
    slo = model.slo
    return JobSpec(
        name=model.name,
        namespace=model.namespace,
        slo=SLO(slo.ttft_ms if slo.ttft_ms is not None else slo.itl_ms, slo.percentile),  # type: ignore[arg-type]
        processing_time_ms=prof.step_base_ms,
        resources={GPU: prof.gpus},
        min_replicas=model.min_replicas,
        max_replicas=model.max_replicas,
        llm=LLMSpec(slo=slo, profile=prof),
    )


def cluster_quotas(config: LLMSimConfig) -> tuple[Quota, ...]:
    quotas = [Quota(name="cluster", hard={GPU: float(config.gpus)})]
    for ns, q in config.namespace_gpus:
        quotas.append(Quota(name=f"gpu-quota-{ns}", namespace=ns, hard={f"requests.{GPU}": float(q)}))
    return tuple(quotas)


def initial_replicas(specs: tuple[JobSpec, ...], config: LLMSimConfig) -> list[int]:
    """Replicas at time 0: an equal split of the GPUs (``llm-fairshare``'s), every model's minimum, or
    the given counts."""
    if isinstance(config.initial, tuple):
        if len(config.initial) != len(specs):
            raise InvalidInputError("initial", f"needs {len(specs)} replica counts, got {len(config.initial)}")
        return list(config.initial)
    if config.initial == "min":
        return [s.min_replicas for s in specs]
    view = ClusterView(
        now_s=0.0, jobs=tuple(JobView(s, JobObservation(), 0, 0) for s in specs), quotas=cluster_quotas(config)
    )
    return [int(x) for x in equal_gpu_split(view)]


def simulate_llm(
    workload: LLMWorkload,
    policy: Any,
    config: LLMSimConfig | None = None,
    *,
    progress: Callable[[float], None] | None = None,
    clock: Callable[[], float] | None = None,
) -> LLMSimResult:
    """Replay ``workload`` under ``policy`` (``initial_state()``, ``decide(view, state)``; optional
    ``interval_s`` overrides the policy interval). ``progress`` gets the fraction done after every simulated
    minute; ``clock`` (e.g. ``time.perf_counter``) only measures the policy's time."""
    cfg = config or LLMSimConfig()
    models = workload.models
    # a hybrid policy (Faro, the Oracle) keeps its own long-step grid and wants every check for its reactive
    # step, as the CPU simulator asks it; the others act only every ``interval_s`` of their own
    own = None if isinstance(policy, HybridPolicy) else getattr(policy, "interval_s", None)
    policy_interval = int(own or cfg.policy_interval_s)
    if policy_interval < 1:
        raise InvalidInputError("policy.interval_s", f"must be >= 1 s, got {policy_interval}")
    tick_s = policy_interval if cfg.actuation == "direct" else math.gcd(policy_interval, int(cfg.hpa_sync_period_s))
    tick_s = math.gcd(tick_s, 60)
    tick_us = tick_s * US_PER_S
    window_ticks = max(1, math.ceil(cfg.observation_window_s / tick_s))
    specs = tuple(job_spec_for(m) for m in models)
    quotas = cluster_quotas(cfg)
    ns_quota = dict(cfg.namespace_gpus)
    jobs: list[_Job] = []
    for j, m in enumerate(models):
        req = Requests.from_arrays(workload.arrival_s[j], workload.prompt_tokens[j], workload.output_tokens[j])
        jobs.append(_Job(j, m, specs[j], req, window_ticks))
    counts = workload.counts_rpm
    num_minutes = counts.shape[1]
    history = workload.history_rpm

    def gpus_of(job: _Job) -> float:
        return sum(job.profile.gpus for p in job.pods if not p.released)

    def new_pod(job: _Job, now_us: int, *, ready_now: bool = False) -> _Pod:
        load_us = 0 if ready_now else round(job.profile.model_load_s * US_PER_S)
        pod = _Pod(job.next_pod_id, now_us, now_us + load_us)
        job.next_pod_id += 1
        job.pods.append(pod)
        return pod

    def make_ready(job: _Job, pod: _Pod) -> None:
        pod.replica = Replica(
            job.profile, job.req, index=pod.id, start_us=pod.ready_us, skip=cfg.skip, bucket_us=tick_us
        )
        while job.gateway:  # requests held while no replica was ready
            route(job, job.gateway.popleft(), pod.ready_us)

    def route(job: _Job, rid: int, t_us: int) -> None:
        ready = job.ready()
        if not ready:
            job.gateway.append(rid)
            return
        if cfg.balancer == "round-robin":
            pod = ready[job.rr % len(ready)]
            job.rr += 1
            pod.replica.advance(t_us)  # type: ignore[union-attr]
        else:
            best = -1
            for p in ready:
                r = p.replica
                r.advance(t_us)  # type: ignore[union-attr]
                load = r.outstanding(t_us)  # type: ignore[union-attr]
                if best < 0 or load < best:
                    best, pod = load, p
        rep = pod.replica
        assert rep is not None
        if not rep.enqueue(rid):
            job.failed.add(rid)
            job.done += 1

    def release(job: _Job, pod: _Pod) -> None:
        """The pod is gone: what its replica still holds fails."""
        pod.released = True
        rep = pod.replica
        if rep is None:
            return
        collect(job, rep)
        job.steps += rep.steps
        if rep.base:
            rep.materialize()  # write the lazily kept decoders' token counts out
        lost = list(rep.waiting) + list(rep.running)
        for rid in lost:
            job.failed.add(rid)
        job.done += len(lost)
        rep.waiting.clear()
        rep.running = {}

    def collect(job: _Job, rep: Replica) -> None:
        """Move a replica's first tokens, finishes and gaps into the job's logs."""
        req = job.req
        if rep.first_log:
            arr, first = req.arrival_us, req.first_us
            ttft = [(first[r] - arr[r]) / 1000.0 for r in rep.first_log]
            job.ttft_log[-1] = np.concatenate([job.ttft_log[-1], ttft]) if job.ttft_log[-1].size else np.array(ttft)
            rep.first_log.clear()
        if rep.finish_log:
            first, last, out = req.first_us, req.last_us, req.output
            tpot = [(last[r] - first[r]) / 1000.0 / (out[r] - 1) for r in rep.finish_log if out[r] > 1]
            if tpot:
                job.tpot_log[-1] = np.concatenate([job.tpot_log[-1], tpot])
            job.mix_log[-1][1].extend(rep.finish_log)
            job.done += len(rep.finish_log)
            rep.finish_log.clear()
        if rep.itl_bucket:
            b, g, c = rep.drain_itl()
            job.itl_parts.append((b, g, c))
            prev_g, prev_c = job.itl_log[-1]
            job.itl_log[-1] = (np.concatenate([prev_g, g]), np.concatenate([prev_c, c]))

    def run_job(job: _Job, t0: int, t1: int) -> None:
        """Arrivals of [t0, t1) and pods getting ready or reaching their drain deadline in [t0, t1], in time
        order; then every replica runs the steps that start before t1."""
        arrivals = job.req.arrival_us
        n = len(arrivals)
        while True:
            t_arr = arrivals[job.next_arrival] if job.next_arrival < n and arrivals[job.next_arrival] < t1 else None
            t_pod, pod_evt = None, None
            for p in job.pods:
                if p.released:
                    continue
                # pod events at t1 itself happen now, so the next tick's view sees them
                if p.replica is None and p.ready_us <= t1 and (t_pod is None or p.ready_us < t_pod):
                    t_pod, pod_evt = p.ready_us, p
                elif p.draining and p.drain_deadline_us <= t1 and (t_pod is None or p.drain_deadline_us < t_pod):  # type: ignore[operator]
                    t_pod, pod_evt = p.drain_deadline_us, p
            if t_pod is not None and (t_arr is None or t_pod <= t_arr):
                assert pod_evt is not None
                for p in job.serving():
                    p.replica.advance(t_pod)  # type: ignore[union-attr]
                if pod_evt.replica is None:
                    make_ready(job, pod_evt)
                else:
                    release(job, pod_evt)
                continue
            if t_arr is None:
                break
            rid = job.next_arrival
            job.next_arrival += 1
            route(job, rid, t_arr)
        for p in job.serving():
            rep = p.replica
            assert rep is not None
            rep.advance(t1)
            collect(job, rep)
            if p.draining and not rep.busy:
                p.released = True  # drained: the pod exits and frees its GPUs
                job.steps += rep.steps

    def reconcile(now_us: int) -> None:
        # Scale downs first so their GPUs can be reused (once drained); then scale ups within quotas.
        for job in jobs:
            active = job.active()
            extra = len(active) - job.target
            if extra <= 0:
                continue
            starting = sorted((p for p in active if p.replica is None), key=lambda p: -p.created_us)
            ready = sorted((p for p in active if p.replica is not None), key=lambda p: (-p.ready_us, -p.id))
            for p in (starting + ready)[:extra]:
                if p.replica is None:
                    p.released = True
                elif p.replica.busy:
                    p.drain_deadline_us = now_us + round(cfg.grace_period_s * US_PER_S)
                else:
                    p.drain_deadline_us = now_us
                    p.released = True
                    job.steps += p.replica.steps
        used = sum(gpus_of(job) for job in jobs)
        ns_used: dict[str, float] = {}
        for job in jobs:
            ns_used[job.model.namespace] = ns_used.get(job.model.namespace, 0.0) + gpus_of(job)
        for job in jobs:
            want = job.target - len(job.active())
            g = job.profile.gpus
            ns = job.model.namespace
            for _ in range(max(want, 0)):
                if used + g > cfg.gpus + 1e-9:
                    break
                if ns in ns_quota and ns_used.get(ns, 0.0) + g > ns_quota[ns] + 1e-9:
                    break
                new_pod(job, now_us)
                used += g
                ns_used[ns] = ns_used.get(ns, 0.0) + g

    def observe(now_us: int, tick: int) -> tuple[JobView, ...]:
        now_s = now_us / US_PER_S
        minute = int(now_s // 60)
        views = []
        for j, job in enumerate(jobs):
            slo = job.model.slo
            pct = slo.percentile
            ttfts = np.concatenate(job.ttft_log) if job.ttft_log else np.empty(0)
            ttft = percentile_linear(ttfts, pct, in_place=True) if ttfts.size else None
            tpots = np.concatenate(job.tpot_log) if job.tpot_log else np.empty(0)
            tpot = percentile_linear(tpots, pct, in_place=True) if tpots.size else None
            gaps = [g for g, _ in job.itl_log]
            cnts = [c for _, c in job.itl_log]
            g_all = np.concatenate(gaps) if gaps else np.empty(0, np.int64)
            c_all = np.concatenate(cnts) if cnts else np.empty(0, np.int64)
            itl = weighted_percentile(g_all / 1000.0, c_all, pct) if c_all.sum() > 0 else None
            ready = job.ready()
            reps = [p.replica for p in ready]
            kv = float(np.mean([r.kv_usage for r in reps])) if reps else None  # type: ignore[union-attr]
            waiting = float(sum(len(r.waiting) for r in reps))  # type: ignore[union-attr]
            running = float(sum(len(r.running) for r in reps))  # type: ignore[union-attr]
            mix_rids: list[int] = []
            for _, rids in reversed(job.mix_log):
                mix_rids.extend(reversed(rids))
                if len(mix_rids) >= cfg.token_mix_samples:
                    break
            mix = None
            if mix_rids:
                idx = np.asarray(mix_rids[: cfg.token_mix_samples])
                mix = TokenMix(job.prompt_np[idx], job.output_np[idx])
            rep_kv = tuple(max((k for k, _ in p.peaks), default=0.0) for p in ready)
            rep_wait = tuple(float(max((w for _, w in p.peaks), default=0)) for p in ready)
            past = counts[j, :minute].astype(float)
            if history is not None:
                past = np.concatenate([history[j], past])
            future = None
            if getattr(policy, "needs_future", False):
                future = tuple(counts[j, minute : minute + cfg.future_minutes].astype(float).tolist())
            obs = JobObservation(
                rate_history_rpm=tuple(past.tolist()),
                queue_length=waiting + len(job.gateway),
                future_rate_rpm=future,
                llm=LLMObservation(
                    ttft_ms=ttft, itl_ms=itl, tpot_ms=tpot, kv_cache_usage=kv, num_waiting=waiting if reps else None,
                    num_running=running if reps else None, token_mix=mix,
                    replica_kv_cache_usage=rep_kv, replica_num_waiting=rep_wait,
                ),
            )
            views.append(
                JobView(spec=specs[j], observation=obs, current_replicas=job.target, ready_replicas=len(ready))
            )
        return tuple(views)

    # Initial pods, ready at time 0.
    initial = initial_replicas(specs, cfg)
    total0 = sum(k * m.engine.gpus for k, m in zip(initial, models, strict=True))
    if total0 > cfg.gpus + 1e-9:
        raise InvalidInputError("--gpus", f"{cfg.gpus:g} GPUs cannot hold the initial replicas ({total0:g} GPUs)")
    for job, k in zip(jobs, initial, strict=True):
        job.target = k
        for _ in range(k):
            pod = new_pod(job, 0, ready_now=True)
            make_ready(job, pod)

    duration_us = round(workload.duration_s * US_PER_S)
    end_us = duration_us + round(cfg.tail_s * US_PER_S)
    policy_every = policy_interval // tick_s
    sync_every = int(cfg.hpa_sync_period_s) // tick_s if cfg.actuation == "hpa" else 0
    hpa_specs = [
        HPASpec(min_replicas=max(m.min_replicas, 1), max_replicas=max(m.max_replicas, 1), behavior=cfg.hpa_behavior,
                sync_period_s=cfg.hpa_sync_period_s)
        for m in models
    ]
    hpa_states = [HPAState() for _ in models]
    planned = [job.target for job in jobs]
    state = policy.initial_state()
    policy_calls, policy_time = 0, 0.0
    rec_time: list[float] = []
    rec_target: list[list[int]] = []
    rec_ready: list[list[int]] = []
    rec_pods: list[list[int]] = []
    rec_gpus: list[float] = []
    ns_peak: dict[str, float] = {}
    total_requests = sum(len(job.req) for job in jobs)
    tick = 0
    minutes_done = 0
    while True:
        now = tick * tick_us
        if now >= duration_us and (now >= end_us or sum(job.done for job in jobs) >= total_requests):
            break
        for job in jobs:
            job.ttft_log.append(np.empty(0))
            job.tpot_log.append(np.empty(0))
            job.itl_log.append((np.empty(0, np.int64), np.empty(0, np.int64)))
            job.mix_log.append((tick, []))
            horizon = tick - math.ceil(cfg.token_mix_window_s / tick_s)
            while job.mix_log and job.mix_log[0][0] <= horizon:
                job.mix_log.popleft()
        if tick % policy_every == 0:
            views = observe(now, tick)
            t0 = clock() if clock else 0.0
            decision = policy.decide(ClusterView(now_s=now / US_PER_S, jobs=views, quotas=quotas), state)
            if clock:
                policy_time += clock() - t0
            policy_calls += 1
            state = decision.state
            by_key = {(t.namespace, t.name): t for t in decision.plan.targets}
            for j, spec in enumerate(specs):
                t = by_key.get(spec.key)
                if t is None:
                    continue
                planned[j] = min(max(int(t.desired_replicas), spec.min_replicas), spec.max_replicas)
                if cfg.actuation == "direct":
                    jobs[j].target = planned[j]
        if sync_every and tick % sync_every == 0:
            for j, job in enumerate(jobs):
                job.target, hpa_states[j] = hpa_step(
                    hpa_specs[j], hpa_states[j], now_s=now / US_PER_S, current_replicas=job.target,
                    metric_value=float(planned[j]),
                )
        reconcile(now)
        gpus_now = 0.0
        ns_now: dict[str, float] = {}
        for job in jobs:
            g = gpus_of(job)
            gpus_now += g
            ns_now[job.model.namespace] = ns_now.get(job.model.namespace, 0.0) + g
        for ns, g in ns_now.items():
            ns_peak[ns] = max(ns_peak.get(ns, 0.0), g)
        rec_time.append(now / US_PER_S)
        rec_target.append([job.target for job in jobs])
        rec_ready.append([len(job.ready()) for job in jobs])
        rec_pods.append([sum(1 for p in job.pods if not p.released) for job in jobs])
        rec_gpus.append(gpus_now)
        nxt = now + tick_us
        for job in jobs:
            run_job(job, now, nxt)
            for p in job.ready():
                rep = p.replica
                assert rep is not None
                p.peaks.append((rep.kv_peak_blocks / rep.total_blocks, rep.waiting_peak))
                while len(p.peaks) > window_ticks:
                    p.peaks.popleft()
                rep.reset_peaks()
            job.pods = [p for p in job.pods if not p.released]
        tick += 1
        if progress and nxt // (60 * US_PER_S) > minutes_done:
            minutes_done = nxt // (60 * US_PER_S)
            progress(min(1.0, nxt / duration_us))

    return _result(workload, jobs, specs, cfg, policy, tick_s, rec_time, rec_target, rec_ready, rec_pods,
                   rec_gpus, ns_peak, policy_calls, policy_time, num_minutes)


def _result(
    workload: LLMWorkload, jobs: list[_Job], specs: tuple[JobSpec, ...], cfg: LLMSimConfig, policy: Any,
    tick_s: int, rec_time: list[float], rec_target: list[list[int]], rec_ready: list[list[int]],
    rec_pods: list[list[int]], rec_gpus: list[float], ns_peak: dict[str, float], policy_calls: int,
    policy_time: float, num_minutes: int,
) -> LLMSimResult:
    cols: dict[str, list[np.ndarray]] = {
        k: [] for k in ("job", "arr", "p", "o", "ttft", "tpot", "first", "fin", "pre", "gen", "fail")
    }
    itl_job, itl_min, itl_gap, itl_cnt = [], [], [], []
    steps = 0
    for j, job in enumerate(jobs):
        req = job.req
        n = len(req)
        arr = np.asarray(req.arrival_us, np.int64)
        first = np.asarray(req.first_us, np.int64)
        last = np.asarray(req.last_us, np.int64)
        fin = np.asarray(req.finish_us, np.int64)
        out = np.asarray(req.output, np.int64)
        failed = np.zeros(n, dtype=bool)
        if job.failed:
            failed[list(job.failed)] = True
        failed |= fin == NEVER
        ttft = np.where(first != NEVER, (first - arr) / 1000.0, np.inf)
        with np.errstate(invalid="ignore", divide="ignore"):
            tpot = np.where(out > 1, (last - first) / 1000.0 / np.maximum(out - 1, 1), np.nan)
        tpot = np.where(failed, np.inf, tpot)
        cols["job"].append(np.full(n, j, np.int32))
        cols["arr"].append(arr / US_PER_S)
        cols["p"].append(np.asarray(req.prompt, np.int64))
        cols["o"].append(out)
        cols["ttft"].append(ttft)
        cols["tpot"].append(tpot)
        cols["first"].append(np.where(first != NEVER, first / US_PER_S, np.inf))
        cols["fin"].append(np.where(~failed, fin / US_PER_S, np.inf))
        cols["pre"].append(np.asarray(req.preemptions, np.int64))
        for p in job.pods:  # steady decoders still running hold their counts lazily
            if p.replica is not None and p.replica.base:
                p.replica.materialize()
        cols["gen"].append(np.asarray(req.generated, np.int64))
        cols["fail"].append(failed)
        for p in job.pods:
            if p.replica is not None and not p.released:
                job.itl_parts.append(p.replica.drain_itl())
                job.steps += p.replica.steps
        if job.itl_parts:
            b = np.concatenate([x[0] for x in job.itl_parts])
            g = np.concatenate([x[1] for x in job.itl_parts])
            c = np.concatenate([x[2] for x in job.itl_parts])
            minute = b * tick_s // 60
            key, inv = np.unique(minute * (1 << 40) + g, return_inverse=True)  # gaps < 2**40 µs
            summed = np.bincount(inv.ravel(), weights=c).astype(np.int64)
            itl_job.append(np.full(key.size, j, np.int32))
            itl_min.append(key >> 40)
            itl_gap.append((key & ((1 << 40) - 1)) / 1000.0)
            itl_cnt.append(summed)
        steps += job.steps

    def cat(parts: list[np.ndarray], dtype: Any) -> np.ndarray:
        return np.concatenate(parts).astype(dtype) if parts else np.empty(0, dtype)

    gpus = np.asarray(rec_gpus, dtype=float)
    return LLMSimResult(
        job_names=workload.names,
        specs=specs,
        config=cfg,
        policy=str(getattr(policy, "name", type(policy).__name__)),
        duration_s=workload.duration_s,
        warmup_s=workload.warmup_s,
        arrivals_rpm=workload.counts_rpm,
        req_job=cat(cols["job"], np.int32),
        req_arrival_s=cat(cols["arr"], float),
        req_prompt_tokens=cat(cols["p"], np.int64),
        req_output_tokens=cat(cols["o"], np.int64),
        req_ttft_ms=cat(cols["ttft"], float),
        req_tpot_ms=cat(cols["tpot"], float),
        req_first_token_s=cat(cols["first"], float),
        req_finish_s=cat(cols["fin"], float),
        req_preemptions=cat(cols["pre"], np.int64),
        req_generated=cat(cols["gen"], np.int64),
        req_failed=cat(cols["fail"], bool),
        itl_job=cat(itl_job, np.int32),
        itl_minute=cat(itl_min, np.int64),
        itl_gap_ms=cat(itl_gap, float),
        itl_count=cat(itl_cnt, np.int64),
        tick_s=float(tick_s),
        tick_time_s=np.asarray(rec_time, dtype=float),
        target_replicas=np.asarray(rec_target, dtype=np.int32).reshape(-1, len(jobs)),
        ready_replicas=np.asarray(rec_ready, dtype=np.int32).reshape(-1, len(jobs)),
        pods=np.asarray(rec_pods, dtype=np.int32).reshape(-1, len(jobs)),
        gpus_used=gpus,
        namespace_gpus_used=ns_peak,
        max_gpus_used=float(gpus.max()) if gpus.size else 0.0,
        policy_calls=policy_calls,
        policy_time_s=policy_time,
        engine_steps=steps,
    )
