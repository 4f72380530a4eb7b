"""LLM latency model vs the token-level simulator: TTFT, ITL and TPOT p99 on a grid of loads, limits and mixes.

Run: ``python bench/llm_model.py`` (``--requests 6000 --seeds 1,2``; ``--quick`` for a small grid).
Prints a table (simulated vs modelled p99 TTFT, ITL and TPOT, relative error) and writes
``bench/results/llm_model.json`` with every point and a summary per load band (median and worst absolute
error below 90% load, at 90%, and beyond).

Each point serves Poisson arrivals at ``u·λ_max`` (``λ_max`` the model's per-replica capacity, so ``u`` is
the model's utilisation) with prompt/output lengths drawn from a mix, on one replica of
``faro.optimizer.sim.llm.engine`` (vLLM V1's scheduler), and compares the p99 of TTFT and of TPOT (requests
arriving after the first 10% of the run) and of inter-token gaps with ``llm_predict``. Mixes: lognormal fits of
the Azure LLM inference trace 2023 (conversation: prompt median 1,020 / p99 4,142, output median 129 / p99
601; code: prompt median 1,469 / p99 7,436, output median 13 / p99 252; drawn with a fixed seed, so no trace
file is needed) and one fixed mix.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
from pathlib import Path

import numpy as np
from faro.optimizer.model.llm_latency import capacity_rps, llm_predict
from faro.optimizer.model.llm_profile import EngineProfile, TokenMix
from faro.optimizer.sim.llm.engine import simulate_replica
from tqdm import tqdm

RESULTS = Path(__file__).resolve().parent / "results" / "llm_model.json"

PROFILES = {
    # an 8B-class model on one GPU, three batch/KV settings; a small fast model
    "s128-b4096": EngineProfile(step_base_ms=15.0, decode_ms_per_seq=0.25, prefill_ms_per_token=0.1,
                                kv_cache_tokens=400_000, max_num_seqs=128, max_num_batched_tokens=4096),
    "s64-b2048": EngineProfile(step_base_ms=15.0, decode_ms_per_seq=0.25, prefill_ms_per_token=0.1,
                               kv_cache_tokens=400_000, max_num_seqs=64, max_num_batched_tokens=2048),
    "s256-b8192-kv60k": EngineProfile(step_base_ms=15.0, decode_ms_per_seq=0.25, prefill_ms_per_token=0.1,
                                      kv_cache_tokens=60_000, max_num_seqs=256, max_num_batched_tokens=8192),
    "small-s256-b2048": EngineProfile(step_base_ms=6.0, decode_ms_per_seq=0.08, prefill_ms_per_token=0.03,
                                      kv_cache_tokens=300_000, max_num_seqs=256, max_num_batched_tokens=2048),
}
LOADS = (0.2, 0.5, 0.7, 0.8, 0.9, 0.95)
QUICK = {"profiles": ("s128-b4096", "s256-b8192-kv60k"), "loads": (0.3, 0.7, 0.9)}


def lognormal_mix(prompt_median: float, prompt_p99: float, output_median: float, output_p99: float,
                  *, n: int = 4000, seed: int = 7) -> TokenMix:
    """A mix whose prompt and output lengths are lognormal with the given medians and p99s."""
    rng = np.random.default_rng(seed)
    z99 = 2.3263478740408408
    prompt = rng.lognormal(np.log(prompt_median), np.log(prompt_p99 / prompt_median) / z99, n)
    output = rng.lognormal(np.log(output_median), np.log(output_p99 / output_median) / z99, n)
    return TokenMix(np.clip(np.rint(prompt), 1, 16_000), np.clip(np.rint(output), 1, 4000))


def mixes() -> dict[str, TokenMix]:
    return {
        "conv": lognormal_mix(1020, 4142, 129, 601),
        "code": lognormal_mix(1469, 7436, 13, 252),
        "fixed-512-128": TokenMix.fixed(512, 128),
    }


def run_point(profile: EngineProfile, mix: TokenMix, rate_rps: float, *, requests: int, seed: int) -> dict:
    rng = np.random.default_rng(seed)
    arrivals = np.cumsum(rng.exponential(1.0 / rate_rps, requests))
    pick = rng.integers(0, mix.prompt_tokens.size, requests)
    run = simulate_replica(profile, arrivals, mix.prompt_tokens[pick], mix.output_tokens[pick])
    warm = arrivals > 0.1 * arrivals[-1]
    ttft = run.ttft_ms[warm & np.isfinite(run.ttft_ms)]
    tpot = run.tpot_ms[warm & np.isfinite(run.tpot_ms)]
    return {
        "ttft_p99_ms": float(np.percentile(ttft, 99)),
        "itl_p99_ms": float(run.itl_percentile_ms(99.0)) if run.itl_count.sum() else 0.0,
        "tpot_p99_ms": float(np.percentile(tpot, 99)) if tpot.size else 0.0,
        "preemptions": int(run.preemptions.sum()),
    }


def band(u: float) -> str:
    return "u<0.9" if u < 0.9 - 1e-9 else ("u=0.9" if u < 0.95 - 1e-9 else "u>=0.95")


def summarise(rows: list[dict]) -> dict:
    out: dict[str, dict] = {}
    for name in ("u<0.9", "u=0.9", "u>=0.95"):
        part = [r for r in rows if band(r["load"]) == name]
        if not part:
            continue
        entry = {"points": len(part)}
        for metric in ("ttft", "itl", "tpot"):
            errs = [abs(r[f"{metric}_error"]) for r in part if r[f"{metric}_error"] is not None]
            entry[f"{metric}_median_abs_error"] = statistics.median(errs)
            entry[f"{metric}_max_abs_error"] = max(errs)
            entry[f"{metric}_within_20pct"] = sum(e <= 0.2 for e in errs) / len(errs)
        out[name] = entry
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=6000, help="requests per simulated point")
    parser.add_argument("--seeds", default="1", help="comma-separated seeds; the p99s are averaged over them")
    parser.add_argument("--quick", action="store_true", help=f"only {QUICK}")
    parser.add_argument("--output", default=str(RESULTS))
    args = parser.parse_args(argv)
    seeds = [int(s) for s in args.seeds.split(",")]
    profiles = {k: v for k, v in PROFILES.items() if not args.quick or k in QUICK["profiles"]}
    loads = QUICK["loads"] if args.quick else LOADS
    grid = [(p, m, u) for p in profiles for m in mixes() for u in loads]
    mix_of = mixes()
    rows = []
    for pname, mname, u in tqdm(grid, desc="llm model vs simulator", file=sys.stderr):
        profile, mix = profiles[pname], mix_of[mname]
        cap = capacity_rps(profile, mix)
        sims = [run_point(profile, mix, u * cap, requests=args.requests, seed=s) for s in seeds]
        row = {"profile": pname, "mix": mname, "load": u, "rate_rps": u * cap, "capacity_rps": cap,
               "preemptions": int(np.mean([s["preemptions"] for s in sims]))}
        pred = llm_predict(profile, mix, u * cap, 1)
        for metric in ("ttft", "itl", "tpot"):
            sim = float(np.mean([s[f"{metric}_p99_ms"] for s in sims]))
            model = float(getattr(pred, f"{metric}_ms"))
            row.update({f"sim_{metric}_p99_ms": sim, f"model_{metric}_p99_ms": model,
                        f"{metric}_error": (model / sim - 1.0) if sim > 0 else None})
        rows.append(row)
    print(f"{'profile':18} {'mix':14} {'u':>5} {'req/s':>6}  {'TTFT sim':>9} {'model':>8} {'err':>6}  "
          f"{'ITL sim':>8} {'model':>7} {'err':>6}  {'TPOT sim':>8} {'model':>7} {'err':>6}  preempt")

    def err(x: float | None) -> str:
        return "   n/a" if x is None else f"{x:+6.0%}"

    for r in rows:
        print(f"{r['profile']:18} {r['mix']:14} {r['load']:5.2f} {r['rate_rps']:6.2f}  {r['sim_ttft_p99_ms']:9.0f} "
              f"{r['model_ttft_p99_ms']:8.0f} {err(r['ttft_error'])}  {r['sim_itl_p99_ms']:8.1f} "
              f"{r['model_itl_p99_ms']:7.1f} {err(r['itl_error'])}  {r['sim_tpot_p99_ms']:8.1f} "
              f"{r['model_tpot_p99_ms']:7.1f} {err(r['tpot_error'])}  {r['preemptions']}")
    summary = summarise(rows)
    for name, entry in summary.items():
        print(f"{name}: {entry['points']} points; " + "; ".join(
            f"{m.upper()} |err| median {entry[f'{m}_median_abs_error']:.0%} max {entry[f'{m}_max_abs_error']:.0%} "
            f"({entry[f'{m}_within_20pct']:.0%} within 20%)" for m in ("ttft", "itl", "tpot")))
    doc = {"command": "python bench/llm_model.py " + " ".join(argv if argv is not None else sys.argv[1:]),
           "requests": args.requests, "seeds": seeds, "load_avg": list(os.getloadavg()), "rows": rows,
           "summary": summary}
    Path(args.output).parent.mkdir(parents=True, exist_ok=True)
    Path(args.output).write_text(json.dumps(doc, indent=1) + "\n")
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    import docs_tables  # the docs' benchmark tables are generated from bench/results

    docs_tables.update()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
