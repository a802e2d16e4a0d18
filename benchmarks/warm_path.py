"""The warm path against its own baseline, on one moto server (IAM enforced, the embedded account of
`guardrail replay`): milliseconds from handler entry to the containment's IAM request leaving the process,
versus one bare put_role_policy call on the same server. Then AWS calls per event in a 1,000-event storm
of one agent. Medians of several runs; the ratio is what to watch.
"""

from __future__ import annotations

import copy
import json
import statistics
import time
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

from results_file import save

ROOT = Path(__file__).resolve().parent.parent
RUNS = 15
STORM = 1000
DENY = json.dumps(
    {"Version": "2012-10-17", "Statement": [{"Effect": "Deny", "Action": "*", "Resource": "*"}]}
)


def _event(role: str) -> dict[str, Any]:
    event: dict[str, Any] = json.loads(
        (ROOT / "events" / "rules" / "dynamodb.table-deleted.json").read_text()
    )
    text = json.dumps(event).replace("AIAgentRole", role)
    renamed: dict[str, Any] = json.loads(text)
    renamed["detail"]["eventID"] = str(uuid.uuid4())
    return renamed


def main() -> int:
    from guardrail.aws import AwsClients
    from guardrail.detect.cloudtrail import parse_event
    from guardrail.operate.replay import CallRecorder, EmbeddedAws, _quiet_telemetry, invoke, load_handler
    from guardrail.respond.runtime import Runtime, use_runtime
    from guardrail.settings import Settings

    with _quiet_telemetry(), EmbeddedAws(account="111122223333") as aws:
        session = aws.session()
        recorder = CallRecorder()
        recorder.attach(session)
        runtime = Runtime(settings=Settings.from_env(aws.settings_env), aws=AwsClients(session=session))
        use_runtime(runtime)
        handler = load_handler()
        sent: list[float] = []
        runtime.aws.iam.meta.events.register(
            "before-send.iam.PutRolePolicy", lambda **_: sent.append(time.perf_counter())
        )

        # A warm container: clients built, identity known, catalogue compiled.
        warm = _event("AIAgentWarm")
        aws.agent_session(parse_event(warm))
        invoke(handler, warm)

        ours, bare = [], []
        iam = runtime.aws.iam
        for run in range(RUNS):
            event = _event(f"AIAgentBench{run}")
            aws.agent_session(parse_event(event))
            sent.clear()
            start = time.perf_counter()
            assert invoke(handler, event)["status"] == "contained"
            ours.append((sent[0] - start) * 1000)
            # The baseline: one bare PutRolePolicy on the same server, by the same client.
            start = time.perf_counter()
            iam.put_role_policy(RoleName=f"AIAgentBench{run}", PolicyName="Bare", PolicyDocument=DENY)
            bare.append((time.perf_counter() - start) * 1000)

        # The storm: 1,000 destructive calls of one agent, each one invocation, as EventBridge delivers them.
        storm = _event("AIAgentStorm")
        aws.agent_session(parse_event(storm))
        calls: Counter[str] = Counter()
        statuses: Counter[str] = Counter()
        for _ in range(STORM):
            event = copy.deepcopy(storm)
            event["detail"]["eventID"] = str(uuid.uuid4())
            recorder.start()
            statuses[invoke(handler, event)["status"]] += 1
            calls.update(f"{c['service']}:{c['operation']}" for c in recorder.calls)
        use_runtime(None)

    result = {
        "runs": RUNS,
        "baseline": "one bare iam:PutRolePolicy on the same moto server",
        "ours": "handler entry to the containment's PutRolePolicy request sent (warm container)",
        "baseline_median_ms": round(statistics.median(bare), 2),
        "ours_median_ms": round(statistics.median(ours), 2),
        "ratio": round(statistics.median(ours) / statistics.median(bare), 3),
        "storm_events": STORM,
        "storm_statuses": dict(statuses),
        "storm_calls_per_event": round(sum(calls.values()) / STORM, 3),
        "storm_calls": dict(calls.most_common()),
    }
    save("warm_path", result)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
