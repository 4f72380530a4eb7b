"""Benchmark of HPA actuation in the simulator: ``faro simulate`` on the paper day (32 CPUs, every policy,
seed 0) with ``--actuation hpa`` and ``--actuation direct``, recorded under a label (``before`` / ``after``
a change to ``optimizer/sim/hpa.py``) so the two can be compared.

Run: ``nice -n 10 python bench/hpa_actuation.py --label after [--actuations hpa,direct] [--minutes N]``.
Drives the ``faro simulate`` command itself (a subprocess, ``--no-progress``) and reads its
``results.json``; prints a table per actuation and, when both labels exist, the before/after table. Writes
``bench/results/hpa_actuation.json``; labels not run keep their previous results. The simulation is
deterministic (seed 0); only the wall times depend on the load of the shared machine (recorded).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
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


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--label", required=True, help="e.g. before or after")
    parser.add_argument("--actuations", default="hpa,direct")
    parser.add_argument("--cpus", type=float, default=32.0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--minutes", type=int, help="replay only the first N minutes (default: the whole day)")
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    doc: dict = json.loads(OUT.read_text()) if OUT.exists() else {}
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
