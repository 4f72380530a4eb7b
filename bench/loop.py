"""One control cycle of the live optimizer at scale: state → view → policy (forecast + solve) → publish.

Runs ``ControlLoop.tick`` on in-memory cluster state (no API server: the informer cache is what a
cycle reads) with N Deployments in 10 namespaces, each with a ResourceQuota, and a fake metrics
source, and times each phase. Goal: < 1 s per cycle at 1,000 Deployments on the 2-core machine.

    python bench/loop.py [--sizes 100 1000] [--repeats 3]

Prints a table and writes bench/results/loop.json.
"""

from __future__ import annotations

import argparse
import json
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
    def __init__(self, seed: int = 0) -> None:
        self.rng = np.random.default_rng(seed)

    def observe(self, refs, *, now_s, history_minutes):
        t = np.arange(history_minutes)
        out = {}
        for i, ref in enumerate(refs):
            base = 300 + 200 * (i % 9)
            series = base * (1 + 0.3 * np.sin((t + i) / 20)) + self.rng.normal(0, 10, history_minutes)
            out[ref.key] = JobMetrics(rate_history_rpm=tuple(np.maximum(series, 0)), latency_ms=100.0)
        return out


def run(n: int, repeats: int) -> dict:
    snap = snapshot(n)
    times: dict[str, list[float]] = {"state+metrics": [], "policy (forecast+solve)": [], "publish": [], "cycle": []}
    policy = make_policy("faro-fairsum", interval_s=60, first_long_s=0)

    class TimedPolicy:
        name = policy.name
        needs_future = False

        def initial_state(self):
            return policy.initial_state()

        def decide(self, view, state):
            t0 = time.perf_counter()
            out = policy.decide(view, state)
            times["policy (forecast+solve)"].append(time.perf_counter() - t0)
            return out

    now = [1_700_000_000.0]
    store = PlanStore()
    loop = ControlLoop(config=ServiceConfig(interval_s=60, reactive_interval_s=10), policy=TimedPolicy(),
                       snapshot=lambda: snap, metrics_source=Metrics(), store=store,
                       telemetry=Telemetry(CollectorRegistry()), clock=lambda: now[0])
    for _ in tqdm(range(repeats + 1), desc=f"{n} deployments", file=sys.stderr):
        now[0] += 60  # every tick a long-horizon step (the expensive kind)
        t0 = time.perf_counter()
        plan = loop.tick()
        cycle = time.perf_counter() - t0
        t1 = time.perf_counter()
        to_proto(plan).SerializeToString()  # what each WatchPlans subscriber is sent
        times["publish"].append(time.perf_counter() - t1)
        times["cycle"].append(cycle + times["publish"][-1])
    # the first tick fits the forecaster from scratch; report it apart from the steady state
    first = {k: v[0] for k, v in times.items() if v}
    steady = {k: statistics.median(v[1:]) for k, v in times.items() if len(v) > 1}
    steady["state+metrics"] = steady["cycle"] - steady["policy (forecast+solve)"] - steady["publish"]
    first["state+metrics"] = first["cycle"] - first["policy (forecast+solve)"] - first["publish"]
    return {"deployments": n, "first_cycle_s": first, "steady_cycle_s": steady, "kind": plan.kind,
            "solver_status": plan.solver_status, "held": sum(1 for t in plan.targets if t.held_reason)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[100, 1000])
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args(argv)
    rows = [run(n, args.repeats) for n in args.sizes]
    phases = ["state+metrics", "policy (forecast+solve)", "publish", "cycle"]
    print(f"{'deployments':>11} {'cycle':>6} " + " ".join(f"{p:>24}" for p in phases))
    for row in rows:
        for label in ("first_cycle_s", "steady_cycle_s"):
            print(f"{row['deployments']:>11} {label[:-8]:>6} " + " ".join(f"{row[label][p]:>24.3f}" for p in phases))
    out = {"machine": platform.platform(), "python": platform.python_version(), "rows": rows,
           "command": "python bench/loop.py " + " ".join(argv or sys.argv[1:])}
    (ROOT / "results").mkdir(exist_ok=True)
    (ROOT / "results" / "loop.json").write_text(json.dumps(out, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
