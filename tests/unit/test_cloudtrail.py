"""Input shapes and hostile input: nothing but InvalidEventError escapes, and it says what is wrong."""

from __future__ import annotations

import copy
import gzip
import json
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from guardrail.detect.cloudtrail import parse_event, read_documents
from guardrail.errors import InvalidEventError
from guardrail.model import PrincipalKind
from tests.conftest import load_event

ENVELOPE = load_event("rules/s3.bucket-deleted.json")


def test_envelope_and_bare_record_give_the_same_call() -> None:
    from_envelope = parse_event(ENVELOPE)
    from_record = parse_event(ENVELOPE["detail"])
    # The envelope adds its sender and its source; the handler refuses a record without them.
    assert from_envelope == replace(from_record, delivered_by="111122223333", delivered_from="aws.s3")
    assert (from_record.delivered_by, from_record.delivered_from) == (None, None)
    assert from_envelope.event_name == "DeleteBucket"
    assert from_envelope.account == "111122223333"
    assert from_envelope.request["bucketName"] == "orders-archive"


def test_unknown_fields_are_tolerated() -> None:
    event = copy.deepcopy(ENVELOPE)
    event["detail"]["someFieldFrom2030"] = {"nested": [1, 2]}
    event["detail"]["userIdentity"]["newThing"] = "x"
    assert parse_event(event).event_name == "DeleteBucket"


def _without(path: list[str]) -> dict[str, Any]:
    event = copy.deepcopy(ENVELOPE)
    node = event
    for key in path[:-1]:
        node = node[key]
    del node[path[-1]]
    return event


@pytest.mark.parametrize(
    ("event", "message"),
    [
        ([1, 2], "expected a JSON object, got list"),
        ("text", "expected a JSON object, got str"),
        (None, "expected a JSON object, got NoneType"),
        ({"foo": 1}, "neither an EventBridge envelope"),
        (
            {**ENVELOPE, "detail-type": "EC2 Instance State-change Notification"},
            "detail-type is 'EC2 Instance",
        ),
        (_without(["detail", "eventName"]), "detail.eventName: Field required"),
        (_without(["detail", "eventSource"]), "detail.eventSource: Field required"),
        ({**ENVELOPE, "detail": {**ENVELOPE["detail"], "eventID": 7}}, "detail.eventID"),
        ({**ENVELOPE, "detail": {**ENVELOPE["detail"], "userIdentity": "root"}}, "detail.userIdentity"),
        ({**ENVELOPE, "detail": "not an object"}, "detail"),
        (
            {**ENVELOPE, "detail": {**ENVELOPE["detail"], "eventName": 42}},
            "detail.eventName: Input should be a valid string",
        ),
        ({**ENVELOPE, "detail": {**ENVELOPE["detail"], "eventID": "x" * 300}}, "detail.eventID"),
        (_without(["detail", "userIdentity", "type"]), "detail.userIdentity: neither a type nor"),
        (
            {**ENVELOPE, "detail": {**ENVELOPE["detail"], "requestParameters": [1]}},
            "detail.requestParameters",
        ),
        (
            {**ENVELOPE, "detail": {**ENVELOPE["detail"], "eventName": "x" * 1_000_000}},
            "at most 256 characters",
        ),
        ({**ENVELOPE, "detail": {**ENVELOPE["detail"], "eventName": ""}}, "at least 1 character"),
    ],
)
def test_invalid_events_raise_with_the_reason(event: object, message: str) -> None:
    with pytest.raises(InvalidEventError) as info:
        parse_event(event)
    assert message in str(info.value)


def test_deep_nesting_is_an_invalid_event_not_a_crash() -> None:
    deep: dict[str, Any] = {}
    node = deep
    for _ in range(5000):
        node["x"] = {}
        node = node["x"]
    event = copy.deepcopy(ENVELOPE)
    event["detail"]["requestParameters"] = deep
    try:
        call = parse_event(event)
    except InvalidEventError:
        return
    assert call.event_name == "DeleteBucket"


def test_huge_and_unicode_parameters_are_kept_as_data() -> None:
    event = copy.deepcopy(ENVELOPE)
    event["detail"]["requestParameters"]["bucketName"] = "\u202e<!channel>\x00" + "b" * 1_000_000
    assert parse_event(event).request["bucketName"].startswith("\u202e<!channel>")


