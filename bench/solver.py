"""Solver benchmark: random instances shaped like the Faro paper, every solver, N = 10 … 10,000.

Run: ``python bench/solver.py`` (``--sizes 10,100,1000,10000 --instances 5 --objectives sum,fairsum``);
``--merge`` keeps the rows of ``--output`` this run does not redo (e.g. re-run only
``--objectives fairsum --solvers auto,greedy`` and keep the COBYLA rows to compare with).
Prints a table (median/max solve time, objective, certified gap to the bound, quotas respected,
peak traced memory) and writes ``bench/results/solver.json``.

Instances: rates 1–1,600 req/min per job (7 one-minute forecast steps around a per-job level),
180 ms processing time, SLO 720 ms at p99, ≈ 3.2 CPUs of budget per job; three resources (cpu,
memory, nvidia.com/gpu on a tenth of the jobs) under one ResourceQuota per namespace (⌈N/25⌉
namespaces, 2–8) plus a cluster cap. COBYLA (the artifact's method) runs only up to
``--cobyla-max`` jobs and cvxpy up to ``--cvxpy-max``. ``--shape llm``: LLM jobs (``llm_instance``),
e.g. ``python bench/solver.py --shape llm --sizes 10,100,1000 --solvers auto,greedy --merge``.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import statistics
import sys
import time
import tracemalloc
from pathlib import Path

import numpy as np
from faro.optimizer.model import SLO, Job, Problem, Quota
from faro.optimizer.solve import solve
from tqdm import tqdm

GI = 2.0**30
RESULTS = Path(__file__).resolve().parent / "results" / "solver.json"


def paper_instance(n: int, seed: int, objective: str) -> Problem:
    rng = np.random.default_rng(seed)
    spaces = int(np.clip(np.ceil(n / 25), 2, 8))
    level_rpm = rng.uniform(1, 1600, n)
    jobs = []
    for i in range(n):
        steps = np.clip(level_rpm[i] * rng.normal(1.0, 0.08, 7), 1, 1600) / 60.0
        gpu = 1.0 if i % 10 == 0 else 0.0
        jobs.append(Job(
            name=f"job{i}", namespace=f"ns{i % spaces}", slo=SLO(720.0, 99.0), processing_time_ms=180.0,
            rate_rps=tuple(float(r) for r in steps),
            resources={"cpu": 1.0, "memory": float(rng.choice([1.0, 2.0])) * GI, "nvidia.com/gpu": gpu},
            min_replicas=1, max_replicas=64, current_replicas=int(rng.integers(1, 8)),
        ))
    budget = 3.2 * n
    gpu_jobs = [sum(1 for j in jobs if j.namespace == f"ns{s}" and j.demand("nvidia.com/gpu")) for s in range(spaces)]
    quotas = [
        Quota(name=f"ns{s}", namespace=f"ns{s}",
              hard={"cpu": 1.25 * budget / spaces, "memory": 1.25 * 2.2 * budget / spaces * GI,
                    "nvidia.com/gpu": 1.0 + 2.0 * gpu_jobs[s]},
              used={"cpu": float(rng.uniform(0, 0.05)) * budget / spaces})
        for s in range(spaces)
    ]
    quotas.append(Quota(name="cluster", hard={"cpu": budget, "memory": 2.0 * budget * GI, "nvidia.com/gpu": 0.12 * n}))
    return Problem(jobs=tuple(jobs), quotas=tuple(quotas), objective=objective)


def cluster_instance(n: int, seed: int, objective: str) -> Problem:
    """The simulator's shape: CPU only under one cluster cap of 3.2 CPUs per job, max 40 replicas."""
    rng = np.random.default_rng(seed)
    level_rpm = rng.uniform(1, 1600, n)
    jobs = tuple(
        Job(name=f"job{i}", slo=SLO(720.0, 99.0), processing_time_ms=180.0,
            rate_rps=tuple(float(r) for r in np.clip(level_rpm[i] * rng.normal(1.0, 0.08, 7), 1, 1600) / 60.0),
            resources={"cpu": 1.0}, min_replicas=1, max_replicas=40, current_replicas=int(rng.integers(1, 8)))
        for i in range(n)
    )
    return Problem(jobs=jobs, quotas=(Quota(name="cluster", hard={"cpu": 3.2 * n}),), objective=objective)


