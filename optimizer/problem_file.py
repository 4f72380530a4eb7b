"""Load an allocation problem from a YAML or JSON file (the ``faro plan`` format).

Called by ``faro plan`` and the solver benchmark. This is the I/O edge: it reads files and parses
Kubernetes quantities with ``kubernetes.utils.parse_quantity``; every mistake becomes an
``InvalidInputError`` naming the field, e.g. ``jobs[2].slo.latency_ms: must be a positive number``.

Format::

    objective: fairsum            # sum | fair | fairsum | penaltysum | penaltyfairsum
    cluster: {cpu: "320"}         # optional cap over all jobs
    model: {rho_max: 0.95, alpha: 1, step_s: 60, cold_start_s: 35}   # optional
    quotas:
      - namespace: team-a
        name: compute             # optional, default the namespace
        hard: {cpu: "32", memory: 64Gi, nvidia.com/gpu: "4"}
        used: {cpu: "2"}          # used by pods Faro does not manage
    jobs:
      - name: resnet34
        namespace: team-a         # default "default"
        slo: {latency_ms: 720, percentile: 99}
        processing_time_ms: 180
        rate_rps: [15.9, 16.4, 17.0]   # or one number; held at the last value out to the step a new replica serves
        resources: {cpu: "1", memory: 1Gi}
        weight: 1
        min_replicas: 1
        max_replicas: 100
        current_replicas: 3
      - name: chat                # an LLM job: SLOs and engine profile under llm, no slo/processing_time_ms
        rate_rps: [3.1, 3.4]
        resources: {cpu: "4", nvidia.com/gpu: "1"}   # nvidia.com/gpu defaults to llm.profile.gpus
        llm:
          slo: {ttft_ms: 2000, itl_ms: 150, percentile: 99}   # one or both
          profile: {step_base_ms: 15, decode_ms_per_seq: 0.25, prefill_ms_per_token: 0.1,
                    kv_cache_tokens: 200000, max_num_seqs: 128, max_num_batched_tokens: 4096,
                    model_load_s: 120}              # also context_ms_per_token, block_size_tokens, gpus
          token_mix: {prompt_tokens: [1020, 310, 4100], output_tokens: [129, 40, 600]}
          # or one number each (every request alike), or {trace: conv}: a bundled Azure LLM 2023 trace
          # (code, conv) or a CSV next to this file in its format (TIMESTAMP,ContextTokens,GeneratedTokens)
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import yaml
from faro.optimizer.errors import InvalidInputError
from faro.optimizer.model.llm_profile import LLMSLO, EngineProfile, LLMSpec, TokenMix
from faro.optimizer.model.problem import OBJECTIVES, SLO, Job, ModelConfig, Problem, Quota, serving_horizon

_JOB_KEYS = {
    "name", "namespace", "slo", "processing_time_ms", "rate_rps", "resources", "limits", "weight",
    "min_replicas", "max_replicas", "current_replicas", "llm",
}
_LLM_KEYS = {"slo", "profile", "token_mix"}
_LLM_SLO_KEYS = {"ttft_ms", "itl_ms", "percentile"}
_PROFILE_KEYS = {
    "step_base_ms", "decode_ms_per_seq", "prefill_ms_per_token", "context_ms_per_token", "max_num_seqs",
    "max_num_batched_tokens", "kv_cache_tokens", "block_size_tokens", "gpus", "model_load_s",
}
_PROFILE_INTEGERS = {"max_num_seqs", "max_num_batched_tokens", "kv_cache_tokens", "block_size_tokens"}
_TOP_KEYS = {"objective", "cluster", "quotas", "jobs", "model"}


def load_problem(path: str | Path, *, objective: str | None = None) -> Problem:
    """Read ``path`` (``.json`` as JSON, anything else as YAML) into a ``Problem``."""
    p = Path(path)
    try:
        text = p.read_text()
    except OSError as exc:
        raise InvalidInputError(str(p), f"cannot read: {exc.strerror or exc}") from None
    try:
        data = json.loads(text) if p.suffix == ".json" else yaml.safe_load(text)
    except json.JSONDecodeError as exc:
        raise InvalidInputError(f"{p} line {exc.lineno} column {exc.colno}", f"not valid JSON: {exc.msg}") from None
    except yaml.YAMLError as exc:
        raise InvalidInputError(*_yaml_error(p, exc)) from None
    return problem_from_dict(data, objective=objective, base_dir=p.parent)


def _yaml_error(path: Path, exc: yaml.YAMLError) -> tuple[str, str]:
    """(where, reason) of a YAML syntax error: the file with the 1-based line and column of the problem."""
    mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
    where = f"{path} line {mark.line + 1} column {mark.column + 1}" if mark is not None else str(path)
    problem = getattr(exc, "problem", None) or (str(exc).strip().splitlines() or [type(exc).__name__])[0]
    context = getattr(exc, "context", None)
    return where, f"not valid YAML: {problem}" + (f" ({context})" if context else "")


def problem_from_dict(data: Any, *, objective: str | None = None, base_dir: str | Path | None = None) -> Problem:
    """Validate a parsed document; ``objective`` overrides the file's; token-mix traces are read
    relative to ``base_dir`` (default: the working directory)."""
    if not isinstance(data, Mapping):
        raise InvalidInputError("problem", "must be a mapping with a 'jobs' list")
    _no_unknown(data, _TOP_KEYS, "problem")
    obj = objective if objective is not None else data.get("objective", "sum")
    if obj not in OBJECTIVES:
        raise InvalidInputError("objective", f"must be one of {', '.join(OBJECTIVES)}, got {obj!r}")
    jobs_raw = data.get("jobs")
    if not isinstance(jobs_raw, list) or not jobs_raw:
        raise InvalidInputError("jobs", "must be a non-empty list")
    base = Path(base_dir) if base_dir is not None else Path()
    jobs = tuple(_job(raw, f"jobs[{i}]", base) for i, raw in enumerate(jobs_raw))
    seen: dict[tuple[str, str], int] = {}
    for i, job in enumerate(jobs):
        key = (job.namespace, job.name)
        if key in seen:
            raise InvalidInputError(f"jobs[{i}].name", f"{job.namespace}/{job.name} repeats jobs[{seen[key]}]")
        seen[key] = i
    quotas = []
    for i, raw in enumerate(_list(data.get("quotas", []), "quotas")):
        quotas.append(_quota(raw, f"quotas[{i}]"))
    if data.get("cluster") is not None:
        hard = _quantities(data["cluster"], "cluster")
        quotas.append(Quota(name="cluster", hard=hard, namespace=None))
    model = _model(data.get("model") or {}, "model")
    return Problem(jobs=_hold_rates(jobs, serving_horizon(jobs, model)), quotas=tuple(quotas), objective=obj,
                   model=model)


def _hold_rates(jobs: tuple[Job, ...], steps: int) -> tuple[Job, ...]:
    """Jobs whose rates are held at their last value out to ``steps`` when the file's longest is shorter
    (one number is a steady rate): a new replica must serve in some step for a plan to weigh it."""
    if max(len(job.rate_rps) for job in jobs) >= steps:
        return jobs
    return tuple(replace(job, rate_rps=job.rate_rps + (job.rate_rps[-1],) * (steps - len(job.rate_rps)))
                 for job in jobs)


def _no_unknown(raw: Mapping, allowed: set[str], where: str) -> None:
    for key in raw:
        if key not in allowed:
            raise InvalidInputError(f"{where}.{key}", f"unknown field (expected one of {', '.join(sorted(allowed))})")


def _list(value: Any, where: str) -> list:
    if not isinstance(value, list):
        raise InvalidInputError(where, "must be a list")
    return value


def _mapping(value: Any, where: str) -> Mapping:
    if not isinstance(value, Mapping):
        raise InvalidInputError(where, "must be a mapping")
    return value


def _number(value: Any, where: str, *, positive: bool = False, minimum: float | None = None) -> float:
    if value is None:
        raise InvalidInputError(where, "is required")
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise InvalidInputError(where, "must be a positive number" if positive else "must be a number")
    if positive and value <= 0:
        raise InvalidInputError(where, "must be a positive number")
    if minimum is not None and value < minimum:
        raise InvalidInputError(where, f"must be >= {minimum:g}")
    return float(value)


def _integer(value: Any, where: str, *, minimum: int = 0) -> int:
    if value is None:
        raise InvalidInputError(where, "is required")
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidInputError(where, "must be an integer")
    if value < minimum:
        raise InvalidInputError(where, f"must be >= {minimum}")
    return int(value)


def _quantities(raw: Any, where: str) -> dict[str, float]:
    from kubernetes.utils import parse_quantity

    out: dict[str, float] = {}
    for key, value in _mapping(raw, where).items():
        try:
            q = float(parse_quantity(value))
        except (ValueError, TypeError):
            raise InvalidInputError(f"{where}.{key}", f"not a Kubernetes quantity: {value!r}") from None
        if q < 0 or not math.isfinite(q):
            raise InvalidInputError(f"{where}.{key}", "must be >= 0")
        out[str(key)] = q
    return out


def _job(raw: Any, where: str, base: Path) -> Job:
    raw = _mapping(raw, where)
    _no_unknown(raw, _JOB_KEYS, where)
    name = raw.get("name")
    if name is None:
        raise InvalidInputError(f"{where}.name", "is required")
    if not isinstance(name, str) or not name:
        raise InvalidInputError(f"{where}.name", "must be a non-empty string")
    namespace = raw.get("namespace", "default")
    if not isinstance(namespace, str) or not namespace:
        raise InvalidInputError(f"{where}.namespace", "must be a non-empty string")
    if "llm" in raw:
        return _llm_job(raw, where, base, name=name, namespace=namespace)
    slo_raw = _mapping(raw.get("slo"), f"{where}.slo") if "slo" in raw else None
    if slo_raw is None:
        raise InvalidInputError(f"{where}.slo", "is required ({latency_ms: ..., percentile: 99})")
    latency = _number(slo_raw.get("latency_ms"), f"{where}.slo.latency_ms", positive=True)
    pct = _number(slo_raw.get("percentile", 99), f"{where}.slo.percentile", positive=True)
    if not pct < 100:
        raise InvalidInputError(f"{where}.slo.percentile", "must be in (0, 100)")
    proc = _number(raw.get("processing_time_ms"), f"{where}.processing_time_ms", positive=True)
    common = _common(raw, where, default_resources={"cpu": "1"})
    return Job(name=name, namespace=namespace, slo=SLO(latency, pct), processing_time_ms=proc, **common)


def _common(raw: Mapping, where: str, *, default_resources: Mapping[str, str]) -> dict[str, Any]:
    """The fields every job has besides its SLOs: rates, resources, weight, replica bounds."""
    rates_raw = raw.get("rate_rps")
    if rates_raw is None:
        raise InvalidInputError(f"{where}.rate_rps", "is required")
    rates_list = rates_raw if isinstance(rates_raw, list) else [rates_raw]
    if not rates_list:
        raise InvalidInputError(f"{where}.rate_rps", "needs at least one horizon step")
    lo = _integer(raw.get("min_replicas", 1), f"{where}.min_replicas")
    hi = _integer(raw.get("max_replicas", 100), f"{where}.max_replicas")
    if hi < lo:
        raise InvalidInputError(f"{where}.max_replicas", f"{hi} is below min_replicas {lo}")
    return dict(
        rate_rps=tuple(_number(r, f"{where}.rate_rps", minimum=0.0) for r in rates_list),
        resources=_quantities(raw.get("resources", default_resources), f"{where}.resources"),
        limits=_quantities(raw.get("limits", {}), f"{where}.limits"),
        weight=_number(raw.get("weight", 1), f"{where}.weight", minimum=0.0),
        min_replicas=lo, max_replicas=hi,
        current_replicas=_integer(raw.get("current_replicas", lo), f"{where}.current_replicas"),
    )


def _llm_job(raw: Mapping, where: str, base: Path, *, name: str, namespace: str) -> Job:
    for key in ("slo", "processing_time_ms"):
        if key in raw:
            raise InvalidInputError(f"{where}.{key}", "an LLM job declares its SLOs under llm.slo (TTFT/ITL)")
    llm_where = f"{where}.llm"
    block = _mapping(raw["llm"], llm_where)
    _no_unknown(block, _LLM_KEYS, llm_where)
    for key in ("slo", "profile"):
        if key not in block:
            raise InvalidInputError(f"{llm_where}.{key}", "is required")
    common = _common(raw, where, default_resources={})
    slo_raw = _mapping(block["slo"], f"{llm_where}.slo")
    _no_unknown(slo_raw, _LLM_SLO_KEYS, f"{llm_where}.slo")
    slo_kw = {k: _number(v, f"{llm_where}.slo.{k}", positive=True) for k, v in slo_raw.items()}
    prof_raw = _mapping(block["profile"], f"{llm_where}.profile")
    _no_unknown(prof_raw, _PROFILE_KEYS, f"{llm_where}.profile")
    prof_kw: dict[str, Any] = {}
    for key, value in prof_raw.items():
        field = f"{llm_where}.profile.{key}"
        prof_kw[key] = _integer(value, field, minimum=1) if key in _PROFILE_INTEGERS else _number(value, field)
    if "gpus" not in prof_kw and "nvidia.com/gpu" in common["resources"]:
        prof_kw["gpus"] = common["resources"]["nvidia.com/gpu"]  # the pod template's request
    for key in ("step_base_ms", "decode_ms_per_seq", "prefill_ms_per_token", "kv_cache_tokens"):
        if key not in prof_kw:
            raise InvalidInputError(f"{llm_where}.profile.{key}", "is required")
    if "token_mix" not in block:
        raise InvalidInputError(f"{llm_where}.token_mix", "is required for planning offline "
                                "({prompt_tokens: [...], output_tokens: [...]} or {trace: file.csv})")
    try:
        spec = LLMSpec(slo=LLMSLO(**slo_kw), profile=EngineProfile(**prof_kw))
        mix = _token_mix(block["token_mix"], f"{llm_where}.token_mix", base)
        return Job.for_llm(name, llm=spec, token_mix=mix, namespace=namespace, **common)
    except InvalidInputError as exc:
        if exc.where.startswith(("jobs[", "job ")):
            raise
        raise InvalidInputError(f"{llm_where}.{exc.where}", exc.reason) from None


def _token_mix(raw: Any, where: str, base: Path) -> TokenMix:
    raw = _mapping(raw, where)
    if "trace" in raw:
        _no_unknown(raw, {"trace"}, where)
        return _trace_mix(raw["trace"], f"{where}.trace", base)
    _no_unknown(raw, {"prompt_tokens", "output_tokens"}, where)
    cols = []
    for key in ("prompt_tokens", "output_tokens"):
        if key not in raw:
            raise InvalidInputError(f"{where}.{key}", "is required")
        value = raw[key]
        items = value if isinstance(value, list) else [value]
        cols.append([_number(v, f"{where}.{key}", minimum=0.0) for v in items])
    if len(cols[0]) != len(cols[1]):
        raise InvalidInputError(where, f"{len(cols[0])} prompt_tokens but {len(cols[1])} output_tokens (pairs)")
    return TokenMix(np.array(cols[0]), np.array(cols[1]))


def _trace_mix(value: Any, where: str, base: Path) -> TokenMix:
    """The requests of a trace: a bundled one by name (``code``, ``conv``) or a CSV next to the file."""
    from faro.optimizer.sim.llm.workload import TRACE_FILES, load_llm_trace

    if not isinstance(value, str) or not value:
        raise InvalidInputError(where, f"must be a bundled trace ({', '.join(TRACE_FILES)}) or a file name")
    try:
        trace = load_llm_trace(value if value in TRACE_FILES else str(base / value))
    except InvalidInputError as exc:
        raise InvalidInputError(f"{where} {exc.where}", exc.reason) from None
    return TokenMix(trace.prompt_tokens.astype(float), np.maximum(trace.output_tokens, 1).astype(float))


def _quota(raw: Any, where: str) -> Quota:
    raw = _mapping(raw, where)
    _no_unknown(raw, {"namespace", "name", "hard", "used"}, where)
    namespace = raw.get("namespace")
    if not isinstance(namespace, str) or not namespace:
        raise InvalidInputError(f"{where}.namespace", "must be a non-empty string")
    name = raw.get("name", namespace)
    if not isinstance(name, str) or not name:
        raise InvalidInputError(f"{where}.name", "must be a non-empty string")
    if "hard" not in raw:
        raise InvalidInputError(f"{where}.hard", "is required")
    hard = _quantities(raw["hard"], f"{where}.hard")
    used = _quantities(raw.get("used", {}), f"{where}.used")
    return Quota(name=name, hard=hard, used=used, namespace=namespace)


def _model(raw: Any, where: str) -> ModelConfig:
    raw = _mapping(raw, where)
    _no_unknown(raw, {"rho_max", "alpha", "step_s", "cold_start_s"}, where)
    kwargs = {key: _number(value, f"{where}.{key}") for key, value in raw.items()}
    return ModelConfig(**kwargs)
