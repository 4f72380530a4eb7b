import datetime

from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class WatchPlansRequest(_message.Message):
    __slots__ = ("after_generation",)
    AFTER_GENERATION_FIELD_NUMBER: _ClassVar[int]
    after_generation: int
    def __init__(self, after_generation: _Optional[int] = ...) -> None: ...

class GetPlanRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class Plan(_message.Message):
    __slots__ = ("generation", "created", "valid_until", "targets", "policy", "objective", "objective_value", "solve_ms", "kind", "leader", "solver_status")
    GENERATION_FIELD_NUMBER: _ClassVar[int]
    CREATED_FIELD_NUMBER: _ClassVar[int]
    VALID_UNTIL_FIELD_NUMBER: _ClassVar[int]
    TARGETS_FIELD_NUMBER: _ClassVar[int]
    POLICY_FIELD_NUMBER: _ClassVar[int]
    OBJECTIVE_FIELD_NUMBER: _ClassVar[int]
    OBJECTIVE_VALUE_FIELD_NUMBER: _ClassVar[int]
    SOLVE_MS_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    LEADER_FIELD_NUMBER: _ClassVar[int]
    SOLVER_STATUS_FIELD_NUMBER: _ClassVar[int]
    generation: int
    created: _timestamp_pb2.Timestamp
    valid_until: _timestamp_pb2.Timestamp
    targets: _containers.RepeatedCompositeFieldContainer[Target]
    policy: str
    objective: str
    objective_value: float
    solve_ms: float
    kind: str
    leader: str
    solver_status: str
    def __init__(self, generation: _Optional[int] = ..., created: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., valid_until: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., targets: _Optional[_Iterable[_Union[Target, _Mapping]]] = ..., policy: _Optional[str] = ..., objective: _Optional[str] = ..., objective_value: _Optional[float] = ..., solve_ms: _Optional[float] = ..., kind: _Optional[str] = ..., leader: _Optional[str] = ..., solver_status: _Optional[str] = ...) -> None: ...

