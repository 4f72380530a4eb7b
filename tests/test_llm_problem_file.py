"""LLM jobs in problem files and ``faro plan``: the llm block, token mixes from lists or a trace, errors by field."""

import json
from pathlib import Path

import pytest
import yaml
from faro.optimizer.cli import main
from faro.optimizer.errors import InvalidInputError
from faro.optimizer.problem_file import load_problem, problem_from_dict

EXAMPLE = Path(__file__).resolve().parents[1] / "docs" / "examples" / "llm-problem.yaml"


def doc(**llm_overrides):
    llm = {
        "slo": {"ttft_ms": 2000, "itl_ms": 150},
        "profile": {"step_base_ms": 15, "decode_ms_per_seq": 0.25, "prefill_ms_per_token": 0.1,
                    "kv_cache_tokens": 200000},
        "token_mix": {"prompt_tokens": [1000, 3000], "output_tokens": [100, 20]},
    }
    llm.update(llm_overrides)
    return {"jobs": [{"name": "chat", "rate_rps": 3.0, "resources": {"cpu": "4", "nvidia.com/gpu": "2"}, "llm": llm}]}


def test_an_llm_job_takes_its_gpus_from_the_pod_resources_and_its_mix_from_the_file():
    job = problem_from_dict(doc()).jobs[0]
    assert job.llm is not None and job.llm.profile.gpus == 2.0
    assert job.llm.slo.ttft_ms == 2000 and job.llm.slo.itl_ms == 150 and job.llm.slo.percentile == 99
    assert job.token_mix.prompt_tokens.tolist() == [1000, 3000]
    assert job.demand("requests.nvidia.com/gpu") == 2.0 and job.demand("cpu") == 4.0


def test_a_token_mix_can_be_one_pair_or_a_trace_next_to_the_file(tmp_path):
    fixed = problem_from_dict(doc(token_mix={"prompt_tokens": 512, "output_tokens": 64})).jobs[0].token_mix
    assert fixed.mean_prompt_tokens == 512 and fixed.mean_output_tokens == 64
    (tmp_path / "conv.csv").write_text("TIMESTAMP,ContextTokens,GeneratedTokens\n"
                                       "2023-11-16 18:17:03.1,1020,129\n2023-11-16 18:17:04.2,400,0\n")
    path = tmp_path / "p.yaml"
    path.write_text(yaml.safe_dump(doc(token_mix={"trace": "conv.csv"})))
    mix = load_problem(path).jobs[0].token_mix
    assert mix.prompt_tokens.tolist() == [1020, 400] and mix.output_tokens.tolist() == [129, 1]  # ≥ 1 token
    bundled = problem_from_dict(doc(token_mix={"trace": "code"})).jobs[0].token_mix
    assert bundled.prompt_tokens.size > 1000


@pytest.mark.parametrize(
    ("change", "field"),
    [
        pytest.param({"slo": {}}, "jobs[0].llm.slo", id="no-slo"),
        pytest.param({"slo": {"ttft_ms": -1}}, "jobs[0].llm.slo.ttft_ms", id="negative-ttft"),
        pytest.param({"slo": {"ttft_ms": 1, "tpot": 2}}, "jobs[0].llm.slo.tpot", id="unknown-slo-key"),
        pytest.param({"profile": {"step_base_ms": 15}}, "jobs[0].llm.profile.decode_ms_per_seq", id="missing-profile"),
        pytest.param({"profile": {"step_base_ms": 15, "decode_ms_per_seq": 0.2, "prefill_ms_per_token": 0.1,
                                  "kv_cache_tokens": 1.5}}, "jobs[0].llm.profile.kv_cache_tokens", id="fractional-kv"),
        pytest.param({"profile": {"step_base_ms": 15, "decode_ms_per_seq": 0.2, "prefill_ms_per_token": 0.1,
                                  "kv_cache_tokens": 1000, "max_num_seqs": 512, "max_num_batched_tokens": 256}},
                     "jobs[0].llm.profile.max_num_batched_tokens", id="budget-below-seqs"),
        pytest.param({"token_mix": {"prompt_tokens": [1, 2], "output_tokens": [3]}}, "jobs[0].llm.token_mix",
                     id="unpaired-mix"),
        pytest.param({"token_mix": {"trace": "missing.csv"}}, "jobs[0].llm.token_mix.trace", id="missing-trace"),
    ],
)
def test_a_bad_llm_block_names_the_field(change, field):
    with pytest.raises(InvalidInputError) as err:
        problem_from_dict(doc(**change))
    assert err.value.where.startswith(field)


def test_an_llm_job_does_not_take_a_plain_latency_slo():
    bad = doc()
    bad["jobs"][0]["slo"] = {"latency_ms": 100}
    with pytest.raises(InvalidInputError, match=r"llm\.slo"):
        problem_from_dict(bad)


def test_the_llm_example_plans_as_a_table_and_json(capsys):
    assert main(["plan", str(EXAMPLE)]) == 0
    out = capsys.readouterr().out
    assert "team-chat/chat-8b" in out and "ttft<=1500ms itl<=450ms" in out and " itl " in out
    assert "team-docs/resnet34" in out
    assert " NO" not in out
    assert main(["plan", str(EXAMPLE), "--output", "json"]) == 0
    report = json.loads(capsys.readouterr().out)
    chat = report["jobs"][0]["llm"]
    assert {"ttft_ms", "tpot_ms", "itl_ms", "slo_ttft_ms", "slo_itl_ms", "replica_capacity_rps"} <= chat.keys()
    assert chat["replica_capacity_rps"] > 0 and all(q["respected"] for q in report["quotas"])
    assert "llm" not in report["jobs"][3]
