"""Readers for the trace formats the forecasters are backtested on.

Two CSV formats (see ``traces/README.md``): *wide* ``minute,job0,job1,…`` (one row per minute) and
*history* ``job,day,sample,m0..m359`` (one row per job, day window and augmentation sample). A
history becomes one series per job with its day windows concatenated in day order, so a season of
``minutes_per_day`` (360) lines up the same minute of each window. Empty cells are missing minutes
(NaN). Called by ``faro forecast backtest``, ``bench/forecast.py`` and tests.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import numpy as np
from faro.optimizer.errors import InvalidInputError
from numpy.typing import NDArray

BUNDLED_DAY11 = "faro-top9-day11.csv"
BUNDLED_HISTORY = "faro-top9-history.csv"  # the same jobs on days 1–10


@dataclass(frozen=True)
class Trace:
    """Per-minute request counts: ``counts`` is jobs × minutes (NaN = missing)."""

    jobs: tuple[str, ...]
    counts: NDArray[np.float64]


def _number(cell: str, where: str) -> float:
    cell = cell.strip()
    if cell == "" or cell.lower() in {"nan", "na"}:
        return float("nan")
    try:
        value = float(cell)
    except ValueError:
        raise InvalidInputError(where, f"not a number: {cell!r}") from None
    if not np.isfinite(value) or value < 0:
        raise InvalidInputError(where, f"must be a finite, non-negative request count, got {cell!r}")
    return value


def _rows(text: str, name: str) -> tuple[list[str], list[list[str]]]:
    rows = [r for r in csv.reader(io.StringIO(text)) if r and any(c.strip() for c in r)]
    if not rows:
        raise InvalidInputError(name, "is empty")
    return [c.strip() for c in rows[0]], rows[1:]


def parse_wide(text: str, *, name: str = "trace") -> Trace:
    header, rows = _rows(text, name)
    if len(header) < 2 or header[0] != "minute":
        raise InvalidInputError(f"{name} header", f"must be 'minute,<job>,...', got {','.join(header[:4])!r}")
    jobs = tuple(header[1:])
    counts = np.full((len(jobs), len(rows)), np.nan)
    for i, row in enumerate(rows, start=2):
        if len(row) != len(header):
            raise InvalidInputError(f"{name} line {i}", f"has {len(row)} fields, the header has {len(header)}")
        for j, cell in enumerate(row[1:]):
            counts[j, i - 2] = _number(cell, f"{name} line {i} column {jobs[j]}")
    return Trace(jobs, counts)


def parse_history(text: str, *, name: str = "history", sample: int = 0) -> Trace:
    header, rows = _rows(text, name)
    if header[:3] != ["job", "day", "sample"] or len(header) < 4:
        raise InvalidInputError(f"{name} header", "must be 'job,day,sample,m0,m1,...'")
    width = len(header) - 3
    table: dict[str, dict[int, list[float]]] = {}
    for i, row in enumerate(rows, start=2):
        if len(row) != len(header):
            raise InvalidInputError(f"{name} line {i}", f"has {len(row)} fields, the header has {len(header)}")
        try:
            day, smp = int(row[1]), int(row[2])
        except ValueError:
            raise InvalidInputError(f"{name} line {i}", f"day and sample must be integers, got {row[1:3]}") from None
        if smp != sample:
            continue
        values = [_number(c, f"{name} line {i} column {header[3 + k]}") for k, c in enumerate(row[3:])]
        table.setdefault(row[0].strip(), {})[day] = values
    if not table:
        raise InvalidInputError(name, f"has no rows with sample {sample}")
    days = sorted({d for per_job in table.values() for d in per_job})
    first, last = days[0], days[-1]
    jobs = tuple(sorted(table, key=_natural))
    counts = np.full((len(jobs), (last - first + 1) * width), np.nan)  # a missing day stays NaN
    for j, job in enumerate(jobs):
        for day, values in table[job].items():
            lo = (day - first) * width
            counts[j, lo : lo + width] = values
    return Trace(jobs, counts)


def _natural(name: str) -> tuple[str, int]:
    stem = name.rstrip("0123456789")
    return (stem, int(name[len(stem) :]) if name[len(stem) :] else -1)


def read_trace(path: str | Path, *, sample: int = 0) -> Trace:
    """Read either format, told apart by the header."""
    p = Path(path)
    try:
        text = p.read_text()
    except OSError as exc:
        raise InvalidInputError(str(p), f"cannot be read: {exc.strerror or exc}") from None
    first = text.split("\n", 1)[0]
    if first.startswith("job,day,sample"):
        return parse_history(text, name=str(p), sample=sample)
    return parse_wide(text, name=str(p))


def bundled_day11() -> Trace:
    """The paper's evaluation day shipped with the package (``faro.traces``)."""
    text = resources.files("faro.traces").joinpath(BUNDLED_DAY11).read_text()
    return parse_wide(text, name=BUNDLED_DAY11)


def bundled_history(*, sample: int = 0) -> Trace:
    """Days 1–10 of the bundled jobs (history format, one augmentation ``sample``), shipped with the package."""
    text = resources.files("faro.traces").joinpath(BUNDLED_HISTORY).read_text()
    return parse_history(text, name=BUNDLED_HISTORY, sample=sample)
