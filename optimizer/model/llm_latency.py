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
``S = max_num_seqs``, ``B = max_num_batched_tokens``, ``K = kv_cache_tokens``. A request is prefilled in
``k(P) = ⌈P/B⌉`` steps (its last prefill step emits the first token) and then decodes ``O − 1`` tokens,
one per step. ``w = β·E[O−1] + γ·E[P] + δ·KVS`` is the engine work per request beyond the step base
(``KVS`` the KV-token-steps a request holds).

*Steps.* A decoding request sees the others as an M/G/∞ population: its mean step is
``T = (a + β + δ·kv)/(1 − λw)`` (its own token, the other decoders ``λ·E[O−1]·T`` and the prompts that
arrived during the previous step, ``λ·E[P]·T`` tokens). With chunked prefill every step takes the
prompts that arrived during the previous one (a gated service), so step durations form the chain
``T' = c₀ + γ·A(T)``, ``A(T)`` compound Poisson of prompts at rate ``λT``, ``c₀ = (1 − ρ)·T``,
``ρ = λγE[P]``. Its stationary moments are closed-form:
``μ₂ = (c₀² + 2c₀γνμ₁ + γ²λE[P²]μ₁)/(1 − ρ²)``, ``ν = λE[P]``, ``μ₁ = T``, and similarly ``μ₃``.

*Capacity.* A request runs (holds a slot and KV blocks) for its prefill step — which lasts
``T₀ = c₀ + γE[P] + ρ·μ₂/μ₁``, the prompts batched with it included — and ``O − 1`` decode steps, so
``N(λ) = λ·(E[k]·T₀ + E[O−1]·T)`` requests run and ``KV(λ) = λ·(T₀·E[kP] + T·E[(O−1)(P + O/2)]) +
N·block/2`` tokens are in use; ``λ·T·(E[P] + E[O−1])`` tokens are scheduled per step. The capacity
``λ_max`` is the largest rate at which ``N ≤ S``, ``KV ≤ K`` and the tokens per step ``≤ B`` (bisection;
``LLMCurves.binding`` says which binds). Loads are ``u = λ/λ_max``; at ``u ≥ u_max`` latencies are
evaluated at ``u_max`` and scaled by ``u/u_max`` (as the M/D/c model does above ``ρ_max``).

*TTFT.* An arrival waits for the current step (length-biased ``T*``, uniform position ``U``), then its
prompt is prefilled in the next step(s) with everything that arrived meanwhile:
``TTFT = γP + k(P)·c₀ + V + W``, ``V = U·T* + γ'·A(T*)``. The prompts ahead of it queue for the step budget
``B_left = B − decodes`` (FCFS): tokens beyond it spill into further steps, each with its own ``c₀``, so in
the chain the arrival waits in, a prompt token costs ``γ' = γ + s·c₀/B_left``, ``s = E[(A − B_left)⁺]/E[A]``
the share of a step's arriving prompt tokens that spill (``A`` over a mean step; Poisson counts over the
prompt atoms). With ``ρ' = λγ'E[P]``, ``T' = c₀ + γ'·A(T)`` has mean ``c₀/(1 − ρ')`` and its moments follow
as above; the spill's extra steps are what a 1,024-token budget with ~1,000–2,000-token prompts adds
(``s`` is 0.3–0.6 there, near 0 with an 8,192-token budget). ``V`` is an atom at 0 plus an exponential tail,
``f₁·Exp(θ₁)`` with ``θ₁ = E[V²]/(2E[V])``, ``f₁ = E[V]/θ₁`` (moments from the ``γ'`` chain; the decode-step part
is scaled by the probability that the engine is busy, ``1 − e^{−N}``): most arrivals find a short decode
step, a few a long prefill step, and that mixture sets the tail. ``W`` is the wait for a running slot or
for KV space: the running count is over-dispersed (a long prefill step delays every running request at
once) and modelled as a gamma variable with mean ``N`` and variance ``N·(1 − λw)^{−3/2}``; KV in use as a
gamma variable with that dispersion plus the per-request KV spread. ``W = f₂·Exp(θ₂)``: ``f₂`` is the
probability that the slots are full or that the KV left is below the arriving prompt, ``θ₂`` an M/M/c-like
drain ``N/λ/(capacity − N)`` times the dispersion index (``^{1/2}`` for slots, ``^1`` for KV: under KV
pressure vLLM preempts and recomputes, which drains slower). The percentile of ``γP + k·c₀ + V + W`` is
found by bisection over the prompt atoms (``V + W`` is a hypoexponential mixture in closed form).
The profile's ``ttft_overhead_ms`` (API-server time outside the engine's steps) shifts every TTFT.

*ITL.* Every running request gets one token per step, so ITLs are step durations
``c₀ + γ·min(X, B − D)``, ``X`` the prompt tokens a step carries. The number of prompts per step is
negative binomial: mixed Poisson over the previous step's length, mean ``λ·T'`` and extra variance
``λ²·Var(T)``; ``k`` prompts carry ``k·E[P] + √k·(P − E[P])`` tokens over the prompt atoms, and chunks
beyond the budget spill into full steps. ``T'`` includes the echo of a request's own prefill: its ``j``-th
ITL follows a step of mean ``T + ρ^{j−1}(T₀ − T)``, and short outputs make those a large share of ITLs.