def llm_instance(n: int, seed: int, objective: str, *, scenarios: bool = False) -> Problem:
    """LLM jobs (continuous-batching model): per job its own engine profile (8B-class to 70B-class on
    1–4 GPUs), its own 256-request token mix and TTFT/ITL SLOs; 7 forecast steps of 0.2–20 req/s; GPUs
    under 8 namespace quotas (0.45 GPU per job each) and a cluster cap of 3 GPUs per job. With
    ``scenarios``, each job also has the fair objectives' forecast scenarios (``faro_llm.SCENARIO_LEVELS`` of a
    normal forecast whose spread is 8% of the level per √step), as the Faro policy plans them."""
    from faro.optimizer.model.llm_profile import LLMSLO, EngineProfile, LLMSpec, TokenMix
    from faro.optimizer.policy.faro_llm import SCENARIO_LEVELS
    from scipy.stats import norm

    z = norm.ppf(SCENARIO_LEVELS)[:, None] * np.sqrt(np.arange(1, 8))[None, :]
    rng = np.random.default_rng(seed)
    spaces = 8
    jobs = []
    for i in range(n):
        profile = EngineProfile(
            step_base_ms=float(rng.uniform(8, 35)), decode_ms_per_seq=float(rng.uniform(0.1, 0.6)),
            prefill_ms_per_token=float(rng.uniform(0.03, 0.25)), kv_cache_tokens=int(rng.integers(60_000, 400_000)),
            max_num_seqs=int(rng.choice([64, 128, 256])), max_num_batched_tokens=int(rng.choice([2048, 4096, 8192])),
            gpus=float(rng.choice([1, 1, 1, 2, 4])), model_load_s=float(rng.uniform(60, 240)),
        )
        mix = TokenMix(np.clip(rng.lognormal(np.log(rng.uniform(200, 2000)), 0.7, 256), 1, 16_000),
                       np.clip(rng.lognormal(np.log(rng.uniform(10, 300)), 0.8, 256), 1, 4000))
        slo = LLMSLO(ttft_ms=float(rng.uniform(1000, 5000)), itl_ms=float(rng.uniform(150, 800)))
        level = rng.uniform(0.2, 20.0)
        jobs.append(Job.for_llm(
            f"llm{i}", llm=LLMSpec(slo, profile), token_mix=mix, namespace=f"ns{i % spaces}",
            rate_rps=tuple(float(r) for r in np.clip(level * rng.normal(1.0, 0.08, 7), 0.01, None)),
            min_replicas=1, max_replicas=32, current_replicas=int(rng.integers(1, 4)),
            rate_spread_rps=tuple(map(tuple, (0.08 * level * z).tolist())) if scenarios else (),
        ))
    quotas = [Quota(name=f"ns{s}", namespace=f"ns{s}", hard={"requests.nvidia.com/gpu": 0.45 * n})
              for s in range(spaces)]
    quotas.append(Quota(name="cluster", hard={"nvidia.com/gpu": 3.0 * n}))
    return Problem(jobs=tuple(jobs), quotas=tuple(quotas), objective=objective)


SHAPES = {"paper": paper_instance, "cluster": cluster_instance, "llm": llm_instance,
          "llm-scenarios": functools.partial(llm_instance, scenarios=True)}
COLD = {"llm", "llm-scenarios"}
"""Shapes whose solves are timed cold: LLM curves are remembered on each token mix, so every timed solve
gets a freshly built problem (new mixes), as a live cycle with newly observed mixes does."""


