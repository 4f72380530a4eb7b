"""One control cycle of the live optimizer at scale: state → view → policy (forecast + solve) → publish.

Runs ``ControlLoop.tick`` on in-memory cluster state (no API server: the informer cache is what a
cycle reads) with N Deployments in 10 namespaces, each with a ResourceQuota, and a fake metrics
source, and times each phase. Goal: < 1 s per cycle at 1,000 Deployments on the 2-core machine.

The optimizer is driven as it runs for days: every tick is a long-horizon step ``--interval-s``
(300 s) after the last; the first one backfills ``--history-min`` minutes of per-minute history
(``--history-backfill-minutes``: a day by default, as after a restart with Prometheus history;
``--history-min 60`` is the cold start without backfill) and fits the whole fleet; the following
``--cycles`` (default: one full hourly refit period + 1) each absorb 5 new minutes through the
60-minute window, refit one slice of the fleet (``auto``: parameters only; models are re-chosen
daily) and solve. Steady = median and max over those cycles. Memory: the process's resident set
grown from before the loop was built to after its last cycle (the loop's history + the policy's
fitted state), and the peak resident set.

    python bench/loop.py [--sizes 100 1000] [--cycles 13] [--interval-s 300] [--history-min 1440]
                         [--prometheus 1000]

``--prometheus N`` also times the Prometheus metrics source on a real Prometheus (``/usr/bin/prometheus``
scraping a test exporter with N Deployments of the generic preset): one ``observe`` with batched
queries and one with a query per Deployment and quantity.

Prints a table and writes bench/results/loop.json (``--output`` another name).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import numpy as np
from faro.optimizer.kube.state import DeploymentInfo, HpaInfo, KubeSnapshot, QuotaInfo
from faro.optimizer.metrics.base import JobMetrics
from faro.optimizer.policy.registry import make_policy
from faro.optimizer.service.config import ServiceConfig
from faro.optimizer.service.loop import ControlLoop
from faro.optimizer.service.plans import PlanStore, to_proto
from faro.optimizer.service.telemetry import Telemetry
from prometheus_client import CollectorRegistry
from tqdm import tqdm

ROOT = Path(__file__).resolve().parent


def snapshot(n: int) -> KubeSnapshot:
    deps, hpas = [], []
    for i in range(n):
        ns = f"team-{i % 10}"
        deps.append(DeploymentInfo(ns, f"model-{i}", f"uid-{i}",
                                   {"faro.dev/slo-latency-ms": str(200 + i % 5 * 100),
                                    "faro.dev/processing-time-ms": str(40 + i % 7 * 10)},
                                   {"cpu": 1.0, "memory": 2.0 * 2**30}, {}, 2, 2))
        hpas.append(HpaInfo(ns, f"model-{i}", "Deployment", f"model-{i}", 1, 50, True))
    quotas = [QuotaInfo(f"team-{k}", "compute", {"requests.cpu": n * 0.8, "requests.memory": n * 2.0 * 2**31},
                        {}) for k in range(10)]
    return KubeSnapshot(tuple(deps), tuple(quotas), tuple(hpas))


class Metrics:
    """Per-minute load as a function of the absolute minute (a day-long wave plus noise), as many
    minutes as the loop asks (its backfill first, then its window)."""

    def __init__(self, *, seed: int = 0) -> None:
        self.rng = np.random.default_rng(seed)
        self.asked: list[int] = []

    def observe(self, refs, *, now_s, history_minutes):
        minutes = history_minutes
        self.asked.append(minutes)
        end = int(now_s // 60) - 1
        t = np.arange(end - minutes + 1, end + 1)[None, :]
        i = np.arange(len(refs))[:, None]
        base = 300 + 200 * (i % 9)
        table = base * (1 + 0.3 * np.sin(2 * np.pi * (t + 7 * i) / 360)) + self.rng.normal(0, 10, (len(refs), minutes))
        table = np.maximum(table, 0.0)
        return {ref.key: JobMetrics(rate_history_rpm=tuple(row), latency_ms=100.0)
                for ref, row in zip(refs, table.tolist(), strict=True)}


def rss_mib(field: str = "VmRSS") -> float:
    """This process's resident set (or its peak, ``VmHWM``) in MiB, from /proc (0 where there is none)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


