"""Benchmark of the LLM simulator and the LLM policies on the bundled multi-model workload (issue 13).

Run: ``python bench/llm.py [--sections engine,knee,need,table,rotations,bursts] [--fractions 0.65,0.75,0.9]
[--policies a,b] [--workers 2] [--minutes 60] [--seeds 0,1,2]``. Prints tables and writes ``bench/results/llm.json``;
sections not run keep their previous results. The machine is shared: every section records the load
average, wall and CPU time.

Sections
--------
bursts  How bursty each bundled model's arrivals are within a minute (workload seed 0): over minutes with
        ≥ 30 requests, the busiest 10 s window's rate against the minute's mean (median and p90), the same
        for Poisson arrivals with the same minute totals, and the median index of dispersion (variance /
        mean) of the 10 s counts — what a per-minute planner assuming Poisson arrivals cannot see.
engine  One replica serving the conversation trace, unsaturated (×1 on an 8B/H100) and saturated (×4 on
        one replica, 10 minutes): wall time of vLLM's loop request by request (``reference``), of the
        lazy steady decoders stepping one step at a time, and with the closed-form jumps; all three must
        agree exactly.
knee    The LLM latency model's TTFT p99 for one replica at 50–110% of its capacity against the simulated
        replica (Poisson arrivals, each model's own mix): how the planner sees a replica near saturation.
need    What the bundled workload's peaks need: per model, the fewest replicas that, held the whole hour
        from time 0, keep its SLO violations ≤ 1%; their GPUs summed. The caps of ``table`` are fractions
        of that sum (default 0.65, 0.75 — the acceptance cap — and 0.9).
rotations  Generalisation: the bundled models on other alignments of their traces — rotation ``k`` moves model
        ``i``'s hour by a further ``k·ROTATE_S·(i+1)`` s (mod 1 h), so the peaks meet differently — for Faro's
        variants, the oracle and WVA (the best baseline of ``table`` at every cap), at the same caps;
        workload seed 0. Nothing was tuned on these.
table   Every LLM policy (``LLM_POLICY_NAMES``) at each cap: violations, lost utility, GPU-minutes, wall
        time; and the acceptance ratios — best baseline / best Faro variant (target ≥ 3) and best Faro /
        oracle (target ≤ 1.3) — at each cap; every number is the mean over the workload seeds (``--seeds``:
        different draws of the scaled traces' extra copies), each seed's violation rate kept in the JSON.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
from faro.optimizer.policy.base import Decision, Plan, Target
from faro.optimizer.sim.llm.cluster import LLMSimConfig, simulate_llm
from faro.optimizer.sim.llm.engine import simulate_replica
from faro.optimizer.sim.llm.metrics import minute_stats, summarize
from faro.optimizer.sim.llm.report import llm_table, per_model
from faro.optimizer.sim.llm.workload import (
    BUNDLED_MODELS,
    BUNDLED_WARMUP_S,
    PROFILES,
    build_workload,
    bundled_workload,
    load_llm_trace,
    scale_and_shift,
)
from tqdm import tqdm

OUT = Path(__file__).parent / "results" / "llm.json"
TARGET_VIOLATION = 0.01
ROTATE_S = 600.0
ROTATION_POLICIES = ("faro-fair", "faro-fairsum", "faro-sum", "oracle", "wva")


def _load() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


class Static:
    """The same replica counts all the time (for the ``need`` section)."""

    name = "static"
    needs_future = False

    def __init__(self, replicas: list[int]) -> None:
        self.replicas = replicas

    def initial_state(self) -> None:
        return None

    def decide(self, view, state):
        return Decision(Plan(tuple(Target(j.spec.namespace, j.spec.name, self.replicas[i], j.current_replicas)
                                   for i, j in enumerate(view.jobs))), None)


def engine_speed() -> dict[str, Any]:
    out: dict[str, Any] = {"load_avg_before": _load()}
    trace = load_llm_trace("conv")
    profile = PROFILES["llama-3.1-8b/h100"]
    cases = {"unsaturated": (1.0, 3600.0), "saturated": (4.0, 600.0)}
    for label, (scale, seconds) in cases.items():
        arr, prompt, output = scale_and_shift(trace, load_scale=scale, shift_s=0.0, rng=np.random.default_rng(0))
        keep = arr < seconds
        arr, prompt, output = arr[keep], prompt[keep], output[keep]
        runs: dict[str, Any] = {}
        ref = None
        for mode, kwargs in (("reference", {"reference": True}), ("step", {"skip": False}), ("jump", {"skip": True})):
            started, cpu0 = time.perf_counter(), time.process_time()
            run = simulate_replica(profile, arr, prompt, output, **kwargs)
            wall, cpu = time.perf_counter() - started, time.process_time() - cpu0
            if ref is None:
                ref = run
            same = bool(np.array_equal(run.ttft_ms, ref.ttft_ms) and np.array_equal(run.finish_s, ref.finish_s)
                        and run.steps == ref.steps)
            runs[mode] = {"wall_s": wall, "cpu_s": cpu, "steps": run.steps, "equal_to_reference": same,
                          "requests_per_s": arr.size / wall, "steps_per_s": run.steps / wall}
        out[label] = {"requests": int(arr.size), "load_scale": scale, "seconds": seconds,
                      "modes": runs}
        print(f"engine {label}: {arr.size} requests, " + ", ".join(
            f"{m} {r['wall_s']:.2f} s ({r['steps']} steps)" for m, r in runs.items()), flush=True)
    out["load_avg_after"] = _load()
    return out


def knee() -> dict[str, Any]:
    """The LLM latency model's TTFT p99 against one simulated replica near its capacity (what Faro plans
    from vs what the replica does), per bundled model: Poisson arrivals with the model's own token mix,
    10 minutes, the second 5 scored."""
    from faro.optimizer.model.llm_latency import LLMCurves, llm_latency_ms
    from faro.optimizer.model.llm_profile import TokenMix

    out: dict[str, Any] = {"load_avg_before": _load(), "models": {}}
    workload = bundled_workload()
    for j, m in enumerate(BUNDLED_MODELS):
        mix = TokenMix(workload.prompt_tokens[j][:4000].astype(float), workload.output_tokens[j][:4000].astype(float))
        cap = float(LLMCurves.build([m.engine], [mix], m.slo.percentile).capacity_rps[0])
        rows = []
        rng = np.random.default_rng(1)
        for u in (0.5, 0.7, 0.85, 0.95, 1.1):
            rate = u * cap
            predicted = float(llm_latency_ms(m.engine, mix, rate, 1, percentile=m.slo.percentile)[0])
            n = int(rate * 600)
            arr = np.cumsum(rng.exponential(1 / rate, n))
            idx = rng.integers(0, mix.prompt_tokens.size, n)
            run = simulate_replica(m.engine, arr, mix.prompt_tokens[idx], mix.output_tokens[idx])
            late = run.ttft_ms[arr > 300]
            rows.append({"load": u, "rate_rps": rate, "model_ttft_p99_ms": predicted,
                         "sim_ttft_p99_ms": float(np.percentile(late, m.slo.percentile))})
        out["models"][m.name] = {"capacity_rps": cap, "slo_ttft_ms": m.slo.ttft_ms, "points": rows}
        print(f"knee {m.name}: capacity {cap:.2f} req/s; " + ", ".join(
            f"u={r['load']}: model {r['model_ttft_p99_ms']:.0f} / sim {r['sim_ttft_p99_ms']:.0f} ms" for r in rows),
            flush=True)
    out["load_avg_after"] = _load()
    return out


def _static_violation(task: dict[str, Any]) -> dict[str, Any]:
    """Worker: one model alone, ``k`` replicas from time 0 on, whole hour."""
    model = BUNDLED_MODELS[task["model"]]
    workload = bundled_workload(seed=task["seed"])
    from faro.optimizer.sim.llm.workload import LLMWorkload

    j = task["model"]
    one = LLMWorkload(models=(model,), arrival_s=(workload.arrival_s[j],), prompt_tokens=(workload.prompt_tokens[j],),
                      output_tokens=(workload.output_tokens[j],), duration_s=workload.duration_s)
    k = task["k"]
    started = time.perf_counter()
    res = simulate_llm(one, Static([k]), LLMSimConfig(gpus=1e6, initial=(k,)))
    s = summarize(res, minute_stats(res))
    return {"model": model.name, "k": k, "slo_violation": s.slo_violation, "wall_s": time.perf_counter() - started}


def need(*, workers: int, seed: int) -> dict[str, Any]:
    out: dict[str, Any] = {"load_avg_before": _load(), "target_violation": TARGET_VIOLATION, "models": {}}
    started = time.perf_counter()
    tried: dict[int, dict[int, float]] = {j: {} for j in range(len(BUNDLED_MODELS))}
    lo = {j: 0 for j in tried}  # violation(lo) > target (0 replicas: everything fails)
    hi = {j: None for j in tried}
    guess = {j: 2 for j in tried}
    with ProcessPoolExecutor(max_workers=workers) as pool:
        while True:
            todo = []
            for j in tried:
                if hi[j] is not None and hi[j] - lo[j] <= 1:
                    continue
                k = guess[j] if hi[j] is None else (lo[j] + hi[j]) // 2
                todo.append({"model": j, "k": k, "seed": seed})
            if not todo:
                break
            for res in pool.map(_static_violation, todo):
                j = next(i for i, m in enumerate(BUNDLED_MODELS) if m.name == res["model"])
                tried[j][res["k"]] = res["slo_violation"]
                print(f"  need {res['model']}: {res['k']} replicas → {100 * res['slo_violation']:.2f}% "
                      f"({res['wall_s']:.1f} s)", flush=True)
                if res["slo_violation"] <= TARGET_VIOLATION:
                    hi[j] = res["k"]
                else:
                    lo[j] = res["k"]
                    if hi[j] is None:
                        guess[j] = res["k"] * 2
    total = 0.0
    for j, m in enumerate(BUNDLED_MODELS):
        gpus = m.engine.gpus * hi[j]
        total += gpus
        out["models"][m.name] = {"replicas": hi[j], "gpus": gpus,
                                 "violation_by_replicas": {str(k): v for k, v in sorted(tried[j].items())}}
    out["gpus"] = total
    out["wall_s"] = time.perf_counter() - started
    out["load_avg_after"] = _load()
    return out


def _run_policy(task: dict[str, Any]) -> dict[str, Any]:
    from faro.optimizer.policy.registry import make_policy

    started, cpu0 = time.perf_counter(), time.process_time()
    try:
        workload = rotated_workload(task.get("rotation", 0), seed=task["seed"])
        if task["minutes"] < 60:
            workload = workload.head(task["minutes"])
        res = simulate_llm(workload, make_policy(task["policy"]), LLMSimConfig(gpus=task["gpus"]),
                           clock=time.perf_counter)
        stats = minute_stats(res)
        row: dict[str, Any] = summarize(res, stats).as_dict()
        row["models"] = per_model(res, stats)
        row["policy_time_s"] = res.policy_time_s
        row["engine_steps"] = res.engine_steps
    except Exception as exc:  # keep the other runs
        row = {"error": f"{type(exc).__name__}: {exc}"}
    row["wall_s"] = time.perf_counter() - started
    row["cpu_s"] = time.process_time() - cpu0
    return {"gpus": task["gpus"], "policy": task["policy"], "seed": task["seed"], "rotation": task.get("rotation", 0),
            "row": row}


def rotated_workload(rotation: int, *, seed: int):
    """The bundled workload, each model's trace rotated by a further ``rotation·ROTATE_S·(i+1)`` s."""
    if rotation == 0:
        return bundled_workload(seed=seed)
    models = tuple(dataclasses.replace(m, shift_s=(m.shift_s + rotation * ROTATE_S * (i + 1)) % 3600.0)
                   for i, m in enumerate(BUNDLED_MODELS))
    return build_workload(models, seed=seed, warmup_s=BUNDLED_WARMUP_S,
                          description=f"bundled, rotation {rotation}")


