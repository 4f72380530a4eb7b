"""The cold-start forecast (a job with under an hour of history): its shape against the last value.

A live optimizer meets a cold start whenever a Deployment is new or Prometheus has no history for it; the
LLM benchmark (one-hour traces) is cold all hour. Each series here is the first 60 minutes of a job, driven
as the control loop drives it: ``profile`` (``auto``'s first candidate, the model used before 60 minutes of
history) fitted on the first 15 minutes, then updated minute by minute, forecasting 8 minutes at every
minute. Compared: the old cold start (``cold_reverting_rho=0``: last value, random-walk spread) and the
default (mean-reverting series as an AR(1) about their level). Scored by the pinball loss averaged over
the quantiles 0.1–0.9 and the 8 steps, relative to the series' mean (lower is better), and by the coverage
of the 0.9 quantile. Series: the bundled LLM workload's four models in the bundled alignment and the four
rotations of ``bench/llm.py``; the paper's day 11 (10 jobs × six hours); the Azure Functions suite (6
functions, days 1, 4, 7, 10, 13 at 02:00, 09:00 and 15:00). Writes ``bench/results/forecast_cold.json``.

    python bench/forecast_cold.py
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from faro.optimizer.forecast import make_forecaster
from faro.optimizer.forecast.backtest import pinball, rolling_forecasts
from faro.optimizer.forecast.data import bundled_day11, read_trace

OUT = Path(__file__).parent / "results" / "forecast_cold.json"
AZURE = Path(__file__).parents[1] / "traces" / "azure2019-6fn-14d.csv"
QUANTILES = (0.1, 0.3, 0.5, 0.7, 0.9)
HORIZON = 8
FIT_AT_MIN = 15  # the policies' min_history_min
WINDOW_MIN = 60
AZURE_DAYS, AZURE_HOURS = (1, 4, 7, 10, 13), (2, 9, 15)
VARIANTS = {"last value (cold_reverting_rho=0)": {"cold_reverting_rho": 0.0}, "default": {}}


def llm_series() -> np.ndarray:
    import llm  # bench/llm.py: the bundled LLM workload and its rotations

    rows = [llm.rotated_workload(k, seed=0).counts_rpm[:, :WINDOW_MIN] for k in range(5)]
    return np.concatenate(rows).astype(float)


def hours(counts: np.ndarray, starts: list[int]) -> np.ndarray:
    return np.concatenate([counts[:, s : s + WINDOW_MIN] for s in starts]).astype(float)


def score(series: np.ndarray, options: dict) -> dict[str, float]:
    rf = rolling_forecasts(make_forecaster("profile", **options), series, start=FIT_AT_MIN, horizon=HORIZON,
                           quantiles=QUANTILES)
    scale = np.maximum(series.mean(axis=1), 1.0)[:, None, None]
    loss = np.mean([np.nanmean(pinball(rf.actual, rf.quantiles[q], q) / scale) for q in QUANTILES])
    cover = np.where(np.isfinite(rf.actual), rf.actual <= rf.quantiles[0.9], np.nan)
    return {"pinball": float(loss), "coverage_q09": float(np.nanmean(cover))}


def main() -> int:
    azure = read_trace(AZURE).counts
    groups = {
        "LLM models (bundled + 4 rotations)": llm_series(),
        "paper day 11 (hours)": hours(bundled_day11().counts, list(range(0, 360, WINDOW_MIN))),
        "Azure Functions 2019 (hours)": hours(azure, [d * 1440 + h * 60 for d in AZURE_DAYS for h in AZURE_HOURS]),
    }
    rows = []
    for group, series in groups.items():
        series = series[series.max(axis=1) > 0]  # an idle hour scores 0 under every model
        row = {"group": group, "series": int(series.shape[0])}
        for name, options in VARIANTS.items():
            row[name] = score(series, options)
        rows.append(row)
    names = list(VARIANTS)
    print(f"{'series':38s} {'n':>4s} " + " ".join(f"{n[:22]:>22s}" for n in names) + "  (pinball / coverage q0.9)")
    for r in rows:
        cells = " ".join(f"{r[n]['pinball']:14.3f} / {r[n]['coverage_q09']:.2f}" for n in names)
        print(f"{r['group']:38s} {r['series']:4d} {cells}")
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps({"quantiles": QUANTILES, "horizon": HORIZON, "fit_at_min": FIT_AT_MIN,
                               "window_min": WINDOW_MIN, "variants": names, "rows": rows}, indent=2))
    import docs_tables  # the docs' benchmark tables are generated from bench/results

    docs_tables.update()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