class Target(_message.Message):
    __slots__ = ("namespace", "deployment", "desired_replicas", "current_replicas", "forecast_rps", "expected_latency_ms", "expected_utility", "held_reason", "slo_latency_ms", "slo_percentile", "observed_latency_ms", "stale", "observations_age_s", "admission", "ready_replicas", "forecast_quantile", "latency_one_fewer_ms", "steady_latency_ms", "latency_one_more_ms", "binding_quota", "llm_step_base_ms", "llm_decode_ms_per_seq", "llm_prefill_ms_per_token", "llm_kv_cache_tokens", "llm_profile_source", "llm_profile_fit_error", "llm_ttft_overhead_ms")
    NAMESPACE_FIELD_NUMBER: _ClassVar[int]
    DEPLOYMENT_FIELD_NUMBER: _ClassVar[int]
    DESIRED_REPLICAS_FIELD_NUMBER: _ClassVar[int]
    CURRENT_REPLICAS_FIELD_NUMBER: _ClassVar[int]
    FORECAST_RPS_FIELD_NUMBER: _ClassVar[int]
    EXPECTED_LATENCY_MS_FIELD_NUMBER: _ClassVar[int]
    EXPECTED_UTILITY_FIELD_NUMBER: _ClassVar[int]
    HELD_REASON_FIELD_NUMBER: _ClassVar[int]
    SLO_LATENCY_MS_FIELD_NUMBER: _ClassVar[int]
    SLO_PERCENTILE_FIELD_NUMBER: _ClassVar[int]
    OBSERVED_LATENCY_MS_FIELD_NUMBER: _ClassVar[int]
    STALE_FIELD_NUMBER: _ClassVar[int]
    OBSERVATIONS_AGE_S_FIELD_NUMBER: _ClassVar[int]
    ADMISSION_FIELD_NUMBER: _ClassVar[int]
    READY_REPLICAS_FIELD_NUMBER: _ClassVar[int]
    FORECAST_QUANTILE_FIELD_NUMBER: _ClassVar[int]
    LATENCY_ONE_FEWER_MS_FIELD_NUMBER: _ClassVar[int]
    STEADY_LATENCY_MS_FIELD_NUMBER: _ClassVar[int]
    LATENCY_ONE_MORE_MS_FIELD_NUMBER: _ClassVar[int]
    BINDING_QUOTA_FIELD_NUMBER: _ClassVar[int]
    LLM_STEP_BASE_MS_FIELD_NUMBER: _ClassVar[int]
    LLM_DECODE_MS_PER_SEQ_FIELD_NUMBER: _ClassVar[int]
    LLM_PREFILL_MS_PER_TOKEN_FIELD_NUMBER: _ClassVar[int]
    LLM_KV_CACHE_TOKENS_FIELD_NUMBER: _ClassVar[int]
    LLM_PROFILE_SOURCE_FIELD_NUMBER: _ClassVar[int]
    LLM_PROFILE_FIT_ERROR_FIELD_NUMBER: _ClassVar[int]
    LLM_TTFT_OVERHEAD_MS_FIELD_NUMBER: _ClassVar[int]
    namespace: str
    deployment: str
    desired_replicas: int
    current_replicas: int
    forecast_rps: float
    expected_latency_ms: float
    expected_utility: float
    held_reason: str
    slo_latency_ms: float
    slo_percentile: float
    observed_latency_ms: float
    stale: bool
    observations_age_s: float
    admission: float
    ready_replicas: int
    forecast_quantile: float
    latency_one_fewer_ms: float
    steady_latency_ms: float
    latency_one_more_ms: float
    binding_quota: str
    llm_step_base_ms: float
    llm_decode_ms_per_seq: float
    llm_prefill_ms_per_token: float
    llm_kv_cache_tokens: int
    llm_profile_source: str
    llm_profile_fit_error: float
    llm_ttft_overhead_ms: float
    def __init__(self, namespace: _Optional[str] = ..., deployment: _Optional[str] = ..., desired_replicas: _Optional[int] = ..., current_replicas: _Optional[int] = ..., forecast_rps: _Optional[float] = ..., expected_latency_ms: _Optional[float] = ..., expected_utility: _Optional[float] = ..., held_reason: _Optional[str] = ..., slo_latency_ms: _Optional[float] = ..., slo_percentile: _Optional[float] = ..., observed_latency_ms: _Optional[float] = ..., stale: _Optional[bool] = ..., observations_age_s: _Optional[float] = ..., admission: _Optional[float] = ..., ready_replicas: _Optional[int] = ..., forecast_quantile: _Optional[float] = ..., latency_one_fewer_ms: _Optional[float] = ..., steady_latency_ms: _Optional[float] = ..., latency_one_more_ms: _Optional[float] = ..., binding_quota: _Optional[str] = ..., llm_step_base_ms: _Optional[float] = ..., llm_decode_ms_per_seq: _Optional[float] = ..., llm_prefill_ms_per_token: _Optional[float] = ..., llm_kv_cache_tokens: _Optional[int] = ..., llm_profile_source: _Optional[str] = ..., llm_profile_fit_error: _Optional[float] = ..., llm_ttft_overhead_ms: _Optional[float] = ...) -> None: ...

class SolveJob(_message.Message):
    __slots__ = ("name", "namespace", "slo_latency_ms", "slo_percentile", "processing_time_ms", "rate_rps", "resources", "weight", "min_replicas", "max_replicas", "current_replicas")
    class ResourcesEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: float
        def __init__(self, key: _Optional[str] = ..., value: _Optional[float] = ...) -> None: ...
    NAME_FIELD_NUMBER: _ClassVar[int]
    NAMESPACE_FIELD_NUMBER: _ClassVar[int]
    SLO_LATENCY_MS_FIELD_NUMBER: _ClassVar[int]
    SLO_PERCENTILE_FIELD_NUMBER: _ClassVar[int]
    PROCESSING_TIME_MS_FIELD_NUMBER: _ClassVar[int]
    RATE_RPS_FIELD_NUMBER: _ClassVar[int]
    RESOURCES_FIELD_NUMBER: _ClassVar[int]
    WEIGHT_FIELD_NUMBER: _ClassVar[int]
    MIN_REPLICAS_FIELD_NUMBER: _ClassVar[int]
    MAX_REPLICAS_FIELD_NUMBER: _ClassVar[int]
    CURRENT_REPLICAS_FIELD_NUMBER: _ClassVar[int]
    name: str
    namespace: str
    slo_latency_ms: float
    slo_percentile: float
    processing_time_ms: float
    rate_rps: _containers.RepeatedScalarFieldContainer[float]
    resources: _containers.ScalarMap[str, float]
    weight: float
    min_replicas: int
    max_replicas: int
    current_replicas: int
    def __init__(self, name: _Optional[str] = ..., namespace: _Optional[str] = ..., slo_latency_ms: _Optional[float] = ..., slo_percentile: _Optional[float] = ..., processing_time_ms: _Optional[float] = ..., rate_rps: _Optional[_Iterable[float]] = ..., resources: _Optional[_Mapping[str, float]] = ..., weight: _Optional[float] = ..., min_replicas: _Optional[int] = ..., max_replicas: _Optional[int] = ..., current_replicas: _Optional[int] = ...) -> None: ...

