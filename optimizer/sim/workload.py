"""Workloads for the simulator: per-minute request counts per job, and the per-request distributions.

Called by ``faro simulate`` (``optimizer/commands/simulate.py``), ``bench/simulate.py`` and the engine
(``engine.py``), which turns the counts into request arrival times with ``arrivals_for_minute``.
The bundled trace is the Faro paper's evaluation workload (``faro.traces/faro-top9-day11.csv``).
"""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from faro.optimizer.errors import InvalidInputError
from numpy.typing import NDArray

BUNDLED_TRACE = "faro-top9-day11.csv"
BUNDLED_HISTORY = "faro-top9-history.csv"  # days 1–10 before the bundled day 11


@dataclass(frozen=True)
class LogNormal:
    """scipy's ``lognorm(shape, loc, scale)`` in milliseconds: ``loc + scale·exp(shape·Z)``."""

    shape: float
    loc_ms: float
    scale_ms: float

    def __post_init__(self) -> None:
        if not (self.shape >= 0 and self.scale_ms >= 0 and self.loc_ms >= 0):
            raise InvalidInputError("LogNormal", f"shape, loc_ms and scale_ms must be >= 0, got {self}")

    @property
    def mean_ms(self) -> float:
        return self.loc_ms + self.scale_ms * math.exp(self.shape**2 / 2.0)

    def draw_ms(self, rng: np.random.Generator, n: int) -> NDArray[np.float64]:
        return self.loc_ms + self.scale_ms * np.exp(self.shape * rng.standard_normal(n))


@dataclass(frozen=True)
class Exponential:
    """Exponential service (for M/M/c checks against Erlang C)."""

    mean: float  # ms

    @property
    def mean_ms(self) -> float:
        return self.mean

    def draw_ms(self, rng: np.random.Generator, n: int) -> NDArray[np.float64]:
        return rng.exponential(self.mean, n)


ServiceDistribution = LogNormal | Exponential

ARTIFACT_SERVICE = LogNormal(shape=0.4225, loc_ms=79.3, scale_ms=68.6)
"""ResNet34 on 1 CPU as fitted in the Faro artifact (mean ≈ 154 ms)."""

ARTIFACT_ROUTING = LogNormal(shape=0.4808, loc_ms=3.485, scale_ms=0.988)
"""One pass through the Ray Serve HTTP proxy in the artifact (mean ≈ 4.6 ms); a request passes twice."""


@dataclass(frozen=True)
class Workload:
    """``counts_rpm[j, m]`` requests of job ``names[j]`` in minute ``m``; ``history_rpm[j, h]`` the
    minutes before minute 0 (NaN = unknown), which the policies see as past load as a live controller
    sees Prometheus' retention — the simulation itself starts at minute 0."""

    names: tuple[str, ...]
    counts_rpm: NDArray[np.int64]
    history_rpm: NDArray[np.float64] | None = None

    def __post_init__(self) -> None:
        if self.counts_rpm.ndim != 2 or self.counts_rpm.shape[0] != len(self.names):
            raise InvalidInputError(
                "workload", f"counts shape {self.counts_rpm.shape} does not match {len(self.names)} jobs"
            )
        if len(set(self.names)) != len(self.names):
            raise InvalidInputError("workload.names", "job names must be unique")
        if self.history_rpm is not None and (
            self.history_rpm.ndim != 2 or self.history_rpm.shape[0] != len(self.names)
        ):
            raise InvalidInputError(
                "workload.history_rpm", f"shape {self.history_rpm.shape} does not match {len(self.names)} jobs"
            )

    @property
    def num_jobs(self) -> int:
        return len(self.names)

    @property
    def num_minutes(self) -> int:
        return int(self.counts_rpm.shape[1])

    @property
    def total_requests(self) -> int:
        return int(self.counts_rpm.sum())

    def multiplied(self, k: int) -> Workload:
        """The paper's 20/100-job runs: ``k`` copies of every job (``job3-2`` = copy 2 of ``job3``)."""
        if k < 1:
            raise InvalidInputError("--jobs-multiplier", f"must be >= 1, got {k}")
        if k == 1:
            return self
        names = tuple(f"{n}-{c}" for c in range(k) for n in self.names)
        history = np.tile(self.history_rpm, (k, 1)) if self.history_rpm is not None else None
        return Workload(names=names, counts_rpm=np.tile(self.counts_rpm, (k, 1)), history_rpm=history)

    def head(self, minutes: int) -> Workload:
        return Workload(names=self.names, counts_rpm=self.counts_rpm[:, :minutes].copy(), history_rpm=self.history_rpm)

    def with_history(
        self, names: Sequence[str], counts_rpm: NDArray[np.float64], *, minutes: int | None = None
    ) -> Workload:
        """This workload with past load: ``counts_rpm[i]`` is job ``names[i]``'s history (oldest first),
        of which the last ``minutes`` are kept (all when None). Jobs are matched by name; a job the
        history lacks gets NaN (no data); at least one job must match."""
        index = {n: i for i, n in enumerate(names)}
        if not any(n in index for n in self.names):
            raise InvalidInputError(
                "--history", f"has none of the trace's jobs ({', '.join(self.names[:5])}…): {', '.join(names[:5])}…"
            )
        if minutes is not None and minutes < 1:
            raise InvalidInputError("--history-minutes", f"must be >= 1, got {minutes}")
        width = counts_rpm.shape[1] if minutes is None else min(counts_rpm.shape[1], minutes)
        history = np.full((len(self.names), width), np.nan)
        for j, name in enumerate(self.names):
            if name in index:
                history[j] = counts_rpm[index[name], counts_rpm.shape[1] - width :]
        return Workload(names=self.names, counts_rpm=self.counts_rpm, history_rpm=history)


