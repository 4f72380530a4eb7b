"""Probabilistic per-minute load forecasting: one interface (``base``), one registry (``registry``).

``make_forecaster(name, **options).fit(history)`` → fitted; ``fitted.update(new_minutes)`` →
fitted; ``fitted.forecast(horizon, quantiles)`` → ``Forecast`` (mean and quantiles, requests per
minute, finite and non-negative). Models: ``last``, ``seasonal_naive``, ``ewma``, ``holt``, ``ets``
(statsmodels), ``profile`` (daily-profile regression) and ``auto`` (per-job choice by backtest).
"""

from .base import FittedForecaster, Forecast, Forecaster
from .registry import AUTO_CANDIDATES, FORECASTERS, make_forecaster

__all__ = ["AUTO_CANDIDATES", "FORECASTERS", "FittedForecaster", "Forecast", "Forecaster", "make_forecaster"]
