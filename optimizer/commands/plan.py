"""``faro plan PROBLEM``: solve one allocation problem file and print the plan.

Called by the ``faro`` console script (``faro.optimizer.cli``). Prints a table (job, replicas now and
planned, steady-state latency at the SLO percentile, the latency while new replicas cold-start, utility,
resources in Kubernetes units) and the quota usage, or JSON with ``--output json`` (numbers with their
units). Invalid files give one line naming the field and exit code 2 (via the CLI).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from typing import Any

OUTPUTS = ("table", "json")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from faro.optimizer.model.problem import OBJECTIVES

    parser.add_argument("problem", metavar="PROBLEM", help="problem file (YAML, or JSON when it ends in .json)")
    parser.add_argument(
        "--solver", default="auto",
        help="auto (default), greedy, dp, cvxpy or cobyla (the Faro artifact's method)",
    )
    parser.add_argument("--objective", choices=OBJECTIVES, default=None, help="override the file's objective")
    parser.add_argument("-o", "--output", choices=OUTPUTS, default="table", help="table (default) or json")


def run(args: argparse.Namespace) -> int:
    import time

    from faro.optimizer.errors import InvalidInputError
    from faro.optimizer.problem_file import load_problem
    from faro.optimizer.solve import SOLVERS, solve

    if args.solver not in SOLVERS:
        raise InvalidInputError("--solver", f"must be one of {', '.join(SOLVERS)}, got {args.solver!r}")
    problem = load_problem(args.problem, objective=args.objective)
    result = solve(problem, solver=args.solver, clock=time.perf_counter)
    report = plan_report(problem, result)
    if args.output == "json":
        json.dump(report, sys.stdout, indent=2)
        sys.stdout.write("\n")
    else:
        sys.stdout.write(format_table(report))
    return 0 if result.ok else 1


def _finite(x: float) -> float | None:
    return float(x) if math.isfinite(x) else None


def latency_split(problem: Any, result: Any) -> tuple[list[float], list[float | None]]:
    """Per job: the steady-state latency (worst horizon step once every planned replica serves) and the
    latency during cold start (the first ``cold_start_s`` of the horizon, served by the replicas running
    now; None when the job does not grow). The solver's ``latency_ms`` is the worse of the two."""
    import numpy as np
    from faro.optimizer.model.latency import tail_latency_ms

    steps = problem.model.cold_start_steps
    steady: list[float] = []
    cold: list[float | None] = []
    for i, job in enumerate(problem.jobs):
        if job.llm is not None:  # TTFT (else ITL) by the LLM model; its cold start is the model load
            s, c = _llm_split(problem, result, i)
            steady.append(s["reported"])
            cold.append(None if c is None else c["reported"])
            continue
        x = int(result.replicas[i])
        admit = float(result.admission[i]) if len(result.admission) else 1.0
        rates = np.asarray(job.rate_rps, dtype=float) * admit
        lat = tail_latency_ms(rates, job.processing_time_ms, x, percentile=job.slo.percentile,
                              rho_max=problem.model.rho_max)
        steady.append(float(lat.max()))
        if x > job.current_replicas and steps > 0:
            warm = tail_latency_ms(rates[:steps], job.processing_time_ms, job.current_replicas,
                                   percentile=job.slo.percentile, rho_max=problem.model.rho_max)
            cold.append(float(warm.max()))
        else:
            cold.append(None)
    return steady, cold


def _llm_split(problem: Any, result: Any, i: int) -> tuple[dict[str, float], dict[str, float] | None]:
    """An LLM job's worst-step TTFT/TPOT/ITL once every planned replica serves, and while new replicas load
    their model (the first ``⌈model_load_s/step_s⌉`` steps on the replicas running now; None when it
    does not grow)."""
    import numpy as np
    from faro.optimizer.model.llm_utility import cached_curves

    job = problem.jobs[i]
    curve = cached_curves([job.llm.profile], [job.token_mix], [job.llm.slo.percentile])
    admit = float(result.admission[i]) if len(result.admission) else 1.0
    rates = np.asarray(job.rate_rps, dtype=float)[None, :] * admit
    load_steps = math.ceil(job.llm.profile.model_load_s / problem.model.step_s)
    itl_only = job.llm.slo.ttft_ms is None

    def worst(count: int, upto: int | None = None) -> dict[str, float]:
        p = curve.predict(rates[:, :upto], np.full((1, 1), count), u_max=problem.model.rho_max)
        t, s = float(p.ttft_ms.max()), float(p.itl_ms.max())
        return {"ttft_ms": t, "itl_ms": s, "tpot_ms": float(p.tpot_ms.max()), "reported": s if itl_only else t}

    x = int(result.replicas[i])
    steady = worst(x)
    grows = x > job.current_replicas and load_steps > 0
    return steady, worst(job.current_replicas, load_steps) if grows else None


