"""``faro simulate --workload llm`` end to end on two minutes of the bundled LLM workload: JSON, plots, errors."""

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


def test_simulate_llm_writes_results_per_policy_and_model_and_plots(tmp_path, capsys):
    out = tmp_path / "out"
    code = cmd.run(_args("--workload", "llm", "--gpus", "20", "--minutes", "2", "--policies", "llm-fairshare,wva",
                         "--workers", "1", "--no-progress", "--output", str(out)))
    assert code == 0
    doc = json.loads((out / "results.json").read_text())
    assert doc["workload"] == "llm:bundled" and doc["gpus"] == 20.0
    assert list(doc["policies"]) == ["llm-fairshare", "wva"]
    for row in doc["policies"].values():
        for key in ("slo_violation", "ttft_violation", "itl_violation", "lost_utility", "gpu_minutes"):
            assert isinstance(row[key], float)
        assert row["max_gpus_used"] <= 20
        assert set(row["models"]) == {m["name"] for m in doc["models"]}
    assert "ttft-viol" in capsys.readouterr().out
    assert (out / "policies.png").stat().st_size > 0
    assert list(out.glob("timeline-*.png"))


def test_simulate_llm_names_unknown_policies_and_cpu_only_options(tmp_path):
    with pytest.raises(InvalidInputError, match="aiad"):  # a CPU-only baseline
        cmd.run(_args("--workload", "llm", "--policies", "aiad", "--output", str(tmp_path)))
    with pytest.raises(InvalidInputError, match="--trace"):
        cmd.run(_args("--workload", "llm", "--trace", "x.csv", "--output", str(tmp_path)))
    with pytest.raises(InvalidInputError, match="--gpus"):
        cmd.run(_args("--workload", "llm", "--gpus", "0", "--output", str(tmp_path)))
