"""``faro simulate`` end to end on a short slice of the bundled trace: JSON contract, plots, errors."""

from __future__ import annotations

import argparse
import json

import pytest
from faro.optimizer.commands import simulate as cmd
from faro.optimizer.errors import InvalidInputError


def _args(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    cmd.add_arguments(parser)
    return parser.parse_args(list(argv))


def test_simulate_writes_the_results_contract_and_plots(tmp_path):
    out = tmp_path / "out"
    code = cmd.run(_args("--minutes", "2", "--policies", "fairshare,aiad", "--workers", "1", "--no-progress",
                         "--output", str(out)))
    assert code == 0
    doc = json.loads((out / "results.json").read_text())
    assert list(doc["policies"]) == ["fairshare", "aiad"]
    for row in doc["policies"].values():
        for key in ("slo_violation", "request_slo_violation", "lost_utility", "cpu_minutes"):
            assert isinstance(row[key], float)
        assert 0.0 <= row["slo_violation"] <= 1.0
    assert (out / "policies.png").stat().st_size > 0
    assert list(out.glob("timeline-*.png"))


def test_unknown_policy_is_named_in_the_error(tmp_path):
    with pytest.raises(InvalidInputError, match="nope"):
        cmd.run(_args("--policies", "fairshare,nope", "--output", str(tmp_path)))


def test_a_timeline_of_many_jobs_shows_the_ones_with_the_most_violations():
    import numpy as np
    from faro.optimizer.sim.report import timeline_jobs

    satisfaction = np.ones((20, 5))
    satisfaction[[3, 17, 9], :] = [[0.5] * 5, [0.2] * 5, [0.9] * 5]
    satisfaction[4, :] = np.nan  # a job without requests
    assert timeline_jobs(satisfaction, 2) == [3, 17]
    assert timeline_jobs(satisfaction, 25) == list(range(20))
