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


def test_the_timeline_shows_the_best_policy_a_cluster_can_run_and_old_plots_are_removed(tmp_path, capsys):
    out = tmp_path / "out"
    out.mkdir()
    (out / "timeline-from-an-earlier-run.png").write_bytes(b"old")
    code = cmd.run(_args("--minutes", "2", "--policies", "oracle,fairshare", "--workers", "1", "--no-progress",
                         "--output", str(out)))
    assert code == 0
    assert sorted(p.name for p in out.glob("*.png")) == ["policies.png", "timeline-fairshare.png"]
    captured = capsys.readouterr()
    assert f"wrote {out / 'results.json'}, {out / 'policies.png'}, {out / 'timeline-fairshare.png'}" in captured.err
    assert "perfect foresight" in captured.out  # the legend under the table says what the oracle is


def test_best_deployable_never_picks_the_oracle_unless_it_is_all_there_is():
    from faro.optimizer.sim.report import best_deployable, policy_group

    rows = {"oracle": {"slo_violation": 0.01}, "faro-fair": {"slo_violation": 0.02}, "aiad": {"slo_violation": 0.1},
            "mark": {"error": "boom"}}
    assert best_deployable(rows) == "faro-fair"
    assert best_deployable({"oracle": {"slo_violation": 0.01}}) == "oracle"
    assert [policy_group(n) for n in ("oracle", "faro-sum", "hpa-cpu")] == ["oracle", "faro", "baseline"]


def test_capacity_search_writes_its_own_files_and_leaves_results_json_alone(tmp_path, capsys):
    out = tmp_path / "out"
    out.mkdir()
    (out / "results.json").write_text('{"policies": {}}')
    code = cmd.run(_args("--minutes", "2", "--policies", "fairshare", "--capacity-search", "--cpus", "12",
                         "--target-violation", "0.5", "--no-progress", "--output", str(out)))
    assert code == 0
    assert (out / "results.json").read_text() == '{"policies": {}}'
    doc = json.loads((out / "capacity-search.json").read_text())
    search = doc["capacity_search"]
    assert search["policy"] == "fairshare" and search["cpus"] >= doc["jobs"]
    assert str(search["cpus"]) in search["trials"]
    assert search["trials"][str(search["cpus"])]["slo_violation"] <= 0.5
    assert (out / "capacity-search.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    captured = capsys.readouterr()
    assert f"smallest CPU cap for fairshare with SLO violations <= 50%: {search['cpus']}" in captured.out
    assert f"wrote {out / 'capacity-search.json'}, {out / 'capacity-search.png'}" in captured.err
