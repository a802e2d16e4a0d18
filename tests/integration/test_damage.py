"""After the stop: the damage report and undo, through the real handler and the real CLI against moto
(IAM enforced). The agent really breaks things with its own session; CloudTrail's records of its calls are
built from what AWS answered (moto has no CloudTrail delivery), and go through the responder as
EventBridge would deliver them."""

from __future__ import annotations

import copy
import json
from datetime import UTC, datetime, timedelta
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError

from guardrail.operate.cli import main
from guardrail.operate.replay import REGION, agent_is_denied
from tests.conftest import load_event
from tests.integration.conftest import ACCOUNT, Responder, fresh_id

TRAIL_BUCKET = "org-trail-logs"


def record_of(
    name: str, source: str, request: dict[str, Any], response: dict[str, Any] | None = None, second: int = 0
) -> dict[str, Any]:
    """The EventBridge event CloudTrail would deliver for the agent's call (the agent of the sample events),
    `second` seconds after now (CloudTrail's times are to the second)."""
    event = copy.deepcopy(load_event("rules/cloudtrail.logging-stopped.json"))
    now = datetime.now(UTC) + timedelta(seconds=second)
    event["region"] = REGION
    event["time"] = now.strftime("%Y-%m-%dT%H:%M:%SZ")
    event["detail"].update(
        eventID=fresh_id(),
        eventTime=now.strftime("%Y-%m-%dT%H:%M:%SZ"),
        eventSource=source,
        eventName=name,
        awsRegion=REGION,
        requestParameters=request,
        responseElements=response,
    )
    return event


def java_date(moment: datetime) -> str:
    """How CloudTrail writes KMS's and Secrets Manager's deletionDate: "Dec 9, 2026, 3:04:05 AM"."""
    return moment.astimezone(UTC).strftime("%b %-d, %Y, %-I:%M:%S %p")


@pytest.fixture
def estate(account: Any) -> dict[str, Any]:
    return make_estate(account.session())


def make_estate(admin: boto3.session.Session) -> dict[str, Any]:
    """What the agent will break, made by an administrator: a key, a secret, a versioned bucket, a
    logging trail and a database."""
    key = admin.client("kms").create_key(Description="orders")["KeyMetadata"]["KeyId"]
    secret = admin.client("secretsmanager").create_secret(Name="prod/db", SecretString="s3cr3t")["ARN"]
    s3 = admin.client("s3")
    s3.create_bucket(Bucket="orders-data")
    s3.put_bucket_versioning(Bucket="orders-data", VersioningConfiguration={"Status": "Enabled"})
    s3.create_bucket(Bucket=TRAIL_BUCKET)
    cloudtrail = admin.client("cloudtrail")
    trail = cloudtrail.create_trail(Name="org-trail", S3BucketName=TRAIL_BUCKET)["TrailARN"]
    cloudtrail.start_logging(Name=trail)
    admin.client("rds").create_db_instance(
        DBInstanceIdentifier="orders-db", DBInstanceClass="db.t3.micro", Engine="postgres",
        MasterUsername="admin", MasterUserPassword="password123", AllocatedStorage=20,
    )  # fmt: skip
    return {"key": key, "secret": secret, "bucket": "orders-data", "trail": trail, "db": "orders-db"}


def break_everything(agent: boto3.session.Session, estate: dict[str, Any]) -> list[dict[str, Any]]:
    """The agent's five calls, made for real; CloudTrail's record of each, in order."""
    kms = agent.client("kms").schedule_key_deletion(KeyId=estate["key"], PendingWindowInDays=7)
    secret = agent.client("secretsmanager").delete_secret(SecretId=estate["secret"], RecoveryWindowInDays=7)
    agent.client("s3").put_bucket_versioning(
        Bucket=estate["bucket"], VersioningConfiguration={"Status": "Suspended"}
    )
    agent.client("cloudtrail").stop_logging(Name=estate["trail"])
    agent.client("rds").delete_db_instance(DBInstanceIdentifier=estate["db"], SkipFinalSnapshot=True)
    return [
        record_of(
            "ScheduleKeyDeletion", "kms.amazonaws.com",
            {"keyId": estate["key"], "pendingWindowInDays": 7},
            {"keyId": kms["KeyId"], "deletionDate": java_date(kms["DeletionDate"]), "keyState": "PendingDeletion"},
            second=-4,
        ),
        record_of(
            "DeleteSecret", "secretsmanager.amazonaws.com",
            {"secretId": estate["secret"], "recoveryWindowInDays": 7},
            {"arn": secret["ARN"], "name": secret["Name"], "deletionDate": java_date(secret["DeletionDate"])},
            second=-3,
        ),
        record_of(
            "PutBucketVersioning", "s3.amazonaws.com",
            {"bucketName": estate["bucket"], "VersioningConfiguration": {"Status": "Suspended"}},
            second=-2,
        ),
        record_of("StopLogging", "cloudtrail.amazonaws.com", {"name": estate["trail"]}, second=-1),
        record_of(
            "DeleteDBInstance", "rds.amazonaws.com",
            {"dBInstanceIdentifier": estate["db"], "skipFinalSnapshot": True},
            {"dBInstanceIdentifier": estate["db"], "dBInstanceStatus": "deleting"},
        ),
    ]  # fmt: skip


