"""vLLM specifics of the Prometheus source: the calibration range query, KV capacity, token mixes.

Used by ``PrometheusSource`` (``prometheus.py``) for Deployments whose preset has calibration
templates (the ``vllm`` preset): once per cycle it asks ``calibration_expr`` as one range query
(every series tagged with a ``faro_series`` label, joined with ``or``) over the last
``span_s`` at ``step_s`` steps, each step being one window, and turns the answer into the
``StepWindows`` that ``optimizer/model/profile_fit.py`` fits (``Calibrator``: the calibrated
``EngineProfile`` in ``JobMetrics.llm_profile``). Histogram buckets of the token-mix quantities
become a ``TokenMix`` here too.
"""

from __future__ import annotations

import logging
import math
import threading
from collections.abc import Mapping, Sequence

import numpy as np
from faro.optimizer.metrics.base import DeploymentRef
from faro.optimizer.model.llm_profile import EngineProfile, TokenMix
from faro.optimizer.model.profile_fit import StepFit, StepWindows, fit_step_profile

log = logging.getLogger(__name__)

SELECTOR = 'namespace="${namespace}",model_name="${model}"'
"""How the ``vllm`` preset finds a Deployment's series: namespace + vLLM's ``model_name`` label."""
_SEL = SELECTOR


def _inc(metric: str, old: str | None = None) -> str:
    expr = f"increase({metric}{{{_SEL}}}[${{window}}])"
    if old is not None:
        expr += f" or increase({old}{{{_SEL}}}[${{window}}])"
    return f"sum({expr})"


def _mean_ms(metric: str, old: str | None = None) -> str:
    return f"1000 * {_inc(metric + '_sum', old and old + '_sum')} / {_inc(metric + '_count', old and old + '_count')}"


CALIBRATION_SERIES: Mapping[str, str] = {
    "itl_ms": _mean_ms("vllm:inter_token_latency_seconds", "vllm:time_per_output_token_seconds"),
    "itl_tokens": _inc("vllm:inter_token_latency_seconds_count", "vllm:time_per_output_token_seconds_count"),
    "batch": f"avg(avg_over_time(vllm:num_requests_running{{{_SEL}}}[${{window}}]))",
    "prefill_per_step": f"{_inc('vllm:prompt_tokens_total')} / {_inc('vllm:iteration_tokens_total_count')}",
    "prefill_ms": _mean_ms("vllm:request_prefill_time_seconds"),
    "prefill_requests": _inc("vllm:request_prefill_time_seconds_count"),
    "prompt_tokens": f"{_inc('vllm:request_prompt_tokens_sum')} / {_inc('vllm:request_prompt_tokens_count')}",
    "ttft_ms": _mean_ms("vllm:time_to_first_token_seconds"),
    "queue_ms": _mean_ms("vllm:request_queue_time_seconds"),
}
"""One template per ``StepWindows`` field: its value over one window (``${window}`` = the step)."""

DEPRECATED = ("vllm:time_per_output_token_seconds", "vllm:gpu_cache_usage_perc")
"""Older names the templates fall back to (vLLM ≤ 0.10 exported them); current servers do not."""

CACHE_CONFIG = (
    'vllm:cache_config_info{namespace="${namespace}"}'
    f" and on (instance) vllm:num_requests_running{{{_SEL}}}"
)
"""Info gauge whose labels carry the KV cache size (``num_gpu_blocks`` × ``block_size``). It has no
``model_name`` label, so the Deployment's servers are found by ``instance`` (the scrape target,
which Prometheus adds to every series) through a series that has it."""

SERIES_LABEL = "faro_series"

BATCH_BY = ("namespace", "model_name")
"""Labels a fleet-wide (batched) query groups by: a vLLM Deployment is its namespace's ``model_name``."""

BATCH_CACHE_CONFIG = (
    "vllm:cache_config_info{${scope}} * on (instance) group_left (model_name) "
    "(0 * max by (instance, model_name) (vllm:num_requests_running{${scope}}) + 1)"
)
"""``CACHE_CONFIG`` for every Deployment at once: each server's info series gains its ``model_name``
from a series of the same scrape target (one server serves one model), value 1."""