@pytest.mark.parametrize(
    ("relative", "kind", "name", "session"),
    [
        ("rules/s3.bucket-deleted.json", PrincipalKind.ROLE, "AIAgentRole", "claude-code-session"),
        ("principals/iam-user-terminate.json", PrincipalKind.USER, "ai-agent-ci", None),
        ("principals/root-delete-trail.json", PrincipalKind.ROOT, "root", None),
        ("principals/identity-center-delete-table.json", PrincipalKind.IDENTITY_CENTER,
         "AWSReservedSSO_AIAgentAccess_0123456789abcdef", "devin-bot@example.com"),
    ],
)  # fmt: skip
def test_principal_of(relative: str, kind: PrincipalKind, name: str, session: str | None) -> None:
    principal = parse_event(load_event(relative)).principal
    assert (principal.kind, principal.name, principal.session_name) == (kind, name, session)
    assert principal.account == "111122223333"


def test_service_linked_and_service_principals() -> None:
    event = copy.deepcopy(ENVELOPE)
    issuer = event["detail"]["userIdentity"]["sessionContext"]["sessionIssuer"]
    issuer["arn"] = (
        "arn:aws:iam::111122223333:role/aws-service-role/autoscaling.amazonaws.com/AWSServiceRoleForAutoScaling"
    )
    issuer["userName"] = "AWSServiceRoleForAutoScaling"
    assert parse_event(event).principal.kind is PrincipalKind.SERVICE_LINKED
    event["detail"]["userIdentity"] = {"type": "AWSService", "invokedBy": "backup.amazonaws.com"}
    principal = parse_event(event).principal
    assert (principal.kind, principal.name) == (PrincipalKind.SERVICE, "backup.amazonaws.com")


def test_session_without_issuer_takes_the_role_from_the_arn() -> None:
    event = copy.deepcopy(ENVELOPE)
    del event["detail"]["userIdentity"]["sessionContext"]
    principal = parse_event(event).principal
    assert (principal.kind, principal.name, principal.issuer_arn) == (PrincipalKind.ROLE, "AIAgentRole", None)


# --- files -------------------------------------------------------------------------------------------


def test_log_file_jsonl_and_gzip(tmp_path: Path) -> None:
    record = ENVELOPE["detail"]
    log = tmp_path / "111122223333_CloudTrail_eu-west-1_20261120T0315Z_abc.json.gz"
    log.write_bytes(gzip.compress(json.dumps({"Records": [record, record]}).encode()))
    lines = tmp_path / "events.jsonl"
    lines.write_text(json.dumps(ENVELOPE) + "\n\n" + "{not json\n" + json.dumps(record) + "\n")
    from_log = list(read_documents(log))
    assert [w.rsplit("#", 1)[1] for w, _ in from_log] == ["Records[0]", "Records[1]"]
    from_lines = list(read_documents(lines))
    assert len(from_lines) == 3
    assert isinstance(from_lines[1][1], InvalidEventError)
    assert from_lines[1][0].endswith(":3")


@pytest.mark.parametrize(
    ("content", "message"),
    [(b"\x1f\x8b\x08garbage", "not a readable gzip file"), (b"\xff\xfe\xfa", "not UTF-8")],
)
def test_unreadable_files_raise(tmp_path: Path, content: bytes, message: str) -> None:
    path = tmp_path / "bad.json"
    path.write_bytes(content)
    with pytest.raises(InvalidEventError, match=message):
        list(read_documents(path))


def test_log_file_whose_records_are_not_a_list(tmp_path: Path) -> None:
    path = tmp_path / "bad.json"
    path.write_text('{"Records": 5}')
    [(where, document)] = list(read_documents(path))
    assert isinstance(document, InvalidEventError)
    assert "Records is int, expected a list" in str(document)


