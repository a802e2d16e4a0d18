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


def test_resources_are_read_whether_arn_is_written_upper_or_lower_case() -> None:
    record = ENVELOPE["detail"]
    bucket, key = "arn:aws:s3:::orders-archive", "arn:aws:kms:us-east-1:111122223333:key/k"
    resources = [{"ARN": bucket, "type": "AWS::S3::Bucket"}, {"arn": key, "accountId": "111122223333"},
                 {"arn": 7}, "junk", {"type": "AWS::S3::Object"}]  # fmt: skip
    assert parse_event({**record, "resources": resources}).resources == (bucket, key)
