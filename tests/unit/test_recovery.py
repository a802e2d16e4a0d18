"""The recovery book (data/recovery.yaml) and the damage report built from it: pure, no AWS."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from guardrail.detect.recovery import Change, Outcome, compile_book, default_book, named_resources, parse_date
from guardrail.errors import CatalogueError
from guardrail.model import AutoRestore
from guardrail.report.damage import damage_message, damage_report, relative, report_text
from guardrail.report.slack import render
from guardrail.respond.undo import UNDO_OPERATIONS, heal_plan, plan_of

NOW = datetime(2026, 12, 2, 3, 0, tzinfo=UTC)
ROOT = Path(__file__).resolve().parents[2]
DESTROYING = ("Delete", "Remove", "Terminate", "Disable", "Stop", "Detach", "Revoke", "Cancel", "Deregister")


def change(
    source: str, name: str, request: dict[str, Any], response: dict[str, Any] | None = None, **kw: Any
) -> Change:
    return Change(
        event_id=kw.pop("event_id", f"{name}-{len(request)}"),
        time=kw.pop("time", NOW),
        source=source,
        name=name,
        region="eu-west-1",
        account="111122223333",
        request=request,
        response=response,
        **kw,
    )


def test_every_step_is_a_call_that_only_puts_back() -> None:
    book = default_book()
    for entry in book.entries:
        for step in entry.steps:
            assert step.call in UNDO_OPERATIONS, f"{entry.call}: {step.call} is not an undo operation"
            # CancelKeyDeletion cancels a deletion: the one "Cancel" that restores.
            assert step.call == "kms:CancelKeyDeletion" or not step.operation.startswith(DESTROYING), (
                step.call
            )


def test_every_entry_cites_the_aws_page_it_was_checked_against() -> None:
    for entry in default_book().entries:
        assert entry.source.startswith("https://docs.aws.amazon.com/"), entry.call


def test_the_done_when_calls_are_known() -> None:
    book = default_book()
    for call in (
        "kms.amazonaws.com:ScheduleKeyDeletion",
        "secretsmanager.amazonaws.com:DeleteSecret",
        "s3.amazonaws.com:PutBucketVersioning",
        "s3.amazonaws.com:DeleteObject",
        "s3.amazonaws.com:DeleteObjects",
        "cloudtrail.amazonaws.com:StopLogging",
        "rds.amazonaws.com:DeleteDBInstance",
        "ec2.amazonaws.com:TerminateInstances",
        "events.amazonaws.com:DisableRule",
        "guardduty.amazonaws.com:UpdateDetector",
        "config.amazonaws.com:StopConfigurationRecorder",
    ):
        assert any(e.call == call for e in book.entries), call


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        # As AWS's own CloudTrail examples write them (tests/data/cloudtrail/awsdocs.jsonl, panther-analysis.jsonl).
        ("Nov 2, 2021, 11:25:25 PM", datetime(2021, 11, 2, 23, 25, 25, tzinfo=UTC)),
        ("Jan 1, 2019 12:00:00 AM", datetime(2019, 1, 1, 0, 0, tzinfo=UTC)),
        ("Apr 12, 2021 18:58:30 PM", datetime(2021, 4, 12, 18, 58, 30, tzinfo=UTC)),
        ("2026-12-09T03:00:00Z", datetime(2026, 12, 9, 3, 0, tzinfo=UTC)),
        (1796785200, datetime(2026, 12, 9, 3, 0, tzinfo=UTC)),
        ("next tuesday", None),
        ("", None),
        (True, None),
    ],
)
def test_deletion_dates_are_read_as_cloudtrail_writes_them(text: object, expected: datetime | None) -> None:
    assert parse_date(text) == expected


def test_a_key_deletion_is_undone_before_the_date_the_response_names() -> None:
    found = default_book().recovery(
        change(
            "kms.amazonaws.com",
            "ScheduleKeyDeletion",
            {"keyId": "1234abcd", "pendingWindowInDays": 7},
            {"deletionDate": "Dec 9, 2026, 3:00:00 AM"},
        )
    )
    assert found is not None
    assert found.outcome is Outcome.UNDO
    assert [(s.call, dict(s.params)) for s in found.steps] == [
        ("kms:CancelKeyDeletion", {"KeyId": "1234abcd"}),
        ("kms:EnableKey", {"KeyId": "1234abcd"}),
    ]
    assert found.deadline == datetime(2026, 12, 9, 3, 0, tzinfo=UTC)


def test_without_a_date_the_window_the_request_set_gives_the_deadline() -> None:
    book = default_book()
    kms = book.recovery(
        change("kms.amazonaws.com", "ScheduleKeyDeletion", {"keyId": "k", "pendingWindowInDays": 10})
    )
    assert kms is not None
    assert kms.deadline == NOW + timedelta(days=10)
    secret = book.recovery(change("secretsmanager.amazonaws.com", "DeleteSecret", {"secretId": "s"}))
    assert secret is not None
    assert secret.deadline == NOW + timedelta(days=30)


def test_a_forced_secret_deletion_cannot_be_undone() -> None:
    found = default_book().recovery(
        change(
            "secretsmanager.amazonaws.com",
            "DeleteSecret",
            {"secretId": "s", "forceDeleteWithoutRecovery": "true"},
        )
    )
    assert found is not None
    assert found.outcome is Outcome.LOST
    assert not found.steps


@pytest.mark.parametrize(
    ("request_", "outcome", "words"),
    [
        (
            {"dBInstanceIdentifier": "db", "finalDBSnapshotIdentifier": "db-final"},
            Outcome.BY_HAND,
            "db-final",
        ),
        (
            {"dBInstanceIdentifier": "db", "skipFinalSnapshot": True, "deleteAutomatedBackups": False},
            Outcome.BY_HAND,
            "retained",
        ),
        (
            {"dBInstanceIdentifier": "db", "skipFinalSnapshot": True},
            Outcome.LOST,
            "automated backups were deleted",
        ),
    ],
)
def test_a_database_deletion_says_what_is_left(
    request_: dict[str, Any], outcome: Outcome, words: str
) -> None:
    found = default_book().recovery(change("rds.amazonaws.com", "DeleteDBInstance", request_))
    assert found is not None
    assert found.outcome is outcome
    assert words in found.how


def test_an_undo_whose_record_lacks_a_value_is_left_to_a_person() -> None:
    found = default_book().recovery(change("cloudtrail.amazonaws.com", "StopLogging", {}))
    assert found is not None
    assert found.outcome is Outcome.BY_HAND
    assert "request.name" in found.how


def test_only_a_suspension_of_versioning_is_undone() -> None:
    book = default_book()
    enabled = change(
        "s3.amazonaws.com",
        "PutBucketVersioning",
        {"bucketName": "b", "VersioningConfiguration": {"Status": "Enabled"}},
    )
    assert book.recovery(enabled) is None


@pytest.mark.parametrize(
    ("document", "problem"),
    [
        (
            {
                "version": 1,
                "recoveries": [
                    {
                        "call": "kms.amazonaws.com:X",
                        "outcome": "undo",
                        "how": "x",
                        "source": "https://docs.aws.amazon.com/x",
                    }
                ],
            },
            "an undo has steps",
        ),
        (
            {
                "version": 1,
                "recoveries": [
                    {
                        "call": "kms.amazonaws.com:X",
                        "outcome": "lost",
                        "how": "x",
                        "source": "https://example.com",
                    }
                ],
            },
            "AWS documentation",
        ),
        (
            {
                "version": 1,
                "recoveries": [
                    {
                        "call": "kms.amazonaws.com:X",
                        "outcome": "lost",
                        "how": "x",
                        "heal": "guardduty",
                        "source": "https://docs.aws.amazon.com/x",
                    }
                ],
            },
            "only an undo can heal",
        ),
        (
            {
                "version": 1,
                "recoveries": [
                    {"call": "kms", "outcome": "lost", "how": "x", "source": "https://docs.aws.amazon.com/x"}
                ],
            },
            "eventSource:eventName",
        ),
        ({"version": 2}, "version 1"),
    ],
)
def test_a_mistake_in_the_book_is_named(document: object, problem: str) -> None:
    with pytest.raises(CatalogueError, match=problem):
        compile_book(document)


def test_named_resources_are_bounded_whatever_the_record_holds() -> None:
    request = {
        "bucketName": "b",
        "key": "k" * 5000,
        "nested": {"items": [{"instanceId": f"i-{n}"} for n in range(500)]},
    }
    found = named_resources(request, ("arn:aws:s3:::b/k",))
    assert found[0] == "arn:aws:s3:::b/k"
    assert len(found) == 20
    assert all(len(r) <= 512 for r in found)


def _report() -> Any:
    changes = [
        change("kms.amazonaws.com", "ScheduleKeyDeletion", {"keyId": "k1", "pendingWindowInDays": 7}, time=NOW - timedelta(minutes=9), resources=("arn:aws:kms:eu-west-1:111122223333:key/k1",)),
        change("cloudtrail.amazonaws.com", "StopLogging", {"name": "org-trail"}, time=NOW - timedelta(minutes=8)),
        change("rds.amazonaws.com", "DeleteDBInstance", {"dBInstanceIdentifier": "orders", "skipFinalSnapshot": True}, time=NOW - timedelta(minutes=7)),
        change("s3.amazonaws.com", "DeleteBucket", {"bucketName": "b"}, time=NOW - timedelta(minutes=6), error_code="AccessDenied"),
        change("sqs.amazonaws.com", "PurgeQueue", {"queueUrl": "q"}, time=NOW - timedelta(minutes=5)),
        change("secretsmanager.amazonaws.com", "GetSecretValue", {"secretId": "prod/db"}, time=NOW - timedelta(minutes=4), read_only=True, origin="cloudtrail"),
    ]  # fmt: skip
    return damage_report(
        changes,
        principal="arn:aws:sts::111122223333:assumed-role/AIAgentRole/s",
        since=NOW - timedelta(hours=3),
        now=NOW,
        incident_id="GR-1",
    )


def test_the_report_groups_by_resource_and_says_what_each_change_allows() -> None:
    report = _report()
    assert report.counts() == {"undo": 2, "by_hand": 0, "lost": 1, "unknown": 1, "failed": 1}
    assert [r for r, _ in report.groups] == [
        "arn:aws:kms:eu-west-1:111122223333:key/k1",
        "org-trail",
        "orders",
        "b",
        "q",
    ]
    assert report.reads == (("prod/db", ("GetSecretValue",)),)
    text = report_text(report)
    assert "ScheduleKeyDeletion (kms, eu-west-1): CAN BE UNDONE" in text
    assert "-> kms:CancelKeyDeletion(KeyId=k1)" in text
    assert "before 2026-12-09 02:51 UTC (in 7 days)" in text
    assert "DeleteDBInstance (rds, eu-west-1): CANNOT BE UNDONE" in text
    assert "FAILED (nothing changed)" in text
    assert "NO RECOVERY KNOWN" in text
    assert "prod/db: GetSecretValue" in text
    assert "guardrail undo GR-1 --apply" in text


def test_the_plan_runs_oldest_first_and_heals_only_the_kinds_allowed() -> None:
    report = _report()
    plan = plan_of(report)
    assert [p.step.call for p in plan.steps] == [
        "kms:CancelKeyDeletion",
        "kms:EnableKey",
        "cloudtrail:StartLogging",
    ]
    assert [x.change.name for x in plan.lost] == ["DeleteDBInstance"]
    healing = heal_plan(report, frozenset({AutoRestore.TRAIL_LOGGING}), "guardrail-responder-")
    assert [p.step.call for p in healing.steps] == ["cloudtrail:StartLogging"]
    assert heal_plan(report, frozenset(), "guardrail-responder-").steps == ()


def test_a_responder_rule_is_healed_only_if_it_is_this_responders_own() -> None:
    book = default_book()
    own = change(
        "events.amazonaws.com", "DisableRule", {"name": "guardrail-responder-Destructive-1"}, event_id="a"
    )
    other = change("events.amazonaws.com", "DisableRule", {"name": "someone-elses"}, event_id="b")
    report = damage_report([own, other], principal="p", since=NOW, now=NOW, book=book)
    healing = heal_plan(report, frozenset({AutoRestore.RESPONDER_RULES}), "guardrail-responder-")
    assert [dict(p.step.params) for p in healing.steps] == [{"Name": "guardrail-responder-Destructive-1"}]


@pytest.mark.parametrize(
    ("delta", "text"),
    [
        (timedelta(days=6, hours=23), "in 7 days"),
        (timedelta(hours=5), "in 5 hours"),
        (timedelta(minutes=-90), "2 hours ago: too late"),
    ],
)
def test_deadlines_read_as_a_person_would_say_them(delta: timedelta, text: str) -> None:
    assert relative(NOW + delta, NOW) == text


def test_the_damage_message_renders_for_slack_and_email() -> None:
    from guardrail.incident import Incident, IncidentStatus
    from guardrail.report.message import email_text, subject

    incident = Incident(
        id="GR-1", status=IncidentStatus.CONTAINED, key="arn:aws:iam::111122223333:role/AIAgentRole",
        principal_arn="arn:aws:sts::111122223333:assumed-role/AIAgentRole/s", account="111122223333",
        region="eu-west-1", opened_at=NOW, verdict={"rule_ids": ["kms.key-deletion-scheduled"], "severity": "critical"},
        event_ids=["e"],
    )  # fmt: skip
    message = damage_message(incident, _report(), restored=["cloudtrail:StartLogging(Name=org-trail)"])
    json.dumps(message)  # what SNS carries
    assert subject(message).startswith("[CRITICAL][CONTAINED][DAMAGE] AIAgentRole")
    email = email_text(message)
    assert "DAMAGE REPORT" in email
    assert "PUT BACK BY THE RESPONDER: cloudtrail:StartLogging" in email
    blocks = render(message)["blocks"]
    text = json.dumps(blocks)
    assert "DAMAGE" in blocks[0]["text"]["text"]
    assert "Cancel the deletion, then enable the key" in text
    assert "cannot be undone" in text
    assert "guardrail undo GR-1 --apply" in text
    assert len(blocks) <= 50


# CloudTrail's event history (LookupEvents) is not in moto: these run against botocore's Stubber, with
# responses shaped like the example in the LookupEvents API reference (Events[].CloudTrailEvent is the
# record as a JSON string).
def _looked_up(name: str, minute: int, read_only: bool = False) -> dict[str, Any]:
    record = {
        "eventVersion": "1.09",
        "userIdentity": {
            "type": "AssumedRole",
            "principalId": "AROAEXAMPLE:s",
            "arn": "arn:aws:sts::111122223333:assumed-role/AIAgentRole/s",
            "accountId": "111122223333",
            "accessKeyId": "ASIAEXAMPLEAGENT0001",
        },
        "eventTime": f"2026-12-02T02:{minute:02d}:00Z",
        "eventSource": "secretsmanager.amazonaws.com",
        "eventName": name,
        "awsRegion": "eu-west-1",
        "requestParameters": {"secretId": f"prod/{name}"},
        "responseElements": None,
        "eventID": f"lookup-{name}-{minute}",
        "readOnly": read_only,
        "eventType": "AwsApiCall",
        "recipientAccountId": "111122223333",
    }
    return {
        "EventId": record["eventID"],
        "EventName": name,
        "ReadOnly": str(read_only).lower(),
        "AccessKeyId": "ASIAEXAMPLEAGENT0001",
        "EventTime": datetime(2026, 12, 2, 2, minute, tzinfo=UTC),
        "EventSource": "secretsmanager.amazonaws.com",
        "Username": "s",
        "Resources": [{"ResourceType": "AWS::SecretsManager::Secret", "ResourceName": f"prod/{name}"}],
        "CloudTrailEvent": json.dumps(record),
    }


class _Flight:
    def __init__(self, changes: list[Change]) -> None:
        self.changes = changes

    def of(self, key: str, since: datetime | None = None) -> list[Change]:
        return list(self.changes)


class _Store:
    def __init__(self, changes: list[Change]) -> None:
        self.flight = _Flight(changes)


def _agent() -> Any:
    from guardrail.model import Principal, PrincipalKind

    return Principal(
        PrincipalKind.ROLE, "arn:aws:sts::111122223333:assumed-role/AIAgentRole/s", "111122223333",
        "AIAgentRole", session_name="s", access_key_id="ASIAEXAMPLEAGENT0001",
    )  # fmt: skip


def test_the_event_history_is_paged_paced_and_merged_with_the_flight_record() -> None:
    import boto3
    from botocore.stub import ANY, Stubber

    from guardrail.respond.investigate import EventHistory, investigate

    client = boto3.client(
        "cloudtrail", region_name="eu-west-1", aws_access_key_id="x", aws_secret_access_key="x"
    )
    stub = Stubber(client)
    expected = {
        "LookupAttributes": [{"AttributeKey": "AccessKeyId", "AttributeValue": "ASIAEXAMPLEAGENT0001"}],
        "StartTime": ANY,
        "EndTime": ANY,
        "MaxResults": 50,
    }
    first = [_looked_up("GetSecretValue", 1, read_only=True), _looked_up("DeleteSecret", 2)]
    bad = {**_looked_up("DeleteSecret", 3), "CloudTrailEvent": "{not json"}
    stub.add_response("lookup_events", {"Events": [*first, bad], "NextToken": "page-2"}, expected)
    stub.add_response(
        "lookup_events",
        {"Events": [_looked_up("GetSecretValue", 4, read_only=True)]},
        {**expected, "NextToken": "page-2"},
    )
    clock, waits = [100.0], []

    def sleep(seconds: float) -> None:
        waits.append(seconds)
        clock[0] += seconds

    history = EventHistory(client, sleep=sleep, clock=lambda: clock[0])
    # The flight record already holds the DeleteSecret: it is not listed twice.
    flight = [
        change(
            "secretsmanager.amazonaws.com",
            "DeleteSecret",
            {"secretId": "prod/DeleteSecret"},
            event_id="lookup-DeleteSecret-2",
        )
    ]
    with stub:
        report = investigate(
            _Store(flight),
            "k",
            principal="p",
            since=NOW - timedelta(hours=3),
            now=NOW,
            history=history,
            who=_agent(),
        )  # type: ignore[arg-type]
    stub.assert_no_pending_responses()
    assert waits == [0.5]  # two requests, half a second apart: LookupEvents allows two a second
    assert [line.change.origin for line in report.lines] == ["flight"]
    assert report.reads == (("prod/GetSecretValue", ("GetSecretValue",)),)
    assert "1 event(s) could not be read" in " ".join(report.notes)


def test_an_event_history_that_fails_leaves_the_flight_record_and_says_so() -> None:
    import boto3
    from botocore.stub import Stubber

    from guardrail.respond.investigate import EventHistory, investigate

    client = boto3.client(
        "cloudtrail", region_name="eu-west-1", aws_access_key_id="x", aws_secret_access_key="x"
    )
    stub = Stubber(client)
    stub.add_client_error("lookup_events", "ThrottlingException", "Rate exceeded", 400)
    flight = [change("cloudtrail.amazonaws.com", "StopLogging", {"name": "t"})]
    with stub:
        report = investigate(
            _Store(flight), "k", principal="p", since=NOW, now=NOW, history=EventHistory(client), who=_agent()
        )  # type: ignore[arg-type]
    assert report.counts()["undo"] == 1
    assert "could not be read (ThrottlingException): flight record only" in " ".join(report.notes)


def test_a_damage_message_fits_sns_whatever_the_agent_did() -> None:
    from guardrail.incident import Incident, IncidentStatus
    from guardrail.report.message import sns_payload

    huge = [
        change(
            "s3.amazonaws.com",
            "PutBucketVersioning",
            {"bucketName": f"b{n}" + "x" * 400, "VersioningConfiguration": {"Status": "Suspended"}},
            event_id=f"e{n}",
            time=NOW - timedelta(seconds=n),
            resources=tuple(f"arn:aws:s3:::b{n}/" + "k" * 500 + str(i) for i in range(20)),
        )
        for n in range(2000)
    ]
    report = damage_report(huge, principal="p", since=NOW - timedelta(hours=3), now=NOW, incident_id="GR-1")
    incident = Incident(
        id="GR-1", status=IncidentStatus.CONTAINED, key="arn:aws:iam::111122223333:role/AIAgentRole",
        principal_arn="p", account="111122223333", region="eu-west-1", opened_at=NOW, verdict={}, event_ids=["e"],
    )  # fmt: skip
    message = damage_message(incident, report)
    assert message["damage"]["counts"]["undo"] == 2000  # every change counted; the newest listed
    assert len(json.dumps(sns_payload(message)).encode()) < 256 * 1024
    assert "more changes, older or beyond what a message holds" in message["damage"]["text"]


class _Client:
    """Stands in for boto3 clients: answers like AWS, or fails the named operation."""

    def __init__(self, calls: list[tuple[str, dict[str, Any]]], fail: str | None = None) -> None:
        self.calls, self.fail = calls, fail

    def __getattr__(self, operation: str) -> Any:
        def call(**params: Any) -> dict[str, Any]:
            self.calls.append((operation, params))
            if operation == self.fail:
                raise RuntimeError("KMSInvalidStateException: key is not pending deletion")
            return {"ResponseMetadata": {"RequestId": f"req-{len(self.calls)}"}}

        return call


def test_undo_stops_at_the_first_failure_and_records_each_step() -> None:
    from guardrail.respond.undo import UndoFailed, apply

    plan = plan_of(_report())
    calls: list[tuple[str, dict[str, Any]]] = []
    records: list[tuple[str, dict[str, Any]]] = []
    with pytest.raises(
        UndoFailed, match=r"step 2 \(kms:EnableKey\) failed: RuntimeError: KMSInvalidState.*1 step\(s\) done"
    ):
        apply(
            plan,
            lambda service, region: _Client(calls, fail="enable_key"),
            NOW,
            lambda kind, details: records.append((kind, details)),
            account="111122223333",
        )
    assert [c[0] for c in calls] == ["cancel_key_deletion", "enable_key"]  # StartLogging never ran
    assert [(k, d["call"], d["request_id"]) for k, d in records] == [
        ("undo", "kms:CancelKeyDeletion", "req-1"),
        ("undo_failed", "kms:EnableKey", None),
    ]


@pytest.mark.parametrize(
    ("now", "account", "problem"),
    [
        (NOW + timedelta(days=8), "111122223333", "too late: the deadline was"),
        (NOW, "999999999999", "the change is in account 111122223333"),
    ],
)
def test_undo_refuses_a_step_past_its_deadline_or_in_another_account(
    now: datetime, account: str, problem: str
) -> None:
    from guardrail.respond.undo import UndoFailed, apply

    calls: list[tuple[str, dict[str, Any]]] = []
    with pytest.raises(UndoFailed, match=problem):
        apply(plan_of(_report()), lambda service, region: _Client(calls), now, account=account)
    assert calls == []


def test_undo_refuses_a_call_it_does_not_list() -> None:
    from guardrail.detect.recovery import Step
    from guardrail.respond.undo import UndoFailed, run_step

    calls: list[tuple[str, dict[str, Any]]] = []
    with pytest.raises(UndoFailed, match="not a recovery call"):
        run_step(Step("s3:DeleteBucket", {"Bucket": "b"}), _Client(calls))
    assert calls == []


def test_management_events_are_added_back_and_data_selectors_kept() -> None:
    from guardrail.detect.recovery import Step
    from guardrail.respond.undo import run_step

    data = {"Name": "S3 data", "FieldSelectors": [{"Field": "eventCategory", "Equals": ["Data"]}]}

    class Trail(_Client):
        def get_event_selectors(self, TrailName: str) -> dict[str, Any]:  # noqa: N803  (boto3's name)
            return {"AdvancedEventSelectors": [data]}

    calls: list[tuple[str, dict[str, Any]]] = []
    run_step(Step("cloudtrail:PutEventSelectors", {"TrailName": "t"}, "management-events"), Trail(calls))
    ((operation, params),) = calls
    assert operation == "put_event_selectors"
    assert params["AdvancedEventSelectors"][1] == data
    assert params["AdvancedEventSelectors"][0]["FieldSelectors"] == [
        {"Field": "eventCategory", "Equals": ["Management"]}
    ]