*Fitted parts and limits.* The dispersion exponent ``3/2`` and the wait exponents ``1/2`` (slots) and
``1`` (KV) were fitted against the token-level simulator (``optimizer/sim/llm``) on the grid of
``bench/llm_model.py``; everything else follows from the profile and the mix. Not modelled: preemption's
recompute work beyond its effect on the KV wait, prefix caching, speculative decoding, load imbalance
between replicas, scheduling policies other than FCFS. The saturation cliff (slots or KV full) is placed
only approximately, so errors are larger near ``λ_max``; ``docs/llm.md`` gives the measured agreement.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import cached_property

import numpy as np
from faro.optimizer.model.llm_profile import EngineProfile, TokenMix
from numpy.typing import ArrayLike, NDArray
from scipy.special import erfc, erfcinv, gammaincc, gammaln

DEFAULT_TOKEN_MIX = TokenMix.fixed(1024, 128)
"""The mix an LLM job is planned for before any is observed or declared: 1,024 prompt and 128 output
tokens per request (close to the medians of the Azure LLM conversation trace, 2023)."""

U_GRID = np.array([0.0, 0.03, 0.08, 0.16, 0.26, 0.38, 0.5, 0.62, 0.72, 0.8, 0.86, 0.9, 0.93, 0.95, 0.98])
"""Per-replica loads ``u = λ/λ_max`` the curves are evaluated at (dense where latency climbs)."""

U_MAX = 0.95
"""Default load above which latencies are extrapolated (the steady state is not trusted there; the
M/D/c model's ``ρ_max``). ``ModelConfig.rho_max`` overrides it in the solvers."""

OVERLOAD_DOUBLING_U = 0.05
OVERLOAD_DOUBLINGS = 3
"""Above ``u_max`` latencies double every 0.05 of load, three times (×2 at capacity, ×8 at 110%), and
grow in proportion to the load beyond: past capacity a replica's queue has no steady state and grows
for as long as the overload lasts (the token-level simulator's TTFT p99 at 110% is 40–130× the one at
95%), so a count at the edge must not look safe; the proportional tail keeps utilities a slope."""


def overload_factor(u: NDArray[np.float64], u_max: float) -> NDArray[np.float64]:
    """How much latencies grow from ``u_max`` to load ``u`` (1 at or below ``u_max``)."""
    u_knee = u_max + OVERLOAD_DOUBLINGS * OVERLOAD_DOUBLING_U
    steep = np.exp2((np.clip(u, u_max, u_knee) - u_max) / OVERLOAD_DOUBLING_U)
    return steep * np.maximum(u / u_knee, 1.0)


def overload_load(growth: NDArray[np.float64], u_max: float) -> NDArray[np.float64]:
    """The load at which latencies have grown by ``growth`` (≥ 1) from ``u_max``: ``overload_factor``'s
    inverse."""
    u_knee = u_max + OVERLOAD_DOUBLINGS * OVERLOAD_DOUBLING_U
    g = np.maximum(growth, 1.0)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(g <= 2.0**OVERLOAD_DOUBLINGS, u_max + OVERLOAD_DOUBLING_U * np.log2(g),
                        u_knee * g / 2.0**OVERLOAD_DOUBLINGS)


ATOM_LEVELS = np.array([0.05, 0.2, 0.35, 0.5, 0.65, 0.8, 0.9, 0.95, 0.98, 0.99, 0.998])
"""Quantile levels that summarise a token mix (dense in the tail, which sets p99 latencies)."""

_NEWTON_STEPS = 12

DISPERSION_POWER = 1.5
WAIT_POWER = 0.5
KV_WAIT_POWER = 1.0
"""Index of dispersion of the running count, ``(1 − λw)^−1.5``: the processing-sharing index
``1/(1 − λw)`` raised to a power fitted against the token-level simulator (long prefill steps delay
every running request at once, which a Poisson or PS count does not see)."""


@dataclass(frozen=True)
class TokenSummary:
    """What the latency model needs of a token mix: weighted atoms and joint moments.

    ``prompt``/``prompt_weight`` and ``output``/``output_weight`` are quantile atoms at ``ATOM_LEVELS``
    (each weighted by the probability mass it stands for); the moments are exact over the paired samples.
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


def token_summary(mix: TokenMix) -> TokenSummary:
    """The mix's summary, computed once per ``TokenMix`` object (they are immutable)."""
    return token_summaries([mix])[0]


def token_summaries(mixes: Sequence[TokenMix]) -> list[TokenSummary]:
    """Summaries of many mixes, the missing ones computed in vectorised passes (segment sorts and sums
    over the samples of many mixes at once) and remembered on each mix (derived data of a frozen value)."""
    missing = [mix for mix in mixes if "_faro_summary" not in mix.__dict__]
    for first in range(0, len(missing), _SUMMARY_BLOCK):
        _summarise(missing[first : first + _SUMMARY_BLOCK])
    return [mix.__dict__["_faro_summary"] for mix in mixes]


_SUMMARY_BLOCK = 256
"""Mixes summarised per pass: their samples' temporaries stay in cache (one pass over 1,000 mixes took 1.4× as long)."""


def _summarise(todo: Sequence[TokenMix]) -> None:
    sizes = np.array([m.prompt_tokens.size for m in todo])
    starts = np.concatenate([[0], np.cumsum(sizes)[:-1]])
    p = np.concatenate([m.prompt_tokens for m in todo])
    o = np.concatenate([m.output_tokens for m in todo])
    dec = o - 1.0
    pos = ATOM_LEVELS[None, :] * (sizes - 1)[:, None]  # numpy's "linear" quantile positions
    below = np.floor(pos).astype(np.int64)
    frac = pos - below
    above = np.minimum(below + 1, (sizes - 1)[:, None])
    atoms = [_sorted_segments(p, sizes, starts), _sorted_segments(o, sizes, starts)]
    atoms = [srt[starts[:, None] + below] * (1.0 - frac) + srt[starts[:, None] + above] * frac for srt in atoms]
    p2, dp, kv = p * p, dec * p, p + o / 2.0
    cols = (p, p2, p2 * p, dec, dec * dec, dp, dec * o, dec * kv * kv)
    means = (np.stack([np.add.reduceat(c, starts) for c in cols]) / sizes).T.tolist()
    edges = np.concatenate([[0.0], (ATOM_LEVELS[1:] + ATOM_LEVELS[:-1]) / 2.0, [1.0]])
    weight = np.diff(edges)
    for k, mix in enumerate(todo):
        mix.__dict__["_faro_summary"] = TokenSummary(atoms[0][k], weight, atoms[1][k], weight, *means[k])