def rotations(caps: list[float], policies: list[str], *, workers: int, rotations_: list[int]) -> dict[str, Any]:
    """Each policy on each rotation at each cap; the ratios per rotation and of the means over rotations."""
    out: dict[str, Any] = {"load_avg_before": _load(), "rotate_s": ROTATE_S, "rotations": rotations_, "caps": {}}
    tasks = [{"gpus": g, "policy": p, "minutes": 60, "seed": 0, "rotation": k}
             for g in caps for p in policies for k in rotations_]
    started = time.perf_counter()
    results: list[dict[str, Any]] = []
    with ProcessPoolExecutor(max_workers=workers) as pool:
        for res in tqdm(pool.map(_run_policy, tasks), total=len(tasks), desc="llm rotations", unit="run"):
            results.append(res)
    out["wall_s"] = time.perf_counter() - started
    for g in caps:
        per = {}
        for k in rotations_:
            rows = {p: next(r["row"] for r in results if (r["gpus"], r["policy"], r["rotation"]) == (g, p, k))
                    for p in policies}
            per[str(k)] = {"policies": {p: {"slo_violation": r.get("slo_violation"), "error": r.get("error")}
                                        for p, r in rows.items()}, "ratios": _ratios(rows)}
        mean = {p: _mean_row([r["row"] for r in results if r["gpus"] == g and r["policy"] == p]) for p in policies}
        out["caps"][f"{g:g}"] = {"gpus": g, "rotations": per, "mean": {"policies": mean, "ratios": _ratios(mean)}}
    out["load_avg_after"] = _load()
    return out


