"""Containment against a real (moto) IAM that enforces policies: the agent is really denied, then released."""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import unquote

import pytest

from guardrail.incident import IncidentStatus
from guardrail.operate.cli import main
from guardrail.operate.replay import replay
from guardrail.respond.containment import ContainmentFailed
from guardrail.respond.release import ReleaseError, release
from tests.conftest import EVENTS
from tests.integration.conftest import ACCOUNT, Responder, concurrently, container, critical, denied, fresh_id


def _policy(iam: Any, role: str, name: str) -> dict[str, Any]:
    document = iam.get_role_policy(RoleName=role, PolicyName=name)["PolicyDocument"]
    return json.loads(unquote(document)) if isinstance(document, str) else document


def test_contained_role_session_is_denied_and_release_restores_it(responder: Responder) -> None:
    event = critical()
    agent = responder.agent(event)
    assert agent.client("s3").create_bucket(Bucket="before-containment")

    summary = responder(event)

    assert summary["status"] == "contained"
    assert summary["decision"] == "contain"
    # The IAM write that stops the agent is the first write the responder made for this event.
    assert responder.writes()[0] == "PutRolePolicy"
    # Measured from the handler's start to the IAM write, on a local server: milliseconds, not seconds.
    assert 0 < summary["containment_ms"] < 5_000
    # The same session credentials are now refused everywhere.
    assert denied(lambda: agent.client("s3").create_bucket(Bucket="after-containment"))
    assert denied(lambda: agent.client("ec2").describe_instances())
    assert denied(lambda: agent.client("iam").list_roles())
    # What an engineer sees on the role in the console.
    iam = responder.aws.session().client("iam")
    (statement,) = _policy(iam, "AIAgentRole", "GuardrailEmergencyDenyAll")["Statement"]
    assert statement["Effect"] == "Deny"
    assert statement["Sid"] == "GuardrailIncident" + summary["incident_id"].replace("-", "")
    tags = {t["Key"]: t["Value"] for t in iam.list_role_tags(RoleName="AIAgentRole")["Tags"]}
    assert tags["guardrail:incident"] == summary["incident_id"]

    incident = release(
        f"arn:aws:iam::{ACCOUNT}:role/AIAgentRole",
        "false positive: approved migration",
        "jane@example.com",
        responder.runtime,
    )

    assert incident.status is IncidentStatus.RELEASED
    assert (incident.released_by, incident.release_reason) == (
        "jane@example.com",
        "false positive: approved migration",
    )
    assert agent.client("s3").create_bucket(Bucket="after-release")
    policies = iam.list_role_policies(RoleName="AIAgentRole")["PolicyNames"]
    assert policies == ["AgentPermissions"]  # exactly what containment added is gone, nothing else
    assert "guardrail:incident" not in {t["Key"] for t in iam.list_role_tags(RoleName="AIAgentRole")["Tags"]}
    trail = responder.runtime.store.audit.trail(incident.id)
    assert [a["kind"] for a in trail] == ["contain", "damage_report", "release"]
    assert trail[0]["details"]["principal"] == event["detail"]["userIdentity"]["arn"]
    assert trail[0]["details"]["event_ids"] == [event["detail"]["eventID"]]
    assert trail[0]["details"]["containment_ms"] == summary["containment_ms"]
    contain_actions = trail[0]["details"]["actions"]
    assert all(a["request_ids"] and a["request_ids"][0] for a in contain_actions)
    assert trail[2]["actor"] == "jane@example.com"


def test_iam_user_keys_are_deactivated_and_only_those_reactivated(responder: Responder) -> None:
    event = critical("principals/iam-user-terminate.json")
    agent = responder.agent(event)
    iam = responder.aws.session().client("iam")
    old_key = iam.create_access_key(UserName="ai-agent-ci")["AccessKey"]["AccessKeyId"]
    iam.update_access_key(UserName="ai-agent-ci", AccessKeyId=old_key, Status="Inactive")
    assert not denied(lambda: agent.client("s3").list_buckets())

    summary = responder(event)

    assert summary["status"] == "contained"
    assert responder.writes("iam")[0] == "PutUserPolicy"
    assert denied(lambda: agent.client("s3").list_buckets())
    statuses = {
        k["AccessKeyId"]: k["Status"]
        for k in iam.list_access_keys(UserName="ai-agent-ci")["AccessKeyMetadata"]
    }
    assert set(statuses.values()) == {"Inactive"}
    deactivate = next(a for a in summary["actions"] if a["action"] == "deactivate_access_keys")
    assert deactivate["details"]["already_inactive"] == [old_key]

    release(f"arn:aws:iam::{ACCOUNT}:user/ai-agent-ci", "investigated: test run", "oncall", responder.runtime)

    assert not denied(lambda: agent.client("s3").list_buckets())
    statuses = {
        k["AccessKeyId"]: k["Status"]
        for k in iam.list_access_keys(UserName="ai-agent-ci")["AccessKeyMetadata"]
    }
    assert statuses[old_key] == "Inactive"  # it was inactive before: it stays so
    assert sorted(statuses.values()) == ["Active", "Inactive"]


