"""``faro simulate``: replay a trace through the simulated cluster under each policy; table, JSON and plots.

Registered in ``optimizer/cli.py``. With no arguments it runs the bundled paper workload (10 jobs, 6 h,
32 CPUs, SLO p99 ≤ 720 ms) under every policy of ``faro.optimizer.policy.registry`` in a process pool.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

from faro.optimizer.commands import simulate_llm

DEFAULT_OUTPUT = "faro-results"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--trace", help="wide CSV minute,<job>,<job>,… of requests per minute (default: bundled)")
    parser.add_argument("--history", help="past load the forecasters start from: a history CSV job,day,sample,m0,… "
                        "(sample 0) or a wide trace, or 'none' (default: the bundled days 1-10 with the bundled "
                        "trace, none with --trace)")
    parser.add_argument("--history-minutes", type=int, help="keep only the last N minutes of --history (default all)")
    parser.add_argument("--cpus", type=float, default=32.0, help="cluster CPU cap (default 32)")
    parser.add_argument("--slo-ms", type=float, default=720.0, help="latency SLO in ms (default 720)")
    parser.add_argument("--slo-percentile", type=float, default=99.0, help="SLO percentile (default 99)")
    parser.add_argument("--policies", help="comma-separated policy names (default: all registered)")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    parser.add_argument("--output", default=DEFAULT_OUTPUT, help=f"output folder (default ./{DEFAULT_OUTPUT})")
    parser.add_argument("--jobs-multiplier", type=int, default=1, help="duplicate every job K times (default 1)")
    parser.add_argument("--actuation", choices=("direct", "hpa"), default="direct", help="default direct")
    parser.add_argument("--discipline", choices=("artifact", "mgc"), default="artifact",
                        help="queue discipline: artifact round-robin (default) or central M/G/c")
    parser.add_argument("--minutes", type=int, help="replay only the first N minutes")
    parser.add_argument("--plot-policy", help="policy whose load/replicas/latency timeline is plotted (default: the "
                        "one with the fewest violations that a cluster can run, i.e. not the oracle)")
    parser.add_argument("--workers", type=int, default=min(2, os.cpu_count() or 1), help="processes (default 2)")
    parser.add_argument("--capacity-search", action="store_true",
                        help="find the smallest CPU cap meeting --target-violation for the first of --policies "
                        "(bisection); writes capacity-search.json and capacity-search.png")
    parser.add_argument("--target-violation", type=float, default=0.01, help="for --capacity-search (default 0.01)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    simulate_llm.add_arguments(parser)  # --workload llm, --gpus, --balancer
    from faro.optimizer.commands import simulate_suite

    simulate_suite.add_arguments(parser)


def _policy_names(arg: str | None) -> list[str]:
    from faro.optimizer.errors import InvalidInputError

    try:
        from faro.optimizer.policy.registry import POLICY_NAMES
    except ImportError as exc:
        raise InvalidInputError("policies", f"the policy registry is not available: {exc}") from None
    if not arg:
        return list(POLICY_NAMES)
    names = [n.strip() for n in arg.split(",") if n.strip()]
    unknown = [n for n in names if n not in POLICY_NAMES]
    if unknown:
        raise InvalidInputError("--policies", f"unknown {unknown}; known: {', '.join(POLICY_NAMES)}")
    return names


def _run_one(task: dict[str, Any]) -> dict[str, Any]:
    """Worker: one policy on one configuration. Errors come back as data, never kill the pool."""
    from faro.optimizer.policy.registry import make_policy, planning_options
    from faro.optimizer.sim.engine import SimConfig, simulate
    from faro.optimizer.sim.metrics import job_minute_stats, summarize, violation_breakdown

    started = time.perf_counter()
    try:
        workload = _workload(task)
        # the options `faro optimizer` builds the same policy with (one source of truth)
        policy = make_policy(task["policy"], **planning_options(task["policy"], actuation=task["config"]["actuation"]))
        result = simulate(workload, policy, SimConfig(**task["config"]), clock=time.perf_counter)
        stats = job_minute_stats(result)
        row: dict[str, Any] = summarize(result, stats).as_dict()
        row["breakdown"] = violation_breakdown(result, stats)
        row["policy_time_s"] = result.policy_time_s
        row["wall_s"] = time.perf_counter() - started
        return {"policy": task["policy"], "row": row, "result": result if task.get("keep") else None}
    except Exception as exc:  # one policy failing must not lose the others' results
        return {"policy": task["policy"], "row": {"error": f"{type(exc).__name__}: {exc}"}, "result": None}


def _workload(task: dict[str, Any]) -> Any:
    """The task's workload: trace, past load (before multiplying, so copies share their original's), jobs
    multiplier and minutes."""
    from faro.optimizer.sim.workload import load_history, load_trace

    workload = load_trace(task["trace"])
    history = task.get("history", "none")
    if history != "none":
        path = None if history == "bundled" else history
        workload = load_history(workload, path, minutes=task.get("history_minutes"))
    workload = workload.multiplied(task["multiplier"])
    return workload.head(task["minutes"]) if task.get("minutes") else workload


def run_tasks(
    tasks: list[dict[str, Any]],
    *,
    worker: Any,
    workers: int,
    progress: bool,
    desc: str = "simulate",
    label: Any = None,
    on_result: Any = None,
) -> list[dict[str, Any]]:
    """``worker(task)`` for every task, on ``workers`` processes, with a progress bar; results in completion
    order. ``label(task_or_result)`` names the run on the bar; ``on_result`` sees each result as it arrives.
    The one runner of ``faro simulate``, its LLM workload and ``--suite``."""
    from tqdm import tqdm

    name = label or (lambda t: t["policy"])
    bar = tqdm(total=len(tasks), desc=desc, unit="run", file=sys.stderr, disable=not progress)
    out: list[dict[str, Any]] = []

    def finished(res: dict[str, Any]) -> None:
        out.append(res)
        if on_result:
            on_result(res)
        bar.update()

    try:
        if workers <= 1 or len(tasks) <= 1:
            for task in tasks:
                bar.set_postfix_str(name(task))
                finished(worker(task))
        else:
            from concurrent.futures import ProcessPoolExecutor, as_completed

            with ProcessPoolExecutor(max_workers=workers) as pool:
                for fut in as_completed([pool.submit(worker, t) for t in tasks]):
                    res = fut.result()
                    bar.set_postfix_str(name(res))
                    finished(res)
    finally:
        bar.close()
    return out


def _run_all(
    tasks: list[dict[str, Any]], *, workers: int, progress: bool, worker: Any = None
) -> list[dict[str, Any]]:
    return run_tasks(tasks, worker=worker or _run_one, workers=workers, progress=progress)


def run(args: argparse.Namespace) -> int:
    from faro.optimizer.errors import InvalidInputError
    from faro.optimizer.sim.engine import SimConfig

    if getattr(args, "workload", "cpu") == "llm":
        from faro.optimizer.commands.simulate_llm import run as run_llm

        return run_llm(args)

    if args.suite:
        from faro.optimizer.commands import simulate_suite

        return simulate_suite.run(args)
    names = _policy_names(args.policies)
    history = args.history or ("none" if args.trace else "bundled")
    base = {"trace": args.trace, "multiplier": args.jobs_multiplier, "minutes": args.minutes, "history": history,
            "history_minutes": args.history_minutes}
    workload = _workload(base)  # validates the trace and history early
    if args.minutes is not None and args.minutes < 1:
        raise InvalidInputError("--minutes", f"must be >= 1, got {args.minutes}")
    config = {
        "cpus": args.cpus,
        "slo_ms": args.slo_ms,
        "slo_percentile": args.slo_percentile,
        "seed": args.seed,
        "actuation": args.actuation,
        "discipline": args.discipline,
    }
    SimConfig(**config)  # validate once, before starting workers
    out_dir = Path(args.output)
    out_dir.mkdir(parents=True, exist_ok=True)
    meta = {
        "trace": args.trace or "bundled:faro-top9-day11.csv",
        "history": "bundled:faro-top9-history.csv" if history == "bundled" else history,
        "history_minutes": 0 if workload.history_rpm is None else workload.history_rpm.shape[1],
        "jobs": workload.num_jobs,
        "minutes": args.minutes or workload.num_minutes,
        "jobs_multiplier": args.jobs_multiplier,
        **config,
    }

    if args.capacity_search:
        return _capacity_search(args, names[0], base, config, meta, out_dir)

    # Longest runs first (the Oracle and Faro solve every 5 min), so the pool's last task is a short one.
    order = sorted(names, key=lambda n: (n != "oracle", not n.startswith("faro-"), n != "mark"))
    tasks = [{**base, "policy": n, "config": config, "keep": True} for n in order]
    started = time.perf_counter()
    results = _run_all(tasks, workers=args.workers, progress=not args.no_progress)
    by_name = {r["policy"]: r["row"] for r in results}
    rows = {n: by_name[n] for n in names}
    doc = {"policies": rows, **meta, "wall_s": time.perf_counter() - started}
    (out_dir / "results.json").write_text(json.dumps(doc, indent=2, allow_nan=True))

    from faro.optimizer.sim.report import TABLE_LEGEND, best_deployable, plot_policies, plot_timeline, table

    print(table(rows))
    print(TABLE_LEGEND)
    ok = {k: v for k, v in rows.items() if "error" not in v}
    written = [out_dir / "results.json"]
    for old in [out_dir / "policies.png", *out_dir.glob("timeline-*.png")]:
        old.unlink(missing_ok=True)  # a previous run's plots must not sit beside these results
    if ok:
        plot_policies(rows, out_dir / "policies.png", title=f"{meta['jobs']} jobs, {args.cpus:g} CPUs",
                      jobs=meta["jobs"])
        written.append(out_dir / "policies.png")
        chosen = args.plot_policy or best_deployable(ok)
        for r in results:
            if r["policy"] == chosen and r["result"] is not None:
                plot_timeline(r["result"], out_dir / f"timeline-{chosen}.png")
                written.append(out_dir / f"timeline-{chosen}.png")
    print(f"wrote {', '.join(map(str, written))} ({time.perf_counter() - started:.1f} s)", file=sys.stderr)
    return 0 if len(ok) == len(rows) else 1


def _capacity_search(
    args: argparse.Namespace, policy: str, base: dict[str, Any], config: dict[str, Any], meta: dict[str, Any],
    out_dir: Path,
) -> int:
    """Bisection over integer CPU caps for the smallest one whose violation rate ≤ the target."""
    from faro.optimizer.errors import InvalidInputError

    if not 0 < args.target_violation < 1:
        raise InvalidInputError("--target-violation", f"must be in (0, 1), got {args.target_violation}")
    trials: dict[int, dict[str, Any]] = {}

    def violation(cpus: int) -> float:
        if cpus not in trials:
            task = {**base, "policy": policy, "config": {**config, "cpus": float(cpus)}, "keep": False}
            trials[cpus] = _run_all([task], workers=1, progress=not args.no_progress)[0]["row"]
            if "error" in trials[cpus]:
                raise InvalidInputError(f"policy {policy} at {cpus} CPUs", trials[cpus]["error"])
            print(f"  {cpus} CPUs: {100 * trials[cpus]['slo_violation']:.2f}% violations", file=sys.stderr)
        return float(trials[cpus]["slo_violation"])

    lo = meta["jobs"]  # one replica per job is the least the simulator can run
    hi = max(lo, int(args.cpus))
    while violation(hi) > args.target_violation:
        lo, hi = hi, hi * 2
        if hi > 64 * meta["jobs"] * 100:
            raise InvalidInputError("--capacity-search", "no CPU cap up to the max-replica limit meets the target")
    if violation(lo) <= args.target_violation:
        hi = lo
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if violation(mid) <= args.target_violation:
            hi = mid
        else:
            lo = mid
    doc = {
        "capacity_search": {"policy": policy, "target_violation": args.target_violation, "cpus": hi,
                            "trials": {str(k): v for k, v in sorted(trials.items())}},
        **meta,
    }
    # its own files: results.json keeps the policy comparison's schema
    from faro.optimizer.sim.report import plot_capacity

    json_path, png_path = out_dir / "capacity-search.json", out_dir / "capacity-search.png"
    json_path.write_text(json.dumps(doc, indent=2))
    plot_capacity({k: float(v["slo_violation"]) for k, v in trials.items()}, png_path, policy=policy,
                  target=args.target_violation, chosen=hi)
    print(f"smallest CPU cap for {policy} with SLO violations <= {100 * args.target_violation:g}%: {hi}")
    print(f"wrote {json_path}, {png_path}", file=sys.stderr)
    return 0