def _ratios(rows: dict[str, dict[str, Any]]) -> dict[str, Any]:
    ok = {k: v for k, v in rows.items() if "error" not in v}
    faro = {k: v["slo_violation"] for k, v in ok.items() if k.startswith("faro")}
    oracle = {k: v["slo_violation"] for k, v in ok.items() if k.startswith("oracle")}
    base = {k: v["slo_violation"] for k, v in ok.items() if not k.startswith(("faro", "oracle"))}
    out: dict[str, Any] = {}
    if base:
        b = min(base, key=base.get)  # type: ignore[arg-type]
        out["best_baseline"] = {"policy": b, "slo_violation": base[b]}
    if faro:
        f = min(faro, key=faro.get)  # type: ignore[arg-type]
        out["best_faro"] = {"policy": f, "slo_violation": faro[f]}
    if oracle:
        o = min(oracle, key=oracle.get)  # type: ignore[arg-type]
        out["oracle"] = {"policy": o, "slo_violation": oracle[o]}
    if base and faro:
        fv = out["best_faro"]["slo_violation"]
        out["baseline_over_faro"] = out["best_baseline"]["slo_violation"] / fv if fv > 0 else float("inf")
    if faro and oracle:
        ov = out["oracle"]["slo_violation"]
        out["faro_over_oracle"] = out["best_faro"]["slo_violation"] / ov if ov > 0 else float("inf")
    return out