def _every_record() -> list[Any]:
    """The published records (tests/data/cloudtrail) and every sample event's record, and the odd ones a
    log file could hold: what the fast path must read exactly as parse_event does, or leave to it."""
    root = Path(__file__).resolve().parents[2]
    found: list[Any] = []
    for path in sorted((root / "tests" / "data" / "cloudtrail").glob("*.jsonl")):
        found += [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    for path in sorted((root / "events").rglob("*.json")):
        document = json.loads(path.read_text())
        if isinstance(document, dict) and isinstance(document.get("detail"), dict):
            found.append(document["detail"])
    record = ENVELOPE["detail"]
    found += [
        {k: v for k, v in record.items() if k != "eventID"},  # its id: a hash of its JSON
        {**record, "eventID": ""},
        {**record, "detail": None},  # an envelope's key: parse_event reads it as an envelope
        {**record, "detail-type": "AWS API Call via CloudTrail"},
        {**record, "userIdentity": {"accountId": "111122223333"}},  # neither a type nor invokedBy
        {**record, "userIdentity": "someone"},
        {**record, "eventName": ""},
        {**record, "eventTime": "redacted"},
        {**record, "eventType": "AwsServiceEvent"},
        {**record, "eventType": 7},
        {**record, "readOnly": "true"},
        {
            **record,
            "requestParameters": {"n": 10**30, "f": 1.5e300, "s": "\u2028é\x00", "deep": [[{"x": None}]]},
        },
        "a string",
        7,
        None,
        [],
    ]
    return found


def _calls(documents: list[tuple[str, object]]) -> list[tuple[str, object]]:
    from guardrail.detect.cloudtrail import call_of

    read: list[tuple[str, object]] = []
    for where, document in documents:
        try:
            read.append((where, call_of(document)))
        except InvalidEventError as exc:
            read.append((where, f"error: {exc}"))
    return read


def test_log_file_fast_path_reads_every_record_as_parse_event_does(tmp_path: Path) -> None:
    from guardrail.detect.cloudtrail import ApiCall, documents_in

    records = _every_record()
    raw = gzip.compress(json.dumps({"Records": records}).encode())
    fast = list(documents_in("log.json.gz", raw, parse=True))
    slow = list(documents_in("log.json.gz", raw))
    assert (
        [w for w, _ in fast]
        == [w for w, _ in slow]
        == [f"log.json.gz#Records[{i}]" for i in range(len(records))]
    )
    # Every ordinary record comes parsed (or refused), the odd ones as JSON for parse_event.
    ordinary = [
        r
        for r in records
        if isinstance(r, dict)
        and r.get("eventID")
        and r.get("eventSource")
        and r.get("eventName")
        and isinstance(r.get("userIdentity", {}), dict)
        and isinstance(r.get("eventType", ""), str)
        and not {"detail", "detail-type"} & r.keys()
    ]
    assert sum(isinstance(d, ApiCall | InvalidEventError) for _, d in fast) == len(ordinary) > 500
    assert all(not isinstance(d, ApiCall) for _, d in slow)
    fast_calls, slow_calls = _calls(fast), _calls(slow)
    for (where, a), (_, b) in zip(fast_calls, slow_calls, strict=True):
        if isinstance(a, ApiCall) and "eventTime" in a.gaps:
            assert isinstance(b, ApiCall)
            assert "eventTime" in b.gaps  # the time it was read: not equal
            a, b = replace(a, event_time=b.event_time), b
        assert a == b, where
    errors = [c for _, c in fast_calls if isinstance(c, str)]
    assert any("neither a type nor the AWS service" in e for e in errors)
    assert any("eventName" in e for e in errors)


def test_a_file_the_fast_path_cannot_decode_is_read_the_slow_way() -> None:
    from guardrail.detect.cloudtrail import documents_in

    record = ENVELOPE["detail"]
    text = '{"Records": [' + json.dumps(record) + ", {not json}]}"
    broken = _calls(list(documents_in("x.json", text.encode(), parse=True)))
    assert broken == _calls(list(documents_in("x.json", text.encode())))
    [(where, error)] = broken
    assert where == "x.json:1"
    assert str(error).startswith("error: x.json:1: not JSON (Expecting property name")
    lines = (json.dumps({"Records": [record]}) + "\n" + json.dumps(ENVELOPE) + "\n").encode()
    read = _calls(list(documents_in("x.jsonl", lines, parse=True)))
    assert [w for w, _ in read] == ["x.jsonl:1#Records[0]", "x.jsonl:2"]
    assert all(not isinstance(c, str) for _, c in read)
