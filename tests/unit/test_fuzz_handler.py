"""Property-based, through the real entry point: whatever arrives, nothing escapes but InvalidEventError, and
no invalid event touches IAM (or anything but the quarantine queue); every one is logged with its reason,
counted, and kept.

The handler runs against fakes, not moto: the property is about what it asks of AWS, and 10,000 cases a
run must fit in CI time. The quarantine queue records what it is given; every other client fails the test
the moment it is touched. GUARDRAIL_FUZZ_EXAMPLES changes the count (default 10,000).
"""

from __future__ import annotations

import copy
import io
import json
import os
import random
from typing import Any, cast

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from guardrail.detect.classifier import classify
from guardrail.detect.cloudtrail import parse_event
from guardrail.errors import InvalidEventError
from guardrail.operate.cli import classify_command
from guardrail.respond.handler import handle_event
from guardrail.respond.runtime import Runtime
from guardrail.settings import Settings
from guardrail.telemetry import logger, metrics
from tests.unit.test_hostile_input import SAMPLES, json_values, mutated

EXAMPLES = int(os.environ.get("GUARDRAIL_FUZZ_EXAMPLES", "10000"))
# The samples that describe a call (an Insight names none at its top).
CALLS = [s for s in SAMPLES if "eventName" in s["detail"] and "eventID" in s["detail"]]
QUEUE = "https://sqs.us-east-1.amazonaws.com/111122223333/guardrail-quarantine"


TOUCHED: list[str] = []  # every client call an invalid event caused, even one the handler swallowed


class Untouchable:
    def __init__(self, service: str) -> None:
        self.service = service

    def __getattr__(self, name: str) -> Any:
        TOUCHED.append(f"{self.service}.{name}")
        raise AssertionError(f"{self.service}.{name} called for an invalid event")


class Queue:
    def __init__(self) -> None:
        self.kept: list[dict[str, Any]] = []

    def send_message(self, QueueUrl: str, MessageBody: str) -> dict[str, str]:  # noqa: N803  (boto3's names)
        assert QueueUrl == QUEUE
        assert len(MessageBody.encode()) < 256 * 1024, "SQS would refuse it"
        self.kept.append(json.loads(MessageBody))
        return {"MessageId": "m"}


class Clients:
    def __init__(self) -> None:
        self.sqs = Queue()
        for service in ("iam", "sts", "sns", "dynamodb", "organizations"):
            setattr(self, service, Untouchable(service))

    def ec2_in(self, region: str) -> Any:
        return Untouchable(f"ec2@{region}")


@pytest.fixture(scope="module")
def spies() -> Any:
    """What the handler logs and counts, without printing 10,000 log lines."""
    errors: list[dict[str, Any]] = []
    counted: list[str] = []
    real_error, real_metric = logger.error, metrics.add_metric

    def error(message: str, *args: Any, extra: dict[str, Any] | None = None, **kwargs: Any) -> None:
        errors.append({"message": message, **(extra or {})})

    def add_metric(name: str, *args: Any, **kwargs: Any) -> None:
        counted.append(name)

    logger.error, metrics.add_metric = error, add_metric  # type: ignore[method-assign]
    yield errors, counted
    logger.error, metrics.add_metric = real_error, real_metric  # type: ignore[method-assign]


SETTINGS = Settings.from_env({"GUARDRAIL_QUARANTINE_QUEUE_URL": QUEUE})


