"""Generalisation benchmark (issue 12): every policy on days it was never tuned on.

Cases: the bundled paper day 11 (with its bundled days 1–10 as history) and test days of the bundled Azure
Functions suite (``traces/azure2019-6fn-14d.csv``, each day with every earlier day as history, as ``faro
optimizer`` backfills from Prometheus), each at its paper-style cap (``ceil(1.056 × busiest minute's busy CPUs
at 180 ms)``: 32 for the paper day) and ≈ 0.9× of it, over several seeds. Prints the table (case: best Faro
variant, the documented default, best baseline, Oracle, ratios, goal) and the violation breakdown; writes
``bench/results/generalization.json`` and ``generalization.png`` and appends one line per run to
``generalization-experiments.jsonl`` (config → per-case numbers), the log ``docs/policies.md`` quotes.

Run: ``nice -n 10 python bench/generalization.py`` (full: 5 Azure days × 2 caps + the paper day × 2 caps, 2 seeds,
every policy: about an hour on 2 free cores). While iterating: ``--fast`` (days 5 and 11, seed 0, the policies
that are best somewhere) and ``--variant 'label=faro-fair:{"option": value}'`` to compare settings; with
``--reuse bench/results/generalization.json --reuse-policies hpa-cpu,aiad`` unchanged baselines are not rerun.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

from faro.optimizer.commands.simulate_suite import (
    format_breakdown,
    format_table,
    load_suite,
    paper_day_cases,
    plot_suite,
    run_suite,
)
from faro.optimizer.policy.registry import DEFAULT_POLICY, POLICY_NAMES
from faro.optimizer.sim.metrics import BREAKDOWN_CAUSES

RESULTS = Path(__file__).parent / "results"
FAST_POLICIES = ("faro-fair", "faro-fairsum", "oracle", "hpa-cpu", "mark", "aiad")


def _variant(text: str) -> tuple[str, tuple[str, dict]]:
    label, _, rest = text.partition("=")
    name, _, options = rest.partition(":")
    if not label.startswith("faro-") and label != "oracle" and name.startswith("faro-"):
        raise SystemExit(f"--variant {text!r}: a Faro variant's label must start with 'faro-'")
    return label, (name, json.loads(options) if options else {})


def _commit() -> str:
    try:
        out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=True,
                             cwd=Path(__file__).parent)
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], capture_output=True,
                               text=True, check=True, cwd=Path(__file__).parent).stdout.strip()
        return out.stdout.strip() + ("+dirty" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fast", action="store_true", help="days 5,11, seed 0, the policies best somewhere")
    parser.add_argument("--test-days", help="Azure test days (default 2,5,8,11,14; --fast 5,11)")
    parser.add_argument("--seeds", help="seeds (default 0,1; --fast 0)")
    parser.add_argument("--cap-scales", default="1,0.9")
    parser.add_argument("--policies", help="registry policies (default all; --fast a subset)")
    parser.add_argument("--variant", action="append", default=[],
                        help="extra policy 'label=registry-name:{json options}' (repeatable)")
    parser.add_argument("--no-paper", action="store_true", help="leave out the paper day")
    parser.add_argument("--no-azure", action="store_true", help="leave out the Azure suite")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--label", default="", help="what this run tries (for the experiments log)")
    parser.add_argument("--output", help="results JSON (default bench/results/generalization[-fast].json)")
    parser.add_argument("--reuse", help="a previous results JSON whose rows of --reuse-policies are taken as they are")
    parser.add_argument("--reuse-policies", default="", help="policies taken from --reuse (e.g. the baselines)")
    parser.add_argument("--no-progress", action="store_true")
    args = parser.parse_args(argv)

    days = [int(d) for d in (args.test_days or ("5,11" if args.fast else "2,5,8,11,14")).split(",")]
    seeds = [int(s) for s in (args.seeds or ("0" if args.fast else "0,1")).split(",")]
    scales = [float(s) for s in args.cap_scales.split(",")]
    names = args.policies.split(",") if args.policies is not None else list(FAST_POLICIES if args.fast
                                                                            else POLICY_NAMES)
    policies = {n: (n, {}) for n in names if n}
    policies.update(_variant(v) for v in args.variant)
    cases = [] if args.no_paper else paper_day_cases(scales)
    if not args.no_azure:
        cases += load_suite("bundled", day_minutes=1440, test_days=days, cap_scales=scales)

    RESULTS.mkdir(exist_ok=True)
    reuse: dict[tuple[str, str, int], dict] = {}
    if args.reuse:
        wanted = {p for p in args.reuse_policies.split(",") if p}
        for case in json.loads(Path(args.reuse).read_text())["cases"]:
            for label, entry in case["policies"].items():
                if label in wanted:
                    for seed, row in entry["seeds"].items():
                        if row and "error" not in row:
                            reuse[(case["label"], label, int(seed))] = row

    print(f"{len(cases)} cases × {len(policies)} policies × {len(seeds)} seeds "
          f"({sum(1 for c in cases for p in policies for s in seeds if (c.label, p, s) not in reuse)} runs), "
          f"load {os.getloadavg()[0]:.1f}", file=sys.stderr)
    load_before = os.getloadavg()
    out = Path(args.output) if args.output else RESULTS / ("generalization-fast.json" if args.fast
                                                          else "generalization.json")
    runs = out.with_suffix(".runs.jsonl")  # every finished run at once, to look at while the rest go on
    runs.write_text("")

    def done(res: dict) -> None:
        row = res["row"]
        parts = row.get("breakdown", {})
        brief = {k: (parts.get(k) or {}).get("violation") for k in BREAKDOWN_CAUSES}
        with runs.open("a") as fh:
            fh.write(json.dumps({"case": res["case"], "policy": res["policy"], "seed": res["seed"],
                                 "slo_violation": row.get("slo_violation"), "error": row.get("error"),
                                 "breakdown": brief}) + "\n")

    doc = run_suite(cases, policies, seeds, workers=args.workers, progress=not args.no_progress,
                    default=DEFAULT_POLICY if DEFAULT_POLICY in policies else None,
                    skip=lambda c, p, s: reuse.get((c, p, s)), done=done)
    doc.update(commit=_commit(), label=args.label, load_avg_before=list(load_before),
               load_avg_after=list(os.getloadavg()), test_days=days, cap_scales=scales)
    out.write_text(json.dumps(doc, indent=2, allow_nan=True))
    print(format_table(doc))
    print()
    shown = list(dict.fromkeys(
        [p for p in policies if p.startswith("faro-") or p == "oracle"]
        + [c["score"]["best_baseline"] for c in doc["cases"] if c["score"]["best_baseline"]]
    ))
    print(format_breakdown(doc, shown))
    plot_suite(doc, out.with_suffix(".png"))
    if out == RESULTS / "generalization.json":
        sys.path.insert(0, str(Path(__file__).parent))
        import docs_tables  # the docs' benchmark tables are generated from bench/results

        docs_tables.update()
    log = {"time": time.strftime("%Y-%m-%dT%H:%M:%S"), "label": args.label, "commit": doc["commit"],
           "seeds": seeds, "policies": doc["policies"], "load_avg": list(load_before),
           "cases": {c["label"]: {p: round(v["slo_violation"], 5) for p, v in c["policies"].items()
                                  if "slo_violation" in v} for c in doc["cases"]}}
    with (RESULTS / "generalization-experiments.jsonl").open("a") as fh:
        fh.write(json.dumps(log) + "\n")
    print(f"wrote {out} and {out.with_suffix('.png').name} ({doc['wall_s']:.0f} s)", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
