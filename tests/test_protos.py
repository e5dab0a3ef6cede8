"""The committed generated stubs are exactly what `make protos` would produce."""

from __future__ import annotations

import filecmp
import pathlib
import subprocess
import sys

ROOT = pathlib.Path(__file__).resolve().parent.parent
PROTOS = ROOT / "protos"


def generated_files(root: pathlib.Path) -> set[pathlib.Path]:
    patterns = ("*_pb2.py", "*_pb2.pyi", "*_pb2_grpc.py", "__init__.py")
    return {path.relative_to(root) for pattern in patterns for path in (root / "ferry").rglob(pattern)}


def test_generated_code_is_fresh(tmp_path: pathlib.Path) -> None:
    subprocess.run([sys.executable, str(ROOT / "tools" / "protogen.py"), "--out", str(tmp_path)], check=True)
    fresh, committed = generated_files(tmp_path), generated_files(PROTOS)
    assert fresh == committed, "stubs missing or extra: run `make protos` and commit"
    stale = [str(path) for path in sorted(fresh) if not filecmp.cmp(tmp_path / path, PROTOS / path, shallow=False)]
    assert not stale, f"generated code is stale, run `make protos` and commit: {stale}"


def test_every_contract_is_versioned_and_importable() -> None:
    import importlib

    for service in ("registry", "ingest", "train", "serve", "monitor"):
        module = importlib.import_module(f"ferry.{service}.v1.{service}_pb2")
        names = list(module.DESCRIPTOR.services_by_name)
        assert names == [f"{service.capitalize()}Service"], names
        assert module.DESCRIPTOR.package == f"ferry.{service}.v1"
