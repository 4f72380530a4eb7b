"""``faro plan PROBLEM``: solve one allocation problem file and print the plan.

Called by the ``faro`` console script (``faro.optimizer.cli``). Prints a table (job, replicas,
expected latency at the SLO percentile, utility, resources) and the quota usage, or JSON with
``--output json``. Invalid files give one line naming the field and exit code 2 (via the CLI).
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
    parser.add_argument("--output", choices=OUTPUTS, default="table", help="table (default) or json")


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


def plan_report(problem: Any, result: Any) -> dict[str, Any]:
    """The JSON document of ``--output json`` (also what the table is drawn from)."""
    cons = problem.constraints()
    usage = cons.usage(result.replicas) if cons.matrix.shape[0] else []
    quotas = []
    for k, label in enumerate(cons.labels):
        free = float(cons.bound[k])
        quotas.append({
            "quota": label.split(":", 1)[0],
            "resource": label.split(":", 1)[1],
            "used_by_faro": float(usage[k]),
            "free_for_faro": free,
            "respected": bool(usage[k] <= free + 1e-9 * max(1.0, abs(free))),
        })
    jobs = []
    for i, job in enumerate(problem.jobs):
        jobs.append({
            "name": job.name,
            "namespace": job.namespace,
            "replicas": int(result.replicas[i]),
            "current_replicas": job.current_replicas,
            "latency_ms": _finite(float(result.latency_ms[i])),
            "slo_ms": job.slo.latency_ms,
            "percentile": job.slo.percentile,
            "utility": float(result.utility[i]),
            "admission": float(result.admission[i]) if len(result.admission) else 1.0,
            "resources": {key: value * int(result.replicas[i]) for key, value in job.resources.items()},
        })
    return {
        "objective": problem.objective,
        "objective_value": _finite(result.objective_value),
        "bound": None if result.bound is None else _finite(result.bound),
        "gap": result.gap,
        "solve_ms": _finite(result.solve_ms),
        "status": result.status,
        "solver": result.solver,
        "message": result.message,
        "jobs": jobs,
        "quotas": quotas,
    }


def _quantity(resource: str, value: float) -> str:
    if "memory" in resource or "storage" in resource:
        return f"{value / 2**30:.3g}Gi"
    return f"{value:.4g}"


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
    rows = [("job", "replicas", "now", "latency", "slo", "utility", "resources")]
    for j in report["jobs"]:
        lat = "inf" if j["latency_ms"] is None else f"{j['latency_ms']:.0f}ms"
        res = ", ".join(f"{k}={_quantity(k, v)}" for k, v in j["resources"].items())
        util = f"{j['utility']:.3f}" + (f" (admit {j['admission']:.0%})" if j["admission"] < 1 else "")
        rows.append((
            f"{j['namespace']}/{j['name']}", str(j["replicas"]), str(j["current_replicas"]), lat,
            f"p{j['percentile']:g}<={j['slo_ms']:g}ms", util, res,
        ))
    lines += _columns(rows)
    lines.append("(latency: the worst horizon step; a growing job serves its first cold-start step with the "
                 "replicas it has now; utility: mean over the steps)")
    if report["quotas"]:
        lines.append("")
        qrows = [("quota", "resource", "faro uses", "free for faro", "ok")]
        for q in report["quotas"]:
            qrows.append((
                q["quota"], q["resource"], _quantity(q["resource"], q["used_by_faro"]),
                _quantity(q["resource"], q["free_for_faro"]), "yes" if q["respected"] else "NO",
            ))
        lines += _columns(qrows)
    return "\n".join(lines) + "\n"


def _columns(rows: list[tuple[str, ...]]) -> list[str]:
    widths = [max(len(r[c]) for r in rows) for c in range(len(rows[0]))]
    return ["  ".join(cell.ljust(w) for cell, w in zip(r, widths, strict=True)).rstrip() for r in rows]
