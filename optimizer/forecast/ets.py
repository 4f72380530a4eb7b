"""statsmodels ETS(A,Ad,N) — damped-trend exponential smoothing with its analytic prediction intervals.

statsmodels estimates (α, β, φ, σ²) per job by maximum likelihood on the last ``fit_window_min``
minutes (missing minutes interpolated for the estimation only); the state is then run with the same
recursion, vectorised over jobs (``kernels.DampedTrend``, statsmodels' own error-correction form),
so ``update`` costs microseconds. Quantiles are statsmodels' analytic normal intervals for this
class of model:

    σ²_h = σ² · (1 + Σ_{j=1}^{h−1} (α + β·(φ + … + φ^j))²)

identical to ``ETSResults.get_prediction`` (checked in the tests). Estimation costs ≈ 50 ms per job,
so this model is not among ``auto``'s default candidates for large fleets.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray
from scipy.stats import norm

from ._common import DEFAULT_MAX_HORIZON, GRID, as_history, fallback_sigma, last_finite
from ._recursive import FittedRecursive, run_kernel
from .kernels import DampedTrend

MIN_FIT_POINTS = 20


def _interpolate(y: NDArray[np.float64]) -> NDArray[np.float64]:
    ok = np.isfinite(y)
    if ok.all():
        return y
    x = np.arange(y.size)
    return np.interp(x, x[ok], y[ok])


def estimate(y: NDArray[np.float64]) -> tuple[float, float, float, float] | None:
    """(α, β, φ, σ²) of ETS(A,Ad,N) by statsmodels, or None when the series is too short or flat."""
    from statsmodels.tsa.exponential_smoothing.ets import ETSModel

    ok = np.isfinite(y)
    if ok.sum() < MIN_FIT_POINTS:
        return None
    y = _interpolate(y[np.argmax(ok) :])
    if np.ptp(y) == 0:
        return None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # convergence chatter from the optimiser
        res = ETSModel(y, error="add", trend="add", damped_trend=True).fit(disp=False)
    p = dict(zip(res.param_names, res.params, strict=True))
    return float(p["smoothing_level"]), float(p["smoothing_trend"]), float(p["damping_trend"]), float(res.mse)


def interval_sigmas(
    alpha: NDArray[np.float64], beta: NDArray[np.float64], phi: NDArray[np.float64], sigma2: NDArray[np.float64],
    horizon: int,
) -> NDArray[np.float64]:
    """Standard deviation of the h-step error (N, horizon)."""
    steps = np.arange(1, horizon)
    phi_j = np.cumsum(phi[:, None] ** steps[None, :], axis=1) if horizon > 1 else np.zeros((alpha.size, 0))
    c2 = (alpha[:, None] + beta[:, None] * phi_j) ** 2
    var = sigma2[:, None] * (1.0 + np.concatenate([np.zeros((alpha.size, 1)), np.cumsum(c2, axis=1)], axis=1))
    return np.sqrt(var)


@dataclass(frozen=True)
class ETS:
    fit_window_min: int = 720
    max_horizon: int = DEFAULT_MAX_HORIZON
    name: str = "ets"

    def fit(self, history: NDArray[np.float64]) -> FittedRecursive:
        hist = as_history(history)
        n_jobs = hist.shape[0]
        alpha, beta, phi = np.ones(n_jobs), np.zeros(n_jobs), np.ones(n_jobs)
        sigma2 = fallback_sigma(hist) ** 2  # for jobs statsmodels cannot fit: last value, Poisson-ish spread
        for j in range(n_jobs):
            est = estimate(hist[j, -self.fit_window_min :])
            if est is not None:
                alpha[j], beta[j], phi[j], sigma2[j] = est
        kernel = DampedTrend(alpha, beta, phi)
        state, _ = run_kernel(kernel, hist, record_from=hist.shape[1], horizon=1)
        sig = interval_sigmas(alpha, beta, phi, sigma2, self.max_horizon)
        grid = sig[:, :, None] * norm.ppf(GRID)[None, None, :]
        return FittedRecursive(kernel, state, grid, np.nan_to_num(last_finite(hist), nan=0.0))
