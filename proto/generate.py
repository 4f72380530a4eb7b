"""Generate the Python gRPC/protobuf stubs from the .proto files with grpcio-tools.

Run ``python proto/generate.py`` after editing a .proto; ``--check`` exits 1 when the committed
stubs differ from what grpcio-tools generates (a test runs it). Module names:

* ``proto/faro/v1/*.proto``            → ``faro.v1.<name>_pb2`` (folder ``proto/faro/v1``)
* ``proto/externalscaler/*.proto``     → ``faro.externalscaler.<name>_pb2`` (folder
  ``proto/externalscaler``), mapped under ``faro`` with a virtual import path so the stubs never
  become a bare top-level module; the wire package stays ``externalscaler`` as KEDA requires.
"""

from __future__ import annotations

import argparse
import filecmp
import shutil
import sys
import tempfile
from pathlib import Path

from grpc_tools import protoc

try:
    from importlib.resources import files
except ImportError:  # pragma: no cover
    from importlib_resources import files  # type: ignore[no-redef]

PROTO_ROOT = Path(__file__).resolve().parent
# (virtual import prefix, folder holding .proto files and their generated stubs)
TREES = [("faro/v1", PROTO_ROOT / "faro" / "v1"), ("faro/externalscaler", PROTO_ROOT / "externalscaler")]


def generate(out_root: Path) -> list[Path]:
    """Generate every stub under ``out_root`` mirroring the source folders; return the files."""
    include = str(files("grpc_tools") / "_proto")
    written: list[Path] = []
    for prefix, folder in TREES:
        protos = sorted(folder.glob("*.proto"))
        if not protos:
            continue
        with tempfile.TemporaryDirectory() as tmp:
            args = ["grpc_tools.protoc", f"-I{prefix}={folder}", f"-I{include}", f"--python_out={tmp}",
                    f"--pyi_out={tmp}", f"--grpc_python_out={tmp}"]
            args += [f"{prefix}/{p.name}" for p in protos]
            if protoc.main(args) != 0:
                raise SystemExit(f"protoc failed for {folder}")
            dest = out_root / folder.relative_to(PROTO_ROOT)
            dest.mkdir(parents=True, exist_ok=True)
            for generated in sorted((Path(tmp) / prefix).glob("*_pb2*")):
                shutil.copy(generated, dest / generated.name)
                written.append(dest / generated.name)
            (dest / "__init__.py").touch()
    return written


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="only compare with the committed stubs")
    args = parser.parse_args(argv)
    if not args.check:
        for path in generate(PROTO_ROOT):
            print(path.relative_to(PROTO_ROOT.parent))
        return 0
    with tempfile.TemporaryDirectory() as tmp:
        stale = []
        for path in generate(Path(tmp)):
            committed = PROTO_ROOT / path.relative_to(tmp)
            if not committed.exists() or not filecmp.cmp(path, committed, shallow=False):
                stale.append(str(path.relative_to(tmp)))
    if stale:
        print("stale generated stubs (run python proto/generate.py):", *stale, sep="\n  ", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
