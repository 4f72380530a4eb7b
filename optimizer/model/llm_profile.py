"""What an LLM job declares and what is observed of it: TTFT/ITL SLOs, an engine profile, a token mix.

Shared by the continuous-batching latency model (``optimizer/model``), the token-level simulator
(``optimizer/sim``), the annotation parser (``optimizer/kube``) and the vLLM profile calibration
(``optimizer/metrics``). Pure values; validated on construction so every consumer can trust them.

Notes
-----
One engine step of a replica (vLLM V1's scheduler: one decode token for every running request plus
prefill chunks of waiting requests within ``max_num_batched_tokens``) is modelled as taking

    step_ms = step_base_ms + decode_ms_per_seq · decode_seqs + prefill_ms_per_token · prefill_tokens
              + context_ms_per_token · context_tokens

where ``decode_seqs`` is the number of running requests that emit a token in the step,
``prefill_tokens`` the prompt tokens prefilled in it and ``context_tokens`` the KV tokens the step
attends over (0 by default: on short contexts attention is a small share of the step). A prompt of
``n`` tokens prefilled alone therefore takes ``step_base_ms + prefill_ms_per_token · n`` (the
"prefill_ms = c + d·prompt_tokens" profile) and a decode-only step with batch ``b`` takes
``step_base_ms + decode_ms_per_seq · b`` (llm-d WVA's ``ITL = α + β·batch``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
from faro.optimizer.errors import InvalidInputError
from numpy.typing import ArrayLike, NDArray

if TYPE_CHECKING:
    from faro.optimizer.model.profile_fit import StepWindows


def _positive(where: str, value: float, *, allow_zero: bool = False) -> None:
    ok = math.isfinite(value) and (value >= 0 if allow_zero else value > 0)
    if not ok:
        kind = "non-negative" if allow_zero else "positive"
        raise InvalidInputError(where, f"must be a {kind} number, got {value!r}")


@dataclass(frozen=True)
class LLMSLO:
    """Time-to-first-token and/or inter-token latency objectives at one percentile.

    ``ttft_ms``: the ``percentile``-th TTFT (queueing + prefill) must stay at or below it.
    ``itl_ms``: the ``percentile``-th gap between consecutive output tokens must stay at or below it (the
    gaps vLLM's ``vllm:inter_token_latency_seconds`` histogram counts; the planner plans for it). Per
    request, the simulator counts a request as meeting it when its TPOT — its mean gap — does.
    At least one is set; a job's utility is the min of the relaxed utilities of the declared ones.
    """

    ttft_ms: float | None = None
    itl_ms: float | None = None
    percentile: float = 99.0

    def __post_init__(self) -> None:
        if self.ttft_ms is None and self.itl_ms is None:
            raise InvalidInputError("slo", "declare ttft_ms, itl_ms or both")
        if self.ttft_ms is not None:
            _positive("slo.ttft_ms", self.ttft_ms)
        if self.itl_ms is not None:
            _positive("slo.itl_ms", self.itl_ms)
        if not 0 < self.percentile < 100:
            raise InvalidInputError("slo.percentile", f"must be in (0, 100), got {self.percentile!r}")


@dataclass(frozen=True)
class EngineProfile:
    """How fast one replica's engine is, and its limits (see the module Notes for the step model).

    ``max_num_seqs``: most running requests (vLLM ``--max-num-seqs``).
    ``max_num_batched_tokens``: token budget of one step, decode tokens included (chunked prefill).
    ``kv_cache_tokens``: KV-cache capacity of the replica in tokens (blocks × ``block_size_tokens``).
    ``gpus``: ``nvidia.com/gpu`` requested per replica (tensor parallelism > 1 means > 1).
    ``model_load_s``: from pod creation to serving (image pull, weights, warm-up).
    ``ttft_overhead_ms``: time every request spends outside the engine's steps before its first token
    (the API server's request processing and hand-off to the engine, the output's way back), added to
    TTFT as a constant; calibrated from vLLM's metrics (``profile_fit``), 0 = none.
    """

    step_base_ms: float
    decode_ms_per_seq: float
    prefill_ms_per_token: float
    kv_cache_tokens: int
    context_ms_per_token: float = 0.0
    max_num_seqs: int = 256
    max_num_batched_tokens: int = 8192
    block_size_tokens: int = 16
    gpus: float = 1.0
    model_load_s: float = 120.0
    ttft_overhead_ms: float = 0.0

    def __post_init__(self) -> None:
        _positive("profile.step_base_ms", self.step_base_ms)
        _positive("profile.decode_ms_per_seq", self.decode_ms_per_seq, allow_zero=True)
        _positive("profile.prefill_ms_per_token", self.prefill_ms_per_token, allow_zero=True)
        _positive("profile.context_ms_per_token", self.context_ms_per_token, allow_zero=True)
        _positive("profile.gpus", self.gpus, allow_zero=True)
        _positive("profile.model_load_s", self.model_load_s, allow_zero=True)
        _positive("profile.ttft_overhead_ms", self.ttft_overhead_ms, allow_zero=True)
        for name in ("kv_cache_tokens", "max_num_seqs", "max_num_batched_tokens", "block_size_tokens"):
            value = getattr(self, name)
            if not (isinstance(value, int | np.integer) and value > 0):
                raise InvalidInputError(f"profile.{name}", f"must be a positive integer, got {value!r}")
        if self.max_num_batched_tokens < self.max_num_seqs:
            raise InvalidInputError(
                "profile.max_num_batched_tokens",
                f"{self.max_num_batched_tokens} is below max_num_seqs {self.max_num_seqs}: "
                "a full batch could not decode",
            )

    def step_ms(
        self, decode_seqs: ArrayLike, prefill_tokens: ArrayLike = 0, context_tokens: ArrayLike = 0
    ) -> NDArray[np.float64]:
        """Duration of one engine step (ms), broadcast over the arguments."""
        return (
            self.step_base_ms
            + self.decode_ms_per_seq * np.asarray(decode_seqs, dtype=float)
            + self.prefill_ms_per_token * np.asarray(prefill_tokens, dtype=float)
            + self.context_ms_per_token * np.asarray(context_tokens, dtype=float)
        )


@dataclass(frozen=True, eq=False)
class TokenMix:
    """Observed prompt and output lengths of a job's requests (paired samples, in tokens).

    Built from a trace, from the simulator's recent requests, or from vLLM's
    ``vllm:request_prompt_tokens`` / ``vllm:request_generation_tokens`` histograms (samples drawn at
    bucket midpoints). ``output_tokens`` ≥ 1: every request emits at least its first token.
    """

    prompt_tokens: NDArray[np.float64]
    output_tokens: NDArray[np.float64]

    def __post_init__(self) -> None:
        prompt = np.asarray(self.prompt_tokens, dtype=float).ravel()
        output = np.asarray(self.output_tokens, dtype=float).ravel()
        if prompt.size == 0 or prompt.shape != output.shape:
            raise InvalidInputError("token_mix", "needs the same number (> 0) of prompt and output samples")
        if not (np.all(np.isfinite(prompt)) and np.all(prompt >= 0)):
            raise InvalidInputError("token_mix.prompt_tokens", "must be finite and >= 0")
        if not (np.all(np.isfinite(output)) and np.all(output >= 1)):
            raise InvalidInputError("token_mix.output_tokens", "must be finite and >= 1")
        object.__setattr__(self, "prompt_tokens", prompt)
        object.__setattr__(self, "output_tokens", output)

    @classmethod
    def fixed(cls, prompt_tokens: float, output_tokens: float) -> TokenMix:
        """Every request alike (tests, declared problems)."""
        return cls(np.array([float(prompt_tokens)]), np.array([float(output_tokens)]))

    @property
    def mean_prompt_tokens(self) -> float:
        return float(self.prompt_tokens.mean())

    @property
    def mean_output_tokens(self) -> float:
        return float(self.output_tokens.mean())


@dataclass(frozen=True)
class LLMSpec:
    """The declared side of an LLM job: its SLOs and the engine profile of one replica.

    ``token_mix`` (optional) is a declared request mix to plan for until one is observed (workload
    definitions, problem files); the live path observes it instead.
    """

    slo: LLMSLO
    profile: EngineProfile
    token_mix: TokenMix | None = None


@dataclass(frozen=True)
class LLMObservation:
    """What was measured of an LLM job over the last reactive window (None = no data).

    Latencies are at the SLO percentile; ``kv_cache_usage`` is the mean fraction (0–1) of KV blocks in
    use across ready replicas; ``num_waiting``/``num_running`` are totals over the job's replicas
    (vLLM's ``vllm:num_requests_waiting`` / ``vllm:num_requests_running``); ``token_mix`` holds
    recent requests' prompt/output lengths. ``replica_kv_cache_usage``/``replica_num_waiting`` hold, per
    ready replica, the largest KV use (0–1) and waiting count over the window (what llm-d's WVA reads
    with ``max_over_time(...[1m])``); empty = not measured. ``windows``: per-window step and prefill measurements the
    engine profile is calibrated from (``optimizer/model/profile_fit.py``; None = not measured).
    ``itl_ms`` is the gaps' percentile (``vllm:inter_token_latency_seconds``), the one the ITL SLO is on;
    ``tpot_ms`` the percentile of requests' time per output token
    (``vllm:request_time_per_output_token_seconds``), for information.
    """

    ttft_ms: float | None = None
    itl_ms: float | None = None
    kv_cache_usage: float | None = None
    num_waiting: float | None = None
    num_running: float | None = None
    token_mix: TokenMix | None = None
    replica_kv_cache_usage: tuple[float, ...] = ()
    replica_num_waiting: tuple[float, ...] = ()
    windows: StepWindows | None = None
    tpot_ms: float | None = None
