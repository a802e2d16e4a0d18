"""Faults at the wire: AWS answering with throttling or errors, injected below botocore's retry layer so
the real retry behaviour runs, against the moto server (IAM enforced). And the metrics and logs each
fault leaves behind, which is what an operator sees."""

from __future__ import annotations

from collections import Counter
from typing import Any

import pytest
from botocore.awsrequest import AWSResponse

from guardrail.detect.cloudtrail import parse_event
from guardrail.incident import IncidentStatus
from guardrail.respond.containment import ContainmentFailed
from guardrail.telemetry import metrics
from tests.integration.conftest import Responder, concurrently, container, critical, denied, fresh_id


class _Raw:
    def __init__(self, body: bytes) -> None:
        self.body = body

    def stream(self, **_: Any) -> Any:
        yield self.body


def _throttle(client: Any, operation: str, times: int, *, query: bool) -> list[int]:
    """Answer the next `times` calls of `operation` with throttling, before they leave botocore (as AWS
    would answer them), then let them through. Returns a list that counts the attempts."""
    attempts: list[int] = []
    service = client.meta.service_model.service_name

    def answer(request: Any, **_: Any) -> AWSResponse | None:
        attempts.append(1)
        if len(attempts) > times:
            return None
        if query:  # IAM, STS, SNS: the query protocol answers in XML
            body = (
                b"<ErrorResponse><Error><Type>Sender</Type><Code>Throttling</Code>"
                b"<Message>Rate exceeded</Message></Error><RequestId>r</RequestId></ErrorResponse>"
            )
            return AWSResponse(request.url, 400, {"Content-Type": "text/xml"}, _Raw(body))
        body = b'{"__type":"com.amazonaws.dynamodb.v20120810#ThrottlingException","message":"Rate exceeded"}'
        return AWSResponse(request.url, 400, {"Content-Type": "application/x-amz-json-1.0"}, _Raw(body))

    client.meta.events.register(f"before-send.{service}.{operation}", answer)
    return attempts


@pytest.fixture
def emitted(monkeypatch: pytest.MonkeyPatch) -> Counter[str]:
    """The metrics the responder emits (their names), as CloudWatch would receive them."""
    names: Counter[str] = Counter()
    real = metrics.add_metric

    def add_metric(name: str, *args: Any, **kwargs: Any) -> None:
        names[name] += 1
        real(name, *args, **kwargs)

    monkeypatch.setattr(metrics, "add_metric", add_metric)
    return names


@pytest.fixture
def no_backoff(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """botocore's backoff, recorded instead of slept (time.sleep, process-wide for the test), and its
    adaptive rate limiter never waiting (it slows the client after throttling, by real time): a minute of
    waiting per test otherwise."""
    import botocore.endpoint  # noqa: PLC0415
    from botocore.retries.bucket import TokenBucket  # noqa: PLC0415

    slept: list[float] = []
    monkeypatch.setattr(botocore.endpoint.time, "sleep", slept.append)
    monkeypatch.setattr(TokenBucket, "acquire", lambda self, amount=1, block=True: True)
    return slept


def test_iam_throttling_is_ridden_out_by_retries(
    responder: Responder, emitted: Counter[str], no_backoff: list[float]
) -> None:
    event = critical(event_id=fresh_id())
    agent = responder.agent(event)
    attempts = _throttle(responder.runtime.aws.iam, "PutRolePolicy", 3, query=True)
    assert responder(event)["status"] == "contained"
    assert len(attempts) == 4  # three throttled, the fourth through: botocore's adaptive retries
    assert len(no_backoff) == 3  # each after a backoff
    assert denied(lambda: agent.client("s3").list_buckets())
    assert emitted["Contained"] == 1
    assert emitted["ContainmentFailures"] == 0


def test_iam_throttling_beyond_retries_is_a_loud_failure_and_the_retry_contains(
    responder: Responder, emitted: Counter[str], no_backoff: list[float]
) -> None:
    event = critical(event_id=fresh_id())
    agent = responder.agent(event)
    attempts = _throttle(responder.runtime.aws.iam, "PutRolePolicy", 10_000, query=True)
    with pytest.raises(ContainmentFailed, match="Throttling"):
        responder(event)  # the invocation fails: Lambda retries it, then the failure destination keeps it
    assert len(attempts) == 9  # the first try and botocore's retries, then a loud failure
    assert len(no_backoff) >= 8  # each retry backed off first
    assert emitted["ContainmentFailures"] == 1
    (incident,) = responder.runtime.store.records.incidents()
    assert incident.status is IncidentStatus.FAILED
    (message,) = responder.aws.published()
    assert message["status"] == "failed"
    assert "Throttling" in message["containment"]["error"]
    assert not denied(lambda: agent.client("s3").list_buckets())  # honest: not contained yet

    attempts.extend([1] * 10_000)  # the throttling passes
    retried = responder(event)
    assert (retried["status"], retried["incident_id"]) == ("contained", incident.id)  # the same incident
    assert denied(lambda: agent.client("s3").list_buckets())


def test_state_table_throttling_is_ridden_out_and_counted_once(
    responder: Responder, no_backoff: list[float]
) -> None:
    event = critical(event_id=fresh_id())
    agent = responder.agent(event)
    reads = _throttle(responder.runtime.aws.dynamodb, "BatchGetItem", 2, query=False)
    writes = _throttle(responder.runtime.aws.dynamodb, "TransactWriteItems", 2, query=False)
    assert responder(event)["status"] == "contained"
    # Two throttled attempts each, then one that passed: every read and every write was retried.
    assert len(reads) >= 3
    assert len(writes) >= 3
    assert denied(lambda: agent.client("s3").list_buckets())
    (incident,) = responder.runtime.store.records.incidents()
    assert incident.event_count == 1
    assert responder(event)["status"] == "duplicate"


def test_sns_throttling_beyond_retries_fails_the_invocation_after_the_containment(
    responder: Responder, emitted: Counter[str], no_backoff: list[float]
) -> None:
    event = critical(event_id=fresh_id())
    agent = responder.agent(event)
    attempts = _throttle(responder.runtime.aws.sns, "Publish", 10_000, query=True)
    with pytest.raises(Exception, match="Throttling"):
        responder(event)
    assert denied(lambda: agent.client("s3").list_buckets())  # containment came first, and holds
    assert emitted["Contained"] == 1
    attempts.extend([1] * 10_000)
    assert responder(event)["status"] == "notified_on_retry"
    (message,) = responder.aws.published()
    assert message["status"] == "contained"


@pytest.mark.usefixtures("atomic_dynamodb_writes")
def test_the_same_event_and_twenty_others_at_once_give_one_containment_and_every_count(account: Any) -> None:
    """As Lambda would run them: ten deliveries of one critical event and twenty other events of the same
    agent, each in its own container, released together."""
    shared = critical(event_id=fresh_id())
    account.agent_session(parse_event(shared))
    events = [shared] * 10 + [critical(event_id=fresh_id()) for _ in range(20)]
    counts, _ = concurrently(account, events)
    assert counts["contained"] == 1, counts
    assert counts["contained"] + counts["joined"] == 21, counts  # 21 distinct events, each counted once
    assert counts["duplicate"] == 9, counts  # the other deliveries of the shared event
    runtime = container(account)
    (incident,) = runtime.store.records.incidents()
    assert incident.event_count == 21  # no lost counts
    # One announcement: the other deliveries of the shared event saw it recorded and not yet announced,
    # and only one of them may announce (this test found them all announcing it).
    assert [m["kind"] for m in account.published()].count("incident") == 1
