"""A generalisation suite: a multi-day trace cut into test days, each with every earlier day as history.

"How would Faro do on my kind of load?" — ``faro simulate --suite FILE`` and ``bench/generalization.py``
build their cases here and score them here; running them (processes, files, plots) is
``optimizer/commands/suite.py``. Pure: no I/O, no clock.

A case is one test day replayed with all preceding days as past load (what ``faro optimizer`` backfills
from Prometheus) at one CPU cap. Caps follow the Faro paper's choice for its day: 32 CPUs for a day
whose busiest minute keeps 30.3 CPUs busy at 180 ms per request, i.e. ``ceil(1.056 × peak busy CPUs)``
(``paper_cap``); a tighter cap is a fraction of it.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from faro.optimizer.errors import InvalidInputError
from faro.optimizer.sim.workload import Workload

PAPER_CAP_FACTOR = 1.056
"""The paper's 32 CPUs over the 30.29 CPUs its day's busiest minute keeps busy at 180 ms per request."""

DEFAULT_CAP_SCALES = (1.0, 0.9)
"""The paper-style cap and a tighter one."""

MAX_DEFAULT_TEST_DAYS = 5


@dataclass(frozen=True)
class Case:
    """One test: ``workload`` (the test day, with its history) at ``cpus``."""

    name: str
    trace: str
    day: int | None  # 1-based test day of a multi-day trace (None: a single-day trace)
    cap_scale: float
    cpus: float
    workload: Workload

    @property
    def label(self) -> str:
        return f"{self.name} @{self.cpus:g}"


def paper_cap(
    counts_rpm: np.ndarray, *, processing_time_ms: float = 180.0, factor: float = PAPER_CAP_FACTOR,
    cpu_per_replica: float = 1.0,
) -> float:
    """``ceil(factor × busy CPUs of the busiest minute)``: the cap the paper gives its day (32 for day 11)."""
    total = np.asarray(counts_rpm, dtype=float).sum(axis=0)
    busy = float(total.max(initial=0.0)) * processing_time_ms / 1000.0 / 60.0 * cpu_per_replica
    return float(max(1, math.ceil(factor * busy - 1e-9)))


def scaled_cap(cap: float, scale: float, *, jobs: int, cpu_per_replica: float = 1.0) -> float:
    """``round(scale × cap)``, never below one replica per job."""
    return float(max(round(scale * cap), math.ceil(jobs * cpu_per_replica)))


def default_test_days(days: int, *, most: int = MAX_DEFAULT_TEST_DAYS) -> tuple[int, ...]:
    """Up to ``most`` days spread evenly over 2..``days`` (day 1 is only history): 2, 5, 8, 11, 14 of 14."""
    if days < 2:
        raise InvalidInputError("--suite", f"needs at least 2 whole days (one of history), got {days}")
    picks = np.unique(np.round(np.linspace(2, days, min(most, days - 1))).astype(int))
    return tuple(int(d) for d in picks)


def day_cases(
    workload: Workload,
    *,
    trace: str,
    day_minutes: int = 1440,
    test_days: Sequence[int] | None = None,
    cap_scales: Sequence[float] = DEFAULT_CAP_SCALES,
    processing_time_ms: float = 180.0,
    cpu_per_replica: float = 1.0,
) -> list[Case]:
    """Cases of a multi-day trace: each test day (1-based) with every earlier day as history, at each
    ``cap_scale`` × its own paper-style cap. Minutes after the last whole day are ignored."""
    if day_minutes < 1:
        raise InvalidInputError("--day-minutes", f"must be >= 1, got {day_minutes}")
    days = workload.num_minutes // day_minutes
    chosen = tuple(test_days) if test_days else default_test_days(days)
    bad = [d for d in chosen if not 2 <= d <= days]
    if bad:
        raise InvalidInputError("--test-days", f"{bad} not in 2..{days} ({days} whole days of {day_minutes} minutes)")
    _check_scales(cap_scales)
    cases = []
    for day in chosen:
        lo, hi = (day - 1) * day_minutes, day * day_minutes
        past = workload.counts_rpm[:, :lo].astype(np.float64)
        if workload.history_rpm is not None:
            past = np.concatenate([workload.history_rpm, past], axis=1)
        test = Workload(names=workload.names, counts_rpm=workload.counts_rpm[:, lo:hi].copy(), history_rpm=past)
        base = paper_cap(test.counts_rpm, processing_time_ms=processing_time_ms, cpu_per_replica=cpu_per_replica)
        for scale in cap_scales:
            cpus = scaled_cap(base, scale, jobs=workload.num_jobs, cpu_per_replica=cpu_per_replica)
            cases.append(Case(name=f"{trace} day {day}", trace=trace, day=day, cap_scale=float(scale), cpus=cpus,
                              workload=test))
    return cases


def single_cases(
    workload: Workload, *, trace: str, cap_scales: Sequence[float] = DEFAULT_CAP_SCALES,
    processing_time_ms: float = 180.0, cpu_per_replica: float = 1.0,
) -> list[Case]:
    """Cases of one test day (with whatever history ``workload`` carries) at each cap scale."""
    _check_scales(cap_scales)
    base = paper_cap(workload.counts_rpm, processing_time_ms=processing_time_ms, cpu_per_replica=cpu_per_replica)
    return [
        Case(name=trace, trace=trace, day=None, cap_scale=float(scale),
             cpus=scaled_cap(base, scale, jobs=workload.num_jobs, cpu_per_replica=cpu_per_replica), workload=workload)
        for scale in cap_scales
    ]


def _check_scales(scales: Sequence[float]) -> None:
    if not scales or any(not (0 < s <= 10 and math.isfinite(s)) for s in scales):
        raise InvalidInputError("--cap-scales", f"need scales in (0, 10], got {list(scales)}")


def is_faro(policy: str) -> bool:
    return policy.startswith("faro-")


def is_baseline(policy: str) -> bool:
    return not is_faro(policy) and not policy.startswith("oracle")


@dataclass(frozen=True)
class CaseScore:
    """One case's comparison (violations are fractions, means over seeds)."""

    best_faro: str | None
    best_faro_violation: float | None
    best_baseline: str | None
    best_baseline_violation: float | None
    oracle_violation: float | None
    default: str | None
    default_violation: float | None

    @staticmethod
    def ratio(num: float | None, den: float | None) -> float | None:
        if num is None or den is None:
            return None
        if den <= 0:
            return math.inf if num > 0 else 1.0
        return num / den

    @property
    def baseline_over_faro(self) -> float | None:
        return self.ratio(self.best_baseline_violation, self.best_faro_violation)

    @property
    def faro_over_oracle(self) -> float | None:
        return self.ratio(self.best_faro_violation, self.oracle_violation)

    @property
    def baseline_over_default(self) -> float | None:
        return self.ratio(self.best_baseline_violation, self.default_violation)

    @property
    def default_over_oracle(self) -> float | None:
        return self.ratio(self.default_violation, self.oracle_violation)

    def as_dict(self) -> dict[str, object]:
        out = dict(self.__dict__)
        out.update(baseline_over_faro=self.baseline_over_faro, faro_over_oracle=self.faro_over_oracle,
                   baseline_over_default=self.baseline_over_default, default_over_oracle=self.default_over_oracle)
        return out