def operator_env(monkeypatch: pytest.MonkeyPatch, responder: Responder) -> None:
    for name, value in responder.aws.settings_env.items():
        monkeypatch.setenv(name, value)


def test_the_damage_report_and_undo_put_back_what_can_be_put_back(
    make_responder: Any,
    estate: dict[str, Any],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    responder = make_responder()
    events = break_everything(responder.agent(load_event("rules/cloudtrail.logging-stopped.json")), estate)
    agent = responder.agent(events[0])
    outcomes = [responder(e) for e in events]
    assert [o["status"] for o in outcomes] == ["contained", "joined", "joined", "joined", "joined"]
    incident_id = outcomes[0]["incident_id"]
    assert agent_is_denied(agent)

    # On containment, after the first message: the report of what the flight record held then.
    messages = responder.aws.published()
    assert [m["kind"] for m in messages][:2] == ["incident", "damage"]
    damage = messages[1]
    assert damage["incident_id"] == incident_id
    assert damage["damage"]["counts"]["undo"] == 1
    assert "ScheduleKeyDeletion" in damage["damage"]["text"]
    assert "CAN BE UNDONE" in damage["damage"]["text"]

    # On demand: all five, with what can be recovered, how and until when.
    operator_env(monkeypatch, responder)
    capsys.readouterr()
    assert main(["investigate", incident_id, "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    changes = {c["name"]: c for group in report["resources"] for c in group["changes"]}
    assert list(changes) == [
        "ScheduleKeyDeletion",
        "DeleteSecret",
        "PutBucketVersioning",
        "StopLogging",
        "DeleteDBInstance",
    ]
    assert {n: c["status"] for n, c in changes.items()} == {
        "ScheduleKeyDeletion": "undo",
        "DeleteSecret": "undo",
        "PutBucketVersioning": "undo",
        "StopLogging": "undo",
        "DeleteDBInstance": "lost",
    }
    today = datetime.now(UTC)
    for name in ("ScheduleKeyDeletion", "DeleteSecret"):  # the deletion date the response named: 7 days on
        deadline = datetime.fromisoformat(changes[name]["recovery"]["deadline"].replace("Z", "+00:00"))
        assert timedelta(days=6, hours=23) < deadline - today <= timedelta(days=7, minutes=1)
    assert [s["call"] for s in changes["ScheduleKeyDeletion"]["recovery"]["steps"]] == [
        "kms:CancelKeyDeletion",
        "kms:EnableKey",
    ]
    assert changes["DeleteDBInstance"]["recovery"]["how"].startswith(
        "No final snapshot, and the automated backups were deleted"
    )

    assert main(["investigate", incident_id]) == 0
    text = capsys.readouterr().out
    assert "CANNOT BE UNDONE" in text
    assert "(in 7 days)" in text or "(in 6 days)" in text

    # The plan first, changing nothing; then --apply.
    assert main(["undo", incident_id]) == 0
    plan = capsys.readouterr().out
    assert "1. kms:CancelKeyDeletion" in plan
    assert "5. cloudtrail:StartLogging" in plan
    assert "CANNOT BE UNDONE\n  DeleteDBInstance" in plan
    admin = responder.aws.session()
    assert (
        admin.client("kms").describe_key(KeyId=estate["key"])["KeyMetadata"]["KeyState"] == "PendingDeletion"
    )

    assert main(["undo", incident_id, "--apply"]) == 0
    applied = capsys.readouterr().out
    assert applied.count("done   ") == 5, applied

    kms = admin.client("kms")
    assert kms.describe_key(KeyId=estate["key"])["KeyMetadata"]["KeyState"] == "Enabled"
    assert kms.encrypt(KeyId=estate["key"], Plaintext=b"usable")["CiphertextBlob"]
    assert (
        admin.client("secretsmanager").get_secret_value(SecretId=estate["secret"])["SecretString"] == "s3cr3t"
    )
    assert admin.client("s3").get_bucket_versioning(Bucket=estate["bucket"])["Status"] == "Enabled"
    assert admin.client("cloudtrail").get_trail_status(Name=estate["trail"])["IsLogging"] is True
    with pytest.raises(ClientError):
        admin.client("rds").describe_db_instances(DBInstanceIdentifier=estate["db"])

    trail = responder.runtime.store.audit.trail(incident_id)
    undone = [a for a in trail if a["kind"] == "undo"]
    assert sorted(a["details"]["call"] for a in undone) == [
        "cloudtrail:StartLogging",
        "kms:CancelKeyDeletion",
        "kms:EnableKey",
        "s3:PutBucketVersioning",
        "secretsmanager:RestoreSecret",
    ]
    assert all(a["details"]["request_id"] for a in undone)
    assert all(a["actor"] == "arn:aws:iam::" + ACCOUNT + ":user/guardrail-responder" for a in undone)


def test_self_healing_restarts_the_trail_in_the_invocation_that_contains(
    make_responder: Any, estate: dict[str, Any]
) -> None:
    responder = make_responder({"GUARDRAIL_AUTO_RESTORE": "trail-logging"})
    agent = responder.agent(load_event("rules/cloudtrail.logging-stopped.json"))
    agent.client("cloudtrail").stop_logging(Name=estate["trail"])
    admin = responder.aws.session()
    assert admin.client("cloudtrail").get_trail_status(Name=estate["trail"])["IsLogging"] is False

    outcome = responder(record_of("StopLogging", "cloudtrail.amazonaws.com", {"name": estate["trail"]}))

    assert outcome["status"] == "contained"
    assert agent_is_denied(agent)
    assert admin.client("cloudtrail").get_trail_status(Name=estate["trail"])["IsLogging"] is True
    # Containment first, then the first message, then the restore and the report that says so.
    operations = [c["operation"] for c in responder.calls]
    assert operations.index("PutRolePolicy") < operations.index("Publish") < operations.index("StartLogging")
    damage = [m for m in responder.aws.published() if m["kind"] == "damage"]
    assert len(damage) == 1
    assert damage[0]["damage"]["restored"][0].startswith("cloudtrail:StartLogging(Name=")
    trail = responder.runtime.store.audit.trail(outcome["incident_id"])
    assert [a["kind"] for a in trail if a["kind"].startswith("auto_")] == ["auto_undo"]


def test_an_event_history_that_cannot_be_read_never_holds_up_the_containment(make_responder: Any) -> None:
    # moto has no LookupEvents: exactly a failure of CloudTrail's event history, as a real outage would be.
    responder = make_responder({"GUARDRAIL_LOOKUP_CLOUDTRAIL": "true"})
    agent = responder.agent(load_event("rules/cloudtrail.logging-stopped.json"))

    outcome = responder(record_of("StopLogging", "cloudtrail.amazonaws.com", {"name": "org-trail"}))

    assert outcome["status"] == "contained"
    assert agent_is_denied(agent)
    operations = [c["operation"] for c in responder.calls]
    assert operations.index("PutRolePolicy") < operations.index("Publish") < operations.index("LookupEvents")
    damage = [m for m in responder.aws.published() if m["kind"] == "damage"]
    assert len(damage) == 1
    assert "event history could not be read" in " ".join(damage[0]["damage"]["notes"])
    assert damage[0]["damage"]["counts"]["undo"] == 1  # the flight record's StopLogging, still reported


def test_an_ignored_change_of_an_agent_is_in_its_flight_record_and_a_read_is_not(make_responder: Any) -> None:
    responder = make_responder({"GUARDRAIL_ACCOUNT_ENVIRONMENTS": json.dumps({ACCOUNT: "sandbox"})})
    change = record_of(
        "TagResource", "kms.amazonaws.com", {"keyId": "k", "tags": [{"tagKey": "a", "tagValue": "b"}]}
    )
    read = load_event("benign/s3-list-buckets.json")
    assert responder(change)["status"] == "ignored"
    assert [c["operation"] for c in responder.calls] == ["PutItem"]
    assert responder(read)["status"] == "ignored"
    assert [c["operation"] for c in responder.calls] == ["PutItem"]  # a read makes no AWS call
    recorded = responder.runtime.store.flight.of("arn:aws:iam::111122223333:role/AIAgentRole")
    assert [(c.name, c.read_only, c.request["keyId"]) for c in recorded] == [("TagResource", False, "k")]
