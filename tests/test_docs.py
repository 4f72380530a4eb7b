"""The README and docs as a newcomer uses them: the README stays a short landing page, every link
resolves, every command in a README or docs code block still parses with the real ``faro`` parser and
names files that exist, the blocks marked runnable run, and the benchmark tables match their JSON."""

from __future__ import annotations

import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from faro.optimizer.cli import build_parser

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
BLOCK = re.compile(r"(?P<marker><!-- runnable -->\n)?```(?:bash|sh|console)\n(?P<body>.*?)```", re.S)
LINK = re.compile(r"\[[^\]]*\]\((?P<target>[^)\s]+)\)")
REPO_PATH = re.compile(r"^(?:docs|charts|manifests|traces|bench|tests|proto|optimizer|adapter)/[\w./-]*$")
# Runnable README commands too heavy to run inside the suite, and the equivalent check: where the suite runs
# the same thing another way (a test asserting that this is still so).
COVERED_ELSEWHERE = {
    "pip install -e .": lambda: "pip install -q -e '.[test,ray]'" in (ROOT / ".ci" / "run").read_text(),
    "faro simulate": lambda: "cmd.run(_args(" in (ROOT / "tests" / "test_sim_cli.py").read_text(),
    "bash .ci/run": lambda: (ROOT / ".ci" / "run").exists(),  # CI itself
}


def _commands(body: str) -> list[str]:
    """Shell commands of a code block: continuations joined, comments and prompts dropped, && chains split."""
    joined = re.sub(r"\\\n\s*", " ", body)
    out = []
    for line in joined.splitlines():
        line = line.split(" #", 1)[0].strip().removeprefix("$ ")
        if not line or line.startswith("#"):
            continue
        out += [part.strip().rstrip("&").strip() for part in line.split("&&") if part.strip()]
    return out


def _blocks(page: Path) -> list[tuple[bool, list[str]]]:
    return [(bool(m.group("marker")), _commands(m.group("body"))) for m in BLOCK.finditer(page.read_text())]


def _slug(heading: str) -> str:
    text = re.sub(r"[`*_]", "", heading.strip().lower())
    return re.sub(r"[^\w\- ]", "", text).replace(" ", "-")


def test_the_readme_is_a_landing_page_of_at_most_200_lines():
    assert len((ROOT / "README.md").read_text().splitlines()) <= 200


def test_the_readme_names_exactly_the_test_command_ci_runs():
    ci = (ROOT / ".ci" / "run").read_text().strip().splitlines()
    command = ci[-1].strip()
    assert command == "python3 -m pytest -q"
    assert f"**`{command}`**" in (ROOT / "README.md").read_text()


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_every_relative_link_resolves(page):
    text = page.read_text()
    for m in LINK.finditer(text):
        target = m.group("target")
        if re.match(r"^[a-z]+://|^mailto:", target):
            continue
        path, _, anchor = target.partition("#")
        dest = (page.parent / path).resolve() if path else page
        assert dest.exists(), f"{page.name}: link to {target}: no such file"
        if anchor and dest.suffix == ".md":
            headings = {_slug(h) for h in re.findall(r"^#+ (.+)$", dest.read_text(), re.M)}
            assert anchor in headings, f"{page.name}: link to {target}: no heading with that anchor"


def _check_command(command: str, where: str) -> None:
    words = shlex.split(command)
    words = words[: next((i for i, w in enumerate(words) if w in ("|", ">", ">>", "<")), len(words))]
    for word in words:
        for token in (word, word.split("=", 1)[-1]):
            if REPO_PATH.match(token):
                assert (ROOT / token).exists(), f"{where}: `{command}` names {token}, which does not exist"
    if words[0] == "faro":
        try:
            build_parser().parse_args(words[1:])
        except SystemExit as stop:
            assert stop.code == 0, f"{where}: `{command}` does not parse with faro's own parser"
    if words[0] == "helm":
        values = yaml.safe_load((ROOT / "charts" / "faro" / "values.yaml").read_text())
        for i, word in enumerate(words):
            if word == "--set":
                node = values
                for key in words[i + 1].split("=", 1)[0].split("."):
                    assert isinstance(node, dict) and key in node, f"{where}: `--set {words[i + 1]}`: no such value"
                    node = node[key]


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_every_command_in_a_code_block_parses_and_names_existing_files(page):
    for _, commands in _blocks(page):
        for command in commands:
            if "…" in command or "<" in command or "..." in command:
                continue  # a template the reader fills in
            _check_command(command, page.name)


RUNNABLE = [(page, command) for page in PAGES for runnable, commands in _blocks(page) if runnable
            for command in commands]


@pytest.mark.parametrize(("page", "command"), RUNNABLE, ids=[f"{p.name}: {c}" for p, c in RUNNABLE])
def test_blocks_marked_runnable_run_as_written(page, command, tmp_path):
    if command in COVERED_ELSEWHERE:  # .ci/run installs and then runs the suite; test_sim_cli.py runs simulate
        assert COVERED_ELSEWHERE[command](), f"`{command}` is no longer run by the suite another way"
        return
    words = shlex.split(command)
    if words[0] == "faro":
        words = [sys.executable, "-m", "faro.optimizer.cli", *words[1:]]
    proc = subprocess.run(words, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, f"{page.name}: `{command}` failed:\n{proc.stderr[-2000:]}"


def test_readme_marks_its_set_up_commands_runnable():
    runnable = [c for runnable, commands in _blocks(ROOT / "README.md") if runnable for c in commands]
    assert runnable == ["pip install -e .", "faro simulate", "bash .ci/run"]


def test_benchmark_tables_in_the_docs_match_bench_results():
    sys.path.insert(0, str(ROOT / "bench"))
    try:
        import docs_tables
    finally:
        sys.path.remove(str(ROOT / "bench"))
    stale = docs_tables.update(check=True)
    assert not stale, f"regenerate with `python bench/docs_tables.py`: {stale}"
    marked = "".join(p.read_text() for p in PAGES)
    assert set(docs_tables.TABLES) <= set(re.findall(r"<!-- bench:([a-z0-9-]+) -->", marked)), "a table nobody shows"


def test_nothing_points_outside_the_repository_to_shared():
    """A newcomer's clone has no ``../shared``: every trace the code, tests and docs use ships in ``traces/``."""
    offenders = []
    for path in ROOT.rglob("*"):
        if ".git" in path.parts or "__pycache__" in path.parts or path.suffix not in (".py", ".md", ".toml", ".yaml"):
            continue
        if any(part.startswith(".venv") for part in path.relative_to(ROOT).parts):
            continue  # virtual environments .ci/run makes in the clone (.venv-vllm): installed packages
        if path == Path(__file__):
            continue
        text = path.read_text(errors="ignore")
        if "../shared" in text or "shared/traces" in text:
            offenders.append(str(path.relative_to(ROOT)))
    assert not offenders
