"""``faro simulate --suite FILE``: how would each policy do on my kind of load, day after day?

A multi-day wide CSV (``minute,<job>,…``) is cut into days; each test day is replayed with every earlier
day as past load (as ``faro optimizer`` backfills from Prometheus), at the paper-style cap of that day and
tighter ones, for several seeds and policies. Prints one table (case: best Faro variant, best baseline,
Oracle and the two ratios) and a violation breakdown, writes ``results.json`` and ``suite.png``.

Hooked into ``optimizer/commands/simulate.py`` (``add_arguments`` / ``run``); ``bench/generalization.py``
calls ``run_suite`` with the bundled traces. Cases and scores: ``faro.optimizer.sim.suite``.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

SUITE_BUNDLED = "azure2019-6fn-14d.csv"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("suite (--suite)")
    group.add_argument("--suite", metavar="FILE",
                       help="multi-day wide CSV: replay test days, each with all earlier days as history, at the "
                       "paper-style cap and tighter ones, several seeds ('bundled' = the Azure Functions 14 days)")
    group.add_argument("--day-minutes", type=int, default=1440, help="minutes per day of --suite (default 1440)")
    group.add_argument("--test-days", help="1-based test days of --suite, e.g. 5,8,11 (default: up to 5 days "
                       "spread over days 2..last)")
    group.add_argument("--cap-scales", default="1,0.9", help="CPU caps as multiples of each day's paper-style cap "
                       "ceil(1.056 x busiest minute's busy CPUs at --processing-time) (default 1,0.9)")
    group.add_argument("--seeds", default="0,1", help="seeds of --suite (default 0,1)")


def _floats(text: str, what: str) -> list[float]:
    from faro.optimizer.errors import InvalidInputError

    try:
        return [float(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise InvalidInputError(what, f"expected comma-separated numbers, got {text!r}") from None


def _ints(text: str | None, what: str) -> list[int] | None:
    if not text:
        return None
    values = _floats(text, what)
    from faro.optimizer.errors import InvalidInputError

    if any(v != int(v) for v in values):
        raise InvalidInputError(what, f"expected integers, got {text!r}")
    return [int(v) for v in values]


def load_suite(path: str, *, day_minutes: int, test_days: Sequence[int] | None, cap_scales: Sequence[float]) -> list:
    """The cases of a multi-day trace file (``bundled`` = the packaged Azure Functions suite)."""
    from faro.optimizer.sim.suite import day_cases
    from faro.optimizer.sim.workload import load_trace, parse_trace_csv

    if path == "bundled":
        from importlib.resources import files

        workload = parse_trace_csv((files("faro.traces") / SUITE_BUNDLED).read_text(), source=SUITE_BUNDLED)
        name = "azure2019"
    else:
        workload = load_trace(path)
        name = Path(path).stem
    return day_cases(workload, trace=name, day_minutes=day_minutes, test_days=test_days, cap_scales=cap_scales)


def paper_day_cases(cap_scales: Sequence[float]) -> list:
    """The bundled paper day 11 with its bundled days 1–10 as history (cap 32 at scale 1)."""
    from faro.optimizer.sim.suite import single_cases
    from faro.optimizer.sim.workload import load_history, load_trace

    return single_cases(load_history(load_trace()), trace="paper day 11", cap_scales=cap_scales)


def _run_task(task: dict[str, Any]) -> dict[str, Any]:
    """Worker: one policy on one case and seed; errors come back as data."""
    from faro.optimizer.policy.registry import make_policy
    from faro.optimizer.sim.engine import SimConfig, simulate
    from faro.optimizer.sim.metrics import job_minute_stats, summarize, violation_breakdown

    started = time.perf_counter()
    out = {k: task[k] for k in ("case", "policy", "seed")}
    try:
        name, options = task["spec"]
        policy = make_policy(name, **options)
        result = simulate(task["workload"], policy, SimConfig(cpus=task["cpus"], seed=task["seed"]),
                          clock=time.perf_counter)
        stats = job_minute_stats(result)
        row: dict[str, Any] = summarize(result, stats).as_dict()
        row["breakdown"] = violation_breakdown(result, stats)
        row["policy_time_s"] = result.policy_time_s
        row["wall_s"] = time.perf_counter() - started
        out["row"] = row
    except Exception as exc:  # one run failing must not lose the others
        out["row"] = {"error": f"{type(exc).__name__}: {exc}"}
    return out


PolicySpec = tuple[str, dict[str, Any]]


def run_suite(
    cases: Sequence[Any],
    policies: Mapping[str, PolicySpec],
    seeds: Sequence[int],
    *,
    workers: int = 2,
    progress: bool = True,
    default: str | None = None,
    done: Callable[[dict[str, Any]], None] | None = None,
    skip: Callable[[str, str, int], dict[str, Any] | None] | None = None,
) -> dict[str, Any]:
    """Run every (case, policy label, seed); ``policies`` maps a label to (registry name, options).

    ``skip(case_label, policy_label, seed)`` may return a row from elsewhere (a cache) instead of running;
    ``done`` sees each fresh result. Returns the suite document (``cases`` with per-policy rows and scores)."""
    from faro.optimizer.commands.simulate import run_tasks

    tasks = []
    rows: dict[tuple[str, str, int], dict[str, Any]] = {}
    for case in cases:
        for label, spec in policies.items():
            for seed in seeds:
                cached = skip(case.label, label, seed) if skip else None
                if cached is not None:
                    rows[(case.label, label, seed)] = cached
                    continue
                tasks.append({"case": case.label, "policy": label, "seed": seed, "spec": spec,
                              "cpus": case.cpus, "workload": case.workload})
    # the planners are the slow runs: start them first so the pool's last tasks are short
    tasks.sort(key=lambda t: (t["policy"] != "oracle" and not t["policy"].startswith("faro-")))
    started = time.perf_counter()

    def finished(res: dict[str, Any]) -> None:
        rows[(res["case"], res["policy"], res["seed"])] = res["row"]
        if done:
            done(res)

    run_tasks(tasks, worker=_run_task, workers=workers, progress=progress, desc="suite",
              label=lambda t: f"{t['case']} {t['policy']} s{t['seed']}", on_result=finished)
    return suite_document(cases, policies, seeds, rows, default=default, wall_s=time.perf_counter() - started)


def _mean(values: list[float]) -> float:
    return float(np.mean(values)) if values else math.nan


def _mean_breakdown(rows: list[dict[str, Any]]) -> dict[str, float | None]:
    from faro.optimizer.sim.metrics import BREAKDOWN_CAUSES

    out: dict[str, float | None] = {}
    for cause in BREAKDOWN_CAUSES:
        parts = [r["breakdown"][cause] for r in rows if "breakdown" in r]
        out[cause] = None if not parts or any(p is None for p in parts) else _mean([p["violation"] for p in parts])
    return out


def suite_document(
    cases: Sequence[Any], policies: Mapping[str, PolicySpec], seeds: Sequence[int],
    rows: Mapping[tuple[str, str, int], dict[str, Any]], *, default: str | None, wall_s: float,
) -> dict[str, Any]:
    """Per case: each policy's mean violation / lost utility over seeds, its breakdown (mean shares) and
    per-seed rows; the case's score (best Faro, best baseline, Oracle, ratios) and the acceptance goal."""
    from faro.optimizer.sim.suite import meets_goal, score_case

    out_cases = []
    for case in cases:
        per_policy: dict[str, Any] = {}
        for label in policies:
            got = [rows[(case.label, label, s)] for s in seeds if (case.label, label, s) in rows]
            ok = [r for r in got if "error" not in r]
            entry: dict[str, Any] = {"seeds": {str(s): rows.get((case.label, label, s)) for s in seeds}}
            if ok:
                entry.update(slo_violation=_mean([r["slo_violation"] for r in ok]),
                             lost_utility=_mean([r["lost_utility"] for r in ok]),
                             cpu_minutes=_mean([r["cpu_minutes"] for r in ok]),
                             breakdown=_mean_breakdown(ok))
            if len(ok) < len(got) or not got:
                entry["errors"] = [r.get("error", "missing") for r in got if "error" in r] or ["not run"]
            per_policy[label] = entry
        violation = {k: v["slo_violation"] for k, v in per_policy.items() if "slo_violation" in v}
        score = score_case(violation, default=default if default in violation else None)
        paper = case.day is None
        out_cases.append({
            "label": case.label, "name": case.name, "trace": case.trace, "day": case.day, "cpus": case.cpus,
            "cap_scale": case.cap_scale, "jobs": case.workload.num_jobs, "minutes": case.workload.num_minutes,
            "history_minutes": 0 if case.workload.history_rpm is None else int(case.workload.history_rpm.shape[1]),
            "policies": per_policy, "score": score.as_dict(),
            "goal_applies": (not paper) or case.cap_scale == 1.0,
            "meets_goal_best": meets_goal(score, paper_day=paper),
            "meets_goal_default": meets_goal(score, paper_day=paper, which="default") if default else None,
        })
    return {"cases": out_cases, "seeds": list(seeds), "default_policy": default,
            "policies": {k: {"name": v[0], "options": v[1]} for k, v in policies.items()}, "wall_s": wall_s}


