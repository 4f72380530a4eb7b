"""The committed gRPC/protobuf stubs are exactly what grpcio-tools generates from proto/."""

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_generated_stubs_are_current():
    result = subprocess.run(
        [sys.executable, str(ROOT / "proto" / "generate.py"), "--check"], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr


def test_plan_stubs_import_under_the_faro_namespace():
    from faro.v1 import plan_pb2, plan_pb2_grpc

    assert plan_pb2.DESCRIPTOR.package == "faro.v1"
    assert hasattr(plan_pb2_grpc, "PlanServiceServicer")
