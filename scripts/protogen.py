"""Generate the Python code for proto/ and check that the committed code is current.

python -m scripts.protogen          regenerate (agent_pb2.py/.pyi, agent_pb2_grpc.py/.pyi)
python -m scripts.protogen --check  fail if the committed files differ from a fresh generation
"""

from __future__ import annotations

import filecmp
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PROTO_ROOT = ROOT / "proto"


def generate(out: Path) -> list[Path]:
    from grpc_tools import protoc  # dev dependency

    sources = sorted(PROTO_ROOT.rglob("*.proto"))
    if not sources:
        return []
    include = Path(protoc.__file__).parent / "_proto"
    # mypy-protobuf's plugins live next to this interpreter; name them so PATH does not matter.
    bindir = Path(sys.executable).parent
    args = [
        "protoc",
        f"--plugin=protoc-gen-mypy={bindir / 'protoc-gen-mypy'}",
        f"--plugin=protoc-gen-mypy_grpc={bindir / 'protoc-gen-mypy_grpc'}",
        f"-I{PROTO_ROOT}",
        f"-I{include}",
        f"--python_out={out}",
        f"--mypy_out={out}",
        f"--grpc_python_out={out}",
        f"--mypy_grpc_out={out}",
        *[str(s.relative_to(PROTO_ROOT)) for s in sources],
    ]
    if protoc.main(args) != 0:
        raise SystemExit("protoc failed")
    return sorted(p.relative_to(out) for p in out.rglob("*") if p.is_file() and p.suffix in {".py", ".pyi"})


def main(argv: list[str]) -> int:
    check = "--check" in argv
    with tempfile.TemporaryDirectory() as tmp:
        fresh = Path(tmp)
        files = generate(fresh)
        if not files:
            print("proto: no .proto files")
            return 0
        stale = [f for f in files if not (PROTO_ROOT / f).exists() or not filecmp.cmp(fresh / f, PROTO_ROOT / f, shallow=False)]
        if check:
            if stale:
                print("proto: generated code is stale, run `python -m scripts.protogen`: " + ", ".join(map(str, stale)))
                return 1
            print(f"proto: {len(files)} generated files are current")
            return 0
        for f in files:
            (PROTO_ROOT / f).parent.mkdir(parents=True, exist_ok=True)
            (PROTO_ROOT / f).write_bytes((fresh / f).read_bytes())
        print(f"proto: wrote {len(files)} files")
        return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
