"""Generate the Python stubs of Ferry's contracts.

`make protos` runs this with no arguments to regenerate the committed files beside
the .proto sources; the test suite runs it into a temporary directory and fails if
the output differs from what is committed.
"""

from __future__ import annotations

import argparse
import pathlib
import sys

import grpc_tools
from grpc_tools import protoc

ROOT = pathlib.Path(__file__).resolve().parent.parent
PROTOS = ROOT / "protos"


def proto_files() -> list[pathlib.Path]:
    return sorted(PROTOS.glob("ferry/**/*.proto"))


def generate(out_dir: pathlib.Path) -> None:
    wkt = pathlib.Path(grpc_tools.__file__).parent / "_proto"
    out_dir.mkdir(parents=True, exist_ok=True)
    for proto in proto_files():
        rel = proto.relative_to(PROTOS)
        args = [
            "grpc_tools.protoc",
            f"-I{PROTOS}",
            f"-I{wkt}",
            f"--python_out={out_dir}",
            f"--pyi_out={out_dir}",
            f"--grpc_python_out={out_dir}",
            str(rel),
        ]
        if protoc.main(args) != 0:
            raise SystemExit(f"protoc failed on {rel}")
    # Packages, so mypy and setuptools see ferry.<svc>.v1 as ordinary packages.
    for proto in proto_files():
        pkg = out_dir / proto.relative_to(PROTOS).parent
        while pkg != out_dir:
            (pkg / "__init__.py").touch()
            pkg = pkg.parent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", type=pathlib.Path, default=PROTOS)
    args = parser.parse_args()
    generate(args.out)
    print(f"generated stubs for {len(proto_files())} protos into {args.out}", file=sys.stderr)


if __name__ == "__main__":
    main()
