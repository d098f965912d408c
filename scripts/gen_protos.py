"""Regenerate the Python stubs (with mypy-protobuf typing) beside the protos.

Run: python scripts/gen_protos.py            (writes *_pb2.py, *_pb2_grpc.py, *.pyi)
     python scripts/gen_protos.py --check    (exit 1 when the committed stubs are stale)
"""

from __future__ import annotations

import argparse
import filecmp
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import grpc_tools

ROOT = Path(__file__).resolve().parent.parent
PROTOS = ROOT / "protos"
GENERATED_SUFFIXES = ("_pb2.py", "_pb2_grpc.py", "_pb2.pyi", "_pb2_grpc.pyi")


def _proto_files() -> list[Path]:
    return sorted(PROTOS.glob("onestop/*/v1/*.proto"))


def generate(out: Path) -> None:
    """Run protoc for every proto into `out`, creating the package __init__ files."""
    include = Path(grpc_tools.__file__).parent / "_proto"
    plugin_dir = Path(sys.executable).parent
    cmd = [
        sys.executable,
        "-m",
        "grpc_tools.protoc",
        f"-I{PROTOS}",
        f"-I{include}",
        f"--python_out={out}",
        f"--grpc_python_out={out}",
        f"--mypy_out={out}",
        f"--mypy_grpc_out={out}",
        f"--plugin=protoc-gen-mypy={plugin_dir / 'protoc-gen-mypy'}",
        f"--plugin=protoc-gen-mypy_grpc={plugin_dir / 'protoc-gen-mypy_grpc'}",
        *[str(p.relative_to(PROTOS)) for p in _proto_files()],
    ]
    subprocess.run(cmd, check=True, cwd=PROTOS)
    for directory in [out / "onestop", *[p for p in (out / "onestop").rglob("*") if p.is_dir()]]:
        (directory / "__init__.py").touch()
        (directory / "py.typed").touch() if directory == out / "onestop" else None


def _generated(base: Path) -> dict[str, Path]:
    found = {}
    for path in base.rglob("*"):
        if path.name.endswith(GENERATED_SUFFIXES) or path.name in ("__init__.py", "py.typed"):
            found[str(path.relative_to(base))] = path
    return found


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--check", action="store_true", help="fail when stubs are stale")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp)
        generate(out)
        fresh = _generated(out / "onestop")
        current = _generated(PROTOS / "onestop")
        stale = sorted(
            name
            for name in set(fresh) | set(current)
            if name not in fresh
            or name not in current
            or not filecmp.cmp(fresh[name], current[name], shallow=False)
        )
        if args.check:
            if stale:
                print("stale generated stubs (run: make protos):", *stale, sep="\n  ")
                return 1
            print("generated stubs are up to date")
            return 0
        for name in stale:
            if name not in fresh:
                current[name].unlink()
                continue
            target = PROTOS / "onestop" / name
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(fresh[name], target)
        print(f"regenerated {len(stale)} file(s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
