"""Daily-profile regression: the default model for traces with a repeating day shape.

For each horizon step h a per-job linear model (ridge least squares, all jobs solved at once)
predicts y(t+h) from what is known at minute t:

    1, y(t), EWMA_α(y)(t) for α in ``alphas``, P(phase t), P(phase t+h)

where P is the job's *profile*: the mean over the previous complete seasons (days) of the same
minute of the season. The regression learns per job how much the day shape explains (P(t+h) − P(t)
carries the expected change) against how much the current level persists, so it reduces to an
EWMA-like forecast for jobs without a repeating shape. Quantiles are the empirical quantiles of its
in-sample h-step residuals. Training uses the profile *as it was known* at each minute (previous
days only), so the fitted weights and residuals are honest.

Cold start: without a complete season the profile terms are dropped; with fewer than
``min_train_rows`` usable minutes the job's shape comes from its lag-1 autocorrelation ρ. A persistent
series (ρ ≥ ``cold_reverting_rho``, 0.5: ramps, smooth load) keeps its last value with normal
quantiles that widen like a random walk's; a mean-reverting one (bursty minutes: a code assistant's
trace, a timer-driven function) is an AR(1) about its slowest EWMA — ρʰ·last + (1 − ρʰ)·level, with
normal quantiles as wide as that forecast's own h-step errors over the history — so one burst minute
is not taken as the new level for the whole horizon (``bench/forecast_cold.py``).
``update`` advances the EWMAs and folds each completed season into the profile: O(jobs · minutes).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from faro.optimizer.errors import InvalidInputError
from numpy.typing import NDArray
from scipy.stats import norm

from ._common import (
    GRID,
    WARMUP_MIN,
    as_history,
    check_request,
    check_update,
    fallback_sigma,
    lag1_autocorrelation,
    make_forecast,
    poisson_sd,
    residual_grid,
)
from .base import Forecast

DEFAULT_ALPHAS = (0.5, 0.25, 0.1)


def _ridge(
    X: NDArray[np.float64], y: NDArray[np.float64], ok: NDArray[np.bool_], ridge: float
) -> NDArray[np.float64]:
    """Per-job ridge fit of y (N, R) on X (N, R, k) over rows ``ok``; the first column (intercept) is
    not penalised; columns are standardised per job. Returns coefficients (N, k) in original units."""
    _n_jobs, _, k = X.shape
    w = ok.astype(np.float64)
    Xz = np.where(ok[..., None], X, 0.0)
    yz = np.where(ok, y, 0.0)
    n = np.maximum(w.sum(axis=1), 1.0)
    mean = Xz.sum(axis=1) / n[:, None]
    var = np.einsum("nok,nok->nk", Xz, Xz) / n[:, None] - mean**2  # no (N, R, k) temporary
    scale = np.sqrt(np.maximum(var, 0.0))
    scale = np.where(scale > 1e-9, scale, 1.0)
    scale[:, 0] = 1.0
    Xs = np.divide(Xz, scale[:, None, :], out=Xz)  # in place: Xz is not needed any more
    Xt = Xs.transpose(0, 2, 1)
    A = Xt @ Xs  # batched BLAS
    b = (Xt @ yz[..., None])[..., 0]
    penalty = np.full(k, ridge)
    penalty[0] = 0.0
    A = A + (penalty[None, :] * n[:, None])[:, :, None] * np.eye(k)[None]
    A = A + 1e-9 * np.eye(k)[None]
    coef = np.linalg.solve(A, b[..., None])[..., 0]
    return coef / scale


def _reverting_widths(
    y: NDArray[np.float64], last: NDArray[np.float64], level: NDArray[np.float64], keep: NDArray[np.float64],
    spread: NDArray[np.float64],
) -> NDArray[np.float64]:
    """(J, H) normal widths of the cold-start AR(1) forecast ``keep·last + (1 − keep)·level``: the RMS of its
    own h-step errors over the history (the level moves, so the stationary σ·√(1 − ρ²ʰ) is too narrow), at
    least ``poisson_sd``; that stationary width where fewer than two errors exist."""
    width = spread[:, None] * np.sqrt(1.0 - keep**2)
    poisson = poisson_sd(y)
    n_min = y.shape[1]
    for h in range(1, min(keep.shape[1], n_min - 1) + 1):
        err = y[:, h:] - (keep[:, h - 1, None] * last[:, :-h] + (1.0 - keep[:, h - 1, None]) * level[:, :-h])
        count = np.isfinite(err).sum(axis=1)
        rms = np.sqrt(np.nansum(err * err, axis=1) / np.maximum(count, 1))
        width[:, h - 1] = np.where(count >= 2, np.maximum(rms, poisson), width[:, h - 1])
    return width


@dataclass(frozen=True)
class _State:
    minute: int  # absolute minute (phase offset included) of the next minute to arrive
    last: NDArray[np.float64]  # (N,)
    ewma: NDArray[np.float64]  # (N, A)
    prof_sum: NDArray[np.float64]  # (N, S) over completed seasons
    prof_cnt: NDArray[np.float64]  # (N, S)
    today: NDArray[np.float64]  # (N, S) this season so far (NaN = not seen)


def _absorb(state: _State, new: NDArray[np.float64], alphas: NDArray[np.float64], season: int) -> _State:
    last, ewma = state.last.copy(), state.ewma.copy()
    prof_sum, prof_cnt, today = state.prof_sum, state.prof_cnt, state.today.copy()
    minute = state.minute
    for t in range(new.shape[1]):
        y = new[:, t]
        seen = np.isfinite(y)
        last = np.where(seen, y, last)
        first = seen[:, None] & ~np.isfinite(ewma)
        upd = alphas[None, :] * y[:, None] + (1 - alphas[None, :]) * ewma
        ewma = np.where(first, y[:, None], np.where(seen[:, None], upd, ewma))
        phase = minute % season
        today[:, phase] = y
        minute += 1
        if minute % season == 0:  # a season completed: fold it into the profile
            fin = np.isfinite(today)
            prof_sum = prof_sum + np.where(fin, today, 0.0)
            prof_cnt = prof_cnt + fin
            today = np.full_like(today, np.nan)
    return _State(minute, last, ewma, prof_sum, prof_cnt, today)


def _features(state: _State, horizon: int, season: int) -> NDArray[np.float64]:
    """(N, horizon, k) regressors at the current origin."""
    n_jobs = state.last.size
    phases = (state.minute - 1 + np.arange(horizon + 1)) % season
    with np.errstate(invalid="ignore", divide="ignore"):
        prof = state.prof_sum[:, phases] / state.prof_cnt[:, phases]
    level = state.ewma[:, min(1, state.ewma.shape[1] - 1)]
    prof = np.where(np.isfinite(prof), prof, level[:, None])  # unseen phase: assume the current level
    base = np.column_stack([np.ones(n_jobs), state.last, state.ewma, prof[:, 0]])
    out = np.empty((n_jobs, horizon, base.shape[1] + 1))
    out[:, :, :-1] = base[:, None, :]
    out[:, :, -1] = prof[:, 1:]
    return out


@dataclass(frozen=True)
class FittedProfile:
    alphas: NDArray[np.float64]
    season: int
    coef: NDArray[np.float64]  # (N, Hc, k) — full model; reduced jobs have zero profile weights
    grid: NDArray[np.float64]  # (N, Hc, G)
    state: _State
    mode: NDArray[np.int8]  # per job: 2 = with profile, 1 = without, 0 = cold start (last value or AR(1))

    def update(self, new_counts: NDArray[np.float64]) -> FittedProfile:
        new = check_update(new_counts, self.coef.shape[0])
        state = _absorb(self.state, new, self.alphas, self.season)
        return FittedProfile(self.alphas, self.season, self.coef, self.grid, state, self.mode)

    def forecast(self, horizon: int, quantiles: Sequence[float] = (0.5, 0.9)) -> Forecast:
        horizon, qs = check_request(horizon, quantiles)
        h_cal = self.coef.shape[1]
        X = _features(self.state, horizon, self.season)
        coef = self.coef[:, np.minimum(np.arange(horizon), h_cal - 1)]
        point = np.einsum("nhk,nhk->nh", np.nan_to_num(X), coef)
        return make_forecast(point, self.grid, horizon, qs)


@dataclass(frozen=True)
class ProfileRegression:
    season_min: int = 360
    phase_offset_min: int = 0
    alphas: tuple[float, ...] = DEFAULT_ALPHAS
    train_min: int = 3600
    train_stride: int = 2
    ridge: float = 1e-3
    min_train_rows: int = 60
    max_horizon: int = 7  # weights per step up to here; beyond, the last step's weights and √h-wider quantiles
    # a cold-start series whose lag-1 autocorrelation is below this reverts to its level (a minute's deviation
    # keeps less than half its weight a minute later); at or above it its last value persists (0: always)
    cold_reverting_rho: float = 0.5
    name: str = "profile"

    def __post_init__(self) -> None:
        if self.season_min < 2:
            raise InvalidInputError("profile.season_min", f"must be ≥ 2, got {self.season_min}")
        if not 0 <= self.phase_offset_min < self.season_min:
            raise InvalidInputError(
                "profile.phase_offset_min", f"must be in [0, season_min), got {self.phase_offset_min}"
            )
        if self.train_stride < 1:
            raise InvalidInputError("profile.train_stride", f"must be ≥ 1, got {self.train_stride}")
        if not 0 <= self.cold_reverting_rho <= 1:
            raise InvalidInputError("profile.cold_reverting_rho", f"must be in [0, 1], got {self.cold_reverting_rho}")
        if not self.alphas or any(not 0 < a <= 1 for a in self.alphas):
            raise InvalidInputError("profile.alphas", f"each must be in (0, 1], got {self.alphas}")

    def fit(self, history: NDArray[np.float64]) -> FittedProfile:
        hist = as_history(history)
        n_jobs, n_min = hist.shape
        S, H = self.season_min, self.max_horizon
        alphas = np.array(self.alphas, dtype=np.float64)
        n_a = alphas.size

        # Online regressors at every origin t (state after absorbing minute t).
        start = self.phase_offset_min
        last_seq = np.full((n_jobs, n_min), np.nan)
        ewma_seq = np.full((n_jobs, n_min, n_a), np.nan)
        last = np.full(n_jobs, np.nan)
        ewma = np.full((n_jobs, n_a), np.nan)
        lo = max(0, n_min - self.train_min - H)
        for t in range(max(0, lo - WARMUP_MIN), n_min):  # EWMAs forget their start; only recent origins train
            y = hist[:, t]
            seen = np.isfinite(y)
            last = np.where(seen, y, last)
            first = seen[:, None] & ~np.isfinite(ewma)
            upd = alphas * y[:, None] + (1 - alphas) * ewma
            ewma = np.where(first, y[:, None], np.where(seen[:, None], upd, ewma))
            last_seq[:, t] = last
            ewma_seq[:, t] = ewma

        # Profile as known at each origin: mean over the seasons completed before it.
        n_days = (start + n_min + S - 1) // S
        padded = np.full((n_jobs, n_days * S), np.nan)
        padded[:, start : start + n_min] = hist
        days = padded.reshape(n_jobs, n_days, S)
        fin = np.isfinite(days)
        csum = np.cumsum(np.where(fin, days, 0.0), axis=1)
        ccnt = np.cumsum(fin, axis=1).astype(np.float64)
        known_sum = np.concatenate([np.zeros((n_jobs, 1, S)), csum[:, :-1]], axis=1)
        known_cnt = np.concatenate([np.zeros((n_jobs, 1, S)), ccnt[:, :-1]], axis=1)
        with np.errstate(invalid="ignore", divide="ignore"):
            known = known_sum / known_cnt  # (N, D, S): profile known during day d
        abs_t = start + np.arange(n_min)
        day_t, phase_t = abs_t // S, abs_t % S
        prof_now = known[:, day_t, phase_t]  # (N, T)

        origins = np.arange(n_min - 1, lo - 1, -self.train_stride)[::-1]  # always includes the latest
        k = 2 + n_a + 2
        base = np.empty((n_jobs, origins.size, k - 1))
        base[..., 0] = 1.0
        base[..., 1] = last_seq[:, origins]
        base[..., 2 : 2 + n_a] = ewma_seq[:, origins]
        base[..., 2 + n_a] = prof_now[:, origins]
        base_fin = np.isfinite(base[..., : 2 + n_a]).all(axis=-1)

        coef = np.zeros((n_jobs, H, k))
        resid = np.full((n_jobs, origins.size, H), np.nan)
        mode = np.zeros(n_jobs, dtype=np.int8)
        # One (N, O, k) design reused for every step: only the last column (profile at t+h) changes.
        X = np.empty((n_jobs, origins.size, k))
        X[..., : k - 1] = base
        prof_fin = np.isfinite(base[..., 2 + n_a])
        for h in range(1, H + 1):
            X[..., -1] = known[:, day_t[origins], (phase_t[origins] + h) % S]
            Y = np.full((n_jobs, origins.size), np.nan)
            ok_y = origins + h < n_min
            Y[:, ok_y] = hist[:, origins[ok_y] + h]
            base_ok = np.isfinite(Y) & base_fin
            full_ok = base_ok & prof_fin & np.isfinite(X[..., -1])
            if h == 1:  # the model per job is decided once, on the 1-step rows
                mode[base_ok.sum(axis=1) >= self.min_train_rows] = 1
                mode[full_ok.sum(axis=1) >= self.min_train_rows] = 2
            for m, cols, okm in ((1, slice(0, 2 + n_a), base_ok), (2, slice(0, k), full_ok)):
                jobs = np.flatnonzero(mode == m)
                if not jobs.size:
                    continue
                every = jobs.size == n_jobs  # the usual case: no per-mode copy of the design
                Xm = X[:, :, cols] if every else X[jobs][:, :, cols]
                Ym, okj = (Y, okm) if every else (Y[jobs], okm[jobs])
                c = _ridge(Xm, Ym, okj, self.ridge)
                coef[jobs, h - 1, cols] = c
                pred = (np.where(np.isfinite(Xm), Xm, 0.0) @ c[..., None])[..., 0]
                resid[jobs, :, h - 1] = np.where(okj, Ym - pred, np.nan)
            coef[mode == 0, h - 1, 1] = 1.0  # cold start: last value
        sigma = fallback_sigma(hist)
        grid = residual_grid(resid, sigma)
        cold = mode == 0
        if cold.any():  # too few rows for honest residuals: normal shape
            grid[cold] = residual_grid(np.full((int(cold.sum()), 1, H), np.nan), sigma[cold])
            rho, spread = lag1_autocorrelation(hist)
            reverting = np.flatnonzero(cold & (rho < self.cold_reverting_rho))
            if reverting.size:
                keep = rho[reverting, None] ** np.arange(1, H + 1)[None, :]  # (J, H): weight left on the last value
                level_col = 2 + int(np.argmin(alphas))  # the slowest EWMA: the series' running level
                coef[reverting, :, 1] = keep
                coef[reverting, :, level_col] = 1.0 - keep
                width = _reverting_widths(hist[reverting], last_seq[reverting], ewma_seq[reverting, :, level_col - 2],
                                          keep, spread[reverting])
                grid[reverting] = width[..., None] * norm.ppf(GRID)[None, None, :]

        # Online state at the end of the history.
        end_day = (start + n_min) // S  # index of the season in progress
        state = _State(
            minute=start + n_min,
            last=last,
            ewma=ewma,
            prof_sum=csum[:, end_day - 1] if end_day >= 1 else np.zeros((n_jobs, S)),
            prof_cnt=ccnt[:, end_day - 1] if end_day >= 1 else np.zeros((n_jobs, S)),
            today=days[:, end_day].copy() if end_day < n_days else np.full((n_jobs, S), np.nan),
        )
        return FittedProfile(alphas, S, coef, grid, state, mode)