def test_fifty_copies_give_one_incident_and_one_set_of_iam_writes(responder: Responder) -> None:
    responder.agent(critical())
    distinct = [fresh_id() for _ in range(25)]
    statuses = [responder(critical(event_id=i))["status"] for i in distinct + distinct]
    assert responder.writes("iam") == ["PutRolePolicy", "TagRole"]
    assert statuses.count("contained") == 1
    assert statuses.count("joined") == 24
    assert statuses.count("duplicate") == 25
    (incident,) = responder.runtime.store.records.incidents()
    assert incident.event_count == 25
    # Both ways of finding the open incident know its lock (the lost-claim path joins through open_for).
    key = f"arn:aws:iam::{ACCOUNT}:role/AIAgentRole"
    held = responder.runtime.store.records.open_for(key)
    assert held is not None
    assert (held.key, held.incident_id) == (key, incident.id)
    assert held == responder.runtime.store.lookup([key], "another-event").open
    assert sorted(incident.event_ids) == sorted(distinct)


def test_redelivery_after_release_does_not_contain_again(responder: Responder) -> None:
    event = critical(event_id=fresh_id())
    responder.agent(event)
    assert responder(event)["status"] == "contained"
    release(f"arn:aws:iam::{ACCOUNT}:role/AIAgentRole", "done", "oncall", responder.runtime)
    assert responder(event)["status"] == "duplicate"
    assert responder.writes("iam").count("PutRolePolicy") == 1
    assert responder(critical(event_id=fresh_id()))["status"] == "contained"  # a new event: a new incident
    assert len(responder.runtime.store.records.incidents()) == 2


@pytest.mark.parametrize(
    ("env", "status"),
    [
        ({"GUARDRAIL_PROTECTED_PRINCIPALS": "arn:aws:iam::*:role/AIAgentRole"}, "reported"),
        ({"GUARDRAIL_AGENT_PRINCIPALS": "arn:aws:iam::*:role/SomeOtherAgent"}, "reported"),
        ({"GUARDRAIL_DRY_RUN": "true"}, "dry_run"),
    ],
)
def test_no_iam_write_for_protected_non_agents_and_dry_run(
    make_responder: Any, env: dict[str, str], status: str
) -> None:
    responder = make_responder(env)
    event = critical()
    agent = responder.agent(event)
    summary = responder(event)
    assert summary["status"] == status
    assert responder.writes("iam") == []
    assert not denied(lambda: agent.client("s3").list_buckets())
    if status == "dry_run":
        (incident,) = responder.runtime.store.records.incidents()
        assert incident.status is IncidentStatus.DRY_RUN
        assert incident.actions[0]["details"]["policy_name"] == "GuardrailEmergencyDenyAll"


