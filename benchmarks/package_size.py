"""Package sizes after `sam build`, against the boto3 + botocore the Lambda runtime already carries (so we
never ship them). A slim layer is a faster cold start: the ratio is what to watch.
"""

from __future__ import annotations

import sys
from pathlib import Path

from results_file import save

ROOT = Path(__file__).resolve().parent.parent
BUILD = ROOT / ".aws-sam" / "build"


def size(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def main() -> int:
    layer = BUILD / "GuardrailLayer" / "python"
    if not layer.is_dir():
        print("no .aws-sam/build: run `make build` (or `make bench`, which builds first)", file=sys.stderr)
        return 2
    import boto3
    import botocore

    runtime_sdk = size(Path(boto3.__file__).parent) + size(Path(botocore.__file__).parent)
    shipped = {
        p.name: size(p) for p in sorted(layer.iterdir()) if p.is_dir() and not p.name.endswith(".dist-info")
    }
    for sdk in ("boto3", "botocore"):
        assert sdk not in shipped, f"the runtime carries {sdk}: never ship it"
    functions = {p.name: size(p) for p in sorted(BUILD.iterdir()) if p.name.endswith("Function")}
    layer_bytes = size(layer)
    result = {
        "baseline": "boto3 + botocore as installed (what the python3.13 runtime already carries)",
        "baseline_bytes": runtime_sdk,
        "layer_bytes": layer_bytes,
        "ratio": round(layer_bytes / runtime_sdk, 3),
        "layer_largest": dict(sorted(shipped.items(), key=lambda kv: -kv[1])[:6]),
        "function_bytes": functions,
    }
    save("package_size", result)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
