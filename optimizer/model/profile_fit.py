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
  ``ITL ≈ a + b·n + c·p̄`` with ``n`` the mean batch per engine step (``vllm:generation_tokens`` /
  steps, the steps from ``vllm:iteration_tokens_total_count``) and ``p̄`` the prompt tokens
  prefilled per step (``vllm:prompt_tokens`` / steps). Per step, not per second: the time average
  of ``vllm:num_requests_running`` counts idle time as batch 0 and puts a light load's one-sequence
  steps at a batch of 0.2. (The token weighting makes the ITL's batch ``E[n²]/E[n]``, above the step
  mean by ``Var(n)/E[n]``: ``b`` comes out a little high when the batch scatters a lot.)
- *Prefill rows*: vLLM's prefill time (scheduled → first token, ``vllm:request_prefill_time_seconds``)
  of a prompt of ``P`` tokens spans ``k = ⌈P / B⌉`` chunked steps (``B`` the token budget), each also
  decoding the running batch: ``prefill ≈ k·(a + b·n) + c·P``.

``θ ≥ 0`` is fitted by ``scipy.optimize.least_squares`` on *relative* residuals (so a 20 ms ITL row
and a 200 ms prefill row count alike) with a soft-L1 loss (robust: a window disturbed by a
neighbour's CPU burst or a preemption storm is down-weighted, not fitted), rows weighted by the
square root of their sample counts. When a declared or previous profile is given, weak ridge rows
pull ``θ`` towards it (in units of a tenth of the typical row). ``error`` is the weighted mean
absolute relative error of the rows (ITL and prefill separately too).

*Identifiability.* At a steady light load every window has about the same batch, and the rows then
fix ``a + b·n̄`` but not the split: a free fit lands anywhere on that line (a live fit at a light
load once put the whole step on the batch term, ``0 + 42·n``, and predicted ITLs ten times too
high). So ``b`` counts as identified only when the windows' batch sizes scatter by at least 20 % of
their mean *and* the batch term at the mean batch, ``b·n̄``, is known to within 25 % of the typical
step (one standard error, from the rows' scatter through the inverse information matrix of the
weighted relative residuals). Otherwise ``b`` is held at the prior's (0 without a prior: the whole
step in the intercept, the batch-independent part that dominates on GPUs and on small CPU models
alike) and ``a``, ``c`` are refitted; later windows with other batch sizes identify it.

