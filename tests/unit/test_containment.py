"""Containment planning and policy documents: pure, no AWS."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from guardrail.detect.classifier import classify
from guardrail.detect.cloudtrail import parse_event
from guardrail.errors import GuardrailError
from guardrail.respond.containment import (
    DENY_ALL_POLICY,
    REVOKE_SESSIONS_CAVEAT,
    Blocked,
    DeactivateAccessKeys,
    IncidentRef,
    PutRoleDenyAll,
    PutRoleRevokeOlderSessions,
    PutUserDenyAll,
    ResponderIdentity,
    TagRole,
    Target,
    TargetKind,
    containment_permissions,
    deny_all_document,
    plan_containment,
    principal_key,
    release_permissions,
    revoke_older_sessions_document,
)
from guardrail.settings import Settings
from tests.conftest import load_event

RESPONDER = ResponderIdentity.from_caller_arn(
    "111122223333",
    "arn:aws:sts::111122223333:assumed-role/guardrail-responder-ResponderFunctionRole-AbC123/guardrail-fn",
)
INCIDENT = IncidentRef("GR-20261120T031245Z-0a1b2c3d", datetime(2026, 11, 20, 3, 12, 45, 123456, tzinfo=UTC))


def plan_for(
    relative: str, env: dict[str, str] | None = None, responder: ResponderIdentity = RESPONDER
) -> Any:
    settings = Settings.from_env(env or {})
    verdict = classify(parse_event(load_event(relative)), settings)
    return plan_containment(verdict, settings, responder)


def names(plan: Any) -> list[str]:
    return [type(a).__name__ for a in plan.actions]


def test_role_session_gets_deny_all_on_its_role_then_a_tag() -> None:
    plan = plan_for("rules/dynamodb.table-deleted.json")
    assert plan.blocked is None
    assert plan.target == Target(TargetKind.ROLE, "AIAgentRole", "111122223333")
    assert names(plan) == ["PutRoleDenyAll", "TagRole"]  # the write that stops the agent comes first
    assert plan.caveats == ()


@pytest.mark.parametrize(
    ("mode", "expected"),
    [
        ("revoke_sessions", ["PutRoleRevokeOlderSessions", "TagRole"]),
        ("both", ["PutRoleDenyAll", "PutRoleRevokeOlderSessions", "TagRole"]),
    ],
)
def test_revoke_sessions_modes_carry_the_caveat(mode: str, expected: list[str]) -> None:
    plan = plan_for("rules/dynamodb.table-deleted.json", {"GUARDRAIL_CONTAINMENT_ACTION": mode})
    assert names(plan) == expected
    assert plan.caveats == (REVOKE_SESSIONS_CAVEAT,)
    assert "assume the role again" in REVOKE_SESSIONS_CAVEAT


def test_iam_user_gets_deny_all_then_keys_deactivated() -> None:
    plan = plan_for("principals/iam-user-terminate.json")
    assert plan.target == Target(TargetKind.USER, "ai-agent-ci", "111122223333")
    assert names(plan) == ["PutUserDenyAll", "DeactivateAccessKeys"]


def test_federated_session_contains_the_issuing_user() -> None:
    event = load_event("principals/iam-user-terminate.json")
    event["detail"]["userIdentity"] = {
        "type": "FederatedUser",
        "principalId": "111122223333:agent-fed",
        "arn": "arn:aws:sts::111122223333:federated-user/agent-fed",
        "accountId": "111122223333",
        "sessionContext": {"sessionIssuer": {"type": "IAMUser", "userName": "ai-agent-ci",
                                             "arn": "arn:aws:iam::111122223333:user/ai-agent-ci"}},
    }  # fmt: skip
    settings = Settings.from_env({"GUARDRAIL_AGENT_PRINCIPALS": "arn:aws:sts::*:federated-user/agent*"})
    plan = plan_containment(classify(parse_event(event), settings), settings, RESPONDER)
    assert plan.target == Target(TargetKind.USER, "ai-agent-ci", "111122223333")


@pytest.mark.parametrize(
    ("relative", "env", "reason", "step"),
    [
        ("principals/root-delete-trail.json", {"GUARDRAIL_AGENT_PRINCIPALS": "arn:aws:iam::*:root"},
         "root user is beyond IAM", "restrict the account with an SCP"),
    ],
)  # fmt: skip
def test_not_containable_principals_get_manual_steps(
    relative: str, env: dict[str, str], reason: str, step: str
) -> None:
    settings = Settings.from_env(env)
    verdict = classify(parse_event(load_event(relative)), settings)
    plan = plan_containment(verdict, settings, RESPONDER)
    assert plan.blocked is Blocked.NOT_CONTAINABLE
    assert reason in plan.reason
    assert any(step in s for s in plan.manual_steps)
    assert plan.actions == ()


def test_service_linked_role_is_not_containable() -> None:
    event = load_event("rules/dynamodb.table-deleted.json")
    issuer = event["detail"]["userIdentity"]["sessionContext"]["sessionIssuer"]
    issuer["arn"] = "arn:aws:iam::111122223333:role/aws-service-role/ops.amazonaws.com/AIAgentServiceRole"
    issuer["userName"] = "AIAgentServiceRole"
    event["detail"]["userIdentity"]["arn"] = "arn:aws:sts::111122223333:assumed-role/AIAgentServiceRole/s"
    plan = plan_containment(
        classify(parse_event(event), Settings.from_env({})), Settings.from_env({}), RESPONDER
    )
    assert plan.blocked is Blocked.NOT_CONTAINABLE
    assert "AWS service" in plan.reason


def test_other_account_is_not_containable_here_with_the_exact_command() -> None:
    other = ResponderIdentity.from_caller_arn("999988887777", "arn:aws:sts::999988887777:assumed-role/R/s")
    plan = plan_for("rules/dynamodb.table-deleted.json", responder=other)
    assert plan.blocked is Blocked.NOT_CONTAINABLE
    assert "account 111122223333" in plan.reason
    assert (
        f"aws iam put-role-policy --role-name AIAgentRole --policy-name {DENY_ALL_POLICY}"
        in plan.manual_steps[0]
    )


def test_never_the_responders_own_role() -> None:
    event = load_event("rules/dynamodb.table-deleted.json")
    identity = event["detail"]["userIdentity"]
    identity["arn"] = RESPONDER.arn
    identity["sessionContext"]["sessionIssuer"]["userName"] = (
        "guardrail-responder-ResponderFunctionRole-AbC123"
    )
    identity["sessionContext"]["sessionIssuer"]["arn"] = (
        "arn:aws:iam::111122223333:role/guardrail-responder-ResponderFunctionRole-AbC123"
    )
    settings = Settings.from_env(
        {"GUARDRAIL_AGENT_PRINCIPALS": "arn:aws:iam::*:role/*"}
    )  # a careless pattern
    plan = plan_containment(classify(parse_event(event), settings), settings, RESPONDER)
    assert plan.blocked is Blocked.REFUSED
    assert "responder's own role" in plan.reason


@pytest.mark.parametrize(
    "env",
    [
        {"GUARDRAIL_PROTECTED_PRINCIPALS": "arn:aws:iam::*:role/AIAgentRole"},
        {"GUARDRAIL_AGENT_PRINCIPALS": "arn:aws:iam::*:role/Other"},
    ],
)
def test_protected_and_non_agents_are_refused_even_if_asked(env: dict[str, str]) -> None:
    settings = Settings.from_env(env)
    verdict = classify(parse_event(load_event("rules/dynamodb.table-deleted.json")), Settings.from_env({}))
    plan = plan_containment(verdict, settings, RESPONDER)  # a contain decision, against these settings
    assert plan.blocked is Blocked.REFUSED


def test_deny_all_document_is_exact() -> None:
    assert deny_all_document(INCIDENT) == {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Sid": "GuardrailIncidentGR20261120T031245Z0a1b2c3d",
                "Effect": "Deny",
                "Action": "*",
                "Resource": "*",
            }
        ],
    }


def test_revoke_older_sessions_document_is_exact() -> None:
    (statement,) = revoke_older_sessions_document(INCIDENT)["Statement"]
    assert statement == {
        "Sid": "GuardrailIncidentGR20261120T031245Z0a1b2c3d",
        "Effect": "Deny",
        "Action": "*",
        "Resource": "*",
        # 03:12:45.123456, rounded up: a session issued at 03:12:45.100 must not survive.
        "Condition": {"DateLessThan": {"aws:TokenIssueTime": "2026-11-20T03:12:46Z"}},
    }
    on_the_second = IncidentRef(INCIDENT.id, datetime(2026, 11, 20, 3, 12, 45, tzinfo=UTC))
    (statement,) = revoke_older_sessions_document(on_the_second)["Statement"]
    assert statement["Condition"] == {"DateLessThan": {"aws:TokenIssueTime": "2026-11-20T03:12:45Z"}}


@pytest.mark.parametrize(
    ("arn", "target"),
    [
        (
            "arn:aws:iam::111122223333:role/AIAgentRole",
            Target(TargetKind.ROLE, "AIAgentRole", "111122223333"),
        ),
        (
            "arn:aws:iam::111122223333:role/team/agents/AIAgentRole",
            Target(TargetKind.ROLE, "AIAgentRole", "111122223333"),
        ),
        (
            "arn:aws:sts::111122223333:assumed-role/AIAgentRole/claude",
            Target(TargetKind.ROLE, "AIAgentRole", "111122223333"),
        ),
        (
            " arn:aws:iam::111122223333:user/ai-agent-ci ",
            Target(TargetKind.USER, "ai-agent-ci", "111122223333"),
        ),
    ],
)
def test_target_from_arn(arn: str, target: Target) -> None:
    assert Target.from_arn(arn) == target


@pytest.mark.parametrize("arn", ["AIAgentRole", "arn:aws:s3:::bucket", "arn:aws:iam::12:role/x", ""])
def test_target_from_bad_arn(arn: str) -> None:
    with pytest.raises(GuardrailError, match="is not a role, user or assumed-role ARN"):
        Target.from_arn(arn)


def test_every_session_of_an_agent_shares_one_key() -> None:
    one = parse_event(load_event("rules/dynamodb.table-deleted.json")).principal
    event = load_event("rules/dynamodb.table-deleted.json")
    event["detail"]["userIdentity"]["arn"] = (
        "arn:aws:sts::111122223333:assumed-role/AIAgentRole/other-session"
    )
    other = parse_event(event).principal
    assert principal_key(one) == principal_key(other) == "arn:aws:iam::111122223333:role/AIAgentRole"


def test_actions_declare_their_permissions() -> None:
    assert containment_permissions() == {
        "iam:PutRolePolicy", "iam:TagRole", "iam:PutUserPolicy", "iam:ListAccessKeys", "iam:UpdateAccessKey",
        "iam:AttachRolePolicy", "iam:AttachUserPolicy",  # the AWSDenyAll fallback
        "iam:GetRolePolicy", "iam:GetUserPolicy",  # checking it is still in place
        "iam:ListAttachedRolePolicies", "iam:ListAttachedUserPolicies",
        # an Identity Center user: new default versions of the prepared policy, the oldest made room for
        "iam:GetPolicy", "iam:GetPolicyVersion", "iam:ListPolicyVersions", "iam:CreatePolicyVersion",
        "iam:DeletePolicyVersion",
    }  # fmt: skip
    identity_center = {
        "iam:GetPolicy", "iam:GetPolicyVersion", "iam:ListPolicyVersions", "iam:CreatePolicyVersion",
        "iam:DeletePolicyVersion",
    }  # fmt: skip
    assert release_permissions() == {
        "iam:DeleteRolePolicy",
        "iam:UntagRole",
        "iam:DeleteUserPolicy",
        "iam:UpdateAccessKey",
        "iam:DetachRolePolicy",
        "iam:DetachUserPolicy",
        *identity_center,
    }
    for action in (
        PutRoleDenyAll(),
        PutRoleRevokeOlderSessions(),
        TagRole(),
        PutUserDenyAll(),
        DeactivateAccessKeys(),
    ):
        assert action.permissions
        assert action.undo_permissions


def test_dry_run_description_carries_the_exact_policy() -> None:
    record = PutRoleDenyAll().describe(Target(TargetKind.ROLE, "AIAgentRole", "111122223333"), INCIDENT)
    assert record.details["dry_run"] is True
    assert record.details["policy"] == deny_all_document(INCIDENT)


def test_lookup_retries_unprocessed_keys_and_fails_rather_than_guess() -> None:
    from datetime import UTC, datetime  # noqa: PLC0415

    import pytest  # noqa: PLC0415

    from guardrail.respond.state.store import IncidentStore  # noqa: PLC0415
    from guardrail.respond.state.table import IncompleteReadError  # noqa: PLC0415

    lock = {"pk": {"S": "PRINCIPAL#arn:aws:iam::111122223333:role/A"}, "sk": {"S": "OPEN"},
            "incident_id": {"S": "GR-1"}, "status": {"S": "contained"}, "summary_at": {"N": "0"}}  # fmt: skip

    class Throttled:
        """Answers the first read with every key unprocessed, then (if allowed) with the lock."""

        def __init__(self, give_up: bool) -> None:
            self.calls, self.give_up = 0, give_up

        def batch_get_item(self, RequestItems: Any) -> Any:  # noqa: N803  (boto3's argument name)
            self.calls += 1
            if self.give_up or self.calls == 1:
                return {"Responses": {"t": []}, "UnprocessedKeys": RequestItems}
            return {"Responses": {"t": [lock]}, "UnprocessedKeys": {}}

    store = IncidentStore(Throttled(give_up=False), "t", lambda: datetime.now(UTC))  # type: ignore[arg-type]
    found = store.lookup(["arn:aws:iam::111122223333:role/A"], "event-1")
    assert found.open is not None
    assert found.open.incident_id == "GR-1"
    stubborn = Throttled(give_up=True)
    with pytest.raises(IncompleteReadError, match="unread after 3 retries"):
        IncidentStore(stubborn, "t", lambda: datetime.now(UTC)).lookup(["k"], "e")  # type: ignore[arg-type]
    assert stubborn.calls == 4


def _deny(**changes: object) -> dict[str, object]:
    statement: dict[str, object] = {
        "Sid": "GuardrailIncidentGR1",
        "Effect": "Deny",
        "Action": "*",
        "Resource": "*",
    }
    statement.update(changes)
    return {"Version": "2012-10-17", "Statement": [{k: v for k, v in statement.items() if v is not None}]}


def _revoke(cutoff: str, **changes: object) -> dict[str, object]:
    return _deny(Condition={"DateLessThan": {"aws:TokenIssueTime": cutoff}}, **changes)


@pytest.mark.parametrize(
    ("found", "written", "holds"),
    [
        (_deny(), _deny(), True),
        (_deny(Sid="GuardrailIncidentGR2"), _deny(), True),  # a racing invocation's, before it redoes it
        (_deny(Sid=None), _deny(), True),
        (_deny(Effect="Allow"), _deny(), False),
        (_deny(Action="s3:*"), _deny(), False),
        (_deny(Resource="arn:aws:s3:::x"), _deny(), False),
        (_deny(Condition={"Bool": {"aws:MultiFactorAuthPresent": "false"}}), _deny(), False),
        ({"Version": "2012-10-17", "Statement": []}, _deny(), False),
        (_revoke("2026-11-20T03:12:46Z"), _revoke("2026-11-20T03:12:46Z"), True),
        (_revoke("2026-11-20T03:12:47Z"), _revoke("2026-11-20T03:12:46Z"), True),  # later: revokes more
        (_revoke("2026-11-20T03:12:45Z"), _revoke("2026-11-20T03:12:46Z"), False),
        (_deny(), _revoke("2026-11-20T03:12:46Z"), False),
        (
            _deny(Condition={"DateLessThan": {"aws:TokenIssueTime": "2026-11-20T03:12:46Z", "aws:CurrentTime": "2000-01-01T00:00:00Z"}}),
            _revoke("2026-11-20T03:12:46Z"),
            False,
        ),
    ],
)  # fmt: skip
def test_a_containment_policy_holds_when_it_denies_at_least_what_was_written(
    found: dict[str, object], written: dict[str, object], holds: bool
) -> None:
    from guardrail.respond.containment import _denies_as_much  # noqa: PLC0415

    assert _denies_as_much(found, written) is holds


def test_session_scope_denies_the_session_by_its_role_session_id() -> None:
    from guardrail.respond.containment import SessionRef, deny_session_document  # noqa: PLC0415

    plan = plan_for("rules/dynamodb.table-deleted.json", {"GUARDRAIL_CONTAINMENT_SCOPE": "session"})
    session = SessionRef(userid="AROAEXAMPLEAGENT01:claude-code-session")
    assert plan.target == Target(TargetKind.ROLE, "AIAgentRole", "111122223333", session)
    assert plan.key == "arn:aws:iam::111122223333:role/AIAgentRole"  # one incident per role, as before
    assert names(plan) == ["PutRoleDenySession", "TagRole"]
    assert "other sessions keep working" in plan.caveats[0]
    assert deny_session_document(INCIDENT, session) == {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Sid": "GuardrailIncidentGR20261120T031245Z0a1b2c3d",
                "Effect": "Deny",
                "Action": "*",
                "Resource": "*",
                "Condition": {
                    "StringEquals": {"aws:userid": "AROAEXAMPLEAGENT01:claude-code-session"},
                    "DateLessThan": {"aws:TokenIssueTime": "2026-11-20T03:12:46Z"},
                },
            }
        ],
    }


def test_session_scope_comes_from_the_environment_policy_first() -> None:
    policies = '{"environments": {"production": {"containment_scope": "session"}}}'
    plan = plan_for("rules/dynamodb.table-deleted.json", {"GUARDRAIL_ENVIRONMENT_POLICIES": policies})
    assert names(plan) == ["PutRoleDenySession", "TagRole"]
    back = '{"environments": {"production": {"containment_scope": "role"}}}'
    env = {"GUARDRAIL_ENVIRONMENT_POLICIES": back, "GUARDRAIL_CONTAINMENT_SCOPE": "session"}
    assert names(plan_for("rules/dynamodb.table-deleted.json", env)) == ["PutRoleDenyAll", "TagRole"]


@pytest.mark.parametrize(
    ("principal_id", "source_identity", "expected"),
    [
        ("AROAEXAMPLEAGENT01:s", "claude-code-jane", {"source_identity": "claude-code-jane"}),
        ("AROAEXAMPLEAGENT01:sess", None, {"userid": "AROAEXAMPLEAGENT01:sess"}),
        ("AIDAEXAMPLEUSER0001", None, None),  # a user's id: no session to name
        ("AROAEXAMPLEAGENT01:sess", "bad identity with spaces", {"userid": "AROAEXAMPLEAGENT01:sess"}),
    ],
)
def test_a_session_is_named_only_by_what_a_policy_can_key_on(
    principal_id: str, source_identity: str | None, expected: dict[str, str] | None
) -> None:
    from guardrail.model import Principal, PrincipalKind  # noqa: PLC0415
    from guardrail.respond.containment import SessionRef  # noqa: PLC0415

    principal = Principal(
        PrincipalKind.ROLE, "arn", "111122223333", "AIAgentRole",
        principal_id=principal_id, source_identity=source_identity,
    )  # fmt: skip
    found = SessionRef.of(principal)
    assert (found.to_dict() if found else None) == expected


def test_session_scope_without_a_nameable_session_contains_the_role_and_says_so() -> None:
    event = load_event("rules/dynamodb.table-deleted.json")
    del event["detail"]["userIdentity"]["principalId"]
    settings = Settings.from_env({"GUARDRAIL_CONTAINMENT_SCOPE": "session"})
    plan = plan_containment(classify(parse_event(event), settings), settings, RESPONDER)
    assert names(plan) == ["PutRoleDenyAll", "TagRole"]
    assert "the whole role is contained" in plan.caveats[-1]


IC_AGENTS = {"GUARDRAIL_AGENT_PRINCIPALS": "arn:aws:sts::*:assumed-role/AWSReservedSSO_*/*"}


def test_an_identity_center_user_is_contained_through_the_prepared_policy() -> None:
    from guardrail.respond.containment import SessionRef, principal_key  # noqa: PLC0415

    plan = plan_for("principals/identity-center-delete-table.json", IC_AGENTS)
    assert plan.blocked is None
    assert names(plan) == ["DenyIdentityCenterUser"]
    assert plan.target == Target(
        TargetKind.IDENTITY_CENTER,
        "AWSReservedSSO_AIAgentAccess_0123456789abcdef",
        "111122223333",
        SessionRef(userid="AROAEXAMPLESSO00001:devin-bot@example.com"),
        "devin-bot@example.com",
    )
    # One incident per user and permission set, never on a role's key; release finds it from the ARN.
    key = "arn:aws:iam::111122223333:identity-center/AWSReservedSSO_AIAgentAccess_0123456789abcdef/devin-bot@example.com"
    assert plan.key == key
    settings = Settings.from_env(IC_AGENTS)
    verdict = classify(parse_event(load_event("principals/identity-center-delete-table.json")), settings)
    assert principal_key(verdict.call.principal) == key
    session_arn = "arn:aws:sts::111122223333:assumed-role/AWSReservedSSO_AIAgentAccess_0123456789abcdef/devin-bot@example.com"
    assert Target.from_arn(session_arn).key == key
    assert "Identity Center user devin-bot@example.com (permission set AIAgentAccess" in plan.reason
    assert any("Disable user devin-bot@example.com in IAM Identity Center" in s for s in plan.manual_steps)


def test_an_identity_center_user_elsewhere_keeps_the_manual_steps() -> None:
    settings = Settings.from_env(IC_AGENTS)
    verdict = classify(parse_event(load_event("principals/identity-center-delete-table.json")), settings)
    plan = plan_containment(verdict, settings, RESPONDER, reachable=lambda account: False)
    assert plan.blocked is Blocked.NOT_CONTAINABLE
    assert any("remove the assignment of permission set AIAgentAccess" in s for s in plan.manual_steps)


def test_the_prepared_policy_keeps_other_users_and_never_denies_nobody() -> None:
    from guardrail.respond.containment import denied_userids, identity_center_document  # noqa: PLC0415

    empty = identity_center_document([])
    assert denied_userids(empty) == []
    assert empty["Statement"][0]["Condition"] == {
        "StringEquals": {"aws:userid": ["guardrail-placeholder:no-session-has-this-id"]}
    }
    both = identity_center_document(["AROA1:jane", "AROA1:joe"])
    assert denied_userids(both) == ["AROA1:jane", "AROA1:joe"]


# moto answers ProvisionPermissionSet with SUCCEEDED at once and has no DescribePermissionSetProvisioningStatus:
# the wait is checked against botocore's Stubber, with responses shaped like the sso-admin API reference's.
@pytest.mark.parametrize(
    ("final", "expected"),
    [
        ({"Status": "SUCCEEDED"}, "SUCCEEDED"),
        ({"Status": "FAILED", "FailureReason": "Policy GuardrailIdentityCenterDeny not found in 444455556666"},
         "FAILED: Policy GuardrailIdentityCenterDeny not found in 444455556666"),
    ],
)  # fmt: skip
def test_provisioning_is_waited_for_and_a_failure_reported(final: dict[str, str], expected: str) -> None:
    import boto3  # noqa: PLC0415
    from botocore.stub import Stubber  # noqa: PLC0415

    from guardrail.respond.containment import provision_permission_set  # noqa: PLC0415

    sso = boto3.client("sso-admin", region_name="us-east-1", aws_access_key_id="x", aws_secret_access_key="x")
    stub = Stubber(sso)
    instance, permission_set = "arn:aws:sso:::instance/ssoins-1", "arn:aws:sso:::permissionSet/ssoins-1/ps-1"
    stub.add_response(
        "provision_permission_set",
        {
            "PermissionSetProvisioningStatus": {
                "Status": "IN_PROGRESS",
                "RequestId": "2f1b6f3c-0c1e-4e2a-9a57-3c5f7d9b1e20",
            }
        },
        {
            "InstanceArn": instance,
            "PermissionSetArn": permission_set,
            "TargetType": "ALL_PROVISIONED_ACCOUNTS",
        },
    )
    ask = {"InstanceArn": instance, "ProvisionPermissionSetRequestId": "2f1b6f3c-0c1e-4e2a-9a57-3c5f7d9b1e20"}
    stub.add_response(
        "describe_permission_set_provisioning_status",
        {
            "PermissionSetProvisioningStatus": {
                "Status": "IN_PROGRESS",
                "RequestId": "2f1b6f3c-0c1e-4e2a-9a57-3c5f7d9b1e20",
            }
        },
        ask,
    )
    stub.add_response(
        "describe_permission_set_provisioning_status",
        {"PermissionSetProvisioningStatus": {**final, "RequestId": "2f1b6f3c-0c1e-4e2a-9a57-3c5f7d9b1e20"}},
        ask,
    )
    waits: list[float] = []
    with stub:
        assert provision_permission_set(sso, instance, permission_set, sleep=waits.append) == expected
    stub.assert_no_pending_responses()
    assert waits == [2.0, 2.0]


def test_the_identity_center_admin_role_policy_in_the_docs_is_what_the_fallback_calls() -> None:
    import inspect  # noqa: PLC0415
    import re  # noqa: PLC0415
    from pathlib import Path  # noqa: PLC0415

    from guardrail.respond.containment import (  # noqa: PLC0415
        IDENTITY_CENTER_ADMIN_PERMISSIONS,
        DenyPermissionSetInline,
    )

    docs = (Path(__file__).resolve().parents[2] / "docs" / "identity-center.md").read_text()
    section = docs.split("The role in the administration account needs:", 1)[1].split("plus", 1)[0]
    assert set(re.findall(r"`((?:sso|identitystore):\w+)`", section)) == set(
        IDENTITY_CENTER_ADMIN_PERMISSIONS
    )
    # Every sso-admin call the fallback makes, by its boto3 name, is one of them.
    source = inspect.getsource(DenyPermissionSetInline)
    called = set(re.findall(r"sso\.(\w+)\(", source))
    declared = {
        re.sub(r"(?<!^)(?=[A-Z])", "_", p.split(":")[1]).lower() for p in IDENTITY_CENTER_ADMIN_PERMISSIONS
    }
    assert called <= declared, called - declared