def batch_template(text: str) -> str:
    """The fleet-wide form of a ``vllm`` preset (or calibration) template: the Deployment's selector
    becomes the batch's ``${scope}`` and every aggregation also keeps ``namespace`` and ``model_name``,
    so one query answers for every Deployment and is split by those labels (``prometheus.py``)."""
    by = ", ".join(BATCH_BY)
    out = (text.replace(_SEL, "${scope}").replace("sum by (le)", f"sum by ({by}, le)")
           .replace("sum(", f"sum by ({by}) (").replace("avg(", f"avg by ({by}) ("))
    if "${namespace}" in out or "${model}" in out or "${scope}" not in out:
        raise ValueError(f"not a vllm preset template: {text}")
    return out


def calibration_expr(rendered: Mapping[str, str]) -> str:
    """One expression answering every rendered series at once, each tagged ``faro_series=<name>``."""
    return " or ".join(f'label_replace({expr}, "{SERIES_LABEL}", "{name}", "", "")' for name, expr in rendered.items())


def step_windows(
    series: Sequence[tuple[Mapping[str, str], Sequence[tuple[float, float]]]],
    *,
    start_s: float,
    step_s: float,
    count: int,
    kv_cache_tokens: int | None,
) -> StepWindows:
    """``StepWindows`` from the range query's answer: (labels, points) per series; NaN where absent."""
    columns = {name: np.full(count, math.nan) for name in CALIBRATION_SERIES}
    for labels, points in series:
        column = columns.get(labels.get(SERIES_LABEL, ""))
        if column is None:
            continue
        for t, value in points:
            i = round((t - start_s) / step_s)
            if 0 <= i < count:
                column[i] = value
    return StepWindows(**columns, kv_cache_tokens=kv_cache_tokens)


def kv_cache_tokens(samples: Sequence[Mapping[str, str]]) -> int | None:
    """KV capacity per replica (tokens) from ``vllm:cache_config_info`` label sets; the smallest over
    replicas (they should agree); None when no sample carries the sizes."""
    sizes = []
    for labels in samples:
        try:
            sizes.append(int(labels["num_gpu_blocks"]) * int(labels["block_size"]))
            continue
        except (KeyError, ValueError):
            pass
        try:
            sizes.append(int(float(labels["kv_cache_size_tokens"])))
        except (KeyError, ValueError):
            continue
    sizes = [s for s in sizes if s > 0]
    return min(sizes) if sizes else None


MIX_SAMPLES = 16


def _quantile_samples(buckets: Sequence[tuple[float, float]], n: int) -> np.ndarray | None:
    """``n`` quantiles ``(i + ½)/n`` of a cumulative histogram ``[(le, count)]``, linear in each bucket
    (from 0 below the first bound; the +Inf bucket is read as its lower bound)."""
    pairs = sorted((le, c) for le, c in buckets if math.isfinite(c))
    if not pairs or pairs[-1][1] <= 0:
        return None
    total = pairs[-1][1]
    bounds = np.array([le for le, _ in pairs])
    finite = bounds[np.isfinite(bounds)]
    top = float(finite[-1]) if finite.size else 0.0
    bounds = np.where(np.isfinite(bounds), bounds, top)
    counts = np.maximum.accumulate(np.array([c for _, c in pairs]))
    levels = (np.arange(n) + 0.5) / n * total
    return np.interp(levels, np.concatenate([[0.0], counts]), np.concatenate([[0.0], bounds]))


