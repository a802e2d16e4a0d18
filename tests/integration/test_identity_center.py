"""Identity Center: an agent on a user's SSO session contained through the prepared customer-managed policy,
through the real handler on moto (IAM enforced).

moto ignores conditions on Deny statements (and has no Identity Center sessions to run as), so these tests
assert the exact policy documents and the version bookkeeping IAM holds, and prove what the document does
with the IAM policy simulator (tests/simulator/oracle.py).
"""

from __future__ import annotations

import copy
import json
from typing import Any
from urllib.parse import unquote

import pytest

from guardrail.respond.containment import (
    IDENTITY_CENTER_PATH,
    IDENTITY_CENTER_POLICY,
    identity_center_document,
    identity_center_policy_arn,
)
from guardrail.respond.release import release
from tests.conftest import load_event
from tests.integration.conftest import ACCOUNT, Responder, fresh_id
from tests.simulator import oracle

AGENTS = {"GUARDRAIL_AGENT_PRINCIPALS": "arn:aws:sts::*:assumed-role/AWSReservedSSO_*/*"}
ROLE = "AWSReservedSSO_AIAgentAccess_0123456789abcdef"
ROLE_ID = "AROAEXAMPLESSO00001"
POLICY = identity_center_policy_arn(ACCOUNT)


def user_event(user: str) -> dict[str, Any]:
    event = copy.deepcopy(load_event("principals/identity-center-delete-table.json"))
    event["detail"]["eventID"] = fresh_id()
    identity = event["detail"]["userIdentity"]
    identity["arn"] = f"arn:aws:sts::{ACCOUNT}:assumed-role/{ROLE}/{user}"
    identity["principalId"] = f"{ROLE_ID}:{user}"
    return event


def prepared(responder: Responder, extra_versions: int = 0) -> Any:
    """The stack's prepared policy (template.yaml and member.yaml create it; so does the embedded account),
    with some history."""
    iam = responder.aws.session().client("iam")
    document = json.dumps(identity_center_document([]))
    assert default_document(iam) == identity_center_document([])
    for _ in range(extra_versions):
        iam.create_policy_version(PolicyArn=POLICY, PolicyDocument=document, SetAsDefault=True)
    return iam


def default_document(iam: Any) -> dict[str, Any]:
    version = iam.get_policy(PolicyArn=POLICY)["Policy"]["DefaultVersionId"]
    document = iam.get_policy_version(PolicyArn=POLICY, VersionId=version)["PolicyVersion"]["Document"]
    return json.loads(unquote(document)) if isinstance(document, str) else document


def userids(iam: Any) -> list[str]:
    (statement,) = default_document(iam)["Statement"]
    return list(statement["Condition"]["StringEquals"]["aws:userid"])


def test_each_user_is_denied_beside_the_others_and_released_alone(make_responder: Any) -> None:
    responder = make_responder(AGENTS)
    iam = prepared(responder, extra_versions=3)  # v1..v4: the next two writes reach the five-version quota

    first = responder(user_event("devin-bot@example.com"))
    assert first["status"] == "contained"
    assert first["actions"][0]["action"] == "deny_identity_center_user"
    assert userids(iam) == [f"{ROLE_ID}:devin-bot@example.com"]
    (statement,) = default_document(iam)["Statement"]
    assert statement == {
        "Sid": "GuardrailIdentityCenterSessions",
        "Effect": "Deny",
        "Action": "*",
        "Resource": "*",
        "Condition": {"StringEquals": {"aws:userid": [f"{ROLE_ID}:devin-bot@example.com"]}},
    }

    second = responder(user_event("claude-bot@example.com"))
    assert second["status"] == "contained"
    assert second["incident_id"] != first["incident_id"]  # one incident per user
    assert userids(iam) == [f"{ROLE_ID}:devin-bot@example.com", f"{ROLE_ID}:claude-bot@example.com"]
    versions = iam.list_policy_versions(PolicyArn=POLICY)["Versions"]
    assert len(versions) == 5  # the quota: the oldest non-default version (v1) made room
    assert sorted(v["VersionId"] for v in versions) == ["v2", "v3", "v4", "v5", "v6"]
    assert [v["VersionId"] for v in versions if v["IsDefaultVersion"]] == ["v6"]

    session = f"arn:aws:sts::{ACCOUNT}:assumed-role/{ROLE}/devin-bot@example.com"
    release(session, "reviewed: task re-scoped", "jane", responder.runtime)
    assert userids(iam) == [f"{ROLE_ID}:claude-bot@example.com"]  # the other user's entry stays

    session = f"arn:aws:sts::{ACCOUNT}:assumed-role/{ROLE}/claude-bot@example.com"
    release(session, "reviewed", "jane", responder.runtime)
    assert default_document(iam) == identity_center_document([])  # back to the inert placeholder


