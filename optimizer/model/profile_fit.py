"""Online calibration of an LLM replica's engine profile from windowed serving metrics.

Called by the service's view builder (``optimizer/service/view.py``) once per cycle for every LLM
Deployment whose metrics carry ``StepWindows`` (the ``vllm`` preset's calibration range query,
``optimizer/metrics/vllm.py``), and by the calibration benchmark and tests. Pure numpy/scipy.

Notes
-----
The step model is the shared one (``llm_profile.EngineProfile``): a step that decodes ``n``
sequences and prefills ``p`` prompt tokens takes ``a + b·n + c·p`` ms (``a`` = ``step_base_ms``,
``b`` = ``decode_ms_per_seq``, ``c`` = ``prefill_ms_per_token``). vLLM exports, per window of a few
tens of seconds, exact sums (histogram ``_sum``/``_count``, counters) from which two kinds of rows
follow, both linear in ``θ = (a, b, c)``:

- *ITL rows*: the mean inter-token latency is the decode-token-weighted mean step duration, so
  ``ITL ≈ a + b·n + c·p̄`` with ``n`` the mean batch (``vllm:num_requests_running``) and ``p̄`` the
  prompt tokens prefilled per step (``vllm:prompt_tokens`` / steps, the steps from
  ``vllm:iteration_tokens_total_count``).
- *Prefill rows*: vLLM's prefill time (scheduled → first token, ``vllm:request_prefill_time_seconds``)
  of a prompt of ``P`` tokens spans ``k = ⌈P / B⌉`` chunked steps (``B`` the token budget), each also
  decoding the running batch: ``prefill ≈ k·(a + b·n) + c·P``.

``θ ≥ 0`` is fitted by ``scipy.optimize.least_squares`` on *relative* residuals (so a 20 ms ITL row
and a 200 ms prefill row count alike) with a soft-L1 loss (robust: a window disturbed by a
neighbour's CPU burst or a preemption storm is down-weighted, not fitted), rows weighted by the
square root of their sample counts. When a declared or previous profile is given, weak ridge rows
pull ``θ`` towards it, so that a parameter the windows cannot identify (e.g. ``b`` when the batch
never changed) stays where it was instead of drifting. ``error`` is the weighted mean absolute
relative error of the rows (ITL and prefill separately too).

TTFT measured by vLLM starts at arrival in the API server: ``TTFT − queue − prefill`` is the
front-end overhead (HTTP, request processing, output streaming) that no engine step accounts for;
its median over windows is reported as ``ttft_overhead_ms``.

Limits: one profile per Deployment (replicas assumed alike); attention cost over long contexts is
not fitted (``context_ms_per_token`` is kept as declared); windows where KV ran out and requests
were preempted are fitted like any other (the robust loss limits their pull).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

import numpy as np
from faro.optimizer.model.llm_profile import EngineProfile
from numpy.typing import NDArray
from scipy.optimize import least_squares

MIN_ITL_TOKENS = 20.0  # a window's ITL mean from fewer decode tokens is too noisy to be a row
MIN_PREFILL_REQUESTS = 2.0
RIDGE = 0.05  # weight of the pull towards the prior, relative to one full-weight row
FLOOR_MS = 1e-3  # step_base_ms must be > 0 (EngineProfile)


@dataclass(frozen=True, eq=False)
class StepWindows:
    """Per-window means and counts of one Deployment (equal-length arrays, NaN = no data).

    ``itl_ms`` mean inter-token latency over ``itl_tokens`` gaps; ``batch`` mean running requests per
    replica; ``prefill_per_step`` prompt tokens prefilled per engine step; ``prefill_ms`` mean vLLM
    prefill time over ``prefill_requests`` requests of mean prompt ``prompt_tokens``; ``ttft_ms`` and
    ``queue_ms`` mean TTFT and queue time (for the front-end overhead). ``kv_cache_tokens``: KV
    capacity per replica from ``vllm:cache_config_info`` (None when not exported).
    """

    itl_ms: NDArray[np.float64]
    itl_tokens: NDArray[np.float64]
    batch: NDArray[np.float64]
    prefill_per_step: NDArray[np.float64]
    prefill_ms: NDArray[np.float64]
    prefill_requests: NDArray[np.float64]
    prompt_tokens: NDArray[np.float64]
    ttft_ms: NDArray[np.float64]
    queue_ms: NDArray[np.float64]
    kv_cache_tokens: int | None = None

    def __post_init__(self) -> None:
        sizes = set()
        for f in dataclasses.fields(self):
            if f.name == "kv_cache_tokens":
                continue
            value = np.asarray(getattr(self, f.name), dtype=float).ravel()
            object.__setattr__(self, f.name, value)
            sizes.add(value.size)
        if len(sizes) > 1:
            raise ValueError(f"StepWindows arrays differ in length: {sorted(sizes)}")

    @property
    def size(self) -> int:
        return int(self.itl_ms.size)


@dataclass(frozen=True)
class StepFit:
    """A fitted step model and how well it explains the windows it came from.

    ``status``: ``"ok"``, or why there is no fit (``"too few windows"``, ``"solver failed: …"``); the
    parameters are NaN then. ``error`` is the weighted mean absolute relative error over all rows,
    ``itl_error``/``prefill_error`` over each kind (NaN without rows of that kind).
    """

    step_base_ms: float
    decode_ms_per_seq: float
    prefill_ms_per_token: float
    ttft_overhead_ms: float
    error: float
    itl_error: float
    prefill_error: float
    itl_rows: int
    prefill_rows: int
    status: str = "ok"
    kv_cache_tokens: int | None = None

    @property
    def ok(self) -> bool:
        return self.status == "ok"


def _failed(status: str, windows: StepWindows, itl_rows: int = 0, prefill_rows: int = 0) -> StepFit:
    nan = math.nan
    return StepFit(nan, nan, nan, nan, nan, nan, nan, itl_rows, prefill_rows, status=status,
                   kv_cache_tokens=windows.kv_cache_tokens)


def _finite(*arrays: NDArray[np.float64]) -> NDArray[np.bool_]:
    ok = np.ones(arrays[0].shape, dtype=bool)
    for a in arrays:
        ok &= np.isfinite(a)
    return ok


def fit_step_profile(
    windows: StepWindows,
    *,
    max_num_batched_tokens: int,
    prior: EngineProfile | None = None,
    min_itl_rows: int = 3,
) -> StepFit:
    """Fit ``(step_base_ms, decode_ms_per_seq, prefill_ms_per_token)`` to ``windows`` (module Notes).

    ``max_num_batched_tokens`` is the engine's per-step token budget (chunked prefill); ``prior`` the
    declared or previous profile the ridge rows pull towards (None: no pull). Needs at least
    ``min_itl_rows`` ITL rows and one prefill row, else ``status`` says so.
    """
    w = windows
    itl_ok = _finite(w.itl_ms, w.itl_tokens, w.batch) & (w.itl_tokens >= MIN_ITL_TOKENS) & (w.itl_ms > 0)
    pre_ok = _finite(w.prefill_ms, w.prefill_requests, w.prompt_tokens) & (w.prefill_requests >= MIN_PREFILL_REQUESTS)
    pre_ok &= w.prefill_ms > 0
    n_itl, n_pre = int(itl_ok.sum()), int(pre_ok.sum())
    if n_itl < min_itl_rows or n_pre < 1:
        return _failed("too few windows", w, n_itl, n_pre)

    p_step = np.where(np.isfinite(w.prefill_per_step), w.prefill_per_step, 0.0)
    x_itl = np.column_stack([np.ones(n_itl), w.batch[itl_ok], p_step[itl_ok]])
    y_itl = w.itl_ms[itl_ok]
    wt_itl = np.sqrt(w.itl_tokens[itl_ok] / w.itl_tokens[itl_ok].max())

    prompt = w.prompt_tokens[pre_ok]
    batch_pre = np.where(np.isfinite(w.batch[pre_ok]), w.batch[pre_ok], 0.0)
    chunks = np.maximum(1.0, np.ceil(prompt / max(1, max_num_batched_tokens)))
    x_pre = np.column_stack([chunks, chunks * batch_pre, prompt])
    y_pre = w.prefill_ms[pre_ok]
    wt_pre = np.sqrt(w.prefill_requests[pre_ok] / w.prefill_requests[pre_ok].max())

    x = np.vstack([x_itl, x_pre])
    y = np.concatenate([y_itl, y_pre])
    weight = np.concatenate([wt_itl, wt_pre])

    if prior is not None:
        theta0 = np.array([prior.step_base_ms, prior.decode_ms_per_seq, prior.prefill_ms_per_token])
    else:  # a start the data suggests: everything in the intercept
        theta0 = np.array([float(np.median(y_itl)), 0.0, 0.0])
    theta0 = np.maximum(theta0, FLOOR_MS)
    scale = np.maximum(theta0, np.array([1.0, 0.1, 0.01]))  # ridge in relative terms

    def residuals(theta: NDArray[np.float64]) -> NDArray[np.float64]:
        r = weight * (x @ theta - y) / y
        if prior is None:
            return r
        return np.concatenate([r, RIDGE * (theta - theta0) / scale])

    try:
        result = least_squares(residuals, theta0, bounds=([FLOOR_MS, 0.0, 0.0], np.inf), loss="soft_l1",
                               f_scale=0.15, x_scale=scale)
    except (ValueError, np.linalg.LinAlgError) as exc:
        return _failed(f"solver failed: {exc}", w, n_itl, n_pre)
    if not result.success or not np.all(np.isfinite(result.x)):
        return _failed(f"solver failed: {result.message}", w, n_itl, n_pre)
    theta = result.x
    rel = np.abs(x @ theta - y) / y

    def mean_error(mask: slice) -> float:
        return float(np.average(rel[mask], weights=weight[mask] ** 2)) if rel[mask].size else math.nan

    overhead = w.ttft_ms - w.queue_ms - w.prefill_ms
    overhead = overhead[np.isfinite(overhead)]
    return StepFit(
        step_base_ms=float(theta[0]),
        decode_ms_per_seq=float(theta[1]),
        prefill_ms_per_token=float(theta[2]),
        ttft_overhead_ms=float(max(0.0, np.median(overhead))) if overhead.size else 0.0,
        error=mean_error(slice(None)),
        itl_error=mean_error(slice(0, n_itl)),
        prefill_error=mean_error(slice(n_itl, None)),
        itl_rows=n_itl,
        prefill_rows=n_pre,
        kv_cache_tokens=w.kv_cache_tokens,
    )


def calibrated_profile(
    declared: EngineProfile,
    fit: StepFit | None,
    *,
    pin_steps: bool = False,
    pin_kv: bool = False,
) -> EngineProfile:
    """``declared`` with the fitted step parameters (unless ``pin_steps``) and the exported KV
    capacity (unless ``pin_kv``); unchanged when there is no usable fit."""
    changes: dict[str, float | int] = {}
    if fit is not None and fit.ok and not pin_steps:
        changes.update(step_base_ms=fit.step_base_ms, decode_ms_per_seq=fit.decode_ms_per_seq,
                       prefill_ms_per_token=fit.prefill_ms_per_token)
    if fit is not None and fit.kv_cache_tokens and not pin_kv:
        changes["kv_cache_tokens"] = int(fit.kv_cache_tokens)
    return dataclasses.replace(declared, **changes) if changes else declared
