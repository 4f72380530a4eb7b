"""How long ``Policy.decide`` takes: reactive checks and long-horizon steps, per policy.

Replays the bundled paper trace (10 jobs, 32 CPUs) as views with a fixed latency, feeding each
plan back as the next current replicas (no queueing simulation: this measures the policy only).
Prints a table and writes ``bench/results/policy.json``.

    python bench/policy.py [--minutes 360] [--policies faro-fairsum,mark,...]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
from faro.optimizer.model.problem import SLO, Quota
from faro.optimizer.policy.base import ClusterView, JobObservation, JobSpec, JobView
from faro.optimizer.policy.registry import POLICY_NAMES, make_policy
from faro.optimizer.sim.workload import load_trace


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=int, default=360)
    parser.add_argument("--policies", default=",".join(POLICY_NAMES))
    parser.add_argument("--cpus", type=float, default=32.0)
    args = parser.parse_args()
    wl = load_trace(None)
    counts = np.asarray(wl.counts_rpm, dtype=float)
    names = [f"job{i}" for i in range(counts.shape[0])]
    rows = {}
    for policy_name in args.policies.split(","):
        policy = make_policy(policy_name)
        state = policy.initial_state()
        current = [3] * len(names)
        long_ms, short_ms = [], []
        for t in range(0, args.minutes * 60, 10):
            m = t // 60
            jobs = tuple(
                JobView(
                    spec=JobSpec(name=n, slo=SLO(720.0), processing_time_ms=180.0),
                    observation=JobObservation(
                        rate_history_rpm=tuple(counts[i, :m]),
                        latency_ms=800.0,
                        mean_latency_ms=300.0,
                        cpu_utilization=0.75,
                        future_rate_rpm=tuple(counts[i, m : m + 8]) if policy.needs_future else None,
                    ),
                    current_replicas=current[i],
                    ready_replicas=current[i],
                )
                for i, n in enumerate(names)
            )
            view = ClusterView(now_s=float(t), jobs=jobs, quotas=(Quota(name="cap", hard={"cpu": args.cpus}),))
            started = time.perf_counter()
            decision = policy.decide(view, state)
            elapsed_ms = (time.perf_counter() - started) * 1000.0
            state = decision.state
            (long_ms if decision.plan.kind == "solve" else short_ms).append(elapsed_ms)
            desired = decision.plan.desired()
            current = [desired[("default", n)] for n in names]
        rows[policy_name] = {
            "checks": len(long_ms) + len(short_ms),
            "long_steps": len(long_ms),
            "long_mean_ms": float(np.mean(long_ms)) if long_ms else 0.0,
            "long_p95_ms": float(np.percentile(long_ms, 95)) if long_ms else 0.0,
            "check_mean_ms": float(np.mean(short_ms)) if short_ms else 0.0,
            "total_s": (sum(long_ms) + sum(short_ms)) / 1000.0,
        }
    print(f"{'policy':22s} {'checks':>7s} {'long':>5s} {'long ms':>9s} {'p95 ms':>8s} {'check ms':>9s} {'total s':>8s}")
    for name, r in rows.items():
        print(
            f"{name:22s} {r['checks']:7d} {r['long_steps']:5d} {r['long_mean_ms']:9.1f} {r['long_p95_ms']:8.1f} "
            f"{r['check_mean_ms']:9.3f} {r['total_s']:8.2f}"
        )
    out = Path(__file__).parent / "results" / "policy.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"minutes": args.minutes, "cpus": args.cpus, "policies": rows}, indent=2))


if __name__ == "__main__":
    main()