def score_case(violation: Mapping[str, float], *, default: str | None = None) -> CaseScore:
    """Best Faro variant, best baseline and the Oracle among ``violation`` (policy → mean violation)."""

    def best(names: list[str]) -> tuple[str | None, float | None]:
        if not names:
            return None, None
        name = min(names, key=lambda n: violation[n])
        return name, violation[name]

    faro, faro_v = best([n for n in violation if is_faro(n)])
    base, base_v = best([n for n in violation if is_baseline(n)])
    return CaseScore(best_faro=faro, best_faro_violation=faro_v, best_baseline=base, best_baseline_violation=base_v,
                     oracle_violation=violation.get("oracle"), default=default,
                     default_violation=violation.get(default) if default else None)


def meets_goal(score: CaseScore, *, paper_day: bool, which: str = "best") -> bool | None:
    """Issue 12's acceptance for one case (``which``: ``best`` Faro variant or the ``default`` one):
    Azure days ≥ 2.5× fewer violations than the best baseline and ≤ 1.5× the Oracle's (or within 0.3
    points where the Oracle is below 0.5%); the paper day ≥ 3× the best baseline and ≤ 2.5%."""
    faro = score.best_faro_violation if which == "best" else score.default_violation
    base, oracle = score.best_baseline_violation, score.oracle_violation
    if faro is None or base is None:
        return None
    beats = base >= (3.0 if paper_day else 2.5) * faro
    if paper_day:
        return bool(beats and faro <= 0.025)
    if oracle is None:
        return None
    near = faro <= 1.5 * oracle or (oracle < 0.005 and faro - oracle <= 0.003)
    return bool(beats and near)