PHASES = ("state+metrics", "forecast", "solve (+shrink, quota fit)", "publish", "cycle")


def run(n: int, *, cycles: int, interval_s: float, history_min: int, policy_options: dict) -> dict:
    snap = snapshot(n)
    times: dict[str, list[float]] = {p: [] for p in PHASES}
    policy = make_policy("faro-fairsum", interval_s=interval_s, first_long_s=0, **policy_options)
    inner_forecast = policy.forecast_tables

    def timed_forecast(view, state):
        t0 = time.perf_counter()
        out = inner_forecast(view, state)
        times["forecast"].append(time.perf_counter() - t0)
        return out

    policy.forecast_tables = timed_forecast  # instance attribute: the policy's own method, timed

    class TimedPolicy:
        name = policy.name
        needs_future = False

        def initial_state(self):
            return policy.initial_state()

        def decide(self, view, state):
            t0 = time.perf_counter()
            out = policy.decide(view, state)
            times["solve (+shrink, quota fit)"].append(time.perf_counter() - t0 - times["forecast"][-1])
            return out

    now = [1_700_000_000.0 - 1_700_000_000.0 % 86400]
    store = PlanStore()
    metrics = Metrics()
    rss_before = rss_mib()
    config = ServiceConfig(interval_s=interval_s, reactive_interval_s=10, history_minutes=min(60, history_min),
                           history_backfill_minutes=history_min)
    loop = ControlLoop(config=config, policy=TimedPolicy(), snapshot=lambda: snap, metrics_source=metrics,
                       store=store, telemetry=Telemetry(CollectorRegistry()), clock=lambda: now[0])
    statuses = []
    for _ in tqdm(range(cycles + 1), desc=f"{n} deployments", file=sys.stderr):
        now[0] += interval_s  # every tick a long-horizon step (the expensive kind)
        t0 = time.perf_counter()
        plan = loop.tick()
        cycle = time.perf_counter() - t0
        t1 = time.perf_counter()
        to_proto(plan).SerializeToString()  # what each WatchPlans subscriber is sent
        times["publish"].append(time.perf_counter() - t1)
        times["cycle"].append(cycle + times["publish"][-1])
        times["state+metrics"].append(times["cycle"][-1] - times["forecast"][-1]
                                      - times["solve (+shrink, quota fit)"][-1] - times["publish"][-1])
        statuses.append(plan.solver_status)
    # the first tick fits the whole fleet from scratch; report it apart from the steady state
    first = {k: v[0] for k, v in times.items()}
    steady = {k: statistics.median(v[1:]) for k, v in times.items()}
    worst = {k: max(v[1:]) for k, v in times.items()}
    history = [len(series) for _, series in loop.history.values()]
    return {"deployments": n, "first_cycle_s": first, "steady_cycle_s": steady, "max_cycle_s": worst,
            "cycle_s_each": times["cycle"], "kind": plan.kind, "solver_status": statuses,
            "held": sum(1 for t in plan.targets if t.held_reason), "asked_minutes": metrics.asked,
            "history_minutes_kept": [min(history), max(history)],
            "rss_growth_mib": rss_mib() - rss_before, "peak_rss_mib": rss_mib("VmHWM")}


