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


def _site_packages_of_this_interpreter() -> list[str]:
    """Where this interpreter finds faro's dependencies: a venv's own, its base's when it was made with
    --system-site-packages, or the system interpreter's; no .pth files of theirs run in the clean install."""
    import site

    dirs = [*site.getsitepackages(), site.getusersitepackages()]
    return [d for d in dict.fromkeys(dirs) if Path(d).is_dir()]


@pytest.mark.slow
def test_entry_points_work_from_a_clean_install_of_only_the_copied_paths(tmp_path: Path):
    """What `RUN pip install .` does in the build stage: a fresh venv (from this interpreter's base, with its
    own bundled pip) builds the copied paths in an isolated build environment that pip fills from the package
    registry with pyproject's build requirements, as docker build does; no build tool of this machine or of
    the surrounding venv is used. Runtime dependencies come from this interpreter's site-packages (listed in
    a .pth file, so the editable install of the work tree stays invisible) instead of being downloaded again."""
    context = tmp_path / "context"
    context.mkdir()
    for src in _context_sources():
        source = REPO / src
        if source.is_dir():
            shutil.copytree(source, context / src, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        else:
            shutil.copy2(source, context / src)
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=300)
    python = venv / "bin" / "python"
    purelib = subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                             capture_output=True, text=True, check=True, timeout=60).stdout.strip()  # fmt: skip
    (Path(purelib) / "zz_outer_site_packages.pth").write_text("\n".join(_site_packages_of_this_interpreter()) + "\n")
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PIP_NO_BUILD_ISOLATION", "PIP_NO_INDEX")}
    proc = subprocess.run([str(python), "-m", "pip", "install", "-q", "--no-deps", str(context)], timeout=600,
                          capture_output=True, text=True, cwd=tmp_path, env=env)  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    where = subprocess.run(
        [str(python), "-c", "import faro.optimizer, faro.adapter; print(faro.adapter.__file__)"],
        capture_output=True, text=True, timeout=60, check=True, cwd=tmp_path, env=env,
    ).stdout  # fmt: skip
    assert str(venv) in where, f"faro was imported from {where}, not the clean install"
    for command in ("optimizer", "adapter"):
        proc = subprocess.run([str(venv / "bin" / "faro"), command, "--help"], capture_output=True, text=True,
                              timeout=120, cwd=tmp_path, env=env)  # fmt: skip
        assert proc.returncode == 0, proc.stderr
        assert f"usage: faro {command}" in proc.stdout