def token_mix(
    prompt_buckets: Sequence[tuple[float, float]],
    output_buckets: Sequence[tuple[float, float]],
    *,
    prompt_mean: float | None = None,
    output_mean: float | None = None,
) -> TokenMix | None:
    """A ``TokenMix`` of ``MIX_SAMPLES`` pairs from vLLM's request-level token histograms.

    Each marginal is sampled at evenly spaced quantiles and, where the exact mean (``_sum/_count``)
    is known, scaled to it (bucket interpolation alone is off by up to half a bucket, and vLLM's
    token buckets are 1-2-5 wide). Histograms keep no pairing, so prompts and outputs are paired by
    a fixed permutation (``i → 7i+3 mod 16``) that neither sorts them together nor against each
    other — independence, the neutral assumption.
    """
    prompt = _quantile_samples(prompt_buckets, MIX_SAMPLES)
    output = _quantile_samples(output_buckets, MIX_SAMPLES)
    if prompt is None or output is None:
        return None
    for samples, mean in ((prompt, prompt_mean), (output, output_mean)):
        if mean is not None and math.isfinite(mean) and mean > 0 and samples.mean() > 0:
            samples *= mean / samples.mean()
    output = np.maximum(output, 1.0)
    pairing = (7 * np.arange(MIX_SAMPLES) + 3) % MIX_SAMPLES
    return TokenMix(prompt_tokens=np.maximum(prompt, 0.0), output_tokens=output[pairing])


DEFAULT_BATCHED_TOKENS = 8192  # vLLM's default step budget (chunked prefill) when not annotated


class Calibrator:
    """Fits each Deployment's engine profile from its windows, once per cycle (``PrometheusSource``).

    Keeps the last good fit per Deployment: it is the prior of the next fit (ridge rows, so a
    parameter an idle stretch cannot identify stays put) and what is returned while the windows
    hold too little traffic to fit (an idle model keeps its calibrated profile). Logs a profile when
    it is first fitted and whenever a parameter moves by more than ``log_change`` (relative).
    Thread-safe (the source observes Deployments concurrently); forgets Deployments not asked for.
    """

    def __init__(self, *, log_change: float = 0.2) -> None:
        self._last: dict[tuple[str, str], tuple[EngineProfile, StepFit]] = {}
        self._lock = threading.Lock()
        self.log_change = log_change

    def update(self, ref: DeploymentRef, windows: StepWindows) -> tuple[EngineProfile | None, StepFit | None]:
        """(calibrated profile, its fit) for ``ref``; (None, the failed fit) before any good fit."""
        with self._lock:
            last = self._last.get(ref.key)
        budget = ref.max_num_batched_tokens or DEFAULT_BATCHED_TOKENS
        fit = fit_step_profile(windows, max_num_batched_tokens=budget, prior=last[0] if last else None)
        if not fit.ok or not (fit.kv_cache_tokens or last):
            return (last[0], last[1]) if last else (None, fit)
        profile = EngineProfile(
            step_base_ms=fit.step_base_ms, decode_ms_per_seq=fit.decode_ms_per_seq,
            prefill_ms_per_token=fit.prefill_ms_per_token, ttft_overhead_ms=fit.ttft_overhead_ms,
            kv_cache_tokens=int(fit.kv_cache_tokens or last[0].kv_cache_tokens),  # type: ignore[index]
            max_num_batched_tokens=max(budget, 256),
        )
        if last is None or _moved(last[0], profile, self.log_change):
            log.info("calibrated engine profile of %s/%s: step %.2f ms + %.3f ms/seq + %.4f ms/prompt token, KV %d "
                     "tokens; fit error %.1f%% over %d ITL and %d prefill windows, %s; front-end TTFT overhead "
                     "%.1f ms", ref.namespace, ref.name, profile.step_base_ms, profile.decode_ms_per_seq,
                     profile.prefill_ms_per_token, profile.kv_cache_tokens, 100 * fit.error, fit.itl_rows,
                     fit.prefill_rows, fit.summary, fit.ttft_overhead_ms)
        with self._lock:
            self._last[ref.key] = (profile, fit)
        return profile, fit

    def forget_except(self, keys: set[tuple[str, str]]) -> None:
        with self._lock:
            for key in [k for k in self._last if k not in keys]:
                del self._last[key]


def _moved(old: EngineProfile, new: EngineProfile, threshold: float) -> bool:
    for name in ("step_base_ms", "decode_ms_per_seq", "prefill_ms_per_token", "kv_cache_tokens", "ttft_overhead_ms"):
        a, b = getattr(old, name), getattr(new, name)
        if abs(b - a) > threshold * max(abs(a), 1e-9):
            return True
    return False