TTFT measured by vLLM runs from arrival in the API server to the first token's output reaching the
API server's output handler: ``TTFT − queue − prefill`` is the front-end overhead (request
processing, scheduling hand-off, the output's way back) that no engine step accounts for; its
median over windows is reported as ``ttft_overhead_ms``. (A client sees more: HTTP and streaming.)

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
MIN_BATCH_SPREAD = 0.2  # decode_ms_per_seq is fitted when the windows' batches scatter by 20 % of the mean ...
IDENTIFY = 0.25  # ... and its share of the typical step is known to ±25 % of the step (one standard error)
FLOOR_MS = 1e-3  # step_base_ms must be > 0 (EngineProfile)
_LOWER = np.array([FLOOR_MS, 0.0, 0.0])


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
    ``decode_identified``: whether the windows' batch sizes pinned ``decode_ms_per_seq`` down (its
    batches scatter by 20 % of their mean and its standard error ``decode_se_ms`` times the mean batch is
    within 25 % of the step); when not, it was held
    at the prior's (0 without one). ``batch_range``: the smallest and largest batch of the ITL rows.
    ``summary`` says all that in one line.
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
    decode_identified: bool = False
    decode_se_ms: float = math.nan
    batch_range: tuple[float, float] = (math.nan, math.nan)

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    @property
    def summary(self) -> str:
        """The status with what the windows could identify, for logs and notes."""
        if not self.ok:
            return self.status
        low, high = self.batch_range
        if self.decode_identified:
            return f"ok (batch {low:.1f}-{high:.1f} identifies the per-sequence cost)"
        return (f"ok; the per-sequence cost is held at {self.decode_ms_per_seq:.3g} ms: batch {low:.1f}-{high:.1f} "
                f"does not identify it (standard error {self.decode_se_ms:.3g} ms)")


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
    ``min_itl_rows`` ITL rows and one prefill row, else ``status`` says so. When the windows' batch
    sizes do not pin the per-sequence cost down (``decode_identified`` False), it is held at the
    prior's (0 without one: the step time goes to the intercept) and the rest is fitted.
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

    step_ms = float(np.median(y_itl))
    if prior is not None:
        theta0 = np.array([prior.step_base_ms, prior.decode_ms_per_seq, prior.prefill_ms_per_token])
    else:  # a start the data suggests: everything in the intercept
        theta0 = np.array([step_ms, 0.0, 0.0])
    theta0 = np.maximum(theta0, FLOOR_MS)
    # Each parameter's natural size: what moves the typical row by a tenth (the ridge's unit, the solver's scale).
    typical = np.maximum(np.median(np.abs(x), axis=0), 1e-6)
    scale = np.maximum(theta0, 0.1 * step_ms / typical)

    def solve(free: NDArray[np.bool_], fixed: NDArray[np.float64]) -> NDArray[np.float64] | str:
        def residuals(theta_free: NDArray[np.float64]) -> NDArray[np.float64]:
            theta = fixed.copy()
            theta[free] = theta_free
            r = weight * (x @ theta - y) / y
            if prior is None:
                return r
            return np.concatenate([r, RIDGE * (theta_free - theta0[free]) / scale[free]])

        try:
            result = least_squares(residuals, np.maximum(theta0[free], _LOWER[free]),
                                   bounds=(_LOWER[free], np.inf), loss="soft_l1", f_scale=0.15, x_scale=scale[free])
        except (ValueError, np.linalg.LinAlgError) as exc:
            return f"solver failed: {exc}"
        if not result.success or not np.all(np.isfinite(result.x)):
            return f"solver failed: {result.message}"
        theta = fixed.copy()
        theta[free] = result.x
        return theta

    theta = solve(np.ones(3, dtype=bool), theta0)
    if isinstance(theta, str):
        return _failed(theta, w, n_itl, n_pre)
    decode_se = _standard_error(x, y, weight, theta, index=1)
    batch_mean = max(float(np.average(x_itl[:, 1], weights=wt_itl)), 1.0)
    batch_spread = math.sqrt(float(np.cov(x_itl[:, 1], aweights=wt_itl))) / batch_mean if n_itl > 1 else 0.0
    identified = batch_spread >= MIN_BATCH_SPREAD and decode_se * batch_mean <= IDENTIFY * step_ms
    if not identified:  # the batch hardly varied: a + b·n is known, not the split; keep b where it was
        held = np.array([0.0, prior.decode_ms_per_seq if prior is not None else 0.0, 0.0])
        theta = solve(np.array([True, False, True]), held)
        if isinstance(theta, str):
            return _failed(theta, w, n_itl, n_pre)
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
        decode_identified=bool(identified),
        decode_se_ms=float(decode_se),
        batch_range=(float(np.min(x_itl[:, 1])), float(np.max(x_itl[:, 1]))),
    )


def _standard_error(x: NDArray[np.float64], y: NDArray[np.float64], weight: NDArray[np.float64],
                    theta: NDArray[np.float64], *, index: int) -> float:
    """Standard error of ``theta[index]`` from the rows alone (no prior): the weighted relative
    residuals' scatter through the inverse information matrix; ``inf`` when the rows cannot tell it
    from the other parameters (e.g. the batch never changed)."""
    jac = weight[:, None] * x / y[:, None]
    resid = weight * (x @ theta - y) / y
    dof = max(1, y.size - x.shape[1])
    sigma2 = max(float(resid @ resid) / dof, 1e-6)  # a perfect fit still leaves a noise floor (0.1 %)
    info = jac.T @ jac
    try:
        cov = np.linalg.inv(info) * sigma2
    except np.linalg.LinAlgError:
        return math.inf
    value = float(cov[index, index])
    if not math.isfinite(value) or value < 0 or np.linalg.cond(info) > 1e12:
        return math.inf
    return math.sqrt(value)


def calibrated_profile(
    declared: EngineProfile,
    fit: StepFit | None,
    *,
    pin_steps: bool = False,
    pin_kv: bool = False,
) -> EngineProfile:
    """``declared`` with the fitted step parameters and front-end overhead (unless ``pin_steps``) and
    the exported KV capacity (unless ``pin_kv``); unchanged when there is no usable fit."""
    changes: dict[str, float | int] = {}
    if fit is not None and fit.ok and not pin_steps:
        changes.update(step_base_ms=fit.step_base_ms, decode_ms_per_seq=fit.decode_ms_per_seq,
                       prefill_ms_per_token=fit.prefill_ms_per_token, ttft_overhead_ms=fit.ttft_overhead_ms)
    if fit is not None and fit.kv_cache_tokens and not pin_kv:
        changes["kv_cache_tokens"] = int(fit.kv_cache_tokens)
    return dataclasses.replace(declared, **changes) if changes else declared