def parse_trace_csv(text: str, *, source: str = "trace") -> Workload:
    """A wide CSV ``minute,<job>,<job>,…`` of requests per minute (the ``minute`` column is optional)."""
    rows = list(csv.reader(io.StringIO(text)))
    rows = [r for r in rows if r and any(c.strip() for c in r)]
    if len(rows) < 2:
        raise InvalidInputError(source, "needs a header row and at least one minute")
    header = [h.strip() for h in rows[0]]
    skip = 1 if header and header[0].lower() == "minute" else 0
    names = tuple(header[skip:])
    if not names or any(not n for n in names):
        raise InvalidInputError(f"{source} header", "needs one non-empty column name per job")
    counts = np.zeros((len(names), len(rows) - 1), dtype=np.int64)
    for m, row in enumerate(rows[1:]):
        if len(row) != len(header):
            raise InvalidInputError(f"{source} line {m + 2}", f"has {len(row)} fields, header has {len(header)}")
        for j, cell in enumerate(row[skip:]):
            try:
                value = float(cell)
            except ValueError:
                raise InvalidInputError(f"{source} line {m + 2} column {names[j]}", f"not a number: {cell!r}") from None
            if not (value >= 0 and math.isfinite(value)):
                raise InvalidInputError(f"{source} line {m + 2} column {names[j]}", f"must be >= 0, got {cell!r}")
            counts[j, m] = round(value)
    return Workload(names=names, counts_rpm=counts)


def load_history(workload: Workload, path: str | Path | None = None, *, minutes: int | None = None) -> Workload:
    """``workload`` with past load attached: a history file (``job,day,sample,m0…`` rows, sample 0, or a
    wide trace; see ``faro.optimizer.forecast.data``), or the bundled paper history (days 1–10 before
    the bundled day 11) when ``path`` is None."""
    from faro.optimizer.forecast.data import bundled_history, read_trace

    trace = bundled_history() if path is None else read_trace(path)
    return workload.with_history(trace.jobs, trace.counts, minutes=minutes)


def load_trace(path: str | Path | None = None) -> Workload:
    """Read a trace file, or the bundled paper workload when ``path`` is None."""
    if path is None:
        from importlib.resources import files

        return parse_trace_csv((files("faro.traces") / BUNDLED_TRACE).read_text(), source=BUNDLED_TRACE)
    p = Path(path)
    try:
        text = p.read_text()
    except OSError as exc:
        raise InvalidInputError(f"--trace {p}", f"cannot read: {exc.strerror or exc}") from None
    return parse_trace_csv(text, source=str(p))


def arrivals_for_minute(rng: np.random.Generator, count: int, start_s: float) -> NDArray[np.float64]:
    """``count`` arrivals with exponential gaps of mean ``60/count`` from ``start_s``, as the artifact's
    JSON load generator does (the count is exact; the last arrivals may spill into the next minute)."""
    if count <= 0:
        return np.empty(0)
    gaps = rng.exponential(60.0 / count, count)
    out = np.empty(count)
    out[0] = start_s
    np.cumsum(gaps[:-1], out=out[1:])
    out[1:] += start_s
    return out