def _pct(v: float | None) -> str:
    return "   –  " if v is None or (isinstance(v, float) and math.isnan(v)) else f"{100 * v:5.2f}%"


def _x(v: float | None) -> str:
    if v is None:
        return "  – "
    return " inf" if math.isinf(v) else f"{v:5.2f}x"


def format_table(doc: Mapping[str, Any]) -> str:
    """One line per case: best Faro (and the default), best baseline, Oracle, the two ratios, goal."""
    default = doc.get("default_policy")
    head = (f"{'case':<28}{'cpus':>5} {'best faro':<22}{'viol':>7} {'best baseline':<14}{'viol':>7}"
            f"{'oracle':>8}{'base/faro':>10}{'faro/orc':>9}")
    if default:
        head += f"  {default + ' (default)':<24}{'base/def':>9}{'def/orc':>8}"
    head += "  goal"
    lines = [head, "-" * len(head)]
    for c in doc["cases"]:
        s = c["score"]
        line = (f"{c['name']:<28}{c['cpus']:>5g} {s['best_faro'] or '–':<22}{_pct(s['best_faro_violation']):>7} "
                f"{s['best_baseline'] or '–':<14}{_pct(s['best_baseline_violation']):>7}"
                f"{_pct(s['oracle_violation']):>8}{_x(s['baseline_over_faro']):>10}{_x(s['faro_over_oracle']):>9}")
        if default:
            line += (f"  {_pct(s['default_violation']):<24}{_x(s['baseline_over_default']):>9}"
                     f"{_x(s['default_over_oracle']):>8}")
        goal = c["meets_goal_default"] if default else c["meets_goal_best"]
        line += "  " + ("n/a" if not c["goal_applies"] or goal is None else ("met" if goal else "MISSED"))
        lines.append(line)
    return "\n".join(lines)