class SolveQuota(_message.Message):
    __slots__ = ("name", "namespace", "hard", "used")
    class HardEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: float
        def __init__(self, key: _Optional[str] = ..., value: _Optional[float] = ...) -> None: ...
    class UsedEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: float
        def __init__(self, key: _Optional[str] = ..., value: _Optional[float] = ...) -> None: ...
    NAME_FIELD_NUMBER: _ClassVar[int]
    NAMESPACE_FIELD_NUMBER: _ClassVar[int]
    HARD_FIELD_NUMBER: _ClassVar[int]
    USED_FIELD_NUMBER: _ClassVar[int]
    name: str
    namespace: str
    hard: _containers.ScalarMap[str, float]
    used: _containers.ScalarMap[str, float]
    def __init__(self, name: _Optional[str] = ..., namespace: _Optional[str] = ..., hard: _Optional[_Mapping[str, float]] = ..., used: _Optional[_Mapping[str, float]] = ...) -> None: ...

class SolveRequest(_message.Message):
    __slots__ = ("objective", "jobs", "quotas", "solver", "time_limit_s")
    OBJECTIVE_FIELD_NUMBER: _ClassVar[int]
    JOBS_FIELD_NUMBER: _ClassVar[int]
    QUOTAS_FIELD_NUMBER: _ClassVar[int]
    SOLVER_FIELD_NUMBER: _ClassVar[int]
    TIME_LIMIT_S_FIELD_NUMBER: _ClassVar[int]
    objective: str
    jobs: _containers.RepeatedCompositeFieldContainer[SolveJob]
    quotas: _containers.RepeatedCompositeFieldContainer[SolveQuota]
    solver: str
    time_limit_s: float
    def __init__(self, objective: _Optional[str] = ..., jobs: _Optional[_Iterable[_Union[SolveJob, _Mapping]]] = ..., quotas: _Optional[_Iterable[_Union[SolveQuota, _Mapping]]] = ..., solver: _Optional[str] = ..., time_limit_s: _Optional[float] = ...) -> None: ...

class Allocation(_message.Message):
    __slots__ = ("namespace", "name", "replicas", "latency_ms", "utility")
    NAMESPACE_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    REPLICAS_FIELD_NUMBER: _ClassVar[int]
    LATENCY_MS_FIELD_NUMBER: _ClassVar[int]
    UTILITY_FIELD_NUMBER: _ClassVar[int]
    namespace: str
    name: str
    replicas: int
    latency_ms: float
    utility: float
    def __init__(self, namespace: _Optional[str] = ..., name: _Optional[str] = ..., replicas: _Optional[int] = ..., latency_ms: _Optional[float] = ..., utility: _Optional[float] = ...) -> None: ...

class SolveResponse(_message.Message):
    __slots__ = ("status", "message", "objective_value", "bound", "solve_ms", "allocations")
    STATUS_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    OBJECTIVE_VALUE_FIELD_NUMBER: _ClassVar[int]
    BOUND_FIELD_NUMBER: _ClassVar[int]
    SOLVE_MS_FIELD_NUMBER: _ClassVar[int]
    ALLOCATIONS_FIELD_NUMBER: _ClassVar[int]
    status: str
    message: str
    objective_value: float
    bound: float
    solve_ms: float
    allocations: _containers.RepeatedCompositeFieldContainer[Allocation]
    def __init__(self, status: _Optional[str] = ..., message: _Optional[str] = ..., objective_value: _Optional[float] = ..., bound: _Optional[float] = ..., solve_ms: _Optional[float] = ..., allocations: _Optional[_Iterable[_Union[Allocation, _Mapping]]] = ...) -> None: ...
