"""Queueing latency model: Erlang C for a continuous number of servers, and Faro's tail latency.

Called by the utility functions (``utility.py``), the solvers through them, and the simulator's tests.
Everything is vectorised with numpy broadcasting, so one call evaluates jobs × replica counts × horizon
steps.

Notes
-----
For an M/M/c queue with offered load ``a = λ/μ`` the probability that an arrival waits is

    C(c, a) = P·c/(c−a) / (S + P·c/(c−a)),   P = a^c e^{−a} / Γ(c+1),   S = Q(c, a),

where ``Q`` is the regularised upper incomplete gamma function. For integer ``c``, ``S`` is
``Σ_{k<c} a^k e^{−a}/k!``, so this is the textbook Erlang C; for real ``c`` it interpolates smoothly,
which the continuous solvers need (the Faro artifact rounds ``c`` down instead). ``P`` is computed in
log space so ``c`` up to 10⁴ and ``ρ = a/c → 1`` stay finite.

The waiting time tail is ``P(W > t) = C·e^{−(cμ−λ)t}``; its p-quantile is
``max(0, ln(C/(1−p)) / (cμ−λ))``. Faro approximates M/D/c by halving the M/M/c wait and adding the
service time. At ``ρ ≥ ρ_max`` the model is evaluated at ``λ_cap = ρ_max·c/s`` and scaled by
``λ/λ_cap`` so utilities keep a slope in the overloaded region.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy.special import gammaincc, gammaln

RHO_MAX = 0.95
"""Utilisation at which the latency model stops trusting steady state (Faro's default)."""


def erlang_c(servers: ArrayLike, offered_load: ArrayLike) -> NDArray[np.float64]:
    """Probability that an arrival waits in an M/M/c queue, for real ``servers`` > 0.

    Parameters
    ----------
    servers
        Number of servers ``c`` (may be fractional).
    offered_load
        ``a = λ/μ`` in Erlangs.

    Returns
    -------
    ndarray
        ``C(c, a)`` broadcast over the inputs: 0 when ``a`` = 0, 1 when the queue is unstable
        (``a ≥ c``).
    """
    c, a = np.broadcast_arrays(np.asarray(servers, dtype=float), np.asarray(offered_load, dtype=float))
    out = np.ones(c.shape, dtype=float)
    out[a <= 0] = 0.0
    stable = (a > 0) & (c > a)
    if np.any(stable):
        cs, as_ = c[stable], a[stable]
        log_p = cs * np.log(as_) - as_ - gammaln(cs + 1.0)
        head = gammaincc(cs, as_)
        # term = P·c/(c−a); C = term/(head+term) = 1/(1 + head/term), computed in log space.
        log_term = log_p + np.log(cs) - np.log(cs - as_)
        with np.errstate(over="ignore", divide="ignore"):
            ratio = head * np.exp(-log_term)
        out[stable] = 1.0 / (1.0 + ratio)
    return out


def mmc_mean_wait_s(rate_rps: ArrayLike, service_time_s: ArrayLike, servers: ArrayLike) -> NDArray:
    """Mean waiting time (s) in an M/M/c queue: ``C/(cμ−λ)``; ``inf`` when unstable."""
    lam, s, c = (np.asarray(v, dtype=float) for v in (rate_rps, service_time_s, servers))
    drain = c / s - lam
    with np.errstate(divide="ignore", invalid="ignore"):
        wait = np.where(drain > 0, erlang_c(c, lam * s) / np.where(drain > 0, drain, 1.0), np.inf)
    return np.asarray(wait, dtype=float)


def mmc_wait_percentile_s(
    rate_rps: ArrayLike, service_time_s: ArrayLike, servers: ArrayLike, percentile: ArrayLike
) -> NDArray[np.float64]:
    """p-th percentile of the waiting time (s) in an M/M/c queue; ``inf`` when unstable.

    ``percentile`` is in (0, 100), e.g. 99 for p99.
    """
    lam, s, c, pct = (np.asarray(v, dtype=float) for v in (rate_rps, service_time_s, servers, percentile))
    lam, s, c, pct = np.broadcast_arrays(lam, s, c, pct)
    drain = c / s - lam
    stable = drain > 0
    tail = 1.0 - pct / 100.0
    out = np.full(lam.shape, np.inf)
    if np.any(stable):
        prob_wait = erlang_c(c[stable], lam[stable] * s[stable])
        with np.errstate(divide="ignore"):
            log_ratio = np.log(prob_wait) - np.log(tail[stable])
        out[stable] = np.maximum(0.0, log_ratio) / drain[stable]
    return out


def tail_latency_ms(
    rate_rps: ArrayLike,
    processing_time_ms: ArrayLike,
    replicas: ArrayLike,
    *,
    percentile: ArrayLike = 99.0,
    rho_max: float = RHO_MAX,
) -> NDArray[np.float64]:
    """Faro's p-th percentile request latency (ms): ``wait_p/2 + s`` with the stability cap.

    Broadcasts over all array arguments. Zero load gives the bare processing time; zero replicas
    under load give ``inf``.
    """
    lam, s_ms, c, pct = (
        np.asarray(v, dtype=float) for v in (rate_rps, processing_time_ms, replicas, percentile)
    )
    lam, s_ms, c, pct = np.broadcast_arrays(lam, s_ms, c, pct)
    s = s_ms / 1000.0
    out = np.full(lam.shape, np.inf)
    idle = lam <= 0
    out[idle] = s_ms[idle]
    live = ~idle & (c > 0)
    if np.any(live):
        lam_l, s_l, c_l = lam[live], s[live], c[live]
        lam_cap = np.minimum(lam_l, rho_max * c_l / s_l)
        wait = mmc_wait_percentile_s(lam_cap, s_l, c_l, pct[live])
        out[live] = (wait / 2.0 + s_l) * 1000.0 * (lam_l / lam_cap)
    return out