def test_never_contains_the_responders_own_role(account: Any, make_responder: Any) -> None:
    iam = account.session().client("iam")
    role_name = "guardrail-responder-ResponderFunctionRole-AbC123"
    trust = {
        "Version": "2012-10-17",
        "Statement": [{"Effect": "Allow", "Principal": {"AWS": "*"}, "Action": "sts:AssumeRole"}],
    }
    role = iam.create_role(RoleName=role_name, AssumeRolePolicyDocument=json.dumps(trust))["Role"]
    allow = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]}
    iam.put_role_policy(RoleName=role_name, PolicyName="all", PolicyDocument=json.dumps(allow))
    creds = (
        account.session().client("sts").assume_role(RoleArn=role["Arn"], RoleSessionName="fn")["Credentials"]
    )
    import boto3  # noqa: PLC0415

    session = boto3.session.Session(
        aws_access_key_id=creds["AccessKeyId"],
        aws_secret_access_key=creds["SecretAccessKey"],
        aws_session_token=creds["SessionToken"],
        region_name="us-east-1",
    )
    responder = make_responder(
        {"GUARDRAIL_AGENT_PRINCIPALS": "arn:aws:iam::*:role/*,arn:aws:sts::*:assumed-role/*"}, session
    )
    event = critical()
    identity = event["detail"]["userIdentity"]
    identity["arn"] = f"arn:aws:sts::{ACCOUNT}:assumed-role/{role_name}/fn"
    identity["principalId"] = f"{role['RoleId']}:fn"
    identity["sessionContext"]["sessionIssuer"].update(
        arn=role["Arn"], userName=role_name, principalId=role["RoleId"]
    )

    summary = responder(event)

    assert summary["status"] == "refused"
    assert "responder's own role" in summary["error"]
    assert responder.writes("iam") == []
    assert iam.list_role_policies(RoleName=role_name)["PolicyNames"] == ["all"]


def test_an_identity_center_session_in_another_account_is_recorded_as_not_containable(
    make_responder: Any,
) -> None:
    # A user's session in an account this responder cannot reach: the manual steps, as before. (Reachable
    # ones are contained through the prepared policy: tests/integration/test_identity_center.py.)
    responder = make_responder(
        {"GUARDRAIL_AGENT_PRINCIPALS": "arn:aws:sts::*:assumed-role/AWSReservedSSO_*/*"}
    )
    event = critical("principals/identity-center-delete-table.json")
    for part in (event, event["detail"]):
        text = json.dumps(part).replace(ACCOUNT, "444455556666")
        part.clear()
        part.update(json.loads(text))
    summary = responder(event)
    assert summary["status"] == "not_containable"
    assert responder.writes("iam") == []
    (incident,) = responder.runtime.store.records.incidents()
    assert incident.status is IncidentStatus.NOT_CONTAINABLE
    assert any("IAM Identity Center" in s for s in incident.manual_steps)


def test_root_is_recorded_as_not_containable_with_the_steps(responder: Responder) -> None:
    summary = responder(critical("principals/root-delete-trail.json"))
    assert (summary["decision"], summary["severity"]) == ("notify", "critical")
    assert "IAM cannot restrict the root user" in summary["reason"]
    assert summary["status"] == "not_containable"
    assert responder.writes("iam") == []
    (incident,) = responder.runtime.store.records.incidents()
    assert incident.status is IncidentStatus.NOT_CONTAINABLE
    assert incident.key == f"arn:aws:iam::{ACCOUNT}:root"
    assert any("SCP" in step for step in incident.manual_steps)


def test_an_account_the_iam_provider_cannot_reach_is_not_containable(make_responder: Any) -> None:
    class NoAccounts:
        def iam_for(self, account: str) -> None:
            return None

    responder = make_responder()
    responder.runtime.iam_provider = NoAccounts()
    summary = responder(critical())
    assert summary["status"] == "not_containable"
    assert responder.writes("iam") == []
    (incident,) = responder.runtime.store.records.incidents()
    assert "aws iam put-role-policy --role-name AIAgentRole" in incident.manual_steps[0]


def test_containment_refused_by_iam_fails_loudly_and_the_retry_contains(responder: Responder) -> None:
    event = critical(event_id=fresh_id())
    agent = responder.agent(event)
    iam = responder.aws.session().client("iam")
    deny = {
        "Version": "2012-10-17",
        "Statement": [{"Effect": "Deny", "Action": "iam:PutRolePolicy", "Resource": "*"}],
    }
    iam.put_user_policy(UserName="guardrail-responder", PolicyName="broken", PolicyDocument=json.dumps(deny))

    with pytest.raises(
        ContainmentFailed,
        match="no deny could be written on arn:aws:iam::111122223333:role/AIAgentRole: put_role_deny_all: AccessDenied",
    ):
        responder(event)  # the invocation fails: Lambda retries, then the failure destination keeps it

    (incident,) = responder.runtime.store.records.incidents()
    assert incident.status is IncidentStatus.FAILED
    assert "AccessDenied" in (incident.error or "")
    assert not denied(lambda: agent.client("s3").list_buckets())

    iam.delete_user_policy(UserName="guardrail-responder", PolicyName="broken")
    assert responder(event)["status"] == "contained"  # Lambda's retry of the same event
    assert denied(lambda: agent.client("s3").list_buckets())


