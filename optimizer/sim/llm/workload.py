"""LLM workloads: request traces with token counts, illustrative engine profiles, multi-model workloads.

Called by the LLM cluster simulator (``cluster.py``), ``faro simulate --workload llm`` and
``bench/llm.py``. Pure apart from reading the bundled CSVs through ``importlib.resources`` (as
``optimizer/sim/workload.py`` does for the CPU traces).

Traces (``faro.traces/llm``): one production hour each of two Azure LLM inference services
(2023-11-16), one row per request ``TIMESTAMP,ContextTokens,GeneratedTokens`` — Azure Public Dataset,
"Azure LLM inference trace 2023" (Patel et al., Splitwise, ISCA 2024), CC-BY 4.0.

A multi-model workload (``build_workload``) gives each model a trace, an engine profile, SLOs, a load
scale and a time shift. Time shift: the trace hour is rotated by ``shift_s`` (circularly), so models
peak at different times. Load scale ``k``: every request of the trace is kept ``⌊k⌋`` times plus once
more with probability ``k − ⌊k⌋`` (so ``k < 1`` thins the real trace and keeps its bursts); each copy
beyond the first is moved by a uniform offset within ±``jitter_s`` (30 s) so copies do not arrive in
lockstep, keeping its token counts. Per-minute shape and token mix are kept; the seed fixes the draw.

Past load: the traces are one hour long and there is no honest earlier hour to show forecasters (a
slice of the same hour shown as days of "history" would leak the test hour). The bundled workload
therefore has no history: forecasters see only the minutes simulated so far, starting with a 10-minute
warm-up (the hour's last 10 minutes, which the circular rotation joins seamlessly to its start) that the
scores leave out, so that no policy is judged on the common starting allocation. ``LLMWorkload.history_rpm``
can carry real history when a longer trace is used.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
from faro.optimizer.errors import InvalidInputError
from faro.optimizer.model.llm_profile import LLMSLO, EngineProfile
from numpy.typing import NDArray

TRACE_FILES = {"code": "azure-llm-2023-code.csv", "conv": "azure-llm-2023-conv.csv"}
TRACE_HOUR_S = 3600.0

# Illustrative engine profiles (see docs/llm.md for the derivation and sources). Decode: Llama-3.1-8B's
# ITL = α + β·batch with α ≈ 6.97 ms, β ≈ 0.027 ms from llm-d WVA's parameter-estimation tutorial (vLLM,
# 128/128 tokens); other GPUs and the 70B model scale α by weight bytes per GPU over memory bandwidth
# (70% of peak), β likewise. Prefill: 2 × parameters FLOPs per token at 50% of the GPU's dense BF16 peak.
# Context: KV bytes per token (8B: 32 layers × 8 KV heads × 128 × 2 × 2 B = 128 KiB; 70B: 80 layers →
# 320 KiB) read at 70% of memory bandwidth. KV capacity: 90% of GPU memory minus weights and ~4 GB of
# activations per GPU, over KV bytes per token. Batch limits: vLLM's OpenAI-server defaults
# (EngineArgs.get_batch_defaults: ≥ 70 GiB and not A100 → 8192 tokens / 1024 seqs, else 2048 / 256).
# Model load: WVA documents 2–7 minutes from pod creation to ready.
PROFILES: dict[str, EngineProfile] = {
    "llama-3.1-8b/h100": EngineProfile(
        step_base_ms=7.0, decode_ms_per_seq=0.027, prefill_ms_per_token=0.032, context_ms_per_token=5.6e-5,
        kv_cache_tokens=395_000, max_num_seqs=1024, max_num_batched_tokens=8192, gpus=1.0, model_load_s=120.0,
    ),
    "llama-3.1-8b/a100": EngineProfile(
        step_base_ms=11.2, decode_ms_per_seq=0.044, prefill_ms_per_token=0.103, context_ms_per_token=9.2e-5,
        kv_cache_tokens=395_000, max_num_seqs=256, max_num_batched_tokens=2048, gpus=1.0, model_load_s=120.0,
    ),
    "llama-3.1-8b/l40s": EngineProfile(
        step_base_ms=26.6, decode_ms_per_seq=0.105, prefill_ms_per_token=0.089, context_ms_per_token=2.17e-4,
        kv_cache_tokens=183_000, max_num_seqs=256, max_num_batched_tokens=2048, gpus=1.0, model_load_s=150.0,
    ),
    "llama-3.1-70b/h100x4": EngineProfile(
        step_base_ms=17.0, decode_ms_per_seq=0.06, prefill_ms_per_token=0.0713, context_ms_per_token=3.5e-5,
        kv_cache_tokens=399_000, max_num_seqs=1024, max_num_batched_tokens=8192, gpus=4.0, model_load_s=300.0,
    ),
}


@dataclass(frozen=True, eq=False)
class LLMTrace:
    """Requests of one service: arrival (s from the first request), prompt and output tokens."""

    name: str
    arrival_s: NDArray[np.float64]
    prompt_tokens: NDArray[np.int64]
    output_tokens: NDArray[np.int64]

    def __len__(self) -> int:
        return int(self.arrival_s.size)


def parse_llm_trace_csv(text: str, *, source: str = "trace") -> LLMTrace:
    """A CSV ``TIMESTAMP,ContextTokens,GeneratedTokens`` (ISO timestamps, any order) → a trace from 0 s."""
    rows = [r for r in csv.reader(io.StringIO(text)) if r and any(c.strip() for c in r)]
    if len(rows) < 2:
        raise InvalidInputError(source, "needs a header row and at least one request")
    header = [h.strip() for h in rows[0]]
    want = ["TIMESTAMP", "ContextTokens", "GeneratedTokens"]
    if header != want:
        raise InvalidInputError(f"{source} header", f"must be {','.join(want)}, got {','.join(header)}")
    times = np.empty(len(rows) - 1)
    prompt = np.empty(len(rows) - 1, dtype=np.int64)
    output = np.empty(len(rows) - 1, dtype=np.int64)
    for i, row in enumerate(rows[1:]):
        where = f"{source} line {i + 2}"
        if len(row) != 3:
            raise InvalidInputError(where, f"has {len(row)} fields, expected 3")
        try:
            stamp = row[0].strip()
            head, _, frac = stamp.partition(".")
            whole = datetime.fromisoformat(head).replace(tzinfo=UTC).timestamp()
            times[i] = whole + (float(f"0.{frac}") if frac else 0.0)
        except ValueError:
            raise InvalidInputError(f"{where} TIMESTAMP", f"not an ISO timestamp: {row[0]!r}") from None
        for col, value, name in ((prompt, row[1], "ContextTokens"), (output, row[2], "GeneratedTokens")):
            try:
                col[i] = int(value)
            except ValueError:
                raise InvalidInputError(f"{where} {name}", f"not an integer: {value!r}") from None
            if col[i] < 0:
                raise InvalidInputError(f"{where} {name}", f"must be >= 0, got {value}")
    order = np.argsort(times, kind="stable")
    times = times[order] - times[order][0]
    return LLMTrace(name=source, arrival_s=times, prompt_tokens=prompt[order], output_tokens=output[order])


def load_llm_trace(name_or_path: str) -> LLMTrace:
    """The bundled ``code`` or ``conv`` trace, or a CSV file in the same format."""
    if name_or_path in TRACE_FILES:
        from importlib.resources import files

        fname = TRACE_FILES[name_or_path]
        trace = parse_llm_trace_csv((files("faro.traces") / "llm" / fname).read_text(), source=fname)
        return LLMTrace(name_or_path, trace.arrival_s, trace.prompt_tokens, trace.output_tokens)
    path = Path(name_or_path)
    try:
        text = path.read_text()
    except OSError as exc:
        raise InvalidInputError(f"trace {path}", f"cannot read: {exc.strerror or exc}") from None
    return parse_llm_trace_csv(text, source=str(path))


@dataclass(frozen=True)
class ModelSpec:
    """One model (one Deployment) of a workload: which trace drives it, its engine, SLOs and load.

    ``trace``: ``code``, ``conv`` or a CSV path; ``profile``: a ``PROFILES`` key or an ``EngineProfile``;
    ``load_scale``: request-rate multiplier; ``shift_s``: rotation of the trace hour;
    ``max_num_batched_tokens``: the deployment's ``--max-num-batched-tokens`` when it differs from the
    profile's (operators lower it so a step carrying a full prefill chunk stays under the ITL SLO).
    """

    name: str
    trace: str
    profile: EngineProfile | str
    slo: LLMSLO
    load_scale: float = 1.0
    shift_s: float = 0.0
    namespace: str = "default"
    min_replicas: int = 1
    max_replicas: int = 64
    max_num_batched_tokens: int | None = None

    def __post_init__(self) -> None:
        if isinstance(self.profile, str) and self.profile not in PROFILES:
            known = ", ".join(PROFILES)
            raise InvalidInputError(f"model {self.name}.profile", f"unknown {self.profile!r}; known: {known}")
        if not (self.load_scale > 0 and np.isfinite(self.load_scale)):
            raise InvalidInputError(f"model {self.name}.load_scale", f"must be > 0, got {self.load_scale!r}")
        if not 0 <= self.min_replicas <= self.max_replicas:
            raise InvalidInputError(f"model {self.name}.replicas", "need 0 <= min_replicas <= max_replicas")

    @property
    def engine(self) -> EngineProfile:
        base = PROFILES[self.profile] if isinstance(self.profile, str) else self.profile
        if self.max_num_batched_tokens is None:
            return base
        return replace(base, max_num_batched_tokens=self.max_num_batched_tokens)

    @property
    def profile_name(self) -> str:
        name = self.profile if isinstance(self.profile, str) else "custom"
        return name if self.max_num_batched_tokens is None else f"{name}, {self.max_num_batched_tokens} tokens/step"


@dataclass(frozen=True, eq=False)
class LLMWorkload:
    """Models and their requests (``arrival_s[j]`` sorted, with ``prompt_tokens[j]``/``output_tokens[j]``)
    over ``duration_s``; ``history_rpm[j]`` per-minute arrivals before time 0 (None = none). The first
    ``warmup_s`` are a warm-up the scores leave out (a whole number of minutes)."""

    models: tuple[ModelSpec, ...]
    arrival_s: tuple[NDArray[np.float64], ...]
    prompt_tokens: tuple[NDArray[np.int64], ...]
    output_tokens: tuple[NDArray[np.int64], ...]
    duration_s: float
    history_rpm: NDArray[np.float64] | None = None
    description: str = field(default="")
    warmup_s: float = 0.0

    def __post_init__(self) -> None:
        n = len(self.models)
        if not (0 <= self.warmup_s < self.duration_s and float(self.warmup_s / 60.0).is_integer()):
            raise InvalidInputError("workload.warmup_s", f"must be whole minutes within the run, got {self.warmup_s}")
        if not (len(self.arrival_s) == len(self.prompt_tokens) == len(self.output_tokens) == n):
            raise InvalidInputError("workload", "one request array per model")
        if len({m.name for m in self.models}) != n:
            raise InvalidInputError("workload.models", "model names must be unique")

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(m.name for m in self.models)

    @property
    def num_minutes(self) -> int:
        return int(np.ceil(self.duration_s / 60.0 - 1e-9))

    @property
    def counts_rpm(self) -> NDArray[np.int64]:
        """Arrivals per model and minute."""
        out = np.zeros((len(self.models), self.num_minutes), dtype=np.int64)
        for j, arr in enumerate(self.arrival_s):
            m = np.minimum((arr // 60.0).astype(np.int64), self.num_minutes - 1)
            out[j] = np.bincount(m, minlength=self.num_minutes)
        return out

    @property
    def total_requests(self) -> int:
        return int(sum(a.size for a in self.arrival_s))

    def head(self, minutes: float) -> LLMWorkload:
        """The first ``minutes`` of the workload."""
        end = minutes * 60.0
        cut = [int(np.searchsorted(a, end, side="left")) for a in self.arrival_s]
        return LLMWorkload(
            models=self.models,
            arrival_s=tuple(a[:c] for a, c in zip(self.arrival_s, cut, strict=True)),
            prompt_tokens=tuple(p[:c] for p, c in zip(self.prompt_tokens, cut, strict=True)),
            output_tokens=tuple(o[:c] for o, c in zip(self.output_tokens, cut, strict=True)),
            duration_s=min(self.duration_s, end),
            history_rpm=self.history_rpm,
            description=self.description,
            warmup_s=min(self.warmup_s, max(0.0, (minutes - 1) * 60.0)),
        )


def scale_and_shift(
    trace: LLMTrace, *, load_scale: float, shift_s: float, rng: np.random.Generator,
    duration_s: float = TRACE_HOUR_S, jitter_s: float = 30.0,
) -> tuple[NDArray[np.float64], NDArray[np.int64], NDArray[np.int64]]:
    """The trace's requests rotated by ``shift_s`` within ``duration_s`` and scaled to ``load_scale``
    (see the module docstring); sorted by arrival. A trace that ends before ``duration_s`` is first
    stretched to fill it (its span plus one mean gap becomes ``duration_s``), so the rotation leaves no
    empty stretch where the recording stopped."""
    arr = trace.arrival_s[trace.arrival_s < duration_s]
    n = arr.size
    prompt, output = trace.prompt_tokens[:n], trace.output_tokens[:n]
    if n > 1:
        arr = arr * (duration_s / (arr[-1] * n / (n - 1)))
    whole = int(np.floor(load_scale))
    copies = np.full(n, whole, dtype=np.int64) + (rng.random(n) < load_scale - whole)
    idx = np.repeat(np.arange(n), copies)
    # the first copy of each request keeps its time; further copies move by ±jitter_s
    first = np.zeros(idx.size, dtype=bool)
    starts = np.cumsum(copies) - copies
    first[starts[copies > 0]] = True
    times = arr[idx] + np.where(first, 0.0, rng.uniform(-jitter_s, jitter_s, idx.size))
    times = np.mod(times + shift_s, duration_s)
    order = np.argsort(times, kind="stable")
    return times[order], prompt[idx][order], output[idx][order]


def build_workload(
    models: Sequence[ModelSpec], *, seed: int = 0, duration_s: float = TRACE_HOUR_S, jitter_s: float = 30.0,
    traces: dict[str, LLMTrace] | None = None, description: str = "", warmup_s: float = 0.0,
) -> LLMWorkload:
    """Requests for every model from its trace, scaled and shifted (seeded; see the module docstring).

    ``warmup_s`` > 0 puts the last ``warmup_s`` of each model's (rotated) hour in front of it as a warm-up
    — the rotation makes the hour circular, so the warm-up runs into the hour seamlessly — and the
    workload lasts ``warmup_s + duration_s``; scores leave the warm-up out.
    """
    if not models:
        raise InvalidInputError("workload.models", "needs at least one model")
    cache = dict(traces or {})
    root = np.random.default_rng(seed)
    seeds = root.integers(0, 2**63 - 1, size=len(models))
    arrs, prompts, outputs = [], [], []
    for m, s in zip(models, seeds, strict=True):
        if m.trace not in cache:
            cache[m.trace] = load_llm_trace(m.trace)
        a, p, o = scale_and_shift(
            cache[m.trace], load_scale=m.load_scale, shift_s=m.shift_s, rng=np.random.default_rng(s),
            duration_s=duration_s, jitter_s=jitter_s,
        )
        if warmup_s > 0:
            tail = a >= duration_s - warmup_s
            a = np.concatenate([a[tail] - (duration_s - warmup_s), a + warmup_s])
            p = np.concatenate([p[tail], p])
            o = np.concatenate([o[tail], o])
        arrs.append(a)
        prompts.append(p)
        outputs.append(o)
    return LLMWorkload(
        models=tuple(models), arrival_s=tuple(arrs), prompt_tokens=tuple(prompts), output_tokens=tuple(outputs),
        duration_s=duration_s + warmup_s, description=description, warmup_s=warmup_s,
    )


BUNDLED_MODELS: tuple[ModelSpec, ...] = (
    # Two 70B chat services whose conversation loads peak half an hour apart, an 8B chat model and an 8B
    # code-completion model on the bursty code trace; all on H100s, so one GPU cap is meaningful. SLOs at
    # p99: TTFT and ITL as MLPerf's Llama-2-70B server scenario (2 s, 200 ms) tightened to interactive
    # use (100 ms for 70B; 1 s and 50 ms for the 8B models). Each deployment lowers
    # --max-num-batched-tokens to 1024 so that a step carrying a full prefill chunk (70B: 17 + 0.0713·1024
    # ≈ 90 ms; 8B: 7 + 0.032·1024 ≈ 40 ms) stays under its ITL SLO, as vLLM's tuning guide advises.
    ModelSpec("chat-70b", "conv", "llama-3.1-70b/h100x4", LLMSLO(ttft_ms=2000, itl_ms=100), load_scale=2.0,
              max_num_batched_tokens=1024),
    ModelSpec("assist-70b", "conv", "llama-3.1-70b/h100x4", LLMSLO(ttft_ms=2000, itl_ms=100), load_scale=1.0,
              shift_s=1800.0, max_num_batched_tokens=1024),
    ModelSpec("chat-8b", "conv", "llama-3.1-8b/h100", LLMSLO(ttft_ms=1000, itl_ms=50), load_scale=3.0, shift_s=900.0,
              max_num_batched_tokens=1024),
    ModelSpec("code-8b", "code", "llama-3.1-8b/h100", LLMSLO(ttft_ms=1000, itl_ms=50), load_scale=1.5,
              shift_s=2400.0, max_num_batched_tokens=1024),
)
"""The bundled multi-model LLM workload (``faro simulate --workload llm``, ``bench/llm.py``)."""


BUNDLED_WARMUP_S = 600.0
"""Ten minutes for every policy to move away from the common starting allocation before scoring."""


def bundled_workload(*, seed: int = 0, warmup_s: float = BUNDLED_WARMUP_S) -> LLMWorkload:
    """``BUNDLED_MODELS`` on one hour of the bundled traces after a warm-up (no history before it: see the
    module docstring)."""
    return build_workload(BUNDLED_MODELS, seed=seed, warmup_s=warmup_s,
                          description="bundled: 2×70B + 2×8B on H100, Azure LLM 2023")
