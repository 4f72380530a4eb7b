"""``faro forecast backtest``: rolling-origin evaluation of forecasters on a trace.

Reads a wide CSV (``minute,job0,…``) and/or a history CSV (``job,day,sample,m0..m359``). With both,
the models are fitted on the history (its day windows concatenated) and evaluated on the trace; with
only a trace, the first ``--train-fraction`` of it is for fitting; with neither, the bundled paper
workload (fit on days 1–10, evaluated on day 11). Prints a table (overall, then per job at
q=0.9), writes ``backtest.json`` and ``backtest.png`` (forecast fan vs actual) to ``--output``.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

DEFAULT_MODELS = "last,seasonal_naive,ewma,holt,ets,profile,auto"
QUANTILES = (0.5, 0.6, 0.9)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="forecast_command", metavar="ACTION", required=True)
    bt = sub.add_parser("backtest", help="rolling-origin backtest: pinball loss, coverage, MAPE per model and job")
    bt.add_argument("--trace", type=Path, help="wide CSV minute,job0,... to evaluate on (default: the bundled day 11 "
                    "when --history is given or neither is)")
    bt.add_argument("--history", help="history CSV job,day,sample,m0..m359 to fit on, or 'bundled' (default: the "
                    "bundled days 1-10 when --trace is not given; with --trace alone its first --train-fraction)")
    bt.add_argument("--sample", type=int, default=0, help="augmentation sample of the history to use (default 0)")
    bt.add_argument("--models", default=DEFAULT_MODELS, help=f"comma-separated models (default {DEFAULT_MODELS})")
    bt.add_argument("--horizon", type=int, default=7, help="forecast steps in minutes (default 7)")
    bt.add_argument("--season-min", type=int, default=360,
                    help="season length in minutes (default 360: one day window)")
    bt.add_argument("--refit-every-min", type=int, default=60, help="refit period during the backtest (default 60)")
    bt.add_argument("--train-fraction", type=float, default=0.5,
                    help="share of a single trace used for fitting when no --history is given (default 0.5)")
    bt.add_argument("--output", type=Path, default=Path("forecast-backtest"),
                    help="directory for backtest.json and backtest.png (default ./forecast-backtest)")
    bt.add_argument("--plot-jobs", type=int, default=3, help="jobs shown in the PNG (default 3)")
    bt.add_argument("--no-progress", action="store_true", help="no progress bar on stderr")


def _table(rows: list[list[str]], header: list[str]) -> str:
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]

    def line(r: list[str]) -> str:
        cells = zip(r, widths, strict=True)
        return "  ".join(str(c).rjust(w) if i else str(c).ljust(w) for i, (c, w) in enumerate(cells))

    return "\n".join([line(header), line(["-" * w for w in widths]), *map(line, rows)])


def run(args: argparse.Namespace) -> int:
    import numpy as np
    from faro.optimizer.errors import InvalidInputError
    from faro.optimizer.forecast import make_forecaster
    from faro.optimizer.forecast.backtest import rolling_forecasts, score
    from faro.optimizer.forecast.data import bundled_day11, bundled_history, read_trace
    from tqdm import tqdm

    if args.horizon < 1:
        raise InvalidInputError("--horizon", f"must be ≥ 1, got {args.horizon}")
    if not 0 < args.train_fraction < 1:
        raise InvalidInputError("--train-fraction", f"must be in (0, 1), got {args.train_fraction}")
    history = args.history or (None if args.trace is not None else "bundled")
    models = [m.strip() for m in args.models.split(",") if m.strip()]
    if not models:
        raise InvalidInputError("--models", "names no model")

    if history is not None:
        hist = bundled_history(sample=args.sample) if history == "bundled" else read_trace(history, sample=args.sample)
        test = read_trace(args.trace) if args.trace is not None else bundled_day11()
        if len(hist.jobs) != len(test.jobs):
            raise InvalidInputError("--trace", f"has {len(test.jobs)} jobs, --history has {len(hist.jobs)}")
        jobs = test.jobs
        series = np.concatenate([hist.counts, test.counts], axis=1)
        start = hist.counts.shape[1]
    else:
        test = read_trace(args.trace)
        jobs, series = test.jobs, test.counts
        start = int(series.shape[1] * args.train_fraction)
    if series.shape[1] - args.horizon < start or start < 1:
        raise InvalidInputError(
            "--trace", f"too short for a {args.horizon}-minute horizon after {start} fitting minutes"
        )

    forecasters = {}
    for name in models:
        opts: dict[str, Any] = {}
        if name in ("seasonal_naive", "profile", "auto"):
            opts["season_min"] = args.season_min
        if name == "auto":
            opts["refit_every_min"] = args.refit_every_min
        forecasters[name] = make_forecaster(name, **opts)

    n_origins = series.shape[1] - args.horizon - start + 1
    results: dict[str, Any] = {}
    rolled = {}
    bar = tqdm(total=n_origins * len(models), desc="backtest", unit="origin", file=sys.stderr, disable=args.no_progress)
    for name, model in forecasters.items():
        bar.set_postfix_str(name)
        # auto refits itself inside update; the others are refitted by the harness on the same schedule
        refit = None if name == "auto" else args.refit_every_min
        rf = rolling_forecasts(model, series, start=start, horizon=args.horizon, quantiles=QUANTILES,
                               refit_every_min=refit, on_step=bar.update)
        sc = score(rf)
        rolled[name] = rf
        results[name] = {
            "overall": sc.overall(),
            "per_job": {
                job: {
                    **{f"pinball_{q:g}": float(sc.pinball[q][j]) for q in QUANTILES},
                    **{f"coverage_{q:g}": float(sc.coverage[q][j]) for q in QUANTILES},
                    "mape_median": float(sc.mape[j]),
                }
                for j, job in enumerate(jobs)
            },
        }
    bar.close()

    header = ["model", *[f"pinball@{q:g}" for q in QUANTILES], "cov@0.9", "MAPE(median)"]
    rows = [[n, *[f"{r['overall'][f'pinball_{q:g}']:.2f}" for q in QUANTILES], f"{r['overall']['coverage_0.9']:.3f}",
             f"{r['overall']['mape_median']:.3f}"] for n, r in results.items()]
    print(f"rolling origin: {n_origins} origins × {args.horizon} steps, {len(jobs)} jobs, refit every "
          f"{args.refit_every_min} min")
    print(_table(rows, header))
    print()
    print("pinball@0.9 per job (coverage of the 0.9 quantile in brackets)")
    job_rows = [[n, *[f"{r['per_job'][j]['pinball_0.9']:.1f} ({r['per_job'][j]['coverage_0.9']:.2f})" for j in jobs]]
                for n, r in results.items()]
    print(_table(job_rows, ["model", *jobs]))
    best = min(results, key=lambda n: results[n]["overall"]["pinball_0.9"])
    for base in ("last", "seasonal_naive"):
        if base in results and best != base:
            gain = 1 - results[best]["overall"]["pinball_0.9"] / results[base]["overall"]["pinball_0.9"]
            print(f"{best} vs {base}: {gain:+.1%} pinball@0.9 improvement")

    args.output.mkdir(parents=True, exist_ok=True)
    payload = {"horizon": args.horizon, "quantiles": list(QUANTILES), "origins": n_origins, "jobs": list(jobs),
               "fit_minutes": start, "refit_every_min": args.refit_every_min, "models": results}
    (args.output / "backtest.json").write_text(json.dumps(payload, indent=2))
    _plot(rolled, jobs, args.output / "backtest.png", n_jobs=args.plot_jobs, horizon=args.horizon, start=start)
    print(f"wrote {args.output / 'backtest.json'} and {args.output / 'backtest.png'}")
    return 0


def _plot(rolled: dict, jobs: tuple[str, ...], path: Path, *, n_jobs: int, horizon: int, start: int) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    name = "auto" if "auto" in rolled else min(rolled, key=lambda n: float(np.nanmean(rolled[n].quantiles[0.9])))
    rf = rolled[name]
    show = list(range(min(n_jobs, len(jobs))))
    fig, axes = plt.subplots(len(show), 1, figsize=(11, 2.6 * len(show)), sharex=True, squeeze=False)
    h = horizon - 1  # the h-step-ahead forecast, placed at the minute it is for
    x = rf.origins - start + h
    for ax, j in zip(axes[:, 0], show, strict=True):
        ax.plot(x, rf.actual[j, :, h], color="black", lw=0.8, label="actual")
        ax.fill_between(x, rf.quantiles[0.5][j, :, h], rf.quantiles[0.9][j, :, h], color="tab:blue", alpha=0.3,
                        label="q0.5–q0.9")
        ax.plot(x, rf.quantiles[0.5][j, :, h], color="tab:blue", lw=0.8, label="median")
        ax.set_ylabel(f"{jobs[j]} req/min")
    axes[0, 0].set_title(f"{name}: {horizon}-minute-ahead forecast fan vs actual")
    axes[0, 0].legend(loc="upper right", fontsize=8)
    axes[-1, 0].set_xlabel("minute of the evaluation trace")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