def test_the_message_names_the_user_the_permission_set_and_the_human_step(make_responder: Any) -> None:
    responder = make_responder(AGENTS)
    prepared(responder)
    responder(user_event("devin-bot@example.com"))
    incident = next(m for m in responder.aws.published() if m["kind"] == "incident")
    containment = incident["containment"]
    assert "Identity Center user devin-bot@example.com (permission set AIAgentAccess" in containment["reason"]
    assert any(
        "Disable user devin-bot@example.com in IAM Identity Center" in s for s in containment["manual_steps"]
    )


def test_without_the_prepared_policy_the_containment_fails_loudly(make_responder: Any) -> None:
    from guardrail.respond.containment import ContainmentFailed  # noqa: PLC0415

    responder = make_responder(AGENTS)
    responder.aws.session().client("iam").delete_policy(PolicyArn=POLICY)  # a stack never deployed here
    with pytest.raises(ContainmentFailed, match="deny_identity_center_user"):
        responder(user_event("devin-bot@example.com"))
    failed = next(m for m in responder.aws.published() if m["kind"] == "incident")
    assert failed["status"] == "failed"


@pytest.mark.skipif(oracle.available() is not None, reason=str(oracle.available()))
def test_the_written_policy_denies_that_user_and_no_one_else(make_responder: Any) -> None:
    responder = make_responder(AGENTS)
    iam = prepared(responder)
    responder(user_event("devin-bot@example.com"))
    policies = [
        {"name": "AgentAccess", "policy": {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]}},
        {"name": IDENTITY_CENTER_POLICY, "policy": default_document(iam)},
    ]  # fmt: skip
    asks = [
        {
            "principal": f"arn:aws:sts::{ACCOUNT}:assumed-role/{ROLE}/{user}",
            "action": "dynamodb:DeleteTable",
            "resource": f"arn:aws:dynamodb:eu-west-1:{ACCOUNT}:table/orders",
            "accountId": ACCOUNT,
            "context": {"aws:userid": f"{ROLE_ID}:{user}"},
            "policies": policies,
        }
        for user in ("devin-bot@example.com", "jane@example.com")
    ]
    assert oracle.decide(asks) == ["ExplicitlyDenied", "Allowed"]


