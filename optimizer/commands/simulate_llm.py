"""``faro simulate --workload llm``: the bundled multi-model LLM workload on a GPU cluster under each LLM
policy; table, JSON and plots like ``faro simulate``.

Called from ``optimizer/commands/simulate.py`` (its ``--workload`` hook). The workload is
``optimizer/sim/llm/workload.BUNDLED_MODELS`` on one hour of the bundled Azure LLM 2023 traces; the
policies are ``faro.optimizer.policy.registry.LLM_POLICY_NAMES``; ``--gpus`` caps the cluster.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

DEFAULT_GPUS = 20.0


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--workload", choices=("cpu", "llm"), default="cpu",
                        help="cpu: the paper's CPU jobs (default); llm: the bundled LLM models on GPUs")
    parser.add_argument("--gpus", type=float, default=DEFAULT_GPUS,
                        help=f"cluster GPU cap for --workload llm (default {DEFAULT_GPUS:g})")
    parser.add_argument("--balancer", choices=("least-outstanding", "round-robin"), default="least-outstanding",
                        help="how requests are spread over a model's replicas (--workload llm)")


def _policy_names(arg: str | None) -> list[str]:
    from faro.optimizer.errors import InvalidInputError
    from faro.optimizer.policy.registry import LLM_POLICY_NAMES

    if not arg:
        return list(LLM_POLICY_NAMES)
    names = [n.strip() for n in arg.split(",") if n.strip()]
    unknown = [n for n in names if n not in LLM_POLICY_NAMES]
    if unknown:
        known = ", ".join(LLM_POLICY_NAMES)
        raise InvalidInputError("--policies", f"unknown for --workload llm {unknown}; known: {known}")
    return names


def run_one(task: dict[str, Any]) -> dict[str, Any]:
    """Worker: one policy on the LLM workload. Errors come back as data, never kill the pool."""
    from faro.optimizer.policy.registry import make_policy
    from faro.optimizer.sim.llm.cluster import LLMSimConfig, simulate_llm
    from faro.optimizer.sim.llm.metrics import minute_stats, summarize
    from faro.optimizer.sim.llm.report import per_model
    from faro.optimizer.sim.llm.workload import bundled_workload

    started = time.perf_counter()
    try:
        workload = bundled_workload(seed=task["seed"])
        if task.get("minutes"):
            workload = workload.head(task["minutes"])
        result = simulate_llm(workload, make_policy(task["policy"]), LLMSimConfig(**task["config"]),
                              clock=time.perf_counter)
        stats = minute_stats(result)
        row: dict[str, Any] = summarize(result, stats).as_dict()
        row["policy_time_s"] = result.policy_time_s
        row["engine_steps"] = result.engine_steps
        row["wall_s"] = time.perf_counter() - started
        row["models"] = per_model(result, stats)
        return {"policy": task["policy"], "row": row, "result": result if task.get("keep") else None}
    except Exception as exc:  # one policy failing must not lose the others' results
        return {"policy": task["policy"], "row": {"error": f"{type(exc).__name__}: {exc}"}, "result": None}


def run(args: argparse.Namespace) -> int:
    from faro.optimizer.commands.simulate import _run_all
    from faro.optimizer.errors import InvalidInputError
    from faro.optimizer.sim.llm.cluster import LLMSimConfig
    from faro.optimizer.sim.llm.workload import BUNDLED_MODELS
    from faro.optimizer.sim.report import best_deployable, plot_policies

    if args.trace or args.capacity_search:
        raise InvalidInputError("--workload llm", "runs the bundled LLM workload; --trace and --capacity-search "
                                "are for the CPU workload")
    if args.minutes is not None and args.minutes < 1:
        raise InvalidInputError("--minutes", f"must be >= 1, got {args.minutes}")
    names = _policy_names(args.policies)
    config = {"gpus": args.gpus, "actuation": args.actuation, "balancer": args.balancer}
    LLMSimConfig(**config)  # validate once, before starting workers
    out_dir = Path(args.output)
    out_dir.mkdir(parents=True, exist_ok=True)
    meta = {
        "workload": "llm:bundled",
        "models": [{"name": m.name, "trace": m.trace, "profile": m.profile_name, "load_scale": m.load_scale,
                    "shift_s": m.shift_s, "slo": {"ttft_ms": m.slo.ttft_ms, "itl_ms": m.slo.itl_ms,
                                                  "percentile": m.slo.percentile}} for m in BUNDLED_MODELS],
        "minutes": args.minutes or 60,
        "seed": args.seed,
        **config,
    }
    # The Oracle and Faro solve often: start them first so the pool's last task is a short one.
    order = sorted(names, key=lambda n: (not n.startswith("oracle"), not n.startswith("faro")))
    tasks = [{"policy": n, "config": config, "seed": args.seed, "minutes": args.minutes, "keep": True}
             for n in order]
    started = time.perf_counter()
    results = _run_all(tasks, workers=args.workers, progress=not args.no_progress, worker=run_one)
    by_name = {r["policy"]: r["row"] for r in results}
    rows = {n: by_name[n] for n in names}
    doc = {"policies": rows, **meta, "wall_s": time.perf_counter() - started}
    written = [out_dir / "results.json"]
    (out_dir / "results.json").write_text(json.dumps(doc, indent=2, allow_nan=True))

    from faro.optimizer.sim.llm.report import LLM_TABLE_LEGEND, llm_table, plot_llm_timeline

    print(llm_table(rows))
    print(LLM_TABLE_LEGEND)
    ok = {k: v for k, v in rows.items() if "error" not in v}
    if ok:
        plot_policies(rows, out_dir / "policies.png", title=f"{len(BUNDLED_MODELS)} LLM models, {args.gpus:g} GPUs",
                      jobs=len(BUNDLED_MODELS))
        written.append(out_dir / "policies.png")
        chosen = args.plot_policy or best_deployable(rows)
        for r in results:
            if r["policy"] == chosen and r["result"] is not None:
                path = out_dir / f"timeline-{chosen}.png"
                plot_llm_timeline(r["result"], path)
                written.append(path)
    for path in written:
        print(f"wrote {path}", file=sys.stderr)
    print(f"({time.perf_counter() - started:.1f} s)", file=sys.stderr)
    return 0 if len(ok) == len(rows) else 1