def measure(problem: Problem, solver: str, *, traced: bool, time_limit_s: float = 120.0) -> dict:
    if traced:
        tracemalloc.start()
    cpu = time.process_time()
    result = solve(problem, solver=solver, clock=time.perf_counter, time_limit_s=time_limit_s)
    cpu_ms = (time.process_time() - cpu) * 1000.0  # on a shared machine, closer to an idle one's wall time
    peak = None
    if traced:
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    cons = problem.constraints()
    respected = bool(np.all(cons.usage(result.replicas) <= cons.bound + 1e-9 * np.maximum(1, np.abs(cons.bound))))
    return {
        "solve_ms": result.solve_ms, "cpu_ms": cpu_ms, "objective_value": result.objective_value, "bound": result.bound,
        "gap": result.gap, "status": result.status, "quota_respected": respected, "peak_bytes": peak,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="10,100,1000,10000")
    parser.add_argument("--instances", type=int, default=5)
    parser.add_argument("--objectives", default="sum,fairsum")
    parser.add_argument("--solvers", default="auto,greedy,cvxpy,cobyla")
    parser.add_argument("--cobyla-max", type=int, default=100)
    parser.add_argument("--time-limit-s", type=float, default=120.0, help="per COBYLA solve")
    parser.add_argument("--cvxpy-max", type=int, default=1000)
    parser.add_argument("--output", default=str(RESULTS))
    parser.add_argument("--shape", choices=sorted(SHAPES), default="paper",
                        help="paper: cpu+memory+GPU under namespace quotas and a cluster cap; cluster: one CPU cap; "
                             "llm: LLM jobs (TTFT/ITL SLOs, GPU quotas), timed cold (and warm); llm-scenarios: "
                             "the same with the forecast scenarios the fair objectives plan LLM jobs over")
    parser.add_argument("--merge", action="store_true", help="keep rows of --output this run does not redo")
    args = parser.parse_args(argv)
    sizes = [int(s) for s in args.sizes.split(",")]
    rows = []
    for objective in args.objectives.split(","):
        for n in sizes:
            count = args.instances if n <= 1000 else max(1, min(args.instances, 3))
            problems = [SHAPES[args.shape](n, seed, objective) for seed in range(count)]
            solve(problems[0], solver="greedy")  # warm imports and caches outside the timings
            for solver in args.solvers.split(","):
                if (solver == "cobyla" and n > args.cobyla_max) or (solver == "cvxpy" and n > args.cvxpy_max):
                    continue
                runs = []
                for seed, problem in enumerate(tqdm(problems, desc=f"{objective} n={n} {solver}", file=sys.stderr,
                                                    leave=False)):
                    if args.shape in COLD:
                        problem = SHAPES[args.shape](n, seed, objective)
                    run = measure(problem, solver, traced=False, time_limit_s=args.time_limit_s)
                    if args.shape in COLD:  # and again with the curves remembered (an unchanged mix)
                        warm = measure(problem, solver, traced=False)
                        run["warm_solve_ms"], run["warm_cpu_ms"] = warm["solve_ms"], warm["cpu_ms"]
                    run["seed"] = seed
                    runs.append(run)
                first = SHAPES[args.shape](n, 0, objective) if args.shape in COLD else problems[0]
                peak = measure(first, solver, traced=True, time_limit_s=args.time_limit_s)["peak_bytes"]
                times = [r["solve_ms"] for r in runs]
                gaps = [r["gap"] for r in runs if r["gap"] is not None]
                rows.append({
                    "shape": args.shape, "objective": objective, "n": n, "solver": solver, "instances": len(runs),
                    "median_ms": statistics.median(times), "max_ms": max(times),
                    "mean_objective": statistics.fmean(r["objective_value"] for r in runs),
                    "max_gap": max(gaps) if gaps else None,
                    "quota_respected": all(r["quota_respected"] for r in runs),
                    "peak_mib": peak / 2**20, "runs": runs,
                })
                rows[-1]["cpu_median_ms"] = statistics.median(r["cpu_ms"] for r in runs)
                rows[-1]["load_avg"] = list(os.getloadavg())
                if args.shape in COLD:
                    rows[-1]["warm_median_ms"] = statistics.median(r["warm_solve_ms"] for r in runs)
                    rows[-1]["warm_cpu_median_ms"] = statistics.median(r["warm_cpu_ms"] for r in runs)
    out = Path(args.output)
    command = "python bench/solver.py " + " ".join(argv or sys.argv[1:])
    commands = [command]
    if args.merge and out.exists():
        old = json.loads(out.read_text())
        redone = {_key(r) for r in rows}
        kept = [r for r in old["rows"] if _key(r) not in redone]
        rows = sorted(kept + rows, key=lambda r: (r.get("shape", "paper"), r["objective"], r["n"]))
        commands = [*old.get("commands", [old.get("command", "")]), command]
    _compare_with_cobyla(rows)
    print(_table(rows))
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"command": command, "commands": commands, "rows": rows}, indent=1))
    print(f"\nwrote {out}")
    import docs_tables  # the docs' benchmark tables are generated from bench/results

    docs_tables.update()
    return 0


def _key(row: dict) -> tuple:
    return row.get("shape", "paper"), row["objective"], row["n"], row["solver"]


def _compare_with_cobyla(rows: list[dict]) -> None:
    """Mark, per row, whether it scored at least COBYLA's objective on every instance COBYLA ran."""
    by_key = {_key(r): r for r in rows}
    for r in rows:
        ref = by_key.get((*_key(r)[:3], "cobyla"))
        if ref is None or r["solver"] == "cobyla":
            r["beats_cobyla"] = None
            continue
        r["beats_cobyla"] = all(
            a["objective_value"] >= b["objective_value"] - 1e-9 for a, b in zip(r["runs"], ref["runs"], strict=True)
        )


def _table(rows: list[dict]) -> str:
    head = ("shape", "objective", "N", "solver", "median ms", "max ms", "objective", "max gap", "quota ok", "≥ COBYLA",
            "peak MiB")
    lines = [head]
    for r in rows:
        lines.append((
            r.get("shape", "paper"), r["objective"], str(r["n"]), r["solver"],
            f"{r['median_ms']:.1f}", f"{r['max_ms']:.1f}",
            f"{r['mean_objective']:.3f}", "-" if r["max_gap"] is None else f"{100 * r['max_gap']:.4f}%",
            "yes" if r["quota_respected"] else "NO",
            {None: "-", True: "yes", False: "NO"}[r["beats_cobyla"]], f"{r['peak_mib']:.1f}",
        ))
    widths = [max(len(line[c]) for line in lines) for c in range(len(head))]
    return "\n".join("  ".join(cell.rjust(w) for cell, w in zip(line, widths, strict=True)) for line in lines)


if __name__ == "__main__":
    sys.exit(main())