def _mean_row(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """The mean over workload seeds of one policy's rows (an error in any seed is the row's error)."""
    errors = [r["error"] for r in rows if "error" in r]
    if errors:
        return {"error": errors[0]}
    out: dict[str, Any] = {k: float(np.mean([r[k] for r in rows])) for k, v in rows[0].items()
                           if isinstance(v, int | float) and not isinstance(v, bool)}
    out["models"] = {m: {k: float(np.mean([r["models"][m][k] for r in rows])) for k in rows[0]["models"][m]}
                     for m in rows[0]["models"]}
    out["seeds"] = [r["slo_violation"] for r in rows]
    return out


def table(caps: list[float], policies: list[str], *, workers: int, minutes: int, seeds: list[int]) -> dict[str, Any]:
    out: dict[str, Any] = {"load_avg_before": _load(), "minutes": minutes, "seeds": seeds, "caps": {}}
    tasks = [{"gpus": g, "policy": p, "minutes": minutes, "seed": s} for g in caps for p in policies for s in seeds]
    # longest first: the Oracle and Faro solve often, queue-based baselines saturate replicas
    tasks.sort(key=lambda t: (not t["policy"].startswith(("oracle", "faro")), t["gpus"]))
    started = time.perf_counter()
    results: list[dict[str, Any]] = []
    with ProcessPoolExecutor(max_workers=workers) as pool:
        for res in tqdm(pool.map(_run_policy, tasks), total=len(tasks), desc="llm table", unit="run"):
            results.append(res)
            r = res["row"]
            msg = r.get("error") or f"{100 * r['slo_violation']:.2f}% violations"
            tqdm.write(f"  {res['gpus']:g} GPUs {res['policy']} seed {res['seed']}: {msg} ({r['wall_s']:.1f} s)")
    out["wall_s"] = time.perf_counter() - started
    for g in caps:
        rows = {p: _mean_row([r["row"] for r in results if r["gpus"] == g and r["policy"] == p])
                for p in policies}
        out["caps"][f"{g:g}"] = {"gpus": g, "policies": rows, "ratios": _ratios(rows)}
    out["load_avg_after"] = _load()
    return out


BURST_WINDOW_S = 10.0
BURST_MIN_REQUESTS = 30


def bursts(*, seed: int) -> dict[str, Any]:
    """Per model of the bundled workload: within-minute burstiness against Poisson (see ``bursts`` above)."""
    workload = bundled_workload(seed=seed)
    per_min = int(60.0 // BURST_WINDOW_S)
    windows = int(workload.duration_s // 60.0) * per_min
    rng = np.random.default_rng(seed)
    out: dict[str, Any] = {"seed": seed, "window_s": BURST_WINDOW_S, "min_requests": BURST_MIN_REQUESTS, "models": {}}
    for name, arrivals in zip(workload.names, workload.arrival_s, strict=True):
        idx = (np.asarray(arrivals) // BURST_WINDOW_S).astype(np.int64)
        counts = np.bincount(idx[idx < windows], minlength=windows).reshape(-1, per_min)
        totals = counts.sum(axis=1)
        busy = totals >= BURST_MIN_REQUESTS
        peak = counts[busy].max(axis=1) * per_min / totals[busy]
        poisson = np.array([rng.multinomial(t, [1.0 / per_min] * per_min).max() * per_min / t for t in totals[busy]])
        dispersion = counts[busy].var(axis=1, ddof=1) / counts[busy].mean(axis=1)
        out["models"][name] = {
            "minutes": int(busy.sum()),
            "peak_over_mean_median": float(np.median(peak)), "peak_over_mean_p90": float(np.quantile(peak, 0.9)),
            "poisson_peak_over_mean_median": float(np.median(poisson)),
            "poisson_peak_over_mean_p90": float(np.quantile(poisson, 0.9)),
            "dispersion_median": float(np.median(dispersion)),
        }
    return out


def main(argv: list[str] | None = None) -> int:
    from faro.optimizer.policy.registry import LLM_POLICY_NAMES

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sections", default="engine,knee,need,table")
    parser.add_argument("--fractions", default="0.65,0.75,0.9", help="caps as fractions of the peak need")
    parser.add_argument("--policies", default=",".join(LLM_POLICY_NAMES))
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--minutes", type=int, default=60)
    parser.add_argument("--seed", type=int, default=0, help="workload seed of the need section")
    parser.add_argument("--seeds", default="0,1,2", help="workload seeds the table averages over")
    parser.add_argument("--rotations", default="1,2,3,4", help="trace rotations of the rotations section")
    args = parser.parse_args(argv)
    sections = [s.strip() for s in args.sections.split(",") if s.strip()]
    doc: dict[str, Any] = json.loads(OUT.read_text()) if OUT.exists() else {}
    doc["workload"] = {
        "requests": bundled_workload(seed=args.seed).total_requests,
        "models": [{"name": m.name, "trace": m.trace, "profile": m.profile_name, "gpus_per_replica": m.engine.gpus,
                    "load_scale": m.load_scale, "shift_s": m.shift_s, "ttft_ms": m.slo.ttft_ms,
                    "itl_ms": m.slo.itl_ms, "percentile": m.slo.percentile} for m in BUNDLED_MODELS],
    }
    if "bursts" in sections:
        doc["bursts"] = bursts(seed=args.seed)
        OUT.write_text(json.dumps(doc, indent=2))
        for name, m in doc["bursts"]["models"].items():
            print(f"{name}: busiest {BURST_WINDOW_S:g} s / minute mean {m['peak_over_mean_median']:.2f} "
                  f"(Poisson {m['poisson_peak_over_mean_median']:.2f}), dispersion {m['dispersion_median']:.1f}")
    if "engine" in sections:
        doc["engine"] = engine_speed()
        OUT.write_text(json.dumps(doc, indent=2))
    if "knee" in sections:
        doc["knee"] = knee()
        OUT.write_text(json.dumps(doc, indent=2))
    if "need" in sections:
        doc["need"] = need(workers=args.workers, seed=args.seed)
        OUT.write_text(json.dumps(doc, indent=2))
        print(f"peak need: {doc['need']['gpus']:g} GPUs "
              + ", ".join(f"{k} {v['replicas']}×" for k, v in doc["need"]["models"].items()), flush=True)
    if "table" in sections:
        if "need" not in doc:
            print("run the need section first", file=sys.stderr)
            return 2
        need_gpus = doc["need"]["gpus"]
        fractions = [float(f) for f in args.fractions.split(",")]
        caps = sorted({float(round(f * need_gpus)) for f in fractions})
        policies = [p.strip() for p in args.policies.split(",") if p.strip()]
        seeds = [int(x) for x in args.seeds.split(",") if x.strip()]
        doc["table"] = table(caps, policies, workers=args.workers, minutes=args.minutes, seeds=seeds)
        doc["table"]["fractions"] = fractions
        OUT.write_text(json.dumps(doc, indent=2))
        for cap, entry in doc["table"]["caps"].items():
            print(f"\n{cap} GPUs ({float(cap) / need_gpus:.0%} of the peak need of {need_gpus:g}):")
            print(llm_table(entry["policies"]))
            r = entry["ratios"]
            if "baseline_over_faro" in r:
                print(f"best baseline / best Faro = {r['baseline_over_faro']:.2f} (target ≥ 3)")
            if "faro_over_oracle" in r:
                print(f"best Faro / oracle = {r['faro_over_oracle']:.2f} (target ≤ 1.3)")
        print(f"table: {doc['table']['wall_s']:.0f} s wall on {args.workers} workers "
              f"(load average {doc['table']['load_avg_before']})")
    if "rotations" in sections:
        if "need" not in doc:
            print("run the need section first", file=sys.stderr)
            return 2
        need_gpus = doc["need"]["gpus"]
        caps = sorted({float(round(float(f) * need_gpus)) for f in args.fractions.split(",")})
        ks = [int(x) for x in args.rotations.split(",") if x.strip()]
        doc["rotations"] = rotations(caps, list(ROTATION_POLICIES), workers=args.workers, rotations_=ks)
        OUT.write_text(json.dumps(doc, indent=2))
        for cap, entry in doc["rotations"]["caps"].items():
            cells = ", ".join(f"rotation {k}: " + ", ".join(
                f"{p} {100 * v['slo_violation']:.2f}%" for p, v in e["policies"].items()
                if v["slo_violation"] is not None) for k, e in entry["rotations"].items())
            r = entry["mean"]["ratios"]
            print(f"{cap} GPUs: {cells}; mean over rotations: WVA / best Faro {r.get('baseline_over_faro', 0):.2f}, "
                  f"best Faro / oracle {r.get('faro_over_oracle', 0):.2f}")
    OUT.write_text(json.dumps(doc, indent=2))
    try:
        sys.path.insert(0, str(Path(__file__).parent))
        import docs_tables

        docs_tables.update()
    except (ImportError, SystemExit, KeyError) as exc:  # docs tables are a convenience here
        print(f"docs tables not updated: {exc}", file=sys.stderr)
    print(f"wrote {OUT}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
