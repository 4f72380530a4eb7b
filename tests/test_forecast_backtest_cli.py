"""``faro forecast backtest`` prints a table, writes JSON and a PNG, and reports bad input in one line."""

import json

import numpy as np
import pytest
from faro.optimizer.cli import main


def write_wide(path, minutes=240, jobs=2):
    rng = np.random.default_rng(0)
    rows = ["minute," + ",".join(f"job{j}" for j in range(jobs))]
    for m in range(minutes):
        cells = [str(int(rng.poisson(100 + 50 * np.sin(m / 20)))) for _ in range(jobs)]
        if m == 17:
            cells[0] = ""  # a missing minute
        rows.append(f"{m}," + ",".join(cells))
    path.write_text("\n".join(rows) + "\n")


def test_backtest_on_a_wide_trace_writes_json_and_a_plot(tmp_path, capsys):
    trace = tmp_path / "t.csv"
    write_wide(trace)
    out = tmp_path / "out"
    code = main(["forecast", "backtest", "--trace", str(trace), "--models", "last,ewma,profile", "--season-min", "60",
                 "--output", str(out), "--no-progress"])
    assert code == 0
    printed = capsys.readouterr().out
    assert "pinball@0.9" in printed and "profile" in printed
    report = json.loads((out / "backtest.json").read_text())
    assert set(report["models"]) == {"last", "ewma", "profile"}
    per_job = report["models"]["ewma"]["per_job"]["job1"]
    assert 0.0 <= per_job["coverage_0.9"] <= 1.0 and per_job["pinball_0.9"] > 0
    assert (out / "backtest.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_backtest_reads_the_history_format(tmp_path, capsys):
    rng = np.random.default_rng(1)
    header = "job,day,sample," + ",".join(f"m{i}" for i in range(60))
    lines = [header]
    for job in ("job0", "job1"):
        for day in (1, 2, 3):
            for sample in (0, 1):
                lines.append(f"{job},{day},{sample}," + ",".join(str(v) for v in rng.poisson(80, 60)))
    history = tmp_path / "h.csv"
    history.write_text("\n".join(lines) + "\n")
    trace = tmp_path / "d.csv"
    write_wide(trace, minutes=60)
    code = main(["forecast", "backtest", "--history", str(history), "--trace", str(trace), "--models", "last",
                 "--season-min", "60", "--output", str(tmp_path / "o"), "--no-progress"])
    assert code == 0
    assert json.loads((tmp_path / "o" / "backtest.json").read_text())["fit_minutes"] == 180


@pytest.mark.parametrize(
    ("content", "message"),
    [
        pytest.param("when,job0\n0,1\n", "header", id="wrong header"),
        pytest.param("minute,job0\n0,-4\n", "line 2 column job0", id="negative count"),
        pytest.param("minute,job0\n0,abc\n", "not a number", id="not a number"),
    ],
)
def test_bad_traces_are_one_line_errors(tmp_path, capsys, content, message):
    trace = tmp_path / "bad.csv"
    trace.write_text(content)
    code = main(["forecast", "backtest", "--trace", str(trace), "--no-progress", "--output", str(tmp_path)])
    assert code == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


def test_an_unknown_model_is_a_one_line_error(tmp_path, capsys):
    trace = tmp_path / "t.csv"
    write_wide(trace)
    assert main(["forecast", "backtest", "--trace", str(trace), "--models", "prophet", "--no-progress"]) == 2
    assert "unknown model 'prophet'" in capsys.readouterr().err