def _sorted_segments(values: NDArray[np.float64], sizes: NDArray[np.int64], starts: NDArray[np.int64]) -> NDArray:
    """``values`` with each segment (``starts``/``sizes``) sorted; segments of one size in one 2-D sort."""
    if np.all(sizes == sizes[0]):  # the usual case: every mix has as many samples
        return np.sort(values.reshape(sizes.size, int(sizes[0])), axis=1).ravel()
    out = np.empty_like(values)
    for size in np.unique(sizes):
        first = starts[sizes == size]
        at = first[:, None] + np.arange(size)[None, :]
        out[at] = np.sort(values[at], axis=1)
    return out


@dataclass(frozen=True)
class LLMLatency:
    """Predicted percentiles (ms): time to first token, inter-token gap (every gap counts, as vLLM's
    ``vllm:inter_token_latency_seconds`` histogram), time per output token (a request's mean gap, every
    request with ≥ 2 tokens counts once, as ``vllm:request_time_per_output_token_seconds``)."""

    ttft_ms: NDArray[np.float64]
    itl_ms: NDArray[np.float64]
    tpot_ms: NDArray[np.float64]


@dataclass(frozen=True)
class LLMCurves:
    """TTFT, ITL and TPOT percentiles per job over per-replica load ``u = λ/λ_max`` (rows: jobs).

    ``capacity_rps[i]`` is job i's ``λ_max`` per replica (req/s); ``ttft_ms``/``itl_ms``/``tpot_ms`` are
    (J, G) on ``U_GRID``, non-decreasing along the grid; ``binding`` names what limits capacity per job
    (``max_num_seqs``, ``kv_cache_tokens`` or ``max_num_batched_tokens``). ``tpot_ms`` is computed on first
    use: the solvers plan on TTFT and ITL only, and TPOT's quantile search costs as much as both.
    """

    capacity_rps: NDArray[np.float64]
    ttft_ms: NDArray[np.float64]
    itl_ms: NDArray[np.float64]
    has_itl: NDArray[np.bool_]  # False where no request emits a second token
    binding: tuple[str, ...]
    compute_tpot: Callable[[], NDArray[np.float64]] = field(repr=False, compare=False)

    @cached_property
    def tpot_ms(self) -> NDArray[np.float64]:
        return self.compute_tpot()

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
            return cls(np.zeros(0), empty, empty, np.zeros(0, dtype=bool), (), lambda: empty)
        return _build(list(profiles), token_summaries(list(mixes)), pct)

    def take(self, rows: ArrayLike) -> LLMCurves:
        idx = np.asarray(rows, dtype=np.int64)
        return LLMCurves(
            self.capacity_rps[idx], self.ttft_ms[idx], self.itl_ms[idx], self.has_itl[idx],
            tuple(self.binding[i] for i in idx), lambda: self.tpot_ms[idx],
        )

    @classmethod
    def concat(cls, parts: Sequence[LLMCurves]) -> LLMCurves:
        """The rows of ``parts`` in order, in one set of curves."""
        return cls(
            capacity_rps=np.concatenate([r.capacity_rps for r in parts]),
            ttft_ms=np.vstack([r.ttft_ms for r in parts]),
            itl_ms=np.vstack([r.itl_ms for r in parts]),
            has_itl=np.concatenate([r.has_itl for r in parts]),
            binding=tuple(b for r in parts for b in r.binding),
            compute_tpot=lambda: np.vstack([r.tpot_ms for r in parts]),
        )

    def latency_ms(
        self, rate_rps: ArrayLike, replicas: ArrayLike, *, u_max: float = U_MAX
    ) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
        """TTFT and per-gap ITL percentiles (ms) at total ``rate_rps`` over ``replicas`` replicas."""
        p = self.predict(rate_rps, replicas, u_max=u_max)
        return p.ttft_ms, p.itl_ms

    def predict(self, rate_rps: ArrayLike, replicas: ArrayLike, *, u_max: float = U_MAX) -> LLMLatency:
        """TTFT, per-gap ITL and per-request TPOT percentiles (ms) at total ``rate_rps`` over ``replicas``.

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
        has = self.has_itl.reshape(cap.shape)
        itl = np.where(has, _interp_rows(self.itl_ms, u, u_max), 0.0)
        tpot = np.where(has, _interp_rows(self.tpot_ms, u, u_max), 0.0)
        return LLMLatency(ttft_ms=ttft, itl_ms=itl, tpot_ms=tpot)


    def max_load(self, ttft_ms: ArrayLike, tpot_ms: ArrayLike, *, u_max: float = U_MAX) -> NDArray[np.float64]:
        """Per row, the largest load ``u`` at which TTFT ≤ ``ttft_ms`` and TPOT ≤ ``tpot_ms`` (NaN: no
        limit) on the interpolated curves; 0 when even an idle replica misses, ``inf`` with no limit."""
        out = np.full(self.capacity_rps.shape, np.inf)
        for table, limit in ((self.ttft_ms, ttft_ms), (self.tpot_ms, tpot_ms)):
            lim = np.broadcast_to(np.asarray(limit, dtype=float), out.shape)
            if table is self.tpot_ms:
                lim = np.where(self.has_itl, lim, np.nan)
            out = np.minimum(out, _max_load(table, lim, u_max))
        return out


def interp_load(table: NDArray[np.float64], u: NDArray[np.float64], u_max: float = U_MAX) -> NDArray[np.float64]:
    """Row-wise value of a curve table (J, G) on ``U_GRID`` at loads ``u`` (J, ...): linear on the grid up
    to ``u_max``, grown by ``overload_factor`` beyond (what ``LLMCurves.predict`` does per latency)."""
    return _interp_rows(table, np.asarray(u, dtype=float), u_max)


def _max_load(table: NDArray[np.float64], limit: NDArray[np.float64], u_max: float) -> NDArray[np.float64]:
    """Largest ``u`` with ``_interp_rows(table, u) ≤ limit`` per row (rows non-decreasing in ``u``)."""
    u_max = float(min(u_max, U_GRID[-1]))
    inner = u_max > U_GRID
    knots = np.concatenate([U_GRID[inner], [u_max]])
    at_max = _interp_rows(table, np.full((table.shape[0], 1), u_max), u_max)
    vals = np.concatenate([table[:, inner], at_max], axis=1)
    ok = vals <= np.nan_to_num(limit, nan=np.inf)[:, None]
    k = ok.sum(axis=1)  # a prefix, the rows being non-decreasing
    last = vals[:, -1]
    with np.errstate(divide="ignore", invalid="ignore"):
        beyond = np.where(last > 0, overload_load(limit / last, u_max), np.inf)
        km = np.clip(k, 1, knots.size - 1)
        rows = np.arange(table.shape[0])
        v0, v1 = vals[rows, km - 1], vals[rows, km]
        frac = np.where(v1 > v0, (limit - v0) / (v1 - v0), 0.0)
        inside = knots[km - 1] + frac * (knots[km] - knots[km - 1])
    out = np.where(k == 0, 0.0, np.where(k == knots.size, beyond, inside))
    return np.where(np.isnan(limit), np.inf, out)


def _interp_rows(table: NDArray[np.float64], u: NDArray[np.float64], u_max: float) -> NDArray[np.float64]:
    """Row-wise linear interpolation of ``table`` (J, G) on ``U_GRID`` at ``u`` (J, ...), grown by
    ``overload_factor`` above ``u_max``; ``inf`` stays ``inf``."""
    u_max = float(min(u_max, U_GRID[-1]))
    uc = np.minimum(u, u_max)
    k = np.clip(np.searchsorted(U_GRID, uc, side="right") - 1, 0, U_GRID.size - 2)
    lo_u, hi_u = U_GRID[k], U_GRID[k + 1]
    frac = np.clip((uc - lo_u) / (hi_u - lo_u), 0.0, 1.0)
    flat = np.ascontiguousarray(table).ravel()
    at = np.arange(table.shape[0]).reshape((-1,) + (1,) * (u.ndim - 1)) * table.shape[1] + k
    out = flat[at] * (1.0 - frac) + flat[at + 1] * frac
    over = u > u_max  # the overload growth only where it applies (most lookups are below u_max)
    if over.any():
        with np.errstate(invalid="ignore"):
            out[over] = out[over] * overload_factor(u[over], u_max)
    out[np.isinf(u)] = np.inf
    return out


def _col(values: Sequence[float]) -> NDArray[np.float64]:
    return np.asarray(values, dtype=float)[:, None]


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

    pv = np.stack([s.prompt for s in sums])  # (J, M) atoms, ascending
    pw = np.stack([s.prompt_weight for s in sums])
    ov = np.stack([s.output for s in sums])
    ow = np.stack([s.output_weight for s in sums])
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

    self_ms = a + beta + delta * kv_mean
    dkv = _col([s.decode_prompt for s in sums]) + _col([s.decode_output for s in sums]) / 2.0

    def steady(lam: NDArray) -> dict[str, NDArray]:
        """The steady state at per-replica rate ``lam`` (req/ms): mean step, step-chain moments,
        running requests and KV tokens in use (a request runs for its prefill step(s), which carry
        the prompts batched with it, and then its decode steps)."""
        step = self_ms / (1.0 - lam * work)  # mean step a decoding request sees
        rho = lam * gam * ep
        c0 = step * (1.0 - rho)
        nu = lam * ep
        mu1 = step
        mu2 = (c0**2 + 2 * c0 * gam * nu * mu1 + gam**2 * lam * ep2 * mu1) / (1.0 - rho**2)
        first = c0 + gam * ep + rho * mu2 / mu1  # the step that prefills a request (with its batch)
        running = lam * (ek * first + eom * step)
        kv_used = lam * (first * ekp + step * dkv) + running * block / 2.0
        tokens = lam * step * (ep + eom)  # tokens scheduled per step
        return dict(step=step, rho=rho, c0=c0, nu=nu, mu1=mu1, mu2=mu2, first=first, running=running,
                    kv_used=kv_used, tokens=tokens)

    # capacity: the largest rate whose steady state fits max_num_seqs, the KV cache and the budget
    ceiling = 1.0 / work
    keys = ("running", "kv_used", "tokens")
    cap = np.concatenate([seqs, kv_cap, budget], axis=1)  # (J, 3): one bisection per limit, side by side
    lo, hi = np.zeros((ceiling.shape[0], 3)), np.repeat(ceiling * (1.0 - 1e-9), 3, axis=1)
    for _ in range(40):
        mid = (lo + hi) / 2.0
        st = steady(mid)
        ok = np.stack([st[key][:, i] for i, key in enumerate(keys)], axis=1) <= cap
        lo, hi = np.where(ok, mid, lo), np.where(ok, hi, mid)
    limits = lo
    lam_max = limits.min(axis=1, keepdims=True)  # req/ms per replica
    names = ("max_num_seqs", "kv_cache_tokens", "max_num_batched_tokens")
    binding = tuple(names[i] for i in np.argmin(limits, axis=1))

    lam = lam_max * U_GRID[None, :]  # (J, G)
    st = steady(lam)
    step, rho, c0, nu, mu1, mu2 = (st[k] for k in ("step", "rho", "c0", "nu", "mu1", "mu2"))
    per_step = lam * step
    decodes = per_step * eom
    dec_cap = seqs * eom / m
    budget_left = np.maximum(budget - np.minimum(decodes, dec_cap), 1.0)
    # The chain a waiting prompt sees: tokens beyond a step's budget spill into extra steps, each with its
    # own c₀, so a prompt token costs γ + s·c₀/B_left (s the spilled share) while prompts queue for it.
    spill = _spill_share(pv, pw, lam * mu1, budget_left)
    gv = gam + spill * c0 / budget_left
    rv = lam * gv * ep
    m1 = c0 / (1.0 - rv)
    m2 = (c0**2 + 2 * c0 * gv * nu * m1 + gv**2 * lam * ep2 * m1) / (1.0 - rv**2)
    mu3 = (c0**3 + 3 * c0**2 * gv * nu * m1 + 3 * c0 * gv**2 * (lam * ep2 * m1 + nu**2 * m2)
           + gv**3 * (lam * ep3 * m1 + 3 * lam * ep2 * nu * m2)) / (1.0 - rv**3)
    ts1, ts2 = m2 / m1, mu3 / m1  # length-biased step moments
    ev = ts1 * (0.5 + rv)
    ev2 = ts2 * (1.0 / 3.0 + rv + rv**2) + gv**2 * lam * ep2 * ts1
    # The chain steps all the time; a real engine idles when nobody is in it (M/G/∞ occupancy), and
    # then an arrival waits for no decode step. Only the decode-step share of V (c₀/2, c₀²/3 in a chain
    # without prefill) is scaled by the busy probability; waiting behind prompts is not.
    in_system = lam * (c0 + gam * ep + ev + eom * step)
    idle = np.exp(-in_system)
    ev = ev - idle * c0 / 2.0
    ev2 = ev2 - idle * c0**2 / 3.0
    theta1 = np.where(ev > 0, ev2 / (2.0 * np.maximum(ev, 1e-300)), 1.0)
    with np.errstate(divide="ignore", invalid="ignore"):
        f1 = np.where(ev > 0, np.minimum(1.0, ev / theta1), 0.0)

    # waiting for a slot or KV space: over-dispersed occupancy
    running, kv_used = st["running"], st["kv_used"]
    dispersion = (1.0 - lam * work) ** -DISPERSION_POWER
    residence = np.where(lam > 0, running / np.maximum(lam, 1e-300), ek * st["first"] + eom * step)
    p_slots = _gamma_sf(seqs, running, dispersion * running)
    kv_run = np.where(running > 0, kv_used / np.maximum(running, 1e-300), kv_mean)
    kv_var_total = dispersion * running * kv_run**2 + running * kv_var
    # an arrival is admitted only while its prompt's blocks are free: KV in use above K − P blocks it
    p_kv = _gamma_sf(kv_cap - ep, kv_used, kv_var_total)
    with np.errstate(divide="ignore", invalid="ignore"):
        theta_s = residence * dispersion**WAIT_POWER / np.maximum(seqs - running, 1e-9 * seqs)
        kv_slots = kv_cap / kv_run
        kv_disp = np.where(kv_used > 0, kv_var_total / (kv_used * kv_run), 1.0)
        theta_k = residence * kv_disp**KV_WAIT_POWER / np.maximum(kv_slots - running, 1e-9 * kv_slots)
    f2 = 1.0 - (1.0 - p_slots) * (1.0 - p_kv)
    theta2 = np.where(f2 > 1e-12, (p_slots * theta_s + p_kv * theta_k) / np.maximum(f2, 1e-300), theta1)
    f2 = np.where(f2 > 1e-12, f2, 0.0)
    theta2 = np.maximum(theta2, 1e-9)
    theta1 = np.maximum(theta1, 1e-9)

    front = _col([p.ttft_overhead_ms for p in profiles])[:, :, None]  # outside the engine (EngineProfile)
    own = gam[:, :, None] * pv[:, None, :] + np.ceil(pv / budget)[:, None, :] * c0[:, :, None] + front  # (J, G, M)
    ttft = _ttft_quantile(own, pw, f1, theta1, f2, theta2, tail)

    # ITL: step durations, including the echo of a request's own prefill step
    first_step = st["first"]
    r = rho[:, :, None]
    dec_atoms = (ov - 1.0)[:, None, :]
    with np.errstate(divide="ignore", invalid="ignore"):
        echo = (ow[:, None, :] * (1.0 - r**dec_atoms) / np.maximum(1.0 - r, 1e-12)).sum(-1)
        echo = np.where(eom > 0, echo / np.maximum(eom, 1e-12), 0.0)
    lam_itl = lam * (step + np.maximum(first_step - step, 0.0) * echo)
    # prompts per step: mixed Poisson over the previous step's length (negative binomial with the
    # chain's variance), their sum shaped like the prompt atoms; steps beyond the budget spill over
    var_step = np.maximum(mu2 - mu1**2, 0.0)
    itl_x = _prefill_quantile(pv, pw, ep, lam_itl, lam**2 * var_step, budget_left, 1.0 - tail)
    c0_itl = np.minimum(c0, a + beta * (1.0 + seqs) + delta * kv_cap)
    itl = c0_itl + gam * itl_x

    ttft = np.maximum.accumulate(ttft, axis=1)
    itl = np.maximum.accumulate(itl, axis=1)
    has_itl = (eom[:, 0] > 0) & (eom2[:, 0] > 0)
    tpot_inputs = (ov, ow, first_step, step, rho, c0_itl, gam, budget_left, var_step, beta, delta, kv_run, dispersion,
                   running, a, tail, itl)
    return LLMCurves(lam_max[:, 0] * 1000.0, ttft, itl, has_itl, binding, lambda: _tpot(*tpot_inputs))


def _tpot(
    ov: NDArray, ow: NDArray, first_step: NDArray, step: NDArray, rho: NDArray, c0_itl: NDArray, gam: NDArray,
    budget_left: NDArray, var_step: NDArray, beta: NDArray, delta: NDArray, kv_run: NDArray, dispersion: NDArray,
    running: NDArray, a: NDArray, tail: NDArray, itl: NDArray,
) -> NDArray[np.float64]:
    """TPOT percentiles (J, G) from the steady state ``_build`` found (``itl`` its final ITL curve)."""
    # TPOT: a request's mean gap over its n = O − 1 gaps, over the requests with n ≥ 1
    n = np.maximum(ov - 1.0, 1.0)[:, None, :]  # (J, 1, M)
    wn = np.where(ov > 1.0, ow, 0.0)
    wn = (wn / np.maximum(wn.sum(1, keepdims=True), 1e-300))[:, None, :]
    gain = np.maximum(first_step - step, 0.0)[:, :, None]
    r3 = rho[:, :, None]
    with np.errstate(divide="ignore", invalid="ignore"):
        echo_n = np.where(r3 > 1e-12, r3 * (1.0 - r3**n) / np.maximum(1.0 - r3, 1e-12) / n, 0.0)
    mean_n = step[:, :, None] + gain * echo_n
    step_cap = c0_itl + gam * budget_left
    var_capped = np.minimum(var_step, np.maximum(step_cap - step, 0.0) ** 2)
    kappa = (1.0 + rho) / np.maximum(1.0 - rho, 1e-6)
    slow = (beta + delta * kv_run) ** 2 * dispersion * running
    var_n = (var_capped * kappa)[:, :, None] / n + slow[:, :, None]
    floor = a + beta
    tpot = _gamma_mixture_quantile(mean_n - floor[:, :, None], var_n * TPOT_VAR, wn, tail) + floor
    return np.maximum.accumulate(np.minimum(tpot, itl), axis=1)


_SPILL_COUNTS = 7
"""Prompts per step counted in the spilled share (1 … 7, the last also standing for more): a step that
spills carries prompts that together exceed its budget, so few of them unless prompts are short."""


def _spill_share(pv: NDArray, pw: NDArray, per_step: NDArray, budget_left: NDArray) -> NDArray[np.float64]:
    """``E[(A − B_left)⁺]/E[A]`` (J, G): the share of the prompt tokens arriving during a step (``A``, compound
    Poisson with ``per_step`` prompts over the atoms ``pv``; ``k`` prompts carry ``k·E[P] + √k·(P − E[P])``)
    that the next step's budget ``B_left`` cannot take."""
    j, g = per_step.shape
    m = pv.shape[1]
    ep = (pw * pv).sum(1)[:, None]
    ks = np.arange(1, _SPILL_COUNTS + 1, dtype=float)
    log_n = np.log(np.maximum(per_step, 1e-300))[:, :, None]
    pk = np.exp(ks * log_n - per_step[:, :, None] - gammaln(ks + 1.0))  # Poisson, k ≥ 1 (J, G, K)
    pk[:, :, -1] += np.maximum(1.0 - np.exp(-per_step) - pk.sum(-1), 0.0)
    tokens = np.maximum(0.0, ks[:, None] * ep[:, :, None] + np.sqrt(ks)[:, None] * (pv - ep)[:, None, :])  # (J, K, M)
    excess = tokens[:, None, :, :] - budget_left[:, :, None, None]  # (J, G, K, M)
    np.maximum(excess, 0.0, out=excess)
    per_count = np.matmul(excess.reshape(j, -1, m), pw[:, :, None]).reshape(j, g, ks.size)  # E over the atoms
    spilled = (pk * per_count).sum(-1)
    return np.where(per_step > 0, spilled / np.maximum(per_step * ep, 1e-300), 0.0)


