"""The one registry of forecasters by name: ``make_forecaster(name, **options)``.

Called by policies, the simulator, ``faro forecast backtest`` and the benchmark. Options are passed
to the model's constructor; for ``auto`` an option goes to every candidate that accepts it (e.g.
``season_min``), and ``candidates`` names the models to choose from (``profile@1440``: a seasonal model
with its own season, so one fleet can choose per job between a 6-hour and a daily cycle). Unknown names and options are
``InvalidInputError``s that name them. Every model here is deterministic; ``seed`` is accepted (and
unused) so callers can pass one uniformly.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from typing import Any

from faro.optimizer.errors import InvalidInputError

from .auto import Auto
from .base import Forecaster
from .ets import ETS
from .naive import LastValue, SeasonalNaiveForecaster
from .profile import ProfileRegression
from .smoothing import EWMA, Holt

FORECASTERS: Mapping[str, Callable[..., Forecaster]] = {
    "last": LastValue,
    "seasonal_naive": SeasonalNaiveForecaster,
    "ewma": EWMA,
    "holt": Holt,
    "ets": ETS,
    "profile": ProfileRegression,
    "auto": Auto,
}
#: What ``auto`` chooses from unless told otherwise: the models cheap enough for 1,000 jobs a cycle.
AUTO_CANDIDATES = ("profile", "ewma", "holt", "last", "seasonal_naive")
_AUTO_OWN = {f.name for f in dataclasses.fields(Auto)} - {"candidates", "name"}


def _fields(cls: Callable[..., Forecaster]) -> set[str]:
    return {f.name for f in dataclasses.fields(cls)} - {"name"}  # type: ignore[arg-type]


def _build(name: str, options: Mapping[str, Any]) -> Forecaster:
    cls = FORECASTERS[name]
    try:
        return cls(**options)
    except TypeError as exc:
        raise InvalidInputError(f"forecaster {name}", f"bad options: {exc}") from None


def make_forecaster(name: str = "auto", **options: Any) -> Forecaster:
    """A forecaster by registry name, configured with keyword options."""
    if name not in FORECASTERS:
        raise InvalidInputError("forecaster", f"unknown model {name!r}; known: {', '.join(FORECASTERS)}")
    options = dict(options)
    options.pop("seed", None)
    if name != "auto":
        unknown = set(options) - _fields(FORECASTERS[name])
        if unknown:
            raise InvalidInputError(
                f"forecaster {name} option {sorted(unknown)[0]}",
                f"unknown option; accepted: {', '.join(sorted(_fields(FORECASTERS[name])))}",
            )
        return _build(name, options)

    raw = options.pop("candidates", AUTO_CANDIDATES)
    names = tuple(n.strip() for n in raw.split(",")) if isinstance(raw, str) else tuple(raw)
    seasons: dict[str, int] = {}
    for n in names:
        model, _, season = n.partition("@")
        if model not in FORECASTERS or model == "auto":
            raise InvalidInputError("forecaster auto option candidates", f"unknown model {n!r}")
        if season:  # "profile@1440": the same model with its own season length
            if "season_min" not in _fields(FORECASTERS[model]) or not season.isdigit():
                raise InvalidInputError("forecaster auto option candidates",
                                        f"{n!r}: '@' takes a season in minutes, for a seasonal model")
            seasons[n] = int(season)
    own = {k: v for k, v in options.items() if k in _AUTO_OWN}
    shared = {k: v for k, v in options.items() if k not in _AUTO_OWN}
    accepted = set().union(*(_fields(FORECASTERS[n.partition("@")[0]]) for n in names))
    unknown = set(shared) - accepted
    if unknown:
        raise InvalidInputError(
            f"forecaster auto option {sorted(unknown)[0]}",
            f"unknown option; accepted: {', '.join(sorted(accepted | _AUTO_OWN | {'candidates'}))}",
        )
    candidates = {}
    for n in names:
        model = n.partition("@")[0]
        own_options = {k: v for k, v in shared.items() if k in _fields(FORECASTERS[model])}
        candidates[n] = _build(model, own_options | ({"season_min": seasons[n]} if n in seasons else {}))
    return Auto(candidates=candidates, **own)
