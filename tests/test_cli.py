"""The ``faro`` command line as a newcomer meets it: ``--version``, help texts that state each option's default
once (never "default: None" or an empty default), and problem-file mistakes reported with where they are."""

from __future__ import annotations

import argparse
import re

import pytest
from faro.optimizer.cli import build_parser, main


def _all_parsers(parser: argparse.ArgumentParser, name: str = "faro"):
    yield name, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for child_name, child in action.choices.items():
                yield from _all_parsers(child, f"{name} {child_name}")


def test_version_prints_the_installed_version(capsys):
    with pytest.raises(SystemExit) as stop:
        main(["--version"])
    assert stop.value.code == 0
    assert re.fullmatch(r"faro \d+\.\d+\.\d+\S*\n", capsys.readouterr().out)


@pytest.mark.parametrize("command", sorted({name for name, _ in _all_parsers(build_parser())}))
def test_help_states_each_default_once_and_never_an_empty_one(command, monkeypatch):
    monkeypatch.setenv("COLUMNS", "1000")  # one line per option
    parsers = dict(_all_parsers(build_parser()))
    text = parsers[command].format_help()
    for line in text.splitlines():
        low = line.lower()
        assert low.count("default") <= 1, f"{command}: {line}"
        assert "default: none" not in low and "default: )" not in low and "default: ;" not in low, f"{command}: {line}"
    for action in parsers[command]._actions:
        shown = action.default not in (None, "", False, argparse.SUPPRESS) and action.nargs != 0
        if action.option_strings and shown and action.help:
            assert "default" in parsers[command]._get_formatter()._get_help_string(action).lower(), \
                f"{command} {action.option_strings[0]}: the help does not say its default {action.default!r}"


def _problem(tmp_path, text: str, name: str = "p.yaml"):
    path = tmp_path / name
    path.write_text(text)
    return str(path)


def test_a_yaml_syntax_error_names_line_and_column(tmp_path, capsys):
    path = _problem(tmp_path, "jobs:\n  - name: a\n    slo: {latency_ms: 720\n    processing_time_ms: 100\n")
    assert main(["plan", path]) == 2
    err = capsys.readouterr().err
    assert re.search(r"line \d+ column \d+: not valid YAML", err), err


def test_a_json_syntax_error_names_line_and_column(tmp_path, capsys):
    path = _problem(tmp_path, '{"jobs": [\n  {"name": "a",}\n]}\n', name="p.json")
    assert main(["plan", path]) == 2
    assert "line 2 column 16: not valid JSON" in capsys.readouterr().err


@pytest.mark.parametrize("missing", ["latency_ms", "processing_time_ms", "rate_rps", "name"])
def test_a_missing_required_field_is_reported_as_required(tmp_path, capsys, missing):
    fields = {"name": "name: a", "latency_ms": "slo: {percentile: 99}", "processing_time_ms": "",
              "rate_rps": ""}
    job = {"name": "name: a", "slo": "slo: {latency_ms: 720}", "processing_time_ms": "processing_time_ms: 100",
           "rate_rps": "rate_rps: 3"}
    if missing == "latency_ms":
        job["slo"] = fields["latency_ms"]
    else:
        job.pop(missing)
    body = "jobs:\n  - " + "\n    ".join(job.values()) + "\n"
    assert main(["plan", _problem(tmp_path, body)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.endswith(f"{missing}: is required"), err