def prometheus_source(n: int) -> dict:
    """``observe`` on N Deployments against a real Prometheus, batched vs one query per Deployment."""
    sys.path.insert(0, str(ROOT.parent / "tests"))
    from faro.optimizer.http import urllib_post as urllib_transport
    from faro.optimizer.metrics import DeploymentRef, PrometheusClient, PrometheusSource
    from prom_fixture import prometheus_servers, running_exporter

    out: dict = {"deployments": n}
    with running_exporter() as exporter, prometheus_servers() as start:
        for i in range(n):
            exporter.set_traffic(f"team-{i % 10}", f"model-{i}", rate_rps=5.0 + i % 7, mean_latency_ms=80.0,
                                 latency_fractions={0.05: 0.5, 0.1: 0.9, 0.25: 1.0}, processing_ms=30.0,
                                 queue_length=1)
        prometheus = start([exporter.target])
        prometheus.wait_for("count(count_over_time(http_requests_total[15s]) >= 8)",
                            predicate=lambda r: bool(r) and float(r[0]["value"][1]) >= n, timeout_s=300)
        refs = [DeploymentRef(f"team-{i % 10}", f"model-{i}") for i in range(n)]
        for name, batch_min in (("batched", 2), ("per_deployment", 0)):
            asked: list[int] = []

            def transport(url, body, headers, timeout_s, asked=asked):
                asked.append(1)
                return urllib_transport(url, body, headers, timeout_s)

            source = PrometheusSource(PrometheusClient(prometheus.url, timeout_s=60, transport=transport),
                                      batch_min=batch_min)
            t0 = time.perf_counter()
            result = source.observe(refs, now_s=time.time() - 1, history_minutes=60)
            out[name] = {"seconds": time.perf_counter() - t0, "http_queries": len(asked),
                         "observed": sum(isinstance(v, JobMetrics) for v in result.values())}
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[100, 1000])
    parser.add_argument("--interval-s", type=float, default=300.0)
    parser.add_argument("--history-min", type=int, default=1440)
    parser.add_argument("--cycles", type=int, default=None, help="after the first (default: one refit period + 1)")
    parser.add_argument("--quantile-search", choices=["bisect", "linear"], default="bisect")
    parser.add_argument("--refit-slices", type=int, default=None, help="default: one per long step of a refit period")
    parser.add_argument("--reselect-every-min", type=int, default=None,
                        help="auto's model re-choice period (default: its own, 1440); 60 = every refit re-chooses")
    parser.add_argument("--output", default="loop.json", help="file name under bench/results/")
    parser.add_argument("--prometheus", type=int, default=0, metavar="N",
                        help="also time the Prometheus source on a real Prometheus with N Deployments")
    args = parser.parse_args(argv)
    cycles = args.cycles or round(3600 / args.interval_s) + 1
    options = {"quantile_search": args.quantile_search, "refit_slices": args.refit_slices}
    if args.reselect_every_min:
        options["forecaster_options"] = {"reselect_every_min": args.reselect_every_min}
    rows = [run(n, cycles=cycles, interval_s=args.interval_s, history_min=args.history_min, policy_options=options)
            for n in args.sizes]
    print(f"{'deployments':>11} {'cycle':>6} " + " ".join(f"{p:>26}" for p in PHASES))
    for row in rows:
        for label in ("first_cycle_s", "steady_cycle_s", "max_cycle_s"):
            print(f"{row['deployments']:>11} {label[:-8]:>6} " + " ".join(f"{row[label][p]:>26.3f}" for p in PHASES))
        print(f"{row['deployments']:>11} memory: +{row['rss_growth_mib']:.0f} MiB resident after the loop was built "
              f"(peak {row['peak_rss_mib']:.0f} MiB), history kept {row['history_minutes_kept']} minutes")
    prom = prometheus_source(args.prometheus) if args.prometheus else None
    if prom:
        print(f"\nPrometheus source, {prom['deployments']} Deployments, one observe (60 min history):")
        for name in ("batched", "per_deployment"):
            r = prom[name]
            print(f"  {name:15s} {r['http_queries']:6d} HTTP queries {r['seconds']:7.2f} s  {r['observed']} observed")
    out = {"machine": platform.platform(), "prometheus_source": prom, "cpus": os.cpu_count(),
           "load_avg": os.getloadavg(), "python": platform.python_version(),
           "settings": {**vars(args), "cycles": cycles}, "rows": rows,
           "command": "python bench/loop.py " + " ".join(argv if argv is not None else sys.argv[1:])}
    (ROOT / "results").mkdir(exist_ok=True)
    (ROOT / "results" / args.output).write_text(json.dumps(out, indent=2))
    import docs_tables  # the docs' benchmark tables are generated from bench/results

    docs_tables.update()
    return 0


if __name__ == "__main__":
    sys.exit(main())
