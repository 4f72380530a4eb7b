"""Benchmark of HPA actuation in the simulator: ``faro simulate`` on the paper day (32 CPUs, every policy,
seed 0) with ``--actuation hpa`` and ``--actuation direct``, recorded under a label (``before`` / ``after``
a change to ``optimizer/sim/hpa.py``) so the two can be compared.

Run: ``nice -n 10 python bench/hpa_actuation.py --label after [--actuations hpa,direct] [--minutes N]``.
Drives the ``faro simulate`` command itself (a subprocess, ``--no-progress``) and reads its
``results.json``; prints a table per actuation and, when both labels exist, the before/after table.

``--behaviors POLICIES --label L`` instead replays the same day with HPA actuation under up to three HPA
set-ups (``--behavior-set``) — Faro's recommended behavior, a present but empty ``behavior: {}`` (the API
defaults: +4 pods or +100% up per 15 s, 300 s scale-down window) and no ``behavior`` (the controller's
legacy path) — for the given policies, through ``simulate()`` (the CLI does not expose the behavior), and
records it under ``behaviors.L``. To measure older emulator code, run it with that code first on
``PYTHONPATH`` (a ``faro/optimizer`` tree of the older checkout) and ``--behavior-set`` restricted to what
that code supports. Writes ``bench/results/hpa_actuation.json``; sections and labels not run keep their
previous results. The simulation is deterministic (seed 0); only the wall times
depend on the load of the shared machine (recorded).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

ROOT = Path(__file__).parent.parent
OUT = Path(__file__).parent / "results" / "hpa_actuation.json"
METRICS = ("slo_violation", "lost_utility", "cpu_minutes", "dropped")


def _load() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def _git(*args: str) -> str:
    return subprocess.run(["git", "-C", str(ROOT), *args], capture_output=True, text=True).stdout.strip()


def run_simulate(actuation: str, *, cpus: float, seed: int, minutes: int | None, workers: int) -> dict:
    """One ``faro simulate`` run; its per-policy rows, wall time and the load around it."""
    with tempfile.TemporaryDirectory(prefix="faro-hpa-bench-") as out:
        cmd = [sys.executable, "-m", "faro.optimizer.cli", "simulate", "--actuation", actuation, "--cpus", f"{cpus:g}",
               "--seed", str(seed), "--workers", str(workers), "--output", out, "--no-progress"]
        if minutes:
            cmd += ["--minutes", str(minutes)]
        load, started = _load(), time.perf_counter()
        proc = subprocess.run(cmd, capture_output=True, text=True)
        wall = time.perf_counter() - started
        if proc.returncode != 0:
            raise SystemExit(f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stderr[-4000:]}")
        doc = json.loads((Path(out) / "results.json").read_text())
    rows = {name: {k: row.get(k) for k in METRICS} for name, row in doc["policies"].items()}
    shown = f"faro simulate --actuation {actuation} --cpus {cpus:g} --seed {seed}" + (f" --minutes {minutes}" if minutes
                                                                                   else "")
    return {"command": shown,
            "rows": rows, "wall_s": wall, "load_avg_before": load, "load_avg_after": _load()}


def _print_rows(title: str, rows: dict) -> None:
    print(f"\n{title}")
    print(f"  {'policy':<22}{'violation':>10}{'lost utility':>14}{'CPU·min':>10}")
    for name, r in rows.items():
        print(f"  {name:<22}{100 * r['slo_violation']:>9.2f}%{r['lost_utility']:>14.2f}{r['cpu_minutes']:>10.0f}")


def _print_compare(doc: dict, actuation: str) -> None:
    before = doc.get("before", {}).get("runs", {}).get(actuation)
    after = doc.get("after", {}).get("runs", {}).get(actuation)
    if not (before and after):
        return
    print(f"\n--actuation {actuation}: before ({doc['before']['git_head']}) → after ({doc['after']['git_head']})")
    print(f"  {'policy':<22}{'violation before':>17}{'after':>9}{'lost before':>13}{'after':>8}")
    for name in before["rows"]:
        b, a = before["rows"][name], after["rows"].get(name)
        if a is None:
            continue
        print(f"  {name:<22}{100 * b['slo_violation']:>16.2f}%{100 * a['slo_violation']:>8.2f}%"
              f"{b['lost_utility']:>13.2f}{a['lost_utility']:>8.2f}")


BEHAVIORS = ("recommended", "api-default", "none")
"""The default set; ``recommended-4pods`` (the recommended behavior with the old +4 pods) can be asked for."""


def _behavior_run(args: tuple[str, str, float, int, int | None]) -> dict:
    import faro.optimizer.sim.hpa as hpa_module
    from faro.optimizer.policy.registry import make_policy
    from faro.optimizer.sim.engine import SimConfig, simulate
    from faro.optimizer.sim.hpa import HPABehavior
    from faro.optimizer.sim.metrics import summarize
    from faro.optimizer.sim.workload import load_history, load_trace

    policy, behavior_name, cpus, seed, minutes = args
    rec = HPABehavior.recommended_for_faro()
    four = replace(rec, scale_up=replace(rec.scale_up, policies=tuple(
        replace(p, value=4) if p.type == "Pods" else p for p in rec.scale_up.policies)))
    behaviors = {"recommended": rec, "recommended-4pods": four, "api-default": HPABehavior(), "none": None}
    behavior = behaviors[behavior_name]
    workload = load_history(load_trace())  # as faro simulate: the bundled days 1-10 as past load
    if minutes:
        workload = workload.head(minutes)
    started = time.perf_counter()
    result = simulate(workload, make_policy(policy), SimConfig(cpus=cpus, seed=seed, actuation="hpa",
                                                               hpa_behavior=behavior))
    summary = summarize(result).as_dict()
    row = {k: summary.get(k) for k in METRICS}
    row.update(policy=policy, behavior=behavior_name, wall_s=time.perf_counter() - started,
               emulator=str(Path(hpa_module.__file__).resolve()))
    return row


def behavior_table(policies: list[str], behaviors: list[str], *, cpus: float, seed: int, minutes: int | None,
                   workers: int) -> dict:
    from concurrent.futures import ProcessPoolExecutor

    import faro.optimizer.sim.hpa as hpa_module

    load, started = _load(), time.perf_counter()
    tasks = [(p, b, cpus, seed, minutes) for p in policies for b in behaviors]
    with ProcessPoolExecutor(max_workers=workers) as pool:
        rows = list(pool.map(_behavior_run, tasks))
    print(f"\n--actuation hpa under HPA behaviors ({cpus:g} CPUs, seed {seed}): violation / lost utility")
    print(f"  {'policy':<22}" + "".join(f"{b:>20}" for b in behaviors))
    for p in policies:
        cells = [next(r for r in rows if r["policy"] == p and r["behavior"] == b) for b in behaviors]
        print(f"  {p:<22}" + "".join(f"{100 * c['slo_violation']:>12.2f}% / {c['lost_utility']:4.2f}" for c in cells))
    emulator = Path(hpa_module.__file__).resolve()
    code = subprocess.run(["git", "-C", str(emulator.parent), "rev-parse", "--short", "HEAD"], capture_output=True,
                          text=True).stdout.strip()
    return {"emulator": str(emulator), "emulator_git_head": code, "cpus": cpus, "seed": seed, "minutes": minutes,
            "rows": rows, "wall_s": time.perf_counter() - started, "load_avg_before": load, "load_avg_after": _load()}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--label", help="e.g. before or after")
    parser.add_argument("--behaviors", help="comma-separated policies for the HPA-behavior table instead")
    parser.add_argument("--behavior-set", default=",".join(BEHAVIORS),
                        help=f"subset of {','.join(BEHAVIORS)},recommended-4pods")
    parser.add_argument("--actuations", default="hpa,direct")
    parser.add_argument("--cpus", type=float, default=32.0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--minutes", type=int, help="replay only the first N minutes (default: the whole day)")
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    doc: dict = json.loads(OUT.read_text()) if OUT.exists() else {}
    if not args.label:
        parser.error("--label is required")
    if args.behaviors:
        doc.setdefault("behaviors", {})[args.label] = behavior_table(
            args.behaviors.split(","), args.behavior_set.split(","), cpus=args.cpus, seed=args.seed,
            minutes=args.minutes, workers=args.workers)
        OUT.write_text(json.dumps(doc, indent=2))
        print(f"wrote {OUT}", file=sys.stderr)
        return 0
    entry = {"git_head": _git("rev-parse", "--short", "HEAD"),
             "uncommitted": _git("status", "--short", "optimizer").splitlines(),
             "cpus": args.cpus, "seed": args.seed, "minutes": args.minutes, "machine_cpus": os.cpu_count(),
             "runs": {}}
    for actuation in [a.strip() for a in args.actuations.split(",") if a.strip()]:
        print(f"faro simulate --actuation {actuation} …", file=sys.stderr)
        entry["runs"][actuation] = run_simulate(actuation, cpus=args.cpus, seed=args.seed, minutes=args.minutes,
                                                workers=args.workers)
        run = entry["runs"][actuation]
        _print_rows(f"[{args.label}] --actuation {actuation} ({run['wall_s']:.0f} s, load {run['load_avg_before']})",
                    run["rows"])
    doc[args.label] = entry
    for actuation in ("hpa", "direct"):
        _print_compare(doc, actuation)
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(doc, indent=2))
    print(f"wrote {OUT}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