@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck))
@given(data=st.data())
def test_the_handler_keeps_every_invalid_event_and_touches_nothing_else(
    data: st.DataObject, spies: Any
) -> None:
    errors, counted = spies
    every_way = ("delete", "replace", "null", "unicode")
    document = mutated(data, every_way) if data.draw(st.booleans()) else data.draw(json_values)
    try:
        call = parse_event(document)
    except InvalidEventError as exc:
        reason = str(exc)
        event("invalid: through the handler")
    else:
        event("still valid: classified")
        # Still a CloudTrail event after the mutations: its classification must simply work.
        assert classify(call, SETTINGS).decision.value in {"ignore", "notify", "contain"}
        return
    errors.clear()
    counted.clear()
    clients = Clients()
    TOUCHED.clear()
    outcome = handle_event(document, Runtime(settings=SETTINGS, aws=cast(Any, clients)))
    # Never a containment from an invalid event: no IAM, STS, SNS, DynamoDB call at all, no verdict.
    assert TOUCHED == []
    assert (outcome.verdict, outcome.incident_id, outcome.actions) == (None, None, [])
    assert (outcome.status, outcome.error) == ("quarantined", reason)
    assert reason, "an invalid event says what is wrong"
    (kept,) = clients.sqs.kept
    assert kept["reason"] == reason
    assert "event" in kept or kept.get("truncated")
    assert counted == ["InvalidEvents"]
    (logged,) = errors
    assert logged["reason"] == reason


def test_specials_are_kept_too(spies: Any) -> None:
    deep: Any = "leaf"
    for _ in range(1000):
        deep = {"x": deep}
    huge = copy.deepcopy(SAMPLES[0])
    huge["detail"]["eventID"] = "\u0000\u202e" * 500_000  # 1 MB of control characters where an id belongs
    for hostile, why in (
        (
            {**SAMPLES[0], "detail": deep},
            "detail.eventSource: Field required; detail.eventName: Field required",
        ),
        (
            {**SAMPLES[0], "detail": {**SAMPLES[0]["detail"], "userIdentity": deep}},
            "detail.userIdentity: neither a type nor the AWS service that invoked the call",
        ),
        (huge, "detail.eventID: String should have at most 256 characters"),
        ([deep], "expected a JSON object, got list"),
        ("\ud800", "expected a JSON object, got str"),
    ):
        clients = Clients()
        TOUCHED.clear()
        outcome = handle_event(hostile, Runtime(settings=SETTINGS, aws=cast(Any, clients)))
        assert TOUCHED == []
        assert (outcome.status, outcome.error, outcome.verdict, outcome.actions) == (
            "quarantined",
            why,
            None,
            [],
        )
        assert len(clients.sqs.kept) == 1


def test_guardrail_classify_reports_every_bad_line_and_classifies_the_rest(tmp_path: Any) -> None:
    """10,000 lines, a third of them broken in one of the ways the property test breaks them."""
    rng = random.Random(20261124)
    lines, broken = [], 0
    for n in range(EXAMPLES):
        event = copy.deepcopy(rng.choice(CALLS))
        event["detail"]["eventID"] = f"fuzz-{n}"
        damage = rng.randrange(6)
        if damage == 0:
            del event["detail"][rng.choice(["eventName", "eventSource"])]  # a record that names no call
        elif damage == 1:
            event["detail"]["eventName"] = rng.choice([None, 2026, ["DeleteBucket"], ""])
        elif damage == 2:
            event["detail-type"] = "Object Created"
        elif damage == 4:
            # What CloudTrail itself leaves out is read, not refused: the envelope stands in, or the caller
            # is unknown.
            event["detail"].pop(rng.choice(["userIdentity", "eventTime", "eventID", "awsRegion"]), None)
            if rng.random() < 0.5:
                event["detail"]["eventTime"] = rng.choice(["", "redacted", "yesterday"])
        if damage < 3:
            broken += 1
        text = json.dumps(event)
        if damage == 3 and n % 7 == 0:
            text, broken = text[: rng.randrange(1, len(text))], broken + 1  # cut short: not JSON
        lines.append(text)
    path = tmp_path / "fuzz.jsonl"
    path.write_text("\n".join(lines) + "\n")
    out, err = io.StringIO(), io.StringIO()
    assert classify_command([path], out, err) == 1  # some lines were bad: the exit status says so
    reported = err.getvalue().splitlines()
    assert len(reported) == broken
    assert all(line.startswith(f"guardrail: {path}:") for line in reported)
    assert len(out.getvalue().splitlines()) == EXAMPLES - broken
