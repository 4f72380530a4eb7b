"""Benchmark of the simulator: requests simulated per second, the policy table per CPU cap, the 100-job run.

Run: ``python bench/simulate.py [--minutes N] [--caps 16,32,36,40] [--policies a,b] [--skip-table]
[--skip-100]``. Prints tables and writes ``bench/results/simulate.json``.
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
from faro.optimizer.policy.base import Decision, Plan, Target
from faro.optimizer.sim.engine import SimConfig, simulate
from faro.optimizer.sim.metrics import summarize
from faro.optimizer.sim.workload import load_trace

OUT = Path(__file__).parent / "results" / "simulate.json"


class Static:
    name = "static"
    needs_future = False

    def __init__(self, replicas: int) -> None:
        self.replicas = replicas

    def initial_state(self) -> None:
        return None

    def decide(self, view, state):
        return Decision(Plan(tuple(Target(j.spec.namespace, j.spec.name, self.replicas, j.current_replicas)
                                   for j in view.jobs)), None)


def static_throughput(minutes: int) -> dict:
    workload = load_trace().head(minutes)
    out = {}
    for discipline in ("artifact", "mgc"):
        started = time.perf_counter()
        simulate(workload, Static(8), SimConfig(cpus=80, discipline=discipline, initial_replicas=8))
        wall = time.perf_counter() - started
        out[discipline] = {"requests": workload.total_requests, "wall_s": wall,
                           "requests_per_s": workload.total_requests / wall}
    return out


def _policy_run(args: tuple[str, float, int | None]) -> dict:
    from faro.optimizer.policy.registry import make_policy

    name, cpus, minutes = args
    workload = load_trace()
    if minutes:
        workload = workload.head(minutes)
    started = time.perf_counter()
    result = simulate(workload, make_policy(name), SimConfig(cpus=cpus), clock=time.perf_counter)
    row = summarize(result).as_dict()
    row.update(policy=name, cpus=cpus, wall_s=time.perf_counter() - started, policy_time_s=result.policy_time_s)
    return row


def hundred_jobs(policy: str, minutes: int | None) -> dict:
    from faro.optimizer.policy.registry import make_policy

    workload = load_trace().multiplied(10)
    if minutes:
        workload = workload.head(minutes)
    started = time.perf_counter()
    result = simulate(workload, make_policy(policy), SimConfig(cpus=320), clock=time.perf_counter)
    wall = time.perf_counter() - started
    peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    row = summarize(result).as_dict()
    row.update(policy=policy, jobs=100, cpus=320, minutes=workload.num_minutes, wall_s=wall,
               policy_time_s=result.policy_time_s, peak_rss_mib=peak_mib)
    return row


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--minutes", type=int, help="replay only the first N minutes (default: all 360)")
    parser.add_argument("--caps", default="16,32,36,40")
    parser.add_argument("--policies", help="default: all registered")
    parser.add_argument("--hundred-policy", default="faro-fairsum")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--skip-table", action="store_true")
    parser.add_argument("--skip-100", action="store_true")
    args = parser.parse_args()
    doc: dict = {"minutes": args.minutes or 360}

    doc["static"] = static_throughput(args.minutes or 360)
    print("static replicas (8 per job, 10 jobs):")
    for k, v in doc["static"].items():
        print(f"  {k:<9} {v['requests']:>9d} requests in {v['wall_s']:6.1f} s = {v['requests_per_s']:>9.0f} req/s")

    if not args.skip_table:
        from faro.optimizer.policy.registry import POLICY_NAMES

        names = args.policies.split(",") if args.policies else list(POLICY_NAMES)
        caps = [float(c) for c in args.caps.split(",")]
        runs = [(n, c, args.minutes) for c in caps for n in names]
        with ProcessPoolExecutor(max_workers=args.workers) as pool:
            rows = list(pool.map(_policy_run, runs))
        doc["table"] = rows
        print(f"\n{'policy':<22}" + "".join(f"{f'{c:g} CPUs viol/lost':>24}" for c in caps))
        for n in names:
            cells = []
            for c in caps:
                r = next(r for r in rows if r["policy"] == n and r["cpus"] == c)
                cells.append(f"{100 * r['slo_violation']:>14.2f}% / {r['lost_utility']:5.2f}")
            print(f"{n:<22}" + "".join(f"{x:>24}" for x in cells))

    if not args.skip_100:
        doc["hundred_jobs"] = hundred_jobs(args.hundred_policy, args.minutes)
        h = doc["hundred_jobs"]
        print(f"\n100 jobs, 320 CPUs, {h['policy']}: {h['wall_s']:.1f} s wall "
              f"({h['policy_time_s']:.1f} s in the policy), "
              f"peak RSS {h['peak_rss_mib']:.0f} MiB, violation {100 * h['slo_violation']:.2f}%")

    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(doc, indent=2, default=float))
    print(f"wrote {OUT}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    np.seterr(all="ignore")
    sys.exit(main())