def plan_report(problem: Any, result: Any) -> dict[str, Any]:
    """The JSON document of ``--output json`` (also what the table is drawn from)."""
    from faro.optimizer.quantity import quantity_json

    cons = problem.constraints()
    usage = cons.usage(result.replicas) if cons.matrix.shape[0] else []
    quotas = []
    for k, label in enumerate(cons.labels):
        free = float(cons.bound[k])
        name, resource = label.split(":", 1)
        quotas.append({
            "quota": name,
            "resource": resource,
            "used_by_faro": quantity_json(resource, float(usage[k])),
            "free_for_faro": quantity_json(resource, free),
            "respected": bool(usage[k] <= free + 1e-9 * max(1.0, abs(free))),
        })
    steady, cold = latency_split(problem, result) if result.ok else ([math.inf] * len(problem.jobs),
                                                                     [None] * len(problem.jobs))
    jobs = []
    for i, job in enumerate(problem.jobs):
        replicas = int(result.replicas[i])
        jobs.append({
            "name": job.name,
            "namespace": job.namespace,
            "replicas": replicas,
            "current_replicas": job.current_replicas,
            "latency_ms": _finite(float(result.latency_ms[i])),
            "steady_latency_ms": _finite(steady[i]),
            "cold_start_latency_ms": None if cold[i] is None else _finite(cold[i]),
            "slo_ms": job.slo.latency_ms,
            "percentile": job.slo.percentile,
            "utility": float(result.utility[i]),
            "admission": float(result.admission[i]) if len(result.admission) else 1.0,
            "resources": {key: quantity_json(key, value * replicas) for key, value in job.resources.items()},
        })
        if job.llm is not None:
            jobs[-1]["llm"] = _llm_report(problem, result, i)
    return {
        "objective": problem.objective,
        "objective_value": _finite(result.objective_value),
        "bound": None if result.bound is None else _finite(result.bound),
        "gap": result.gap,
        "solve_ms": _finite(result.solve_ms),
        "status": result.status,
        "solver": result.solver,
        "message": result.message,
        "cold_start_s": problem.model.cold_start_s,
        "step_s": problem.model.step_s,
        "horizon_steps": max(len(job.rate_rps) for job in problem.jobs),
        "jobs": jobs,
        "quotas": quotas,
    }


def _llm_report(problem: Any, result: Any, i: int) -> dict[str, Any]:
    """An LLM job's TTFT/ITL percentiles and SLOs, and what one replica sustains (``jobs[i].llm``)."""
    from faro.optimizer.model.llm_utility import cached_curves

    job = problem.jobs[i]
    spec, mix = job.llm, job.token_mix
    curve = cached_curves([spec.profile], [mix], [spec.slo.percentile])
    inf = {"ttft_ms": math.inf, "tpot_ms": math.inf, "itl_ms": math.inf}
    steady, cold = _llm_split(problem, result, i) if result.ok else (inf, None)
    return {
        "ttft_ms": _finite(steady["ttft_ms"]),
        "itl_ms": _finite(steady["itl_ms"]),
        "tpot_ms": _finite(steady["tpot_ms"]),  # requests' mean gap (what per-request attainment counts)
        "cold_start_ttft_ms": None if cold is None else _finite(cold["ttft_ms"]),
        "cold_start_itl_ms": None if cold is None else _finite(cold["itl_ms"]),
        "slo_ttft_ms": spec.slo.ttft_ms,
        "slo_itl_ms": spec.slo.itl_ms,
        "replica_capacity_rps": float(curve.capacity_rps[0]),
        "capacity_bound_by": curve.binding[0],
        "gpus_per_replica": spec.profile.gpus,
        "model_load_s": spec.profile.model_load_s,
        "mean_prompt_tokens": mix.mean_prompt_tokens,
        "mean_output_tokens": mix.mean_output_tokens,
    }


