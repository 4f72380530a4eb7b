"""Benchmark tables in the docs, generated from ``bench/results/*.json`` so they cannot go stale.

Each table sits in ``README.md`` or a ``docs/*.md`` file between ``<!-- bench:NAME -->`` and
``<!-- /bench:NAME -->`` markers and is rewritten from the JSON the bench scripts write. The bench scripts
call ``update()`` after writing their JSON; ``tests/test_docs.py`` runs ``check()``, so a table edited by hand
or left behind a rerun fails CI.

    python bench/docs_tables.py            # rewrite every table
    python bench/docs_tables.py --check    # exit 1 and name the stale tables
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"
DOCS = ROOT / "docs"
MARKER = re.compile(r"(<!-- bench:(?P<name>[a-z0-9-]+) -->\n)(?P<body>.*?)(<!-- /bench:(?P=name) -->)", re.S)


def _load(name: str) -> dict[str, Any]:
    return json.loads((RESULTS / name).read_text())


def _table(header: list[str], rows: list[list[str]], *, right: int = 1) -> str:
    """A Markdown table; columns from ``right`` on are right-aligned."""
    align = ["---" if i < right else "---:" for i in range(len(header))]
    lines = ["| " + " | ".join(header) + " |", "| " + " | ".join(align) + " |"]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines)


def _n(x: float, digits: int = 3) -> str:
    """Thousands separators and ``digits`` significant digits, plain decimals (no 1e3)."""
    if x == 0:
        return "0"
    from math import floor, log10

    decimals = max(0, digits - 1 - floor(log10(abs(x))))
    return f"{x:,.{decimals}f}"


def _pct(x: float | None, digits: int = 2) -> str:
    return "–" if x is None else f"{100 * x:.{digits}f}%"


def _load_avg(values: Any) -> str:
    return f"{values[0]:.1f}" if isinstance(values, list) and values else "?"


def _source(file: str, command: str, extra: str = "") -> str:
    return f"\n\n_From `bench/results/{file}` (`{command}`{'; ' + extra if extra else ''})._"


# --------------------------------------------------------------------------------------------- solver
OBJECTIVES = ("sum", "fair", "fairsum", "penaltysum", "penaltyfairsum")
SOLVERS = ("auto", "greedy", "dp", "cvxpy", "cobyla")


def solver_paper() -> str:
    doc = _load("solver.json")
    rows = [r for r in doc["rows"] if r.get("shape", "paper") == "paper" and r["solver"] != "greedy"]
    rows.sort(key=lambda r: (OBJECTIVES.index(r["objective"]), r["n"], SOLVERS.index(r["solver"])))
    out = []
    for r in rows:
        gap = "–" if r["max_gap"] is None else ("0 (proven)" if r["max_gap"] == 0 else _pct(r["max_gap"], 4))
        beats = {True: "yes", False: "no", None: "–"}[r.get("beats_cobyla")]
        out.append(
            [
                r["objective"],
                f"{r['n']:,}",
                r["solver"],
                _n(r["median_ms"]),
                _n(r["max_ms"]),
                _n(r["mean_objective"], 5),
                gap,
                beats,
                _n(r["peak_mib"], 2),
                "yes" if r["quota_respected"] else "**no**",
            ]
        )
    header = [
        "objective",
        "jobs",
        "solver",
        "median ms",
        "max ms",
        "mean objective",
        "max certified gap",
        "≥ COBYLA",
        "peak MiB",
        "quotas kept",
    ]
    commands = "`, `".join(doc.get("commands", [doc.get("command", "python bench/solver.py")]))
    return _table(header, out, right=3) + f"\n\n_From `bench/results/solver.json` (`{commands}`)._"


def solver_cluster() -> str:
    doc = _load("solver.json")
    rows = [r for r in doc["rows"] if r.get("shape") == "cluster" and r["solver"] == "auto"]
    sizes = sorted({r["n"] for r in rows})
    by = {(r["objective"], r["n"]): r for r in rows}
    out = []
    for obj in OBJECTIVES:
        cells = [by.get((obj, n)) for n in sizes]
        if not any(cells):
            continue
        out.append(
            [
                obj,
                *[
                    (
                        "–"
                        if c is None
                        else f"{_n(c['median_ms'])} ({_pct(c['max_gap'], 4) if c['max_gap'] else 'gap 0'})"
                    )
                    for c in cells
                ],
            ]
        )
    return _table(["objective", *[f"{n:,} jobs: median ms (max gap)" for n in sizes]], out) + _source(
        "solver.json", "python bench/solver.py --shape cluster …", "solver auto"
    )


# --------------------------------------------------------------------------------------------- forecast
def forecast_accuracy() -> str:
    doc = _load("forecast.json")["accuracy"]
    best = min(doc, key=lambda m: doc[m]["pinball_0.9"])
    out = []
    for model, r in doc.items():
        p9 = _n(r["pinball_0.9"], 3)
        out.append(
            [
                model,
                _n(r["pinball_0.5"], 3),
                _n(r["pinball_0.6"], 3),
                f"**{p9}**" if model == best else p9,
                f"{r['coverage_0.9']:.3f}",
            ]
        )
    return _table(["model", "pinball@0.5", "pinball@0.6", "pinball@0.9", "coverage of q0.9"], out) + _source(
        "forecast.json", "python bench/forecast.py", "fit on days 1–10, rolling origin over day 11"
    )


def forecast_speed() -> str:
    doc = _load("forecast.json")
    jobs = max(r["jobs"] for r in doc["speed"])
    out = []
    for r in (r for r in doc["speed"] if r["jobs"] == jobs):
        out.append(
            [
                r["model"],
                f"{r['fit_s']:.2f} s",
                f"{r['refit_s']:.2f} s",
                f"{1000 * r['update_forecast_s']:.1f} ms",
                f"{1000 * r['per_cycle_s']:.0f} ms",
                f"{1000 * r['worst_hourly_cycle_s']:.0f} ms",
                f"{1000 * r['worst_daily_cycle_s']:.0f} ms",
            ]
        )
    return _table(
        [
            f"{jobs:,} jobs",
            "fit",
            "refit",
            "update + forecast",
            "per cycle (amortised)",
            "worst hourly cycle",
            "worst daily cycle",
        ],
        out,
    ) + _source(
        "forecast.json", "python bench/forecast.py", f"load average {_load_avg(doc['machine'].get('load_avg'))}"
    )


def forecast_history() -> str:
    doc = _load("forecast_history.json")
    out = [[r["model"], f"{r['history_minutes']:,}", _n(r["pinball"], 3), f"{r['coverage']:.3f}"] for r in doc["rows"]]
    return _table(
        ["model", "past minutes before day 11", f"pinball@{doc['quantile']:g}", f"coverage of q{doc['quantile']:g}"],
        out,
    ) + _source(
        "forecast_history.json",
        "python bench/forecast_history.py",
        f"{doc['horizon']}-minute forecasts every {doc['stride_min']} minutes of day 11",
    )


def forecast_cold() -> str:
    doc = _load("forecast_cold.json")
    old, new = doc["variants"]
    out = []
    for r in doc["rows"]:
        a, b = r[old], r[new]
        change = f"{100 * (b['pinball'] / a['pinball'] - 1):+.0f}%"
        out.append([r["group"], str(r["series"]), f"{a['pinball']:.3f} / {a['coverage_q09']:.2f}",
                    f"{b['pinball']:.3f} / {b['coverage_q09']:.2f}", change])
    return _table(["first hour of", "series", "last value: pinball / coverage q0.9",
                   "default: pinball / coverage q0.9", "pinball change"], out) + _source(
        "forecast_cold.json", "python bench/forecast_cold.py",
        f"profile fitted at minute {doc['fit_at_min']}, {doc['horizon']}-minute forecasts every minute; "
        "pinball over q 0.1–0.9 relative to the series' mean",
    )


# --------------------------------------------------------------------------------------------- simulator
def simulate_policies() -> str:
    doc = _load("simulate.json")
    rows = doc["table"]["rows"]
    caps = sorted({int(r["cpus"]) for r in rows})
    by = {(r["policy"], int(r["cpus"])): r for r in rows}
    order = sorted({r["policy"] for r in rows}, key=lambda p: by.get((p, 32), by[(p, caps[0])])["slo_violation"])
    fidelity = doc.get("fidelity", {})
    art_caps = sorted(int(c) for c in fidelity)
    out = []
    for p in order:
        cells = [
            ("–" if (p, c) not in by else f"{_pct(by[(p, c)]['slo_violation'])} / {by[(p, c)]['lost_utility']:.3f}")
            for c in caps
        ]
        for c in art_caps:
            a = fidelity[str(c)]["policies"].get(p)
            cells.append(
                "–" if a is None else f"{100 * a['artifact_violation']:.1f}% / {a['artifact_lost_utility']:.2f}"
            )
        out.append([p, *cells])
    header = ["policy", *[f"{c} CPUs" for c in caps], *[f"artifact sim, {c} CPUs" for c in art_caps]]
    return _table(header, out) + _source(
        "simulate.json",
        "python bench/simulate.py --sections table",
        f"SLO violation rate / lost utility, {doc['table']['minutes']} min, seed 0, bundled history; the artifact "
        "columns are the Faro artifact simulator's published numbers",
    )


def simulate_fidelity() -> str:
    doc = _load("simulate.json")["fidelity"]
    out = []
    for cap, f in sorted(doc.items(), key=lambda kv: int(kv[0])):
        ratios = [p["lost_utility_ratio"] for p in f["policies"].values()]
        out.append(
            [
                cap,
                "yes" if f["groups_rank_as_artifact"] else "no",
                f"{min(ratios):.2f}–{max(ratios):.2f}",
                "yes" if f["all_lost_utility_within_25pct"] else "no",
                f"{f['best_faro_vs_oracle']:.2f}×",
                f"{f['best_faro_vs_best_baseline']:.2f}×",
            ]
        )
    return _table(
        [
            "CPUs",
            "groups rank as the artifact's",
            "lost utility / artifact's",
            "all within 25%",
            "best Faro / oracle (violations)",
            "best baseline / best Faro (violations)",
        ],
        out,
    ) + _source("simulate.json", "python bench/simulate.py --sections table")


def simulate_speed() -> str:
    doc = _load("simulate.json")
    s, h = doc["static"], doc["hundred_jobs"]
    out = [
        [
            f"static replicas ({s['replicas_per_job']} per job, {s['cpus']} CPUs, {s['minutes']} min), "
            "artifact discipline",
            f"{s['artifact']['requests']:,}",
            f"{s['artifact']['wall_s']:.2f} s",
            f"**{s['artifact']['requests_per_s'] / 1e6:.2f} M req/s**",
            _load_avg(s.get("load_avg_before")),
        ],
        [
            "same, M/G/c discipline",
            f"{s['mgc']['requests']:,}",
            f"{s['mgc']['wall_s']:.2f} s",
            f"{s['mgc']['requests_per_s'] / 1e3:.0f} k req/s",
            _load_avg(s.get("load_avg_before")),
        ],
        [
            f"{h['jobs']} jobs, {h['cpus']} CPUs, {h['policy']} (`simulate()` only)",
            f"{h['requests']:,.0f}",
            f"{h['wall_s']:.0f} s",
            f"peak RSS {h['peak_rss_mib'] / 1024:.2f} GiB, {_pct(h['slo_violation'])} violations",
            _load_avg(h.get("load_avg_before")),
        ],
    ]
    for cap, c in sorted(doc["table"]["per_cap"].items(), key=lambda kv: int(kv[0])):
        out.append(
            [
                f"policy table at {cap} CPUs: every policy, {c['workers']} processes",
                "–",
                f"{c['wall_s']:.0f} s",
                "–",
                _load_avg(c.get("load_avg_before")),
            ]
        )
    return _table(["run", "requests", "wall", "result", "load average"], out) + _source(
        "simulate.json", "python bench/simulate.py --sections static,table,hundred"
    )


# --------------------------------------------------------------------------------------------- LLM simulator
def llm_need() -> str:
    doc = _load("llm.json")
    need = doc["need"]
    models = {m["name"]: m for m in doc["workload"]["models"]}
    out = []
    for name, m in need["models"].items():
        spec = models[name]
        curve = ", ".join(f"{k}: {_pct(v)}" for k, v in m["violation_by_replicas"].items())
        out.append([name, f"{spec['trace']} ×{spec['load_scale']:g}, shifted {spec['shift_s'] / 60:g} min",
                    spec["profile"], f"{spec['ttft_ms']:g} / {spec['itl_ms']:g} ms", str(m["replicas"]),
                    f"{m['gpus']:g}", curve])
    out.append(["**total**", "", "", "", "", f"**{need['gpus']:g}**", ""])
    return _table(["model", "load", "profile", "TTFT / TPOT SLO (p99)", "replicas", "GPUs",
                   "violation by static replicas"], out, right=4) + _source(
        "llm.json", "python bench/llm.py --sections need",
        f"fewest replicas held all hour from time 0 with ≤ {_pct(need['target_violation'], 0)} violations; "
        f"{doc['workload']['requests']:,} requests in the hour",
    )


def llm_policies() -> str:
    doc = _load("llm.json")
    t = doc["table"]
    need = doc["need"]["gpus"]
    caps = sorted(t["caps"].values(), key=lambda c: c["gpus"])
    names: list[str] = []
    for c in caps:
        names += [p for p in c["policies"] if p not in names]
    ref = caps[len(caps) // 2]["policies"]
    names.sort(key=lambda p: ref.get(p, {}).get("slo_violation", 9.0))
    out = []
    for p in names:
        cells = []
        for c in caps:
            r = c["policies"].get(p)
            cells.append("–" if r is None or "error" in r else
                         f"{_pct(r['slo_violation'])} / {r['lost_utility']:.2f} / {r['gpu_minutes']:,.0f}")
        out.append([p, *cells])
    for label, key in (("best baseline / best Faro", "baseline_over_faro"), ("best Faro / oracle", "faro_over_oracle")):
        cells = [f"{c['ratios'][key]:.2f}×" if key in c["ratios"] else "–" for c in caps]
        out.append([f"**{label}**", *cells])
    header = ["policy", *[f"{c['gpus']:g} GPUs ({c['gpus'] / need:.0%} of peak need)" for c in caps]]
    return _table(header, out) + _source(
        "llm.json", "python bench/llm.py --sections table",
        f"SLO violation rate / lost utility / GPU-minutes, {t['minutes']} min, {_seeds(t)}; "
        f"{t['wall_s'] / 60:.0f} min wall for every run on 2 processes, load average {_load_avg(t['load_avg_before'])}",
    )


def llm_rotations() -> str:
    doc = _load("llm.json")
    r = doc["rotations"]
    need = doc["need"]["gpus"]
    caps = sorted(r["caps"].values(), key=lambda c: c["gpus"])
    policies = list(next(iter(caps[0]["rotations"].values()))["policies"])

    def ratio(x: dict, key: str) -> str:
        return f"{x[key]:.2f}×" if key in x else "–"

    out = []
    for c in caps:
        label = f"{c['gpus']:g} GPUs ({c['gpus'] / need:.0%})"
        for k, e in c["rotations"].items():
            out.append([label, k, *[_pct(e["policies"][p]["slo_violation"]) for p in policies],
                        ratio(e["ratios"], "baseline_over_faro"), ratio(e["ratios"], "faro_over_oracle")])
            label = ""
        m = c["mean"]
        out.append(["", "**mean**", *[f"**{_pct(m['policies'][p].get('slo_violation'))}**" for p in policies],
                    f"**{ratio(m['ratios'], 'baseline_over_faro')}**", f"**{ratio(m['ratios'], 'faro_over_oracle')}**"])
    return _table(["cap (of the bundled peak need)", "rotation", *policies, "WVA / best Faro", "best Faro / oracle"],
                  out, right=2) + _source(
        "llm.json", "python bench/llm.py --sections rotations",
        f"SLO violation rate, 60 min, workload seed 0; rotation k moves model i's trace a further "
        f"k·{r['rotate_s'] / 60:g}·(i+1) min; {r['wall_s'] / 60:.0f} min wall on 2 processes, load average "
        f"{_load_avg(r['load_avg_before'])}",
    )


def _seeds(t: dict) -> str:
    """Which workload draws a table covers (older results ran one seed)."""
    seeds = t.get("seeds", [t.get("seed", 0)])
    return f"workload seed {seeds[0]}" if len(seeds) == 1 else f"mean of workload seeds {', '.join(map(str, seeds))}"


def llm_knee() -> str:
    doc = _load("llm.json")["knee"]
    out = []
    for name, m in doc["models"].items():
        cells = [f"{p['model_ttft_p99_ms']:,.0f} / {p['sim_ttft_p99_ms']:,.0f}" for p in m["points"]]
        out.append([name, f"{m['capacity_rps']:.1f}", f"{m['slo_ttft_ms']:g}", *cells])
    loads = [f"{p['load']:.0%} of capacity" for p in next(iter(doc["models"].values()))["points"]]
    return _table(["model", "capacity (req/s per replica)", "TTFT SLO (ms)", *loads], out) + _source(
        "llm.json", "python bench/llm.py --sections knee",
        "TTFT p99 in ms, the latency model / one simulated replica; Poisson arrivals, the model's own mix, "
        "minutes 5–10 of a 10-minute run",
    )


def llm_bursts() -> str:
    doc = _load("llm.json")["bursts"]
    out = [[name, str(m["minutes"]), f"{m['peak_over_mean_median']:.2f} / {m['peak_over_mean_p90']:.2f}",
            f"{m['poisson_peak_over_mean_median']:.2f} / {m['poisson_peak_over_mean_p90']:.2f}",
            f"{m['dispersion_median']:.1f}"] for name, m in doc["models"].items()]
    window = f"{doc['window_s']:g} s"
    return _table(["model", f"minutes with ≥ {doc['min_requests']} requests",
                   f"busiest {window} / minute mean (median / p90)", "same, Poisson arrivals",
                   f"dispersion of {window} counts (Poisson 1)"], out) + _source(
        "llm.json", "python bench/llm.py --sections bursts", f"bundled workload, seed {doc['seed']}")


def llm_speed() -> str:
    doc = _load("llm.json")["engine"]
    out = []
    for label in ("unsaturated", "saturated"):
        e = doc[label]
        for mode, r in e["modes"].items():
            out.append([f"{label}: conv ×{e['load_scale']:g}, {e['seconds'] / 60:g} min, {e['requests']:,} requests",
                        mode, f"{r['steps']:,}", f"{r['wall_s']:.2f} s", f"{r['steps_per_s'] / 1e3:,.0f} k",
                        "yes" if r["equal_to_reference"] else "**no**"])
    return _table(["one 8B/H100 replica", "mode", "engine steps", "wall", "steps/s", "same as reference"], out,
                  right=2) + _source("llm.json", "python bench/llm.py --sections engine",
                                     f"load average {_load_avg(doc.get('load_avg_before'))}")


# --------------------------------------------------------------------------------------------- loop, adapter
def loop_cycles() -> str:
    doc = _load("loop.json")
    parts = None
    out = []
    for r in doc["rows"]:
        parts = [k for k in r["first_cycle_s"] if k != "cycle"]
        for label, key in (
            ("first", "first_cycle_s"),
            ("steady (median)", "steady_cycle_s"),
            ("slowest", "max_cycle_s"),
        ):
            cells = [f"{r[key][k]:.3f} s" for k in parts]
            out.append(
                [
                    f"{r['deployments']:,}",
                    label,
                    *cells,
                    f"**{r[key]['cycle']:.2f} s**" if label != "first" else f"{r[key]['cycle']:.2f} s",
                ]
            )
    return _table(["Deployments", "cycle", *(parts or []), "total"], out, right=2) + _source(
        "loop.json",
        doc.get("command", "python bench/loop.py"),
        f"{doc['settings']['cycles']} long-horizon cycles after the first, {doc['settings']['history_min']:,} "
        f"minutes of history, load average {_load_avg(doc.get('load_avg'))}",
    )


def loop_prometheus() -> str:
    doc = _load("loop.json")["prometheus_source"]
    out = [
        [label, f"{doc[k]['http_queries']:,}", f"{doc[k]['seconds']:.1f} s", f"{doc[k]['observed']:,}"]
        for label, k in (
            ("batched (one query per quantity)", "batched"),
            ("one Deployment at a time", "per_deployment"),
        )
    ]
    return _table(
        [f"{doc['deployments']:,} Deployments, one observe()", "HTTP queries", "time", "observed"], out
    ) + _source("loop.json", "python bench/loop.py --prometheus 1000", "a real Prometheus on this machine")


def adapter() -> str:
    doc = _load("adapter.json")
    out = [
        [
            f"{r['concurrency']}",
            f"{r['rps']:,.0f}",
            f"{r['p50_ms']:.1f}",
            f"{r['p90_ms']:.1f}",
            f"{r['p99_ms']:.1f}",
            f"{r['server_cpu_ms_per_req']:.2f}",
            f"{r['rps_per_server_core']:,.0f}",
            str(r["errors"]),
        ]
        for r in doc["rows"]
    ]
    return _table(
        ["concurrency", "req/s", "p50 ms", "p90 ms", "p99 ms", "server CPU ms/req", "req/s per core", "errors"], out
    ) + _source(
        "adapter.json",
        doc.get("command", "python bench/adapter.py").strip(),
        f"{doc['deployments']:,}-Deployment plan, {doc['auth']}, {doc['tls']}, adapter on {doc['server_cores']} core, "
        f"{doc['duration_s']:g} s per level, load average {doc.get('load_average_1m', 0):.1f}",
    )


def llm_model_agreement() -> str:
    doc = _load("llm_model.json")
    names = {"u<0.9": "below 90% load", "u=0.9": "at 90%", "u>=0.95": "95% and beyond"}
    rows = []
    for band, e in doc["summary"].items():
        rows.append([names.get(band, band), str(e["points"])] + [
            f"{100 * e[f'{m}_median_abs_error']:.0f}% / {100 * e[f'{m}_max_abs_error']:.0f}% / "
            f"{100 * e[f'{m}_within_20pct']:.0f}%" for m in ("ttft", "tpot", "itl")])
    header = ["load (u = λ/λ_max)", "points", "TTFT p99: error median / max / share within 20%", "TPOT p99", "ITL p99"]
    return _table(header, rows, right=1) + _source(
        "llm_model.json", doc["command"].strip(), f"{doc['requests']:,} requests per point, load average "
        f"{_load_avg(doc.get('load_avg'))}; every point in the JSON")


def solver_llm() -> str:
    doc = _load("solver.json")
    shapes = ("llm", "llm-scenarios")  # the second: the forecast scenarios the fair objectives plan LLM jobs over
    rows = [r for r in doc["rows"] if r.get("shape") in shapes]
    rows.sort(key=lambda r: (shapes.index(r["shape"]), OBJECTIVES.index(r["objective"]), r["n"],
                             SOLVERS.index(r["solver"])))
    out = []
    for r in rows:
        gap = "–" if r["max_gap"] is None else ("0 (proven)" if r["max_gap"] == 0 else _pct(r["max_gap"], 4))
        def ms(key: str, row: dict = r) -> str:
            return "–" if row.get(key) is None else _n(row[key])

        objective = r["objective"] + (" + scenarios" if r["shape"] == "llm-scenarios" else "")
        out.append([objective, f"{r['n']:,}", r["solver"], f"{ms('median_ms')} ({ms('cpu_median_ms')})",
                    f"{ms('warm_median_ms')} ({ms('warm_cpu_median_ms')})", gap,
                    "yes" if r["quota_respected"] else "**no**", _load_avg(r.get("load_avg"))])
    header = ["objective", "LLM jobs", "solver", "cold: median ms (CPU ms)", "warm: median ms (CPU ms)",
              "max certified gap", "quotas kept", "load average"]
    commands = "`, `".join(c for c in doc.get("commands", [doc.get("command", "")]) if "llm" in c)
    return _table(header, out, right=3) + f"\n\n_From `bench/results/solver.json` (`{commands}`)._"


# --------------------------------------------------------------------------------------------- fuzz and soak
def fuzz() -> str:
    doc = _load("fuzz.json")
    out = []
    for r in doc["surfaces"]:
        out.append([
            r["surface"], f"{r['requests']:,}", _n(r["rps"]), str(r["server_errors"]), str(r["nonconforming"]),
            "—" if r["surface"] == "https" else str(r.get("malformed_refused", 0)), str(r["client_errors"]),
            f"{r['rss_start_mib']:.0f} → {r['rss_end_mib']:.0f} ({r['rss_growth_mib']:+.1f} / "
            + (f"{second:+.1f})" if (second := r.get("rss_growth_second_half_mib")) is not None else "n/a)"),
            "yes" if r["alive_after"] else "**no**",
        ])
    header = ["surface", "requests", "req/s", "server errors", "outside the contract",
              "malformed protobuf → INVALID_ARGUMENT", "client could not send",
              "server RSS MiB (growth after 10% / in the 2nd half)", "alive after"]
    commands = "`, `".join(dict.fromkeys(r.get("command", doc["command"]) for r in doc["surfaces"]))
    return _table(header, out) + f"\n\n_From `bench/results/fuzz.json` (`{commands}`; loopback, 2 shared cores)._"


def soak() -> str:
    doc = _load("soak.json")
    a = doc["args"]
    row = [
        f"{a['duration_s']:.0f} s", f"{a['rps']:.0f}", _n(doc["achieved_rps"]), f"{doc['requests']:,}",
        f"{doc['not_sent']:,}", f"{doc['statuses'].get('200', 0):,}", f"{doc['documented_503']:,}",
        str(doc["errors"]), f"{doc['p50_ms']:.1f}", f"{doc['p99_ms']:.0f}",
        f"{doc['rss_growth_mib']:+.1f} / {doc['rss_growth_last_half_mib']:+.1f}",
        "yes" if doc["adapter_alive"] else "**no**",
    ]
    header = ["duration", "target req/s", "achieved req/s", "requests", "not sent (client saturated)", "200",
              "documented 503", "errors", "p50 ms", "p99 ms", "RSS growth MiB (run / 2nd half)", "adapter alive"]
    outages = "; ".join(f"optimizer down {o['stopped_s']:.0f}–{o['restarted_s']:.0f} s"
                        f"{' (longer than the TTL)' if o['longer_than_ttl'] else ''}" for o in doc["outages"])
    return _table(header, [row], right=0) + _source(
        "soak.json", doc["command"], f"{outages}; plan TTL {a['plan_ttl_s']:.0f} s; load average "
        f"{doc['load_average_1m']:.1f} on {doc['cpu_count']} shared cores")


def vllm_calibration() -> str:
    doc = _load("vllm_calibration.json")
    keys = ("ttft_p50_ms", "ttft_p99_ms", "itl_p50_ms", "itl_p99_ms")
    out = []
    for r in doc["rows"]:
        cells = [f"{r['rate_rps']:g}", f"{r['load_avg']:.1f}"]
        fitted = r.get("profile")
        cells.append("–" if fitted is None else f"{fitted['step_base_ms']:.1f} + {fitted['decode_ms_per_seq']:.2f}·n + "
                     f"{fitted['prefill_ms_per_token']:.3f}·p ({_pct(fitted['fit_error'], 0)})")
        for k in keys:
            m = r["measured"].get(k)
            # TTFT with the calibrated front-end overhead: inside "predicted" since the profile carries it,
            # added separately ("..._with_front_end") in results from before
            p = r.get("predicted_with_front_end", r.get("predicted", {})).get(k)
            e = r.get("error_with_front_end", r.get("error", {})).get(k)
            cells.append("–" if m is None or p is None else f"{_n(m, 3)} / {_n(p, 3)} ({100 * e:+.0f}%)")
        out.append(cells)
    header = ["req/s", "load avg", "calibrated step ms (fit error)", "TTFT p50 measured / model", "TTFT p99",
              "ITL p50", "ITL p99"]
    return _table(header, out, right=1) + _source(
        "vllm_calibration.json", doc["command"].strip(),
        "the model's TTFT includes the calibrated front-end overhead; client-side measurement; tiny random Llama "
        "on one shared CPU core")


def generalization() -> str:
    """Issue 12's table: per test day and cap, the default Faro variant, the best Faro variant, the best
    baseline, the Oracle, both ratios and the goal (mean over seeds)."""
    doc = _load("generalization.json")
    default = doc.get("default_policy") or "–"

    def x(v: float | None) -> str:
        return "–" if v is None else ("∞" if v == float("inf") else f"{v:.2f}×")

    out = []
    for c in doc["cases"]:
        s = c["score"]
        goal = c.get("meets_goal_default") if doc.get("default_policy") else c.get("meets_goal_best")
        goal_text = "–" if not c["goal_applies"] or goal is None else ("met" if goal else "**missed**")
        out.append([
            c["name"].replace("azure2019 ", "Azure "), f"{c['cpus']:g}", _pct(s["default_violation"]),
            f"{s['best_faro']} {_pct(s['best_faro_violation'])}",
            f"{s['best_baseline']} {_pct(s['best_baseline_violation'])}",
            _pct(s["oracle_violation"]), x(s["baseline_over_default"]), x(s["default_over_oracle"]),
            x(s["baseline_over_faro"]), x(s["faro_over_oracle"]), goal_text,
        ])
    header = ["test day", "CPUs", f"{default} (default)", "best Faro variant", "best baseline", "Oracle",
              "baseline / default", "default / Oracle", "baseline / best Faro", "best Faro / Oracle",
              "goal (default)"]
    seeds = ", ".join(str(v) for v in doc.get("seeds", []))
    return _table(header, out, right=1) + _source(
        "generalization.json", "python bench/generalization.py",
        f"SLO violation rate, mean of seeds {seeds}; every policy; commit {doc.get('commit', '?')}, load "
        f"{_load_avg(doc.get('load_avg_before'))}, {doc.get('wall_s', 0) / 60:.0f} min",
    )


# --------------------------------------------------------------------------------------------- README
def _range(values: list[float], fmt: Callable[[float], str]) -> str:
    lo, hi = min(values), max(values)
    return fmt(lo) if fmt(lo) == fmt(hi) else f"{fmt(lo)}–{fmt(hi)}"


def readme_results() -> str:
    """Where Faro stands, one row per workload: the generalisation suite, the paper day and the LLM hour."""
    gen = _load("generalization.json")
    default = gen["default_policy"]
    out = []
    paper = [c for c in gen["cases"] if c["day"] is None and c["cap_scale"] == 1]
    azure = [c for c in gen["cases"] if c["day"] is not None]

    def x(v: float) -> str:
        return f"{v:.1f}×"

    for c in paper:
        s = c["score"]
        out.append([f"paper day, {c['jobs']} jobs, {c['cpus']:g} CPUs", f"`{default}`",
                    _pct(s["default_violation"]), f"{_pct(s['best_baseline_violation'])} (`{s['best_baseline']}`)",
                    _pct(s["oracle_violation"]), x(s["baseline_over_default"]), x(s["default_over_oracle"])])
    if azure:
        scores = [c["score"] for c in azure]
        days = sorted({c["day"] for c in azure})
        out.append([f"Azure Functions days {', '.join(map(str, days))} (never tuned on), paper-style cap and 0.9×",
                    f"`{default}`",
                    _range([s["default_violation"] for s in scores], _pct),
                    _range([s["best_baseline_violation"] for s in scores], _pct),
                    _range([s["oracle_violation"] for s in scores], _pct),
                    _range([s["baseline_over_default"] for s in scores], x),
                    _range([s["default_over_oracle"] for s in scores], x)])
    llm = _load("llm.json")["table"]
    for cap in sorted(llm["caps"].values(), key=lambda c: c["gpus"]):
        r = cap["ratios"]
        out.append([f"LLM hour, {len(_load('llm.json')['workload']['models'])} models, {cap['gpus']:g} GPUs",
                    f"`{r['best_faro']['policy']}`", _pct(r["best_faro"]["slo_violation"]),
                    f"{_pct(r['best_baseline']['slo_violation'])} (`{r['best_baseline']['policy']}`)",
                    _pct(r["oracle"]["slo_violation"]), x(r["baseline_over_faro"]), x(r["faro_over_oracle"])])
    rotations = _load("llm.json").get("rotations", {"caps": {}})
    for cap in sorted(rotations["caps"].values(), key=lambda c: c["gpus"]):
        r = cap["mean"]["ratios"]
        out.append([f"same, {len(rotations['rotations'])} other alignments of the traces (never tuned on), mean, "
                    f"{cap['gpus']:g} GPUs", f"`{r['best_faro']['policy']}`", _pct(r["best_faro"]["slo_violation"]),
                    f"{_pct(r['best_baseline']['slo_violation'])} (`{r['best_baseline']['policy']}`)",
                    _pct(r["oracle"]["slo_violation"]), x(r["baseline_over_faro"]), x(r["faro_over_oracle"])])
    header = ["workload", "Faro", "violation", "best per-job autoscaler", "oracle", "baseline / Faro",
              "Faro / oracle"]
    return _table(header, out, right=2) + (
        f"\n\n_SLO violation rate (share of requests over the SLO, per job-minute); from "
        f"`bench/results/generalization.json` (`python bench/generalization.py`, {len(gen['seeds'])} seeds) and "
        f"`bench/results/llm.json` (`python bench/llm.py --sections need,table,rotations`)._")


def readme_security() -> str:
    """One line per fuzzed surface and the soak, for the README."""
    fuzz_doc, soak_doc = _load("fuzz.json"), _load("soak.json")
    out = [[f"fuzz `{r['surface']}`", f"{r['requests']:,} malformed and hostile requests", str(r["server_errors"]),
            "yes" if r["alive_after"] else "**no**"] for r in fuzz_doc["surfaces"]]
    out.append([f"soak, {soak_doc['args']['duration_s'] / 60:.0f} min", f"{soak_doc['requests']:,} requests at "
                f"{soak_doc['achieved_rps']:.0f}/s with optimizer outages", str(soak_doc["errors"]),
                "yes" if soak_doc["adapter_alive"] else "**no**"])
    commands = "`, `".join(dict.fromkeys(r.get("command", fuzz_doc["command"]) for r in fuzz_doc["surfaces"]))
    return _table(["run", "what", "server errors", "alive after"], out, right=2) + (
        f"\n\n_From `bench/results/fuzz.json` (`{commands}`) and `bench/results/soak.json` "
        f"(`{soak_doc['command']}`)._")


TABLES: dict[str, Callable[[], str]] = {
    "generalization": generalization,
    "solver-paper": solver_paper,
    "solver-cluster": solver_cluster,
    "forecast-accuracy": forecast_accuracy,
    "forecast-speed": forecast_speed,
    "forecast-history": forecast_history,
    "forecast-cold": forecast_cold,
    "simulate-policies": simulate_policies,
    "simulate-fidelity": simulate_fidelity,
    "simulate-speed": simulate_speed,
    "loop-cycles": loop_cycles,
    "loop-prometheus": loop_prometheus,
    "adapter": adapter,
    "llm-knee": llm_knee,
    "llm-bursts": llm_bursts,
    "llm-need": llm_need,
    "llm-policies": llm_policies,
    "llm-rotations": llm_rotations,
    "llm-speed": llm_speed,
    "llm-model-agreement": llm_model_agreement,
    "solver-llm": solver_llm,
    "fuzz": fuzz,
    "soak": soak,
    "vllm-calibration": vllm_calibration,
    "readme-results": readme_results,
    "readme-security": readme_security,
}


def _render(text: str, *, where: str) -> tuple[str, list[str]]:
    """``text`` with every marked table regenerated, and the names found."""
    found: list[str] = []

    def replace(m: re.Match[str]) -> str:
        name = m.group("name")
        if name not in TABLES:
            raise SystemExit(f"{where}: unknown table <!-- bench:{name} --> (known: {', '.join(TABLES)})")
        found.append(name)
        return m.group(1) + TABLES[name]() + "\n" + m.group(4)

    return MARKER.sub(replace, text), found


def update(*, check: bool = False, docs: Path = DOCS) -> list[str]:
    """Rewrite (or with ``check`` only compare) every marked table; returns the stale ones as ``file:name``."""
    stale = []
    for path in [docs.parent / "README.md", *sorted(docs.glob("*.md"))]:
        text = path.read_text()
        new, found = _render(text, where=str(path))
        if new != text:
            old_bodies = {m.group("name"): m.group("body") for m in MARKER.finditer(text)}
            new_bodies = {m.group("name"): m.group("body") for m in MARKER.finditer(new)}
            stale += [f"{path.relative_to(ROOT)}:{n}" for n in found if old_bodies.get(n) != new_bodies.get(n)]
            if not check:
                path.write_text(new)
    return stale


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="only report stale tables (exit 1 if any)")
    args = parser.parse_args(argv)
    stale = update(check=args.check)
    if args.check and stale:
        print("stale benchmark tables (run python bench/docs_tables.py): " + ", ".join(stale), file=sys.stderr)
        return 1
    print(("rewrote " if stale else "up to date: ") + (", ".join(stale) or "every table"), file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
