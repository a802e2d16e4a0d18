"""Classification throughput against its own baseline: parsing and re-emitting the same JSON lines.

Both run in this process, on the same 50,000 events, alternately, several times; we report medians and
the ratio (ours / baseline). Absolute numbers depend on the machine; the ratio is what to watch.
Target: ratio <= 2 (classification costs no more than the parsing itself).
"""

from __future__ import annotations

import io
import json
import statistics
import time
import uuid
from pathlib import Path

from results_file import save

from guardrail.detect.catalogue import default_catalogue
from guardrail.detect.classifier import classify
from guardrail.detect.cloudtrail import parse_line
from guardrail.settings import Settings

ROOT = Path(__file__).resolve().parent.parent
EVENTS = 50_000
REPEATS = 5


def corpus() -> list[str]:
    samples = [json.loads(p.read_text()) for p in sorted((ROOT / "events").rglob("*.json"))]
    lines = []
    for i in range(EVENTS):
        event = samples[i % len(samples)]
        event["detail"]["eventID"] = str(uuid.UUID(int=i))
        lines.append(json.dumps(event))
    return lines


def baseline(lines: list[str]) -> int:
    out = io.StringIO()
    for line in lines:
        out.write(json.dumps(json.loads(line)) + "\n")
    return out.tell()


def classified(lines: list[str], settings: Settings) -> int:
    """What `guardrail classify` does with each line of a JSON Lines file."""
    out = io.StringIO()
    for line in lines:
        verdict = classify(parse_line(line), settings)
        out.write(json.dumps(verdict.summary()) + "\n")
    return out.tell()


def main() -> int:
    lines = corpus()
    settings = Settings.from_env({})
    default_catalogue()  # compiled once per process, as in Lambda; not part of the per-event cost
    base_times, ours_times = [], []
    for _ in range(REPEATS):
        start = time.perf_counter()
        baseline(lines)
        base_times.append(time.perf_counter() - start)
        start = time.perf_counter()
        classified(lines, settings)
        ours_times.append(time.perf_counter() - start)
    base, ours = statistics.median(base_times), statistics.median(ours_times)
    result = {
        "events": EVENTS,
        "repeats": REPEATS,
        "baseline_median_s": round(base, 4),
        "classify_median_s": round(ours, 4),
        "baseline_events_per_s": round(EVENTS / base),
        "classify_events_per_s": round(EVENTS / ours),
        "ratio": round(ours / base, 3),
        "target_ratio": 2.0,
    }
    save("classify_throughput", result)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
