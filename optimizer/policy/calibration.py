"""Per-job planning headroom calibrated online from each job's own forecast misses (adaptive conformal).

Faro plans every job with a quantile of its load forecast. One global level (the artifact's 0.6, our
0.8) covers a smooth job's next minutes most of the time and a bursty one's rarely; and a forecaster's
intervals are only as good as its model. What the plan needs is that the job's busiest minute until
the next long step stays within what was planned for it, ``target`` of the time. So every job keeps
the scores of its recent steps,

    score = busiest minute seen since the step − busiest minute the base forecast gave for them  (req/min)

and plans with its base forecast plus a headroom ``E``: the ``α``-quantile of its last ``window``
scores (conformalised quantile regression, Romano et al. 2019, on the forecaster's ``quantile``). The
level ``α`` itself moves by adaptive conformal inference (Gibbs & Candès 2021),

    α ← α + γ·(miss − (1 − target))

so over any stretch of steps the share of misses tracks ``1 − target`` — also after a level shift, when
the window still holds the old regime's scores (a run of misses lifts ``α`` to the window's largest
score, and beyond it: above 1 the headroom grows by the scores' spread per unit). ``E`` may be negative
(the forecaster's interval was too wide). Called by ``faro.py``; pure (state in, state out).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
from faro.optimizer.policy.common import Key
from numpy.typing import NDArray


@dataclass(frozen=True)
class PlannedPeaks:
    """What one long step planned: from minute ``start_min`` (absolute, the first forecast minute) the
    per-job (rows ``keys``) per-minute base forecast, requests per minute."""

    keys: tuple[Key, ...]
    start_min: int
    base_rpm: NDArray[np.float64]


@dataclass(frozen=True)
class CoverageState:
    """Per job: its level α, its recent scores (oldest first), (covered, scored) counts of the planned
    table (base + headroom); and the last plan still to be scored with the headroom it used."""

    levels: Mapping[Key, float] = field(default_factory=dict)
    scores: Mapping[Key, tuple[float, ...]] = field(default_factory=dict)
    counts: Mapping[Key, tuple[int, int]] = field(default_factory=dict)
    last: PlannedPeaks | None = None
    last_headroom: Mapping[Key, float] = field(default_factory=dict)

    def coverage(self) -> float | None:
        """Share of scored job-steps whose busiest minute stayed within plan (None before any)."""
        hit = sum(c for c, _ in self.counts.values())
        total = sum(n for _, n in self.counts.values())
        return hit / total if total else None


@dataclass(frozen=True)
class ConformalHeadroom:
    """``target`` coverage of the busiest minute until the next long step; ACI step ``gamma``; the last
    ``window`` scores per job; no headroom until ``min_scores`` scores exist."""

    target: float = 0.9
    gamma: float = 0.05
    window: int = 288
    min_scores: int = 6

    def __post_init__(self) -> None:
        if not 0 < self.target < 1:
            raise ValueError(f"coverage target must be in (0, 1), got {self.target}")
        if not 0 < self.gamma <= 1:
            raise ValueError(f"coverage gamma must be in (0, 1], got {self.gamma}")
        if self.window < 2 or not 1 <= self.min_scores <= self.window:
            raise ValueError("coverage window must be >= 2 and min_scores in [1, window]")

    def headroom(self, state: CoverageState, keys: Sequence[Key], *, raise_level: float = 0.0) -> NDArray[np.float64]:
        """Per job, the req/min added to every minute of its base forecast (0 until ``min_scores``)."""
        out = np.zeros(len(keys))
        for i, key in enumerate(keys):
            scores = state.scores.get(key, ())
            if len(scores) < self.min_scores:
                continue
            level = state.levels.get(key, self.target) + raise_level
            out[i] = _empirical(np.asarray(scores, dtype=float), level)
        return out

    def score(self, state: CoverageState, history: NDArray[np.float64], now_min: int) -> CoverageState:
        """Score the last plan on the minutes completed since (``history`` is jobs × minutes of the
        current view, right-aligned on minute ``now_min − 1``, rows matched by the plan's keys): append
        each job's score and move its level by whether the planned table (base + headroom) held."""
        last = state.last
        if last is None:
            return state
        done = min(now_min - last.start_min, last.base_rpm.shape[1], history.shape[1])
        if done <= 0:
            return state
        levels, scores, counts = dict(state.levels), dict(state.scores), dict(state.counts)
        actual = history[:, history.shape[1] - done :]
        for row, key in enumerate(last.keys):
            if row >= actual.shape[0]:
                break
            seen = actual[row][~np.isnan(actual[row])]
            if not seen.size:
                continue
            base = float(np.max(last.base_rpm[row, :done]))
            score = float(seen.max()) - base
            planned = max(0.0, base + state.last_headroom.get(key, 0.0))
            miss = float(seen.max() > planned + 0.5)  # counts are whole requests
            if len(scores.get(key, ())) >= self.min_scores:  # the level moves once headroom is in use
                levels[key] = levels.get(key, self.target) + self.gamma * (miss - (1.0 - self.target))
            scores[key] = (*scores.get(key, ()), score)[-self.window :]
            hit, total = counts.get(key, (0, 0))
            counts[key] = (hit + int(miss == 0.0), total + 1)
        return CoverageState(levels=levels, scores=scores, counts=counts)

    def planned(self, state: CoverageState, keys: Sequence[Key], start_min: int, base_rpm: NDArray[np.float64],
                headroom: NDArray[np.float64]) -> CoverageState:
        """Remember this step's base forecast and headroom for the next score."""
        return CoverageState(levels=state.levels, scores=state.scores, counts=state.counts,
                             last=PlannedPeaks(tuple(keys), int(start_min), np.array(base_rpm, dtype=float)),
                             last_headroom={k: float(h) for k, h in zip(keys, headroom, strict=True)})


def _empirical(scores: NDArray[np.float64], level: float) -> float:
    """The conformal quantile of ``scores`` at ``level``: the ⌈level·(n+1)⌉-th smallest; below the
    smallest for level ≤ 0 and above the largest for level ≥ n/(n+1), by the scores' spread per unit
    of level beyond it (so a long run of misses keeps raising the headroom)."""
    s = np.sort(scores)
    n = s.size
    rank = level * (n + 1)
    spread = max(1.0, float(s[-1] - s[0]))
    if rank >= n:
        return float(s[-1] + spread * (level - n / (n + 1)))
    if rank < 1:
        return float(s[0] - spread * (1 / (n + 1) - level))
    return float(s[int(np.ceil(rank)) - 1])
