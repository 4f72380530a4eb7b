"""How much past load helps the forecasters: day-11 forecast error by the length of history before it.

Drives each model like the simulated control loop does (forecast 7 minutes every 5 minutes from minute
15 of day 11, hourly refits on everything seen) with no history (cold: day 11 only, what the simulator did
before ``--history``), 4 days or all 10 days of the bundled history (``traces/faro-top9-history.csv``, sample 0)
in front of the bundled day 11. Prints pinball loss at q = 0.8 (requests/minute) and coverage, and
writes ``bench/results/forecast_history.json``.

    python bench/forecast_history.py [--models auto,profile,last] [--minutes 0,1440,3600]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
from faro.optimizer.forecast import make_forecaster
from faro.optimizer.forecast.backtest import pinball, rolling_forecasts
from faro.optimizer.forecast.data import bundled_day11, read_trace

OUT = Path(__file__).parent / "results" / "forecast_history.json"
HISTORY = Path(__file__).parents[1] / "traces" / "faro-top9-history.csv"
QUANTILE = 0.8


def error(model: str, history: np.ndarray, day: np.ndarray) -> dict[str, float]:
    series = np.concatenate([history, day], axis=1)
    start = history.shape[1] + 15
    rf = rolling_forecasts(make_forecaster(model), series, start=start, horizon=7, quantiles=(QUANTILE,),
                           stride=5, refit_every_min=60)
    q = rf.quantiles[QUANTILE]
    return {"pinball": float(np.nanmean(pinball(rf.actual, q, QUANTILE))),
            "coverage": float(np.nanmean(np.where(np.isfinite(rf.actual), rf.actual <= q, np.nan)))}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--models", default="auto,profile,last")
    parser.add_argument("--minutes", default="0,1440,3600",
                        help="history lengths in minutes (days are 6 h: 1,440 = 4 days, 3,600 = all 10)")
    args = parser.parse_args()
    day = bundled_day11().counts
    past = read_trace(HISTORY, sample=0).counts
    rows = []
    for model in args.models.split(","):
        for minutes in (int(m) for m in args.minutes.split(",")):
            m = min(minutes, past.shape[1])
            res = error(model, past[:, past.shape[1] - m:], day)
            rows.append({"model": model, "history_minutes": m, **res})
            print(f"{model:10s} history {m:6d} min  pinball@{QUANTILE} {res['pinball']:7.2f}  "
                  f"coverage {res['coverage']:.3f}", file=sys.stderr, flush=True)
    print(f"{'model':10s} {'history min':>12s} {'pinball@0.8':>12s} {'coverage':>9s}")
    for r in rows:
        print(f"{r['model']:10s} {r['history_minutes']:12d} {r['pinball']:12.2f} {r['coverage']:9.3f}")
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps({"quantile": QUANTILE, "horizon": 7, "stride_min": 5, "rows": rows}, indent=2))
    import docs_tables  # the docs' benchmark tables are generated from bench/results

    docs_tables.update()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
