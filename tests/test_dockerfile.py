"""The Dockerfile, checked without a Docker engine (none runs here): it is multi-stage on a slim base,
runs as the non-root user the chart expects, copies only paths that exist and are not ignored, and the
entry points it runs work from a clean, non-editable install of exactly what it copies."""

from __future__ import annotations

import fnmatch
import os
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]


def _instructions() -> list[tuple[str, str]]:
    lines, current = [], ""
    for raw in (REPO / "Dockerfile").read_text().splitlines():
        if raw.lstrip().startswith("#") and not current:
            continue
        current += raw.rstrip("\\").strip() + " "
        if not raw.rstrip().endswith("\\"):
            if current.strip():
                op, _, rest = current.strip().partition(" ")
                lines.append((op.upper(), rest.strip()))
            current = ""
    return lines


def _ignored(path: str) -> bool:
    patterns = [p.strip() for p in (REPO / ".dockerignore").read_text().splitlines() if p.strip() and p[0] != "#"]
    return any(fnmatch.fnmatch(path, p) or path.startswith(p.rstrip("/") + "/") or path == p for p in patterns)


def _context_sources() -> list[str]:
    sources = []
    for op, rest in _instructions():
        if op == "COPY" and "--from=" not in rest:
            sources.extend(shlex.split(rest)[:-1])
    return sources


def test_image_is_multi_stage_on_python_3_11_slim():
    froms = [rest for op, rest in _instructions() if op == "FROM"]
    assert len(froms) >= 2
    assert all(f.split()[0] == "python:3.11-slim" for f in froms)
    assert any(op == "COPY" and "--from=build" in rest for op, rest in _instructions())


def test_final_stage_runs_as_the_non_root_user_the_chart_sets():
    final = _instructions()[max(i for i, (op, _) in enumerate(_instructions()) if op == "FROM") :]
    users = [rest for op, rest in final if op == "USER"]
    assert users, "the final stage sets no USER"
    uid, _, gid = users[-1].partition(":")
    assert uid.isdigit() and int(uid) != 0, "USER must be a numeric non-root uid (runAsNonRoot checks it)"
    values = yaml.safe_load((REPO / "charts" / "faro" / "values.yaml").read_text())
    assert values["podSecurityContext"]["runAsUser"] == int(uid)
    assert values["podSecurityContext"]["runAsGroup"] == int(gid)


def test_entrypoint_is_the_faro_console_script_the_chart_passes_subcommands_to():
    (entrypoint,) = [rest for op, rest in _instructions() if op == "ENTRYPOINT"]
    assert entrypoint == '["faro"]'
    chart = (REPO / "charts" / "faro" / "templates")
    assert "- optimizer\n" in (chart / "optimizer" / "deployment.yaml").read_text()
    assert "- adapter\n" in (chart / "adapter" / "deployment.yaml").read_text()


def test_every_copied_path_exists_and_is_not_docker_ignored():
    sources = _context_sources()
    assert sources
    for src in sources:
        assert (REPO / src).exists(), f"COPY {src}: no such path"
        assert not _ignored(src.rstrip("/")), f"COPY {src} is excluded by .dockerignore"


@pytest.mark.slow
def test_entry_points_work_from_a_clean_install_of_only_the_copied_paths(tmp_path: Path):
    """What `RUN pip install .` does in the build stage, with the dependencies this machine already has."""
    context = tmp_path / "context"
    context.mkdir()
    for src in _context_sources():
        source = REPO / src
        if source.is_dir():
            shutil.copytree(source, context / src, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        else:
            shutil.copy2(source, context / src)
    venv = tmp_path / "venv"
    # No pip/setuptools of the venv's own (Python 3.11 bundles an old setuptools without bdist_wheel):
    # this machine's pip and setuptools install into it, offline, non-editable.
    subprocess.run([sys.executable, "-m", "venv", "--system-site-packages", "--without-pip", str(venv)], check=True,
                   timeout=120)  # fmt: skip
    pip = [sys.executable, "-m", "pip", "--python", str(venv / "bin" / "python"), "install", "-q", "--no-deps",
           "--no-build-isolation", "--no-index"]  # fmt: skip
    proc = subprocess.run([*pip, str(context)], timeout=300, capture_output=True, text=True, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    where = subprocess.run(
        [str(venv / "bin" / "python"), "-c", "import faro.optimizer, faro.adapter; print(faro.adapter.__file__)"],
        capture_output=True, text=True, timeout=60, check=True, cwd=tmp_path, env=env,
    ).stdout  # fmt: skip
    assert str(venv) in where, f"faro was imported from {where}, not the clean install"
    for command in ("optimizer", "adapter"):
        proc = subprocess.run([str(venv / "bin" / "faro"), command, "--help"], capture_output=True, text=True,
                              timeout=120, cwd=tmp_path, env=env)  # fmt: skip
        assert proc.returncode == 0, proc.stderr
        assert f"usage: faro {command}" in proc.stdout
