"""Cold start against its own baseline: a fresh process that imports the responder handler and handles one
event that ends in `ignore`, versus a fresh process that only imports boto3 (which every Python Lambda
function pays for as soon as it calls AWS). Medians of several runs, alternated; the ratio is what to
watch. Target: <= 1.3. An ignored event must make no AWS call, so it must not need boto3 at all.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

from results_file import save

ROOT = Path(__file__).resolve().parent.parent
RUNS = 9
HANDLE_IGNORED = f"""
import json, sys
sys.path.insert(0, {str(ROOT / "functions" / "responder")!r})
import app
event = json.load(open({str(ROOT / "events" / "benign" / "s3-list-buckets.json")!r}))
class Context:
    function_name = "bench"; memory_limit_in_mb = 512; aws_request_id = "bench"
    invoked_function_arn = "arn:aws:lambda:us-east-1:123456789012:function:bench"
result = app.handler(event, Context())
assert result["decision"] == "ignore", result
assert "boto3" not in sys.modules, "an ignored event imported boto3"
"""


def _run(code: str) -> float:
    env = {**os.environ, "POWERTOOLS_METRICS_DISABLED": "true", "POWERTOOLS_LOG_LEVEL": "ERROR",
           "PYTHONPATH": str(ROOT / "layers" / "guardrail"), "AWS_DEFAULT_REGION": "us-east-1"}  # fmt: skip
    start = time.perf_counter()
    subprocess.run([sys.executable, "-c", code], check=True, env=env, stdout=subprocess.DEVNULL)
    return time.perf_counter() - start


def main() -> int:
    baseline, ours = [], []
    for _ in range(RUNS):
        baseline.append(_run("import boto3"))
        ours.append(_run(HANDLE_IGNORED))
    base, mine = statistics.median(baseline), statistics.median(ours)
    result = {
        "runs": RUNS,
        "baseline": "fresh process: import boto3",
        "ours": "fresh process: import the responder handler, handle one ignored event",
        "baseline_median_ms": round(base * 1000, 1),
        "ours_median_ms": round(mine * 1000, 1),
        "ratio": round(mine / base, 3),
        "target_ratio": 1.3,
    }
    save("cold_start", result)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
