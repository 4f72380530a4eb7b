"""One set of planning defaults: ``faro optimizer`` builds the very policy ``faro simulate`` runs."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest
from faro.optimizer.commands import optimizer as optimizer_command
from faro.optimizer.policy.hybrid import options_summary
from faro.optimizer.policy.names import DEFAULT_POLICY
from faro.optimizer.policy.registry import FARO_POLICY_NAMES, make_policy, planning_options
from faro.optimizer.service.config import ServiceConfig

ROOT = Path(__file__).resolve().parents[1]


def _optimizer_args(*flags: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    optimizer_command.add_arguments(parser)
    return parser.parse_args(list(flags))


def _settings(policy) -> dict:
    out = options_summary(policy)
    out.pop("_forecaster", None)
    return out


def test_the_default_policy_is_the_same_everywhere():
    assert _optimizer_args().policy == DEFAULT_POLICY
    assert ServiceConfig().policy == DEFAULT_POLICY
    assert DEFAULT_POLICY in FARO_POLICY_NAMES


@pytest.mark.parametrize("name", FARO_POLICY_NAMES)
def test_faro_optimizer_builds_the_policy_faro_simulate_runs(name, monkeypatch):
    for var in ("FARO_INTERVAL_S", "FARO_HORIZON", "FARO_QUANTILE", "FARO_POLICY", "FARO_HPA_TOLERANCE"):
        monkeypatch.delenv(var, raising=False)
    # direct actuation: the same options, every one of them
    live = optimizer_command.build_policy(_optimizer_args("--policy", name, "--actuator", "ray-serve"))
    simulated = make_policy(name, **planning_options(name, actuation="direct"))
    assert _settings(live) == _settings(simulated)
    assert _settings(simulated) == _settings(make_policy(name))  # and they are the policy's own defaults
    # through HPAs both account for the HPA dead-band, and nothing else changes
    live_hpa = optimizer_command.build_policy(_optimizer_args("--policy", name))
    simulated_hpa = make_policy(name, **planning_options(name, actuation="hpa"))
    assert live_hpa.hpa_tolerance == simulated_hpa.hpa_tolerance == 0.1
    assert _settings(live_hpa) == _settings(simulated_hpa)


def test_explicit_optimizer_flags_override_the_shared_defaults():
    policy = optimizer_command.build_policy(_optimizer_args("--policy", "faro-fair", "--quantile", "0.7",
                                                            "--horizon", "5", "--interval-s", "120"))
    assert (policy.quantile, policy.max_quantile, policy.horizon, policy.interval_s) == (0.7, 0.7, 5, 120.0)


def test_the_shipped_manifests_run_the_default_policy_with_the_shared_defaults(monkeypatch):
    """The chart's defaults (``manifests/base`` is rendered from them, tests/test_manifests_*.py) spell out
    the planning flags; they must build exactly what ``faro simulate`` runs for the default policy."""
    import yaml

    for var in ("FARO_INTERVAL_S", "FARO_HORIZON", "FARO_QUANTILE", "FARO_POLICY", "FARO_HPA_TOLERANCE"):
        monkeypatch.delenv(var, raising=False)
    docs = yaml.safe_load_all((ROOT / "manifests" / "base" / "optimizer.yaml").read_text())
    deployment = next(d for d in docs if d and d["kind"] == "Deployment" and d["metadata"]["name"] == "faro-optimizer")
    args = deployment["spec"]["template"]["spec"]["containers"][0]["args"]
    assert args[0] == "optimizer"
    parsed = _optimizer_args(*args[1:])
    assert parsed.policy == DEFAULT_POLICY
    live = optimizer_command.build_policy(parsed)
    simulated = make_policy(DEFAULT_POLICY, **planning_options(DEFAULT_POLICY, actuation=parsed.actuator))
    assert _settings(live) == _settings(simulated)
    values = yaml.safe_load((ROOT / "charts" / "faro" / "values.yaml").read_text())
    assert values["optimizer"]["policy"] == DEFAULT_POLICY