def _llm_cells(j: dict[str, Any]) -> tuple[str, str, str]:
    """Latency, while-scaling-up and SLO cells of an LLM job: TTFT and ITL against what it declares."""
    llm = j["llm"]
    lat = f"ttft {_ms(llm['ttft_ms'])} itl {_ms(llm['itl_ms'])}"
    cold = "-" if llm["cold_start_ttft_ms"] is None else \
        f"ttft {_ms(llm['cold_start_ttft_ms'])} itl {_ms(llm['cold_start_itl_ms'])}"
    parts = [f"ttft<={llm['slo_ttft_ms']:g}ms"] if llm["slo_ttft_ms"] is not None else []
    if llm["slo_itl_ms"] is not None:
        parts.append(f"itl<={llm['slo_itl_ms']:g}ms")
    return lat, cold, f"p{j['percentile']:g} " + " ".join(parts)


def _ms(value: float | None) -> str:
    return "inf" if value is None else f"{value:.0f}ms"


def format_table(report: dict[str, Any]) -> str:
    gap = report["gap"]
    head = (
        f"objective {report['objective']} = {report['objective_value']:.6g}"
        + (f"  (bound {report['bound']:.6g}, gap {100 * gap:.3g}%)" if gap is not None else "")
        + f"  status {report['status']}  solver {report['solver']}"
        + (f"  {report['solve_ms']:.1f} ms" if report["solve_ms"] is not None else "")
    )
    lines = [head]
    if report["message"]:
        lines.append(f"note: {report['message']}")
    rows = [("job", "replicas", "latency", "while scaling up", "slo", "utility", "resources")]
    for j in report["jobs"]:
        move = str(j["replicas"]) if j["replicas"] == j["current_replicas"] else \
            f"{j['current_replicas']} -> {j['replicas']}"
        cold = "-" if j["cold_start_latency_ms"] is None and j["steady_latency_ms"] is not None else \
            _ms(j["cold_start_latency_ms"])
        lat, slo = _ms(j["steady_latency_ms"]), f"p{j['percentile']:g}<={j['slo_ms']:g}ms"
        if "llm" in j:
            lat, cold, slo = _llm_cells(j)
        res = ", ".join(f"{k}={v['quantity']}" for k, v in j["resources"].items())
        util = f"{j['utility']:.3f}" + (f" (admit {j['admission']:.0%})" if j["admission"] < 1 else "")
        rows.append((f"{j['namespace']}/{j['name']}", move, lat, cold, slo, util, res))
    lines += _columns(rows)
    window_s = math.ceil(report["cold_start_s"] / report["step_s"]) * report["step_s"]
    lines.append(f"(latency at the SLO percentile: the worst forecast step once every planned replica serves; "
                 f"while scaling up: the first {window_s:g} s, when new replicas are still starting "
                 f"({report['cold_start_s']:g} s) and the ones running now serve the load; utility: mean over the "
                 f"{report['horizon_steps']} steps of {report['step_s']:g} s)")
    if any("llm" in j for j in report["jobs"]):
        lines.append("(LLM jobs: TTFT and inter-token latency at the SLO percentile by the continuous-batching "
                     "model; while scaling up: until new replicas have loaded their model, model_load_s)")
    if report["quotas"]:
        lines.append("")
        qrows = [("quota", "resource", "faro uses", "free for faro", "ok")]
        for q in report["quotas"]:
            qrows.append((q["quota"], q["resource"], q["used_by_faro"]["quantity"], q["free_for_faro"]["quantity"],
                          "yes" if q["respected"] else "NO"))
        lines += _columns(qrows)
    return "\n".join(lines) + "\n"


def _columns(rows: list[tuple[str, ...]]) -> list[str]:
    widths = [max(len(r[c]) for r in rows) for c in range(len(rows[0]))]
    return ["  ".join(cell.ljust(w) for cell, w in zip(r, widths, strict=True)).rstrip() for r in rows]
