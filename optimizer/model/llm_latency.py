"""Continuous-batching latency model: TTFT and ITL percentiles of an LLM job at c replicas.

Called by the LLM utilities (``llm_utility.py``) and through them the utility tables and every solver,
by Faro's LLM planning (``optimizer/policy/faro_llm.py``), by the token-level simulator's agreement
tests and by the vLLM calibration's model-vs-measured checks. Pure numpy/scipy; vectorised over jobs,
replica counts and horizon steps.

The model is evaluated once per job on a grid of per-replica loads (``LLMCurves.build``: every job ×
``U_GRID`` point in one vectorised pass) and then interpolated for any number of (rate, replicas)
queries, so a 1,000-job solve with admission rates and horizon steps costs one curve build plus cheap
lookups. Load is split evenly across replicas (a replica sees ``λ/c``).

Notes
-----
Per replica: arrival rate ``λ`` (Poisson), prompt/output lengths ``(P, O)`` from the token mix, the
engine profile's step model ``a + β·decodes + γ·prefill_tokens + δ·context_tokens`` and its limits
``S = max_num_seqs``, ``B = max_num_batched_tokens``, ``K = kv_cache_tokens``. A request occupies a
running slot for ``k(P) = ⌈P/B⌉`` prefill steps and ``O − 1`` decode steps (its last prefill step emits
the first token); ``m = E[O − 1 + k]``.

*Capacity.* Per step a replica admits ``Λ = λ·T`` requests on average (``T`` the mean step). Running
requests ``N = Λ·m`` must fit ``S``; the KV tokens they hold, ``Λ·KVS`` with
``KVS = E[(O−1)(P + O/2) + k·P + (O−1+k)·block/2]`` (KV-token-steps per request), must fit ``K``; the
tokens scheduled per step, ``Λ·(E[P] + E[O−1])``, must fit ``B``. So ``Λ ≤ Λ_max = min(S/m, K/KVS,
B/(E[P]+E[O−1]))`` and, since ``T = (a + β)/(1 − λw)`` with ``w = β·E[O−1] + γ·E[P] + δ·KVS`` the
engine work per request, the largest sustainable rate is ``λ_max = Λ_max/(a + β + Λ_max·w)``.
Loads are expressed as ``u = λ/λ_max``; at ``u ≥ u_max`` the model is evaluated at ``u_max`` and the
latencies scaled by ``u/u_max`` (as the M/D/c model does above ``ρ_max``), so utilities keep a slope.

*Steps.* A request that decodes sees the others as an M/G/∞ population: ``T = (a + β + δ·kv)/(1 − λw)``
(its own token, the mean number of other decoders ``λ·E[O−1]·T`` and the prompts that arrived during
the previous step, ``λ·E[P]·T`` tokens). With chunked prefill every step takes all prompts that
arrived during the previous one (a gated service), so the step durations form the chain
``T' = c₀ + γ·A(T)`` with ``A(T)`` compound Poisson of prompts at rate ``λT`` and ``c₀ = (1 − ρ)·T``,
``ρ = λγE[P]``. Its stationary moments are closed-form:
``μ₂ = (c₀² + 2c₀γνμ₁ + γ²λE[P²]μ₁)/(1 − ρ²)`` and a similar ``μ₃`` (``ν = λE[P]``, ``μ₁ = T``).

*TTFT.* An arrival waits for the current step (length-biased ``T*``, uniform position ``U``), then its
prompt is prefilled in the next step together with everything that arrived meanwhile:
``TTFT = γP + k(P)·c₀ + V + W`` with ``V = U·T* + γ·A(T*)``. ``V`` is modelled as an atom at 0 and an
exponential tail, ``f₁·Exp(θ₁)`` with ``θ₁ = E[V²]/(2E[V])`` and ``f₁ = E[V]/θ₁`` (both moments from
``μ₁…μ₃``): most arrivals find a short decode step, a few find a long prefill step, and that
mixture sets the tail. ``W`` is the wait for a running slot or KV space: the running count is
over-dispersed (a long prefill step delays every request at once), modelled as a gamma variable with
mean ``N`` and variance ``N/(1 − λw)`` (the processor-sharing index); KV in use likewise with the
per-request KV spread. ``W = f₂·Exp(θ₂)`` with ``f₂`` the probability that slots or KV are exhausted and
``θ₂ = m·T·ID/(capacity − N)`` (an M/M/c-like drain slowed by the dispersion). The percentile of
``γP + k·c₀ + V + W`` is found by bisection over the prompt-length atoms (``V + W`` is a
hypoexponential mixture in closed form).

*ITL.* Every running request gets one token per step, so the ITL distribution is the step-duration
distribution ``c₀ + γ·min(X, B − D)`` with ``X`` the prompt tokens a step carries: 0 with probability
``e^{−Λ'}``, else a sum of ``k̄ = Λ'/(1 − e^{−Λ'})`` prompts on average (shaped like the prompt
distribution, spread by ``√k̄/√(1 − ρ²)`` for the chain's correlation), plus full-budget steps for
chunks that spill over. ``Λ'`` includes the echo of a request's own prefill: the steps right after a
long prefill step carry the prompts that arrived during it, and those are a request's first ITLs.

*Limits* (what the model does not capture): preemption and recompute when KV runs out (the model
treats KV like a slot limit, so it is optimistic once preemptions are frequent); prefix caching;
speculative decoding; load imbalance between replicas; the exact over-dispersion of the running
count near saturation (the gamma approximation places the saturation cliff only approximately);
long-prompt budget queues beyond what the step chain captures. See ``docs/llm.md`` for the agreement
with the token-level simulator.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from faro.optimizer.model.llm_profile import EngineProfile, TokenMix
from numpy.typing import ArrayLike, NDArray
from scipy.special import gammaincc

DEFAULT_TOKEN_MIX = TokenMix.fixed(1024, 128)
"""The mix an LLM job is planned for before any is observed or declared: 1,024 prompt and 128 output
tokens per request (close to the medians of the Azure LLM conversation trace, 2023)."""

U_GRID = np.array(
    [0.0, 0.01, 0.03, 0.06, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.6, 0.67, 0.73, 0.78, 0.82, 0.86, 0.89,
     0.91, 0.93, 0.95, 0.96, 0.97, 0.98, 0.99]
)
"""Per-replica loads ``u = λ/λ_max`` the curves are evaluated at (dense where latency climbs)."""

U_MAX = 0.95
"""Default load above which latencies are extrapolated linearly in ``u`` (the steady state is not
trusted there; the M/D/c model's ``ρ_max``). ``ModelConfig.rho_max`` overrides it in the solvers."""

ATOM_LEVELS = np.array(
    [0.05, 0.15, 0.25, 0.35, 0.45, 0.55, 0.65, 0.75, 0.85, 0.9, 0.95, 0.975, 0.99, 0.995, 0.999]
)
"""Quantile levels that summarise a token mix (dense in the tail, which sets p99 latencies)."""

_BISECT_STEPS = 34


@dataclass(frozen=True)
class TokenSummary:
    """What the latency model needs of a token mix: weighted atoms and joint moments.

    ``prompt``/``prompt_weight`` and ``output``/``output_weight`` are quantile atoms (the samples
    themselves when there are few); the moments are exact over the paired samples.
    """

    prompt: NDArray[np.float64]
    prompt_weight: NDArray[np.float64]
    output: NDArray[np.float64]
    output_weight: NDArray[np.float64]
    mean_prompt: float
    prompt_m2: float  # E[P²]
    prompt_m3: float  # E[P³]
    mean_decodes: float  # E[O − 1]
    decodes_m2: float  # E[(O − 1)²]
    decode_prompt: float  # E[(O − 1)·P]
    decode_output: float  # E[(O − 1)·O]
    decode_kv2: float  # E[(O − 1)·(P + O/2)²]

    @classmethod
    def of(cls, mix: TokenMix) -> TokenSummary:
        p, o = mix.prompt_tokens, mix.output_tokens
        dec = o - 1.0
        pv, pw = _atoms(p)
        ov, ow = _atoms(o)
        return cls(
            prompt=pv, prompt_weight=pw, output=ov, output_weight=ow,
            mean_prompt=float(p.mean()), prompt_m2=float((p**2).mean()), prompt_m3=float((p**3).mean()),
            mean_decodes=float(dec.mean()), decodes_m2=float((dec**2).mean()),
            decode_prompt=float((dec * p).mean()), decode_output=float((dec * o).mean()),
            decode_kv2=float((dec * (p + o / 2.0) ** 2).mean()),
        )


def _atoms(samples: NDArray[np.float64]) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """``ATOM_LEVELS``-quantile atoms with the probability mass each stands for."""
    x = np.sort(samples)
    if x.size <= ATOM_LEVELS.size:
        return x, np.full(x.size, 1.0 / x.size)
    edges = np.concatenate([[0.0], (ATOM_LEVELS[1:] + ATOM_LEVELS[:-1]) / 2.0, [1.0]])
    return np.quantile(x, ATOM_LEVELS), np.diff(edges)


def token_summary(mix: TokenMix) -> TokenSummary:
    """The mix's summary, computed once per ``TokenMix`` object (they are immutable)."""
    cached = mix.__dict__.get("_faro_summary")
    if cached is None:
        cached = TokenSummary.of(mix)
        mix.__dict__["_faro_summary"] = cached  # a frozen value's derived data, not state
    return cached


@dataclass(frozen=True)
class LLMCurves:
    """TTFT and ITL percentiles per job over per-replica load ``u = λ/λ_max`` (rows: jobs).

    ``capacity_rps[i]`` is job i's ``λ_max`` per replica (req/s); ``ttft_ms``/``itl_ms`` are (J, G) on
    ``U_GRID``, non-decreasing along the grid; ``binding`` names what limits capacity per job
    (``max_num_seqs``, ``kv_cache_tokens`` or ``max_num_batched_tokens``).
    """

    capacity_rps: NDArray[np.float64]
    ttft_ms: NDArray[np.float64]
    itl_ms: NDArray[np.float64]
    has_itl: NDArray[np.bool_]  # False where no request emits a second token
    binding: tuple[str, ...]

    @classmethod
    def build(
        cls,
        profiles: Sequence[EngineProfile],
        mixes: Sequence[TokenMix],
        percentiles: ArrayLike = 99.0,
    ) -> LLMCurves:
        """Curves for every (profile, mix, percentile) row, in one vectorised evaluation."""
        if len(profiles) != len(mixes):
            raise ValueError("profiles and mixes must have the same length")
        pct = np.broadcast_to(np.asarray(percentiles, dtype=float), (len(profiles),))
        if not profiles:
            empty = np.zeros((0, U_GRID.size))
            return cls(np.zeros(0), empty, empty, np.zeros(0, dtype=bool), ())
        return _build(list(profiles), [token_summary(m) for m in mixes], pct)

    def take(self, rows: ArrayLike) -> LLMCurves:
        idx = np.asarray(rows, dtype=np.int64)
        return LLMCurves(
            self.capacity_rps[idx], self.ttft_ms[idx], self.itl_ms[idx], self.has_itl[idx],
            tuple(self.binding[i] for i in idx),
        )

    def latency_ms(
        self, rate_rps: ArrayLike, replicas: ArrayLike, *, u_max: float = U_MAX
    ) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
        """TTFT and ITL percentiles (ms) at total ``rate_rps`` over ``replicas`` replicas.

        ``rate_rps`` and ``replicas`` broadcast against each other with jobs on the first axis, e.g.
        rates (J, H, 1) and replicas (J, 1, X) give (J, H, X). Zero load gives the idle latencies;
        zero replicas under load give ``inf``; no ITL (single-token outputs) gives 0.
        """
        lam = np.asarray(rate_rps, dtype=float)
        c = np.asarray(replicas, dtype=float)
        lam, c = np.broadcast_arrays(lam, c)
        j = lam.shape[0] if lam.ndim else 1
        cap = self.capacity_rps.reshape((j,) + (1,) * max(lam.ndim - 1, 0))
        with np.errstate(divide="ignore", invalid="ignore"):
            u = np.where(lam > 0, lam / (np.maximum(c, 0.0) * cap), 0.0)
        u = np.where((lam > 0) & (c <= 0), np.inf, u)
        ttft = _interp_rows(self.ttft_ms, u, u_max)
        itl = _interp_rows(self.itl_ms, u, u_max)
        itl = np.where(self.has_itl.reshape(cap.shape), itl, 0.0)
        return ttft, itl


def _interp_rows(table: NDArray[np.float64], u: NDArray[np.float64], u_max: float) -> NDArray[np.float64]:
    """Row-wise linear interpolation of ``table`` (J, G) on ``U_GRID`` at ``u`` (J, ...), extrapolated
    proportionally above ``u_max``; ``inf`` stays ``inf``."""
    u_max = float(min(u_max, U_GRID[-1]))
    uc = np.minimum(u, u_max)
    k = np.clip(np.searchsorted(U_GRID, uc, side="right") - 1, 0, U_GRID.size - 2)
    lo_u, hi_u = U_GRID[k], U_GRID[k + 1]
    frac = np.clip((uc - lo_u) / (hi_u - lo_u), 0.0, 1.0)
    rows = np.arange(table.shape[0]).reshape((-1,) + (1,) * (u.ndim - 1))
    out = table[rows, k] * (1.0 - frac) + table[rows, k + 1] * frac
    with np.errstate(invalid="ignore"):
        scaled = np.where(u > u_max, out * (u / u_max), out)
    return np.where(np.isinf(u), np.inf, scaled)


def _col(values: Sequence[float]) -> NDArray[np.float64]:
    return np.asarray(values, dtype=float)[:, None]


def _pad(arrays: list[NDArray[np.float64]], fill: float) -> NDArray[np.float64]:
    width = max(a.size for a in arrays)
    out = np.full((len(arrays), width), fill)
    for i, a in enumerate(arrays):
        out[i, : a.size] = a
    return out


def _gamma_sf(x: NDArray, mean: NDArray, var: NDArray) -> NDArray[np.float64]:
    """P(G > x) for a gamma variable with the given mean and variance (0 where the mean is 0)."""
    ok = (mean > 0) & (var > 0)
    shape = np.where(ok, mean**2 / np.where(ok, var, 1.0), 1.0)
    scale = np.where(ok, var / np.where(ok, mean, 1.0), 1.0)
    return np.where(ok, gammaincc(shape, np.maximum(x, 0.0) / scale), 0.0)


def _build(profiles: list[EngineProfile], sums: list[TokenSummary], pct: NDArray[np.float64]) -> LLMCurves:
    a = _col([p.step_base_ms for p in profiles])
    beta = _col([p.decode_ms_per_seq for p in profiles])
    gam = _col([p.prefill_ms_per_token for p in profiles])
    delta = _col([p.context_ms_per_token for p in profiles])
    seqs = _col([p.max_num_seqs for p in profiles])
    budget = _col([p.max_num_batched_tokens for p in profiles])
    kv_cap = _col([p.kv_cache_tokens for p in profiles])
    block = _col([p.block_size_tokens for p in profiles])
    tail = (1.0 - pct / 100.0)[:, None]

    pv = _pad([s.prompt for s in sums], 0.0)  # (J, M); padded atoms have weight 0
    pw = _pad([s.prompt_weight for s in sums], 0.0)
    ov = _pad([s.output for s in sums], 1.0)
    ow = _pad([s.output_weight for s in sums], 0.0)
    ep = _col([s.mean_prompt for s in sums])
    ep2 = _col([s.prompt_m2 for s in sums])
    ep3 = _col([s.prompt_m3 for s in sums])
    eom = _col([s.mean_decodes for s in sums])
    eom2 = _col([s.decodes_m2 for s in sums])

    chunks = np.ceil(pv / budget)  # prefill steps per prompt atom
    ek = (pw * chunks).sum(1, keepdims=True)
    ekp = (pw * chunks * pv).sum(1, keepdims=True)
    ekp2 = (pw * chunks * pv**2).sum(1, keepdims=True)
    m = eom + ek  # slot-steps per request
    kvs = (_col([s.decode_prompt for s in sums]) + _col([s.decode_output for s in sums]) / 2.0 + ekp
           + m * block / 2.0)  # KV-token-steps per request
    kv_mean = kvs / m  # KV tokens of a running request (time-weighted)
    kv_var = np.maximum((_col([s.decode_kv2 for s in sums]) + ekp2) / m - kv_mean**2, 0.0)
    work = beta * eom + gam * ep + delta * kvs  # engine ms per request beyond the step base

    lam_s, lam_k, lam_b = seqs / m, kv_cap / kvs, budget / (ep + eom)
    limits = np.concatenate([lam_s, lam_k, lam_b], axis=1)
    arrivals_max = limits.min(axis=1, keepdims=True)
    names = ("max_num_seqs", "kv_cache_tokens", "max_num_batched_tokens")
    binding = tuple(names[i] for i in np.argmin(limits, axis=1))
    self_ms = a + beta + delta * kv_mean
    lam_max = arrivals_max / (self_ms + arrivals_max * work)  # req/ms per replica

    lam = lam_max * U_GRID[None, :]  # (J, G)
    step = self_ms / (1.0 - lam * work)  # mean step a decoding request sees
    per_step = lam * step
    decodes = per_step * eom
    rho = lam * gam * ep
    c0 = step * (1.0 - rho)
    nu = lam * ep
    mu1 = step
    mu2 = (c0**2 + 2 * c0 * gam * nu * mu1 + gam**2 * lam * ep2 * mu1) / (1.0 - rho**2)
    mu3 = (c0**3 + 3 * c0**2 * gam * nu * mu1 + 3 * c0 * gam**2 * (lam * ep2 * mu1 + nu**2 * mu2)
           + gam**3 * (lam * ep3 * mu1 + 3 * lam * ep2 * nu * mu2)) / (1.0 - rho**3)
    ts1, ts2 = mu2 / mu1, mu3 / mu1  # length-biased step moments
    ev = ts1 * (0.5 + rho)
    ev2 = ts2 * (1.0 / 3.0 + rho + rho**2) + gam**2 * lam * ep2 * ts1
    # The chain steps all the time; a real engine idles when nobody is in it (M/G/∞ occupancy), and
    # then an arrival waits for no decode step. Only the decode-step share of V (c₀/2, c₀²/3 in a chain
    # without prefill) is scaled by the busy probability; waiting behind prompts is not.
    in_system = lam * (c0 + gam * ep + ev + eom * step)
    idle = np.exp(-in_system)
    ev = ev - idle * c0 / 2.0
    ev2 = ev2 - idle * c0**2 / 3.0
    theta1 = np.where(ev > 0, ev2 / (2.0 * np.maximum(ev, 1e-300)), 1.0)
    f1 = np.where(ev > 0, np.minimum(1.0, ev / theta1), 0.0)

    # waiting for a slot or KV space: over-dispersed occupancy
    running = per_step * m
    dispersion = 1.0 / (1.0 - lam * work)
    residence = m * step
    p_slots = _gamma_sf(seqs, running, dispersion * running)
    kv_used = running * kv_mean
    kv_var_total = dispersion * running * kv_mean**2 + running * kv_var
    p_kv = _gamma_sf(kv_cap, kv_used, kv_var_total)
    with np.errstate(divide="ignore", invalid="ignore"):
        theta_s = residence * dispersion / np.maximum(seqs - running, 1e-9 * seqs)
        kv_slots = kv_cap / kv_mean
        kv_disp = np.where(kv_used > 0, kv_var_total / (kv_used * kv_mean), 1.0)
        theta_k = residence * kv_disp / np.maximum(kv_slots - running, 1e-9 * kv_slots)
    f2 = 1.0 - (1.0 - p_slots) * (1.0 - p_kv)
    theta2 = np.where(f2 > 1e-12, (p_slots * theta_s + p_kv * theta_k) / np.maximum(f2, 1e-300), theta1)
    f2 = np.where(f2 > 1e-12, f2, 0.0)
    theta2 = np.maximum(theta2, 1e-9)
    theta1 = np.maximum(theta1, 1e-9)

    own = gam[:, :, None] * pv[:, None, :] + np.ceil(pv / budget)[:, None, :] * c0[:, :, None]  # (J, G, M)
    ttft = _ttft_quantile(own, pw, f1, theta1, f2, theta2, tail)

    # ITL: step durations, including the echo of a request's own prefill step
    dec_cap = seqs * eom / m
    budget_left = np.maximum(budget - np.minimum(decodes, dec_cap), 1.0)
    first_step = c0 + gam * ep + rho * ts1
    r = rho[:, :, None]
    dec_atoms = (ov - 1.0)[:, None, :]
    with np.errstate(divide="ignore", invalid="ignore"):
        echo = (ow[:, None, :] * r * (1.0 - r**dec_atoms) / np.maximum(1.0 - r, 1e-12)).sum(-1)
        echo = np.where(eom > 0, echo / np.maximum(eom, 1e-12), 0.0)
    lam_itl = lam * (step + np.maximum(first_step - step, 0.0) * echo)
    pi0 = np.exp(-lam_itl)
    kbar = np.where(lam_itl > 1e-12, lam_itl / np.maximum(1.0 - pi0, 1e-300), 1.0)
    spread = np.sqrt(kbar) / np.sqrt(np.maximum(1.0 - rho**2, 1e-3))
    x = np.maximum(0.0, kbar[:, :, None] * ep[:, :, None] + spread[:, :, None] * (pv - ep)[:, None, :])
    bl = budget_left[:, :, None]
    spill = ((np.maximum(x - bl, 0.0) / bl) * pw[:, None, :]).sum(-1) * (1.0 - pi0)
    values = np.concatenate([np.zeros_like(lam)[:, :, None], x, bl], axis=-1)
    weights = np.concatenate([pi0[:, :, None], (1.0 - pi0)[:, :, None] * pw[:, None, :], spill[:, :, None]], axis=-1)
    c0_itl = np.minimum(c0, a + beta * (1.0 + seqs) + delta * kv_cap)
    steps_ms = c0_itl[:, :, None] + gam[:, :, None] * np.minimum(values, bl)
    itl = _weighted_quantile(steps_ms, weights, 1.0 - tail[:, :, None])

    ttft = np.maximum.accumulate(ttft, axis=1)
    itl = np.maximum.accumulate(itl, axis=1)
    has_itl = (eom[:, 0] > 0) & (eom2[:, 0] > 0)
    return LLMCurves(lam_max[:, 0] * 1000.0, ttft, itl, has_itl, binding)


def _ttft_quantile(
    own: NDArray, weight: NDArray, f1: NDArray, theta1: NDArray, f2: NDArray, theta2: NDArray, tail: NDArray
) -> NDArray[np.float64]:
    """Solve ``Σ_j w_j·P(own_j + V + W > t) = tail`` for t, with ``V = f₁·Exp(θ₁)``, ``W = f₂·Exp(θ₂)``."""
    f1, th1, f2, th2 = (v[:, :, None] for v in (f1, theta1, f2, theta2))
    w = weight[:, None, :]
    tail3 = tail[:, :, None]
    diff = th1 - th2
    close = np.abs(diff) <= 1e-6 * th1
    safe = np.where(close, 1.0, diff)

    def survival(t: NDArray) -> NDArray:
        x = t[:, :, None] - own
        xp = np.maximum(x, 0.0)
        e1, e2 = np.exp(-xp / th1), np.exp(-xp / th2)
        both = np.where(close, (1.0 + xp / th1) * e1, (th1 * e1 - th2 * e2) / safe)
        s = f1 * (1.0 - f2) * e1 + f2 * (1.0 - f1) * e2 + f1 * f2 * both
        return (w * np.where(x < 0, 1.0, s)).sum(-1)

    lo = own.min(-1)
    span = (theta1 + theta2) * (np.log(1.0 / tail) + 2.0) * 2.0
    hi = own.max(-1) + span
    for _ in range(_BISECT_STEPS):
        mid = (lo + hi) / 2.0
        above = survival(mid) > tail3[..., 0]
        lo = np.where(above, mid, lo)
        hi = np.where(above, hi, mid)
    return hi


def _weighted_quantile(values: NDArray, weights: NDArray, level: NDArray) -> NDArray[np.float64]:
    """Quantile at ``level`` of discrete distributions on the last axis (weights need not sum to 1)."""
    order = np.argsort(values, axis=-1)
    v = np.take_along_axis(values, order, -1)
    w = np.take_along_axis(weights, order, -1)
    cdf = np.cumsum(w, -1) / np.maximum(w.sum(-1, keepdims=True), 1e-300)
    idx = np.minimum((cdf < level - 1e-12).sum(-1), v.shape[-1] - 1)
    return np.take_along_axis(v, idx[..., None], -1)[..., 0]


def capacity_rps(profile: EngineProfile, token_mix: TokenMix) -> float:
    """Largest request rate (req/s) one replica sustains with this mix (the model's ``λ_max``)."""
    return float(LLMCurves.build([profile], [token_mix]).capacity_rps[0])


def llm_latency_ms(
    profile: EngineProfile,
    token_mix: TokenMix,
    rate_rps: ArrayLike,
    replicas: ArrayLike = 1,
    *,
    percentile: float = 99.0,
    u_max: float = U_MAX,
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """TTFT and ITL percentiles (ms) of one job at total ``rate_rps`` over ``replicas`` (broadcast).

    The single-job entry point (calibration checks, tests, baselines): ``llm_latency_ms(profile, mix,
    [1, 2, 4], 1)`` gives the p99 TTFT and ITL of one replica at 1, 2 and 4 req/s.
    """
    curves = LLMCurves.build([profile], [token_mix], percentile)
    lam, c = np.broadcast_arrays(np.asarray(rate_rps, dtype=float), np.asarray(replicas, dtype=float))
    ttft, itl = curves.latency_ms(lam[None, ...], c[None, ...], u_max=u_max)
    return ttft[0], itl[0]