def test_deleted_agent_role_is_a_containment_failure(responder: Responder) -> None:
    with pytest.raises(ContainmentFailed, match="NoSuchEntity"):
        responder(critical())  # no role was ever created for this agent


def test_a_full_inline_quota_without_the_fallback_is_a_containment_failure(make_responder: Any) -> None:
    # No AWSDenyAll to fall back to (moto has no AWS managed policies here): every deny layer fails.
    responder = make_responder()
    from botocore.exceptions import ClientError  # noqa: PLC0415

    class QuotaFullIam:
        """IAM answering as it does when the role's inline policies already use their 10,240 characters."""

        def put_role_policy(self, **_: Any) -> Any:
            raise ClientError(
                {
                    "Error": {
                        "Code": "LimitExceeded",
                        "Message": "Maximum policy size of 10240 bytes exceeded",
                    }
                },
                "PutRolePolicy",
            )

    responder.runtime.aws._cache["iam"] = QuotaFullIam()
    with pytest.raises(ContainmentFailed, match="LimitExceeded"):
        responder(critical())
    (incident,) = responder.runtime.store.records.incidents()
    assert incident.status is IncidentStatus.FAILED


def test_release_refuses_without_reason_and_for_principals_not_contained(responder: Responder) -> None:
    arn = f"arn:aws:iam::{ACCOUNT}:role/AIAgentRole"
    with pytest.raises(ReleaseError, match="a reason is required"):
        release(arn, "  ", "oncall", responder.runtime)
    with pytest.raises(ReleaseError, match="is not contained"):
        release(arn, "why not", "oncall", responder.runtime)


def test_release_function_handler(responder: Responder) -> None:
    from guardrail.operate.replay import invoke, load_handler  # noqa: PLC0415

    release_handler = load_handler("release")
    event = critical()
    agent = responder.agent(event)
    responder(event)
    principal = f"arn:aws:iam::{ACCOUNT}:role/AIAgentRole"
    with pytest.raises(ReleaseError, match="reason: Field required"):
        invoke(release_handler, {"principal": principal, "released_by": "x"})
    result = invoke(release_handler, {"principal": principal, "reason": "reviewed", "released_by": "jane"})
    assert result["status"] == "released"
    assert not denied(lambda: agent.client("s3").list_buckets())
    (audit,) = [
        a for a in responder.runtime.store.audit.trail(result["incident_id"]) if a["kind"] == "release"
    ]
    evidence = audit["details"]["evidence"]
    assert evidence["asserted_by"] == "jane"
    assert (
        len(evidence["lambda_request_id"]) == 36
    )  # a request id CloudTrail's data events can be searched by


def test_replay_shows_the_iam_write_first_and_verifies_the_agent_is_denied() -> None:
    (result,) = replay([EVENTS / "rules" / "cloudtrail.logging-stopped.json"])
    writes = [c["operation"] for c in result["calls"] if not c["operation"].startswith(("Get", "BatchGet"))]
    assert writes[0] == "PutRolePolicy"
    assert result["status"] == "contained"
    assert result["verified"] is True
    assert 0 < result["containment_ms"] < 5_000
    put = next(c for c in result["calls"] if c["operation"] == "PutRolePolicy")
    assert result["containment_ms"] <= put["ms"] + 50  # the figure is the IAM write's own time


