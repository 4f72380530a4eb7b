"""Maps the top-level folders into the installed ``faro`` namespace (design card §2).

``optimizer/`` → ``faro.optimizer``, ``adapter/`` → ``faro.adapter``, ``traces/`` → ``faro.traces``,
and the stubs generated from ``proto/`` → ``faro.v1`` and ``faro.externalscaler``.
"""

from pathlib import Path

from setuptools import setup

ROOTS = {
    "faro.optimizer": "optimizer",
    "faro.adapter": "adapter",
    "faro.traces": "traces",
    "faro.v1": "proto/faro/v1",
    "faro.externalscaler": "proto/externalscaler",
}


def _packages() -> tuple[list[str], dict[str, str]]:
    packages, package_dir = [], {}
    for name, folder in ROOTS.items():
        root = Path(folder)
        for init in sorted(root.rglob("__init__.py")):
            rel = init.parent.relative_to(root)
            pkg = ".".join([name, *rel.parts]) if rel.parts else name
            packages.append(pkg)
            package_dir[pkg] = init.parent.as_posix()
    return packages, package_dir


packages, package_dir = _packages()
setup(packages=packages, package_dir=package_dir)