def test_sso_prepare_attaches_the_reference_once_and_reports_coverage(
    account: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    from guardrail.operate.cli import main  # noqa: PLC0415

    sso = account.session().client("sso-admin")
    instance = sso.list_instances()["Instances"][0]["InstanceArn"]
    agents = sso.create_permission_set(InstanceArn=instance, Name="AIAgentAccess")["PermissionSet"][
        "PermissionSetArn"
    ]
    sso.create_permission_set(InstanceArn=instance, Name="Admins")

    assert main(["sso", "prepare", "--check", "--permission-set", "AIAgentAccess"]) == 1
    assert "NOT COVERED  AIAgentAccess: NOT referenced" in capsys.readouterr().out
    assert (
        sso.list_customer_managed_policy_references_in_permission_set(
            InstanceArn=instance, PermissionSetArn=agents
        )["CustomerManagedPolicyReferences"]
        == []
    )  # --check changed nothing

    assert main(["sso", "prepare", "--permission-set", "AIAgentAccess"]) == 0
    out = capsys.readouterr().out
    assert "covered   AIAgentAccess: attached now; provisioning SUCCEEDED" in out
    assert "Admins" not in out  # only the permission set named
    assert sso.list_customer_managed_policy_references_in_permission_set(
        InstanceArn=instance, PermissionSetArn=agents
    )["CustomerManagedPolicyReferences"] == [{"Name": IDENTITY_CENTER_POLICY, "Path": IDENTITY_CENTER_PATH}]

    assert main(["sso", "prepare", "--permission-set", "AIAgentAccess"]) == 0  # idempotent
    assert "AIAgentAccess: already referenced; provisioning not needed" in capsys.readouterr().out
    assert main(["sso", "prepare", "--permission-set", "Nope"]) == 1
    assert "no permission set named Nope" in capsys.readouterr().err


def test_a_replay_of_the_sample_shows_an_identity_center_containment(monkeypatch: pytest.MonkeyPatch) -> None:
    from guardrail.operate.replay import replay  # noqa: PLC0415
    from tests.conftest import EVENTS  # noqa: PLC0415

    for name, value in AGENTS.items():
        monkeypatch.setenv(name, value)
    result, second = replay(
        [
            EVENTS / "principals" / "identity-center-delete-table.json",
            EVENTS / "principals" / "identity-center-second-user.json",
        ]
    )
    assert (result["decision"], result["status"]) == ("contain", "contained")
    assert second["status"] == "contained"
    assert second["incident_id"] != result["incident_id"]  # one incident per user
    assert [c["operation"] for c in result["calls"] if c["service"] == "iam"][:5] == [
        "GetPolicy", "GetPolicyVersion", "ListPolicyVersions", "CreatePolicyVersion", "GetPolicy",
    ]  # fmt: skip
    subjects = [n["subject"] for n in result["notifications"]]
    assert subjects[0] == "[CRITICAL][CONTAINED] devin-bot@example.com: DeleteTable"


ADMIN_ROLE = f"arn:aws:iam::{ACCOUNT}:role/GuardrailIdentityCenterAdmin"
OWN_INLINE = {
    "Version": "2012-10-17",
    "Statement": [{"Sid": "Team", "Effect": "Allow", "Action": "s3:*", "Resource": "*"}],
}


def identity_center(responder: Responder, *, referenced: bool) -> tuple[Any, str, str]:
    """The permission set the sample's role was provisioned from, with an inline policy of its own, and
    the role the responder may assume in the administration account (here: the same moto account)."""
    session = responder.aws.session()
    session.client("iam").create_role(
        RoleName="GuardrailIdentityCenterAdmin",
        AssumeRolePolicyDocument=json.dumps({"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Principal": {"AWS": "*"}, "Action": "sts:AssumeRole"}]}),
    )  # fmt: skip
    session.client("iam").put_role_policy(
        RoleName="GuardrailIdentityCenterAdmin",
        PolicyName="sso",
        PolicyDocument=json.dumps({"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "sso:*", "Resource": "*"}]}),
    )  # fmt: skip
    sso = session.client("sso-admin")
    instance = sso.list_instances()["Instances"][0]["InstanceArn"]
    permission_set = sso.create_permission_set(InstanceArn=instance, Name="AIAgentAccess")["PermissionSet"][
        "PermissionSetArn"
    ]
    sso.put_inline_policy_to_permission_set(
        InstanceArn=instance, PermissionSetArn=permission_set, InlinePolicy=json.dumps(OWN_INLINE)
    )
    if referenced:
        sso.attach_customer_managed_policy_reference_to_permission_set(
            InstanceArn=instance, PermissionSetArn=permission_set,
            CustomerManagedPolicyReference={"Name": IDENTITY_CENTER_POLICY, "Path": IDENTITY_CENTER_PATH},
        )  # fmt: skip
    return sso, instance, permission_set


def inline(sso: Any, instance: str, permission_set: str) -> dict[str, Any]:
    text = sso.get_inline_policy_for_permission_set(InstanceArn=instance, PermissionSetArn=permission_set)[
        "InlinePolicy"
    ]
    return json.loads(text) if text else {}


def test_without_the_reference_the_permission_sets_inline_policy_is_merged_and_provisioned(
    make_responder: Any,
) -> None:
    responder = make_responder({**AGENTS, "GUARDRAIL_IDENTITY_CENTER_ADMIN_ROLE_ARN": ADMIN_ROLE})
    sso, instance, permission_set = identity_center(responder, referenced=False)

    outcome = responder(user_event("devin-bot@example.com"))

    assert outcome["status"] == "contained"
    by_action = {a["action"]: a for a in outcome["actions"]}
    fallback = by_action["deny_permission_set_inline"]
    assert fallback["error"] is None
    assert fallback["details"]["provisioning"] == "SUCCEEDED"  # moto provisions at once
    assert fallback["details"]["permission_set_arn"] == permission_set
    document = inline(sso, instance, permission_set)
    assert document["Statement"][0] == OWN_INLINE["Statement"][0]  # what was there stays
    assert document["Statement"][1] == {
        "Sid": fallback["details"]["sid"],
        "Effect": "Deny",
        "Action": "*",
        "Resource": "*",
        "Condition": {"StringEquals": {"aws:userid": f"{ROLE_ID}:devin-bot@example.com"}},
    }

    session = f"arn:aws:sts::{ACCOUNT}:assumed-role/{ROLE}/devin-bot@example.com"
    release(session, "reviewed", "jane", responder.runtime)
    assert inline(sso, instance, permission_set) == OWN_INLINE  # exactly the added statement removed


def test_the_identity_store_id_is_denied_beside_the_session_and_released_with_it(make_responder: Any) -> None:
    responder = make_responder({**AGENTS, "GUARDRAIL_IDENTITY_CENTER_ADMIN_ROLE_ARN": ADMIN_ROLE})
    identity_center(responder, referenced=True)
    session = responder.aws.session()
    store = session.client("sso-admin").list_instances()["Instances"][0]["IdentityStoreId"]
    user_id = session.client("identitystore").create_user(
        IdentityStoreId=store, UserName="devin-bot@example.com", DisplayName="Devin bot",
        Name={"GivenName": "Devin", "FamilyName": "Bot"},
    )["UserId"]  # fmt: skip
    session.client("iam").put_role_policy(
        RoleName="GuardrailIdentityCenterAdmin", PolicyName="store",
        PolicyDocument=json.dumps({"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "identitystore:*", "Resource": "*"}]}),
    )  # fmt: skip

    outcome = responder(user_event("devin-bot@example.com"))

    by_action = {a["action"]: a for a in outcome["actions"]}
    assert by_action["deny_identity_center_user"]["details"]["identity_store_user_id"] == user_id
    iam = session.client("iam")
    sessions, users = default_document(iam)["Statement"]
    assert sessions["Condition"] == {"StringEquals": {"aws:userid": [f"{ROLE_ID}:devin-bot@example.com"]}}
    assert users == {
        "Sid": "GuardrailIdentityCenterUsers",
        "Effect": "Deny",
        "Action": "*",
        "Resource": "*",
        "Condition": {"StringEquals": {"identitystore:userId": [user_id]}},
    }
    email = json.loads(json.dumps(next(m for m in responder.aws.published() if m["kind"] == "incident")))
    from guardrail.report.message import email_text  # noqa: PLC0415

    assert f"(identity store user {user_id})" in email_text(email)

    release(
        f"arn:aws:sts::{ACCOUNT}:assumed-role/{ROLE}/devin-bot@example.com",
        "reviewed",
        "jane",
        responder.runtime,
    )
    assert default_document(iam) == identity_center_document([])


def test_with_the_reference_the_inline_policy_is_left_alone(make_responder: Any) -> None:
    responder = make_responder({**AGENTS, "GUARDRAIL_IDENTITY_CENTER_ADMIN_ROLE_ARN": ADMIN_ROLE})
    sso, instance, permission_set = identity_center(responder, referenced=True)

    outcome = responder(user_event("devin-bot@example.com"))

    by_action = {a["action"]: a for a in outcome["actions"]}
    assert by_action["deny_permission_set_inline"]["details"]["covered_by_reference"] is True
    assert inline(sso, instance, permission_set) == OWN_INLINE
    assert userids(responder.aws.session().client("iam")) == [f"{ROLE_ID}:devin-bot@example.com"]


def test_a_provisioning_that_has_not_finished_is_reported_and_does_not_count_as_holding() -> None:
    from guardrail.respond.containment import (  # noqa: PLC0415
        ActionRecord,
        DenyPermissionSetInline,
        holding,
    )

    # What the responder records when DescribePermissionSetProvisioningStatus still says IN_PROGRESS after
    # its wait: the statement is written (release removes it), the layer is not counted as holding.
    record = ActionRecord(
        DenyPermissionSetInline.name, "arn:aws:iam::111122223333:identity-center/r/u",
        {"sid": "GuardrailIncidentX", "provisioning": "IN_PROGRESS"},
        error="provisioning IN_PROGRESS: the inline deny is not in force yet",
    )  # fmt: skip
    assert holding([record]) == ([], [DenyPermissionSetInline.name])