def format_breakdown(doc: Mapping[str, Any], policies: Sequence[str]) -> str:
    """Per case and policy: violation points by cause (burst onset, pod starting, under-forecast, quota
    full, other)."""
    from faro.optimizer.sim.metrics import BREAKDOWN_CAUSES

    short = {"burst_onset": "burst", "pod_starting": "starting", "under_forecast": "underfc",
             "quota_full": "quotafull", "other": "other"}
    head = f"{'case':<28}{'cpus':>5} {'policy':<22}{'viol':>7}" + "".join(f"{short[c]:>10}" for c in BREAKDOWN_CAUSES)
    lines = ["violation points by cause (first that applies)", head, "-" * len(head)]
    for c in doc["cases"]:
        for p in policies:
            entry = c["policies"].get(p, {})
            if "breakdown" not in entry:
                continue
            values = [entry["breakdown"][k] for k in BREAKDOWN_CAUSES]
            parts = "".join(f"{'–' if v is None else f'{100 * v:.2f}':>10}" for v in values)
            lines.append(f"{c['name']:<28}{c['cpus']:>5g} {p:<22}{_pct(entry['slo_violation']):>7}{parts}")
    return "\n".join(lines)


def plot_suite(doc: Mapping[str, Any], path: Path) -> None:
    """Top: violation per case (default/best Faro, best baseline, Oracle; log scale). Bottom: where the
    default Faro variant's and the best baseline's violations come from, stacked by cause."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.ticker
    from faro.optimizer.sim.metrics import BREAKDOWN_CAUSES

    cases = doc["cases"]
    default = doc.get("default_policy")
    labels = [f"{c['name'].replace('azure2019 ', '')}\n{c['cpus']:g} CPUs" for c in cases]
    x = np.arange(len(cases))
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(max(8, 1.1 * len(cases) + 3), 8.5), sharex=True)
    series = [("best baseline", "best_baseline_violation", "tab:gray"),
              ("best Faro", "best_faro_violation", "tab:blue"),
              ("Oracle", "oracle_violation", "tab:green")]
    if default:
        series.insert(2, (f"{default} (default)", "default_violation", "tab:orange"))
    width = 0.8 / len(series)
    for i, (name, key, color) in enumerate(series):
        vals = [100 * (c["score"][key] or np.nan) for c in cases]
        top.bar(x + (i - (len(series) - 1) / 2) * width, vals, width, label=name, color=color)
    top.set_yscale("log")
    top.yaxis.set_major_formatter(matplotlib.ticker.FuncFormatter(lambda v, _: f"{v:g}"))
    top.yaxis.set_minor_formatter(matplotlib.ticker.FuncFormatter(lambda v, _: f"{v:g}"))
    top.set_ylabel("SLO violation (%, log scale)")
    top.legend(fontsize=8, ncol=len(series))
    top.set_title("Violation per test day and cap (mean over seeds)")
    colors = dict(zip(BREAKDOWN_CAUSES, ("tab:red", "tab:purple", "tab:orange", "tab:brown", "tab:gray"),
                      strict=True))
    who = [("default" if default else "best Faro", lambda c: default or c["score"]["best_faro"], -0.2),
           ("best baseline", lambda c: c["score"]["best_baseline"], 0.2)]
    for _name, pick, dx in who:
        bottom_acc = np.zeros(len(cases))
        for cause in BREAKDOWN_CAUSES:
            vals = []
            for c in cases:
                entry = c["policies"].get(pick(c) or "", {})
                v = (entry.get("breakdown") or {}).get(cause)
                vals.append(100 * v if v is not None else 0.0)
            bottom.bar(x + dx, vals, 0.38, bottom=bottom_acc, color=colors[cause],
                       label=cause.replace("_", " ") if dx < 0 else None, edgecolor="white", linewidth=0.3)
            bottom_acc += np.array(vals)
    bottom.set_ylabel("violation points by cause")
    bottom.set_title(f"Where violations come from: left bar {'the default' if default else 'best Faro'}, "
                     "right bar the best baseline")
    bottom.legend(fontsize=8, ncol=5)
    bottom.set_xticks(x, labels, fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def run(args: argparse.Namespace) -> int:
    """``faro simulate --suite FILE``."""
    from faro.optimizer.commands.simulate import _policy_names
    from faro.optimizer.policy.registry import DEFAULT_POLICY

    scales = _floats(args.cap_scales, "--cap-scales")
    seeds = _ints(args.seeds, "--seeds") or [0]
    cases = load_suite(args.suite, day_minutes=args.day_minutes, test_days=_ints(args.test_days, "--test-days"),
                       cap_scales=scales)
    names = _policy_names(args.policies)
    policies = {n: (n, {}) for n in names}
    doc = run_suite(cases, policies, seeds, workers=args.workers, progress=not args.no_progress,
                    default=DEFAULT_POLICY if DEFAULT_POLICY in names else None)
    doc["trace"] = args.suite
    out_dir = Path(args.output)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "results.json").write_text(json.dumps(doc, indent=2, allow_nan=True))
    print(format_table(doc))
    print()
    shown = [n for n in dict.fromkeys([doc["default_policy"], *(c["score"]["best_baseline"] for c in doc["cases"])])
             if n]
    print(format_breakdown(doc, shown))
    plot_suite(doc, out_dir / "suite.png")
    print(f"wrote {out_dir}/results.json and suite.png ({doc['wall_s']:.0f} s)", file=sys.stderr)
    failed = [c["label"] for c in doc["cases"] for v in c["policies"].values() if "errors" in v]
    return 1 if failed else 0