def test_replay_of_a_dry_run_is_not_verified(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GUARDRAIL_DRY_RUN", "true")
    (result,) = replay([EVENTS / "rules" / "cloudtrail.logging-stopped.json"])
    assert result["status"] == "dry_run"
    assert result["verified"] is False
    assert not [c for c in result["calls"] if c["service"] == "iam"]


def test_incidents_command_lists_from_the_table(
    responder: Responder, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    responder.agent(critical())
    responder(critical())
    for name, value in responder.aws.settings_env.items():
        monkeypatch.setenv(name, value)
    assert main(["incidents", "--json"]) == 0
    (listed,) = json.loads(capsys.readouterr().out)
    assert listed["status"] == "contained"
    assert listed["key"] == f"arn:aws:iam::{ACCOUNT}:role/AIAgentRole"
    assert main(["release", "--principal", listed["key"], "--reason", "ok", "--released-by", "jane"]) == 0
    assert "released arn:aws:iam::111122223333:role/AIAgentRole" in capsys.readouterr().out
    (audit,) = [
        a for a in responder.runtime.store.audit.trail(listed["incident_id"]) if a["kind"] == "release"
    ]
    # "jane" is what the operator said; STS vouches for who ran the command.
    assert audit["details"]["evidence"] == {
        "asserted_by": "jane",
        "caller": f"arn:aws:iam::{ACCOUNT}:user/guardrail-responder",
    }
    assert main(["release", "--principal", listed["key"], "--reason", "again"]) == 1
    assert "is not contained" in capsys.readouterr().err


@pytest.mark.usefixtures("atomic_dynamodb_writes")
def test_twenty_concurrent_invocations_give_one_incident_and_the_policy_names_it(account: Any) -> None:
    """As concurrent Lambda invocations would: one runtime (container) each, all released at once."""
    from guardrail.detect.cloudtrail import parse_event  # noqa: PLC0415

    account.agent_session(parse_event(critical()))
    statuses, iam_writes = concurrently(account, [critical(event_id=fresh_id()) for _ in range(20)])
    assert statuses == {"contained": 1, "joined": 19}
    runtime = container(account)
    (incident,) = runtime.store.records.incidents()
    assert incident.event_count == 20  # no lost counts
    iam = account.session().client("iam")
    (statement,) = _policy(iam, "AIAgentRole", "GuardrailEmergencyDenyAll")["Statement"]
    assert statement["Sid"] == "GuardrailIncident" + incident.id.replace("-", "")  # the incident on record
    raced = [a for a in runtime.store.audit.trail(incident.id) if a["kind"] == "raced"]
    # Every invocation that wrote to IAM and lost the claim redid its writes under the winner's incident.
    assert len(iam_writes) == 1 + 2 * len(raced)


def test_state_table_failing_after_the_iam_write_fails_the_invocation_and_the_retry_records_once(
    make_responder: Any,
) -> None:
    """DynamoDB throttled or unavailable right after the agent was stopped: the agent stays stopped, the
    invocation fails (Lambda retries it), and the retry records one incident and announces it."""
    from botocore.exceptions import ClientError  # noqa: PLC0415

    responder = make_responder()
    event = critical(event_id=fresh_id())
    agent = responder.agent(event)
    real = responder.runtime.aws.dynamodb

    class ThrottledOnce:
        def __init__(self) -> None:
            self.failed = False
            self.exceptions = real.exceptions

        def transact_write_items(self, **kwargs: Any) -> Any:
            if not self.failed:
                self.failed = True
                raise ClientError(
                    {"Error": {"Code": "ProvisionedThroughputExceededException", "Message": "slow down"}},
                    "TransactWriteItems",
                )
            return real.transact_write_items(**kwargs)

        def __getattr__(self, name: str) -> Any:
            return getattr(real, name)

    responder.runtime.store.table.db = ThrottledOnce()  # type: ignore[assignment]
    with pytest.raises(ClientError, match="ProvisionedThroughputExceeded"):
        responder(event)
    assert denied(lambda: agent.client("s3").list_buckets())  # stopped before the table was touched

    summary = responder(event)  # Lambda's retry
    assert summary["status"] == "contained"
    (incident,) = responder.runtime.store.records.incidents()
    assert incident.event_ids == [event["detail"]["eventID"]]
    assert responder.writes("iam") == [
        "PutRolePolicy",
        "TagRole",
        "PutRolePolicy",
        "TagRole",
    ]  # idempotent redo
    assert responder(event)["status"] == "duplicate"


def test_a_record_without_event_id_is_contained_once_per_delivery_id(responder: Responder) -> None:
    """CloudTrail left eventID out: the envelope's id stands in, so a redelivery (EventBridge keeps its id)
    is a duplicate and a different delivery is a different event. One event id, one outcome."""
    event = critical()
    del event["detail"]["eventID"]
    event["id"] = fresh_id()
    responder.agent(event)
    assert responder(event)["status"] == "contained"
    assert responder(event)["status"] == "duplicate"
    assert responder.writes("iam").count("PutRolePolicy") == 1
    other = {**event, "id": fresh_id()}
    assert responder(other)["status"] == "joined"  # another event of the contained agent
