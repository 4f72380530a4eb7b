"""Forecast benchmark: per-cycle cost of 7-step quantile forecasts for 10/100/1,000 jobs, and accuracy.

Speed: each model is fitted on ``--history-min`` minutes (the bundled day-11 jobs tiled with noise to
the fleet size), then driven like the control loop: every cycle ``update`` absorbs
``--cycle-min`` new minutes and ``forecast(7, (0.5, 0.6, 0.9))`` runs; a refit every
``--refit-every-min`` minutes is amortised over the cycles in between. For ``auto`` a refit keeps
each job's model (``FittedAuto.refit``) and the models are re-chosen every ``--reselect-every-min``:

    per cycle = update + forecast + refit × cycle_min / refit_every_min
                + (fit − refit) × cycle_min / reselect_every_min          (auto only)

The policy refits one slice of the fleet per cycle (refit_every_min / cycle_min slices), so the
worst cycles are ``update + forecast + refit / slices`` (hourly) and ``+ fit / slices`` (auto's
daily re-choice). Accuracy: the day-11 backtest (fit on the bundled days 1–10,
``traces/faro-top9-history.csv``). Prints a table and writes ``bench/results/forecast.json``.

    python bench/forecast.py [--jobs 10,100,1000] [--models ...] [--cycles 5]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np
from faro.optimizer.forecast import make_forecaster
from faro.optimizer.forecast.backtest import rolling_forecasts, score
from faro.optimizer.forecast.data import bundled_day11, bundled_history
from tqdm import tqdm

ROOT = Path(__file__).resolve().parents[1]
QUANTILES = (0.5, 0.6, 0.9)


def fleet(n_jobs: int, minutes: int, seed: int = 0) -> np.ndarray:
    base = bundled_day11().counts
    rng = np.random.default_rng(seed)
    reps = np.tile(base, (int(np.ceil(n_jobs / base.shape[0])), int(np.ceil(minutes / base.shape[1]))))
    series = reps[:n_jobs, :minutes] * rng.uniform(0.5, 1.5, size=(n_jobs, 1))
    return np.maximum(0.0, series + rng.normal(0, 20, size=series.shape)).round()


def time_model(name: str, n_jobs: int, *, history_min: int, cycles: int, cycle_min: int, refit_every_min: int,
               reselect_every_min: int) -> dict:
    series = fleet(n_jobs, history_min + max(cycles * cycle_min, refit_every_min))
    model = make_forecaster(name, **({"refit_every_min": None} if name == "auto" else {}))
    t0 = time.perf_counter()
    fitted = model.fit(series[:, :history_min])
    fit_s = time.perf_counter() - t0
    refit_s = fit_s
    if name == "auto":  # what an hourly refit costs: the same models, new parameters
        later = series[:, refit_every_min : history_min + refit_every_min]
        t0 = time.perf_counter()
        fitted.refit(later, elapsed_min=refit_every_min)
        refit_s = time.perf_counter() - t0
    per_cycle = []
    for c in range(cycles):
        lo = history_min + c * cycle_min
        t0 = time.perf_counter()
        fitted = fitted.update(series[:, lo : lo + cycle_min])
        fitted.forecast(7, QUANTILES)
        per_cycle.append(time.perf_counter() - t0)
    step_s = float(np.median(per_cycle))
    reselect_s = fit_s - refit_s if name == "auto" else 0.0
    slices = max(1, round(refit_every_min / cycle_min))
    return {"fit_s": fit_s, "refit_s": refit_s, "update_forecast_s": step_s,
            "per_cycle_s": step_s + refit_s * cycle_min / refit_every_min + reselect_s * cycle_min / reselect_every_min,
            "worst_hourly_cycle_s": step_s + refit_s / slices,
            "worst_daily_cycle_s": step_s + fit_s / slices}


def accuracy(models: list[str]) -> dict:
    hist = bundled_history().counts
    series = np.concatenate([hist, bundled_day11().counts], axis=1)
    out = {}
    for name in tqdm(models, desc="day-11 backtest", file=sys.stderr):
        refit = None if name == "auto" else 60
        rf = rolling_forecasts(make_forecaster(name), series, start=hist.shape[1], horizon=7, quantiles=QUANTILES,
                               refit_every_min=refit)
        sc = score(rf)
        out[name] = {**sc.overall(), "pinball_0.9_per_job": [float(v) for v in sc.pinball[0.9]],
                     "coverage_0.9_per_job": [float(v) for v in sc.coverage[0.9]]}
    return out


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--jobs", default="10,100,1000")
    p.add_argument("--models", default="last,seasonal_naive,ewma,holt,profile,auto")
    p.add_argument("--accuracy-models", default="last,seasonal_naive,ewma,holt,ets,profile,auto")
    p.add_argument("--history-min", type=int, default=2160, help="minutes fitted on (default 6 days of 360)")
    p.add_argument("--cycles", type=int, default=5)
    p.add_argument("--cycle-min", type=int, default=5, help="minutes per control cycle (300 s)")
    p.add_argument("--refit-every-min", type=int, default=60)
    p.add_argument("--reselect-every-min", type=int, default=1440, help="auto's model re-choice (its default)")
    args = p.parse_args()
    sizes = [int(s) for s in args.jobs.split(",")]
    models = [m for m in args.models.split(",") if m]

    speed = []
    for name in tqdm(models, desc="speed", file=sys.stderr):
        for n in sizes:
            r = time_model(name, n, history_min=args.history_min, cycles=args.cycles, cycle_min=args.cycle_min,
                           refit_every_min=args.refit_every_min, reselect_every_min=args.reselect_every_min)
            speed.append({"model": name, "jobs": n, **r})
    print(f"per control cycle ({args.cycle_min} min; refit every {args.refit_every_min} min, auto re-chooses every "
          f"{args.reselect_every_min} min, amortised; worst = one slice of the fleet), history {args.history_min} min")
    print(f"{'model':15s} {'jobs':>6s} {'fit s':>8s} {'refit s':>8s} {'update+forecast ms':>19s} "
          f"{'per cycle ms':>13s} {'worst hourly ms':>16s} {'worst daily ms':>15s}")
    for r in speed:
        print(f"{r['model']:15s} {r['jobs']:6d} {r['fit_s']:8.2f} {r['refit_s']:8.2f} "
              f"{1e3 * r['update_forecast_s']:19.1f} {1e3 * r['per_cycle_s']:13.1f} "
              f"{1e3 * r['worst_hourly_cycle_s']:16.1f} {1e3 * r['worst_daily_cycle_s']:15.1f}")

    acc = accuracy([m for m in args.accuracy_models.split(",") if m])
    if acc:
        print("\nday-11 rolling backtest (fit on days 1–10, refit every 60 min, horizon 7)")
        print(f"{'model':15s} {'pinball@0.5':>12s} {'pinball@0.9':>12s} {'cov@0.9':>8s}")
        for name, r in acc.items():
            print(f"{name:15s} {r['pinball_0.5']:12.2f} {r['pinball_0.9']:12.2f} {r['coverage_0.9']:8.3f}")
    out = ROOT / "bench" / "results" / "forecast.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"machine": {"cpus": os.cpu_count(), "python": platform.python_version(),
                                           "load_avg": os.getloadavg()},
                               "settings": vars(args), "speed": speed, "accuracy": acc}, indent=2))
    print(f"wrote {out}")
    import docs_tables  # the docs' benchmark tables are generated from bench/results

    docs_tables.update()
    return 0


if __name__ == "__main__":
    sys.exit(main())