_MAX_PROMPTS = 5
"""Prompts per step counted one by one in the ITL model; more are one group (with their mean count)."""


def _prefill_quantile(
    pv: NDArray, pw: NDArray, ep: NDArray, mean_k: NDArray, extra_var_k: NDArray, budget_left: NDArray, level: NDArray
) -> NDArray[np.float64]:
    """Quantile at ``level`` of the prompt tokens one step carries, capped at ``budget_left`` (J, G).

    The number of prompts is negative binomial (mean ``mean_k``, variance ``mean_k + extra_var_k``); the sum
    of k prompts takes the values ``k·E[P] + √k·(P − E[P])`` over the prompt atoms ``pv`` (exact for k = 1
    and for a fixed prompt length). Chunks beyond the budget spill into the next steps as full steps.
    """
    j = mean_k.shape[0]
    ks = np.arange(1, _MAX_PROMPTS + 2, dtype=float)  # the last one stands for "more"
    # negative binomial pmf for k = 0 … K and the tail (Poisson when there is no extra variance)
    with np.errstate(divide="ignore", invalid="ignore"):
        over = extra_var_k > 1e-12 * np.maximum(mean_k, 1e-300)
        r = np.where(over, mean_k**2 / np.maximum(extra_var_k, 1e-300), np.inf)
    kk = np.arange(_MAX_PROMPTS + 1, dtype=float)[None, None, :]
    mu = mean_k[:, :, None]
    finite = np.isfinite(r)[:, :, None]
    rr = np.where(finite, r[:, :, None], 1.0)
    log_nb = (gammaln(kk + rr) - gammaln(rr) - gammaln(kk + 1) + rr * np.log(rr / (rr + mu))
              + kk * np.log(np.where(mu > 0, mu / (rr + mu), 1.0)))
    log_po = kk * np.log(np.where(mu > 0, mu, 1.0)) - mu - gammaln(kk + 1)
    pk = np.exp(np.where(finite, log_nb, log_po))
    pk = np.where(mu > 0, pk, (kk == 0).astype(float))
    more = np.maximum(1.0 - pk.sum(-1), 0.0)
    # "more than K" prompts: one row of atoms at a count per job above every grid point's typical count
    k_more = np.maximum(_MAX_PROMPTS + 1.0, (mean_k + np.sqrt(mean_k + extra_var_k)).max(axis=1))  # (J,)
    counts = np.concatenate([np.broadcast_to(ks[:-1], (j, _MAX_PROMPTS)), k_more[:, None]], axis=1)  # (J, K+1)
    values = np.maximum(0.0, counts[:, :, None] * ep[:, :, None] + np.sqrt(counts)[:, :, None] * (pv - ep)[:, None, :])
    values = values.reshape(j, -1)  # (J, A): atoms of every count, sorted once per job
    order = np.argsort(values, axis=1)
    m = pv.shape[1]
    sorted_vals = np.take_along_axis(values, order, axis=1)
    pw_sorted = np.take_along_axis(pw, order % m, axis=1)
    pk_rows = np.concatenate([pk[:, :, 1:], more[:, :, None]], axis=-1)  # (J, G, K+1)
    onehot = (order // m)[:, None, :] == np.arange(pk_rows.shape[2])[None, :, None]  # (J, K+1, A): count of atom a
    weights = np.matmul(pk_rows, onehot.astype(float)) * pw_sorted[:, None, :]  # (J, G, A), in value order
    bl = budget_left[:, :, None]
    spill = (weights * np.maximum(sorted_vals[:, None, :] - bl, 0.0)).sum(-1) / budget_left  # extra full steps
    # P(X ≤ x) over the sorted atoms; the spilled full steps lie at the cap
    total = pk[:, :, 0] + weights.sum(-1) + spill
    target = level * total  # (J, G)
    cdf = pk[:, :, :1] + np.cumsum(weights, axis=-1)
    idx = np.minimum((cdf < target[:, :, None] - 1e-12).sum(-1), sorted_vals.shape[1])
    padded = np.concatenate([sorted_vals, np.full((j, 1), np.inf)], axis=1)  # beyond the atoms: full steps
    q = padded[np.arange(j)[:, None], idx]
    q = np.where(pk[:, :, 0] >= target - 1e-12, 0.0, q)
    return np.minimum(q, budget_left)


TPOT_VAR = 2.0
_MIXTURE_STEPS = 12
"""Factor on the step-time variance a request's gaps see (the chain's variance misses the batch's own
slow swings and the lumpiness of one long step among few gaps); fitted against the simulator's TPOT."""


def _gamma_mixture_quantile(mean: NDArray, var: NDArray, weight: NDArray, tail: NDArray) -> NDArray[np.float64]:
    """Quantile at ``1 − tail`` of a mixture of gamma variables (J, G, M) with weights (J, 1, M), by
    bisection on the Wilson–Hilferty approximation of each component's CDF (normal in the cube root)."""
    mean = np.maximum(mean, 1e-9)
    var = np.maximum(var, 1e-12)
    c = var / (9.0 * mean**2)  # 1/(9·shape)
    # P(X > x) = ½·erfc(z/√2), z = ((x/mean)^{1/3} − (1 − c))/√c: only x^{1/3} changes between iterations
    scale = 1.0 / (np.cbrt(mean) * np.sqrt(2.0 * c))
    shift = (1.0 - c) / np.sqrt(2.0 * c)
    target = np.broadcast_to(tail, mean.shape[:2])
    # the mixture's quantile lies between its components' quantiles (Wilson–Hilferty inverse)
    z = np.sqrt(2.0) * erfcinv(2.0 * target)[:, :, None]
    comp = mean * np.maximum(1.0 - c + z * np.sqrt(c), 0.0) ** 3
    comp = np.where(weight > 0, comp, np.nan)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # no weighted component (no decode step): NaN, no ITL
        lo, hi = np.nanmin(comp, axis=-1), np.nanmax(comp, axis=-1)
    for _ in range(_MIXTURE_STEPS):
        mid = (lo + hi) / 2.0
        surv = (weight * erfc(np.cbrt(mid)[:, :, None] * scale - shift)).sum(-1) / 2.0
        above = surv > target
        lo = np.where(above, mid, lo)
        hi = np.where(above, hi, mid)
    return hi


def _ttft_quantile(
    own: NDArray, weight: NDArray, f1: NDArray, theta1: NDArray, f2: NDArray, theta2: NDArray, tail: NDArray
) -> NDArray[np.float64]:
    """Solve ``Σ_j w_j·P(own_j + V + W > t) = tail`` for t, with ``V = f₁·Exp(θ₁)``, ``W = f₂·Exp(θ₂)``.

    ``own`` (J, G, M) ascending along the atoms, ``weight`` (J, M), the rest (J, G), ``tail`` (J, 1).
    ``V + W`` has the survival ``A·e^{−x/θ₁} + C·e^{−x/θ₂}`` for x ≥ 0, so between two atoms the survival
    is a sum of two exponentials with coefficients from discounted prefix sums over the atoms passed:
    the segment holding the root is found from the values at the atoms, and the root within it by a
    few bracketed Newton steps — no search over t with every atom at every step.
    """
    j, g, m = own.shape
    th1 = np.maximum(theta1, 1e-9)
    th2 = np.maximum(theta2, 1e-9)
    th2 = np.where(np.abs(th1 - th2) < 1e-3 * th1, th1 * (1.0 + 1e-3), th2)  # distinct: closed form below
    d = th1 - th2
    coef1 = f1 * (1.0 - f2) + f1 * f2 * th1 / d
    coef2 = f2 * (1.0 - f1) - f1 * f2 * th2 / d
    w = np.broadcast_to(weight[:, None, :], own.shape)
    disc1 = np.empty(own.shape)
    disc2 = np.empty(own.shape)
    run1 = np.zeros((j, g))
    run2 = np.zeros((j, g))
    for k in range(m):  # Σ_{i ≤ k} w_i·e^{−(own_k − own_i)/θ}, never overflowing
        if k:
            gap = own[:, :, k] - own[:, :, k - 1]
            run1 = run1 * np.exp(-gap / th1)
            run2 = run2 * np.exp(-gap / th2)
        run1 = run1 + w[:, :, k]
        run2 = run2 + w[:, :, k]
        disc1[:, :, k] = run1
        disc2[:, :, k] = run2
    rest = w.sum(-1, keepdims=True) - np.cumsum(w, axis=-1)  # mass of the atoms not yet passed
    at = rest + coef1[:, :, None] * disc1 + coef2[:, :, None] * disc2  # survival just after each atom
    target = np.broadcast_to(tail, (j, g))
    k = (at > target[:, :, None]).sum(-1)  # the first atom after which the survival is ≤ tail
    kc = np.minimum(k, m - 1)

    def pick(arr: NDArray, idx: NDArray) -> NDArray:
        return np.take_along_axis(arr, idx[:, :, None], -1)[:, :, 0]

    left = pick(at, kc) + pick(w, kc) * (1.0 - coef1 - coef2)  # just before atom k
    on_atom = (k < m) & (left >= target)
    seg = np.maximum(np.where(k < m, k - 1, m - 1), 0)  # the root lies after atom ``seg``
    base = pick(own, seg)
    r = pick(rest, seg)
    c1 = coef1 * pick(disc1, seg)
    c2 = coef2 * pick(disc2, seg)
    seg_len = np.where(k < m, pick(own, kc) - base, np.inf)
    want = target - r
    top = np.maximum(th1, th2)
    x = np.maximum(top * np.log(np.maximum(c1 + c2, 1e-300) / np.maximum(want, 1e-300)), 0.0)
    lo = np.zeros((j, g))
    hi = np.minimum(seg_len, x * 4.0 + top * 50.0)
    for _ in range(_NEWTON_STEPS):
        e1, e2 = np.exp(-x / th1), np.exp(-x / th2)
        f = c1 * e1 + c2 * e2 - want
        lo = np.where(f > 0, x, lo)
        hi = np.where(f > 0, hi, x)
        slope = -(c1 * e1 / th1 + c2 * e2 / th2)
        with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
            newton = x - f / slope
        x = np.where((slope < 0) & (newton > lo) & (newton < hi), newton, (lo + hi) / 2.0)
    return np.where(on_atom, pick(own, kc), base + x)


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


def llm_predict(
    profile: EngineProfile,
    token_mix: TokenMix,
    rate_rps: ArrayLike,
    replicas: ArrayLike = 1,
    *,
    percentile: float = 99.0,
    u_max: float = U_MAX,
) -> LLMLatency:
    """TTFT, ITL and TPOT percentiles (ms) of one job at total ``rate_rps`` over ``replicas`` (broadcast)."""
    curves = LLMCurves.build([profile], [token_mix], percentile)
    lam, c = np.broadcast_arrays(np.asarray(rate_rps, dtype=float), np.asarray(replicas, dtype=float))
    p = curves.predict(lam[None, ...], c[None, ...], u_max=u_max)
    return LLMLatency(ttft_ms=p.ttft_ms[0], itl_ms=p.itl_ms[0], tpot_ms=p.tpot_ms[0])


def llm_latency_ms(
    profile: EngineProfile,
    token_mix: TokenMix,
    rate_rps: ArrayLike,
    replicas: ArrayLike = 1,
    *,
    percentile: float = 99.0,
    u_max: float = U_MAX,
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """TTFT and per-gap ITL percentiles (ms) of one job at total ``rate_rps`` over ``replicas`` (broadcast).

    The single-job entry point (calibration checks, tests, baselines): ``llm_latency_ms(profile, mix,
    [1, 2, 4], 1)`` gives the p99 TTFT and ITL of one replica at 1, 2 and 4 req/s.
    """
    p = llm_predict(profile, token_mix, rate_rps, replicas, percentile=percentile, u_max=u_max)
    return p.ttft_ms, p.itl_ms
