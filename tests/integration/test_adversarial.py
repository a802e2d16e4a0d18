"""Issue 13 under moto with IAM enforced: an agent that writes its own events, or jams its own containment,
still gets stopped, and never turns the responder on anyone else."""

from __future__ import annotations

import copy
import json
from collections.abc import Iterator
from typing import Any

import pytest
from botocore.exceptions import ClientError

from guardrail.operate.replay import EmbeddedAws
from tests.integration.conftest import ACCOUNT, Responder, critical, denied, fresh_id
from tests.unit.test_trust import federated_event

AWS_DENY_ALL = "arn:aws:iam::aws:policy/AWSDenyAll"


@pytest.fixture
def account(monkeypatch: pytest.MonkeyPatch) -> Iterator[EmbeddedAws]:
    # The fallback layer is AWS's managed AWSDenyAll: moto loads AWS managed policies only when asked.
    monkeypatch.setenv("MOTO_IAM_LOAD_MANAGED_POLICIES", "true")
    with EmbeddedAws(account=ACCOUNT) as aws:
        yield aws


def _sso_forgery() -> dict[str, Any]:
    """The agent's own role, claimed to sit under Identity Center's path: were its hold keyed like the
    role's, every later real call would only join it."""
    event = critical(event_id=fresh_id())
    issuer = event["detail"]["userIdentity"]["sessionContext"]["sessionIssuer"]
    issuer["arn"] = f"arn:aws:iam::{ACCOUNT}:role/aws-reserved/sso.amazonaws.com/AIAgentRole"
    return event


def test_an_envelope_not_from_aws_and_a_bare_record_are_refused_without_an_iam_write(
    responder: Responder,
) -> None:
    agent = responder.agent(critical())
    forged = critical(event_id=fresh_id())
    forged["source"] = "agent.tools"
    bare = critical(event_id=fresh_id())["detail"]

    assert responder(forged)["status"] == "refused"
    assert responder(bare)["status"] == "refused"

    assert responder.writes("iam") == []
    assert not denied(lambda: agent.client("s3").list_buckets())


def test_a_forged_identity_center_issuer_gives_the_agent_no_immunity(responder: Responder) -> None:
    agent = responder.agent(critical())

    first = responder(_sso_forgery())
    # Believed as an Identity Center session: its id goes into the prepared policy, on a key of its own.
    assert first["status"] == "contained"
    assert "PutRolePolicy" not in responder.writes("iam")
    real = responder(critical(event_id=fresh_id()))

    assert real["status"] == "contained"
    assert "PutRolePolicy" in responder.writes("iam")
    assert denied(lambda: agent.client("s3").list_buckets())


def test_a_lying_user_name_never_writes_to_the_break_glass_role(make_responder: Any) -> None:
    # Break-glass matches the agent patterns too (a sloppy pattern): the responder must still never touch it.
    responder = make_responder(
        {"GUARDRAIL_AGENT_PRINCIPALS": "arn:aws:iam::*:role/*,arn:aws:sts::*:assumed-role/*"}
    )
    iam = responder.aws.session().client("iam")
    iam.create_role(
        RoleName="BreakGlassAdmin", AssumeRolePolicyDocument='{"Version":"2012-10-17","Statement":[]}'
    )
    responder.agent(critical())
    event = critical(event_id=fresh_id())
    event["detail"]["userIdentity"]["sessionContext"]["sessionIssuer"]["userName"] = "BreakGlassAdmin"

    summary = responder(event)

    assert summary["status"] == "refused"
    assert "names disagree" in summary["error"]
    assert responder.writes("iam") == []
    assert iam.list_role_policies(RoleName="BreakGlassAdmin")["PolicyNames"] == []


def test_a_federated_session_of_an_agent_user_contains_the_user(responder: Responder) -> None:
    user_agent = responder.agent(critical("principals/iam-user-terminate.json"))
    event = federated_event()
    event["detail"]["eventID"] = fresh_id()

    summary = responder(event)

    assert summary["status"] == "contained"
    iam = responder.aws.session().client("iam")
    assert iam.list_user_policies(UserName="ai-agent-ci")["PolicyNames"] == [
        "AgentPermissions",
        "GuardrailEmergencyDenyAll",
    ]
    keys = iam.list_access_keys(UserName="ai-agent-ci")["AccessKeyMetadata"]
    assert {k["Status"] for k in keys} == {"Inactive"}
    assert denied(lambda: user_agent.client("s3").list_buckets())


class _QuotaFullUserPolicies:
    """IAM as it answers once the agent has filled its user's 2,048 characters of inline policies;
    everything else reaches the real (moto) IAM."""

    def __init__(self, real: Any) -> None:
        self._real = real

    def put_user_policy(self, **_: Any) -> Any:
        raise ClientError(
            {"Error": {"Code": "LimitExceeded", "Message": "Maximum policy size of 2048 bytes exceeded"}},
            "PutUserPolicy",
        )

    def __getattr__(self, name: str) -> Any:
        return getattr(self._real, name)


def test_a_full_inline_quota_still_deactivates_the_keys_and_falls_back_to_aws_deny_all(
    responder: Responder,
) -> None:
    event = critical("principals/iam-user-terminate.json")
    agent = responder.agent(event)
    iam = responder.aws.session().client("iam")
    responder.runtime.aws._cache["iam"] = _QuotaFullUserPolicies(responder.runtime.aws.iam)

    summary = responder(copy.deepcopy(event))

    assert summary["status"] == "contained"
    outcomes = {a["action"]: a["error"] for a in summary["actions"]}
    assert outcomes["put_user_deny_all"].startswith("LimitExceeded")
    assert outcomes["attach_user_deny_all"] is None
    assert outcomes["deactivate_access_keys"] is None
    assert [
        p["PolicyArn"] for p in iam.list_attached_user_policies(UserName="ai-agent-ci")["AttachedPolicies"]
    ] == [AWS_DENY_ALL]
    assert {k["Status"] for k in iam.list_access_keys(UserName="ai-agent-ci")["AccessKeyMetadata"]} == {
        "Inactive"
    }
    assert denied(lambda: agent.client("s3").list_buckets())
    assert any("holds through attach_user_deny_all" in note for note in summary["notes"])


def test_a_failed_tag_never_fails_a_containment_that_holds(responder: Responder) -> None:
    agent = responder.agent(critical())

    class NoTags:
        def __init__(self, real: Any) -> None:
            self._real = real

        def tag_role(self, **_: Any) -> Any:
            raise ClientError({"Error": {"Code": "AccessDenied", "Message": "no"}}, "TagRole")

        def __getattr__(self, name: str) -> Any:
            return getattr(self._real, name)

    responder.runtime.aws._cache["iam"] = NoTags(responder.runtime.aws.iam)

    summary = responder(critical(event_id=fresh_id()))

    assert summary["status"] == "contained"
    assert denied(lambda: agent.client("s3").list_buckets())
    assert any("tag_role failed" in note for note in summary["notes"])


def _iam_record(sample: str, request_id: str, **parameters: str) -> dict[str, Any]:
    """CloudTrail's record of an IAM write, as it arrives a few seconds after the write."""
    event = critical(f"rules/{sample}.json", event_id=fresh_id())
    event["detail"]["requestID"] = request_id
    event["detail"]["requestParameters"] = parameters
    return event


def test_the_responders_own_writes_come_back_quietly_and_tampering_does_not(responder: Responder) -> None:
    responder.agent(critical())
    contained = responder(critical(event_id=fresh_id()))
    (put,) = [a for a in contained["actions"] if a["action"] == "put_role_deny_all"]
    responder.aws.published()  # the containment's own message

    # The containment's PutRolePolicy, seen through CloudTrail: recognised by its request id.
    own = _iam_record(
        "iam.containment-policy-overwritten",
        put["request_ids"][0],
        roleName="AIAgentRole",
        policyName="GuardrailEmergencyDenyAll",
    )
    assert responder(own)["status"] == "own_action"

    # Someone else overwriting it: critical tampering, reported.
    forged = _iam_record(
        "iam.containment-policy-overwritten",
        "11111111-2222-3333-4444-555555555555",
        roleName="AIAgentRole",
        policyName="GuardrailEmergencyDenyAll",
    )
    tampered = responder(forged)
    assert tampered["status"] == "reported"
    assert tampered["rule_ids"][0] == "iam.containment-policy-overwritten"
    assert tampered["severity"] == "critical"
    assert [m["kind"] for m in responder.aws.published()] == ["incident"]


def test_a_release_through_the_release_path_never_alerts(responder: Responder) -> None:
    from guardrail.respond.release import release  # noqa: PLC0415

    responder.agent(critical())
    responder(critical(event_id=fresh_id()))
    released = release(
        f"arn:aws:iam::{ACCOUNT}:role/AIAgentRole", "INC-1: investigated", "oncall", responder.runtime
    )
    (undone,) = [a for a in released.release_actions if a["action"] == "put_role_deny_all"]
    responder.aws.published()  # the containment and the release messages

    delete = _iam_record(
        "iam.emergency-policy-removed",
        undone["request_ids"][0],
        roleName="AIAgentRole",
        policyName="GuardrailEmergencyDenyAll",
    )
    assert responder(delete)["status"] == "own_action"
    assert responder.aws.published() == []

    by_hand = _iam_record(
        "iam.emergency-policy-removed",
        "99999999-8888-7777-6666-555555555555",
        roleName="AIAgentRole",
        policyName="GuardrailEmergencyDenyAll",
    )
    assert responder(by_hand)["status"] == "reported"
    assert [m["severity"] for m in responder.aws.published()] == ["critical"]


ALLOW_ALL = '{"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]}'


def _contained(responder: Responder) -> Any:
    agent = responder.agent(critical())
    assert responder(critical(event_id=fresh_id()))["status"] == "contained"
    assert denied(lambda: agent.client("s3").list_buckets())
    responder.aws.published()
    return agent


def _audit_kinds(responder: Responder) -> list[str]:
    (incident,) = [i for i in responder.runtime.store.records.incidents() if i.status.value == "contained"]
    return [a["kind"] for a in responder.runtime.store.audit.trail(incident.id)]


def test_a_removed_deny_is_put_back_at_once_naming_who_removed_it(responder: Responder) -> None:
    agent = _contained(responder)
    admin = responder.aws.session().client("iam")
    admin.delete_role_policy(RoleName="AIAgentRole", PolicyName="GuardrailEmergencyDenyAll")
    assert not denied(lambda: agent.client("s3").list_buckets())  # the agent is loose

    removal = _iam_record(
        "iam.emergency-policy-removed",
        "aaaaaaaa-0000-0000-0000-000000000001",
        roleName="AIAgentRole",
        policyName="GuardrailEmergencyDenyAll",
    )
    summary = responder(removal)

    assert summary["status"] == "reported"  # the removal itself: tampering by a human, reported
    assert denied(lambda: agent.client("s3").list_buckets())  # and the deny is back
    messages = {m["kind"]: m for m in responder.aws.published()}
    restored = messages["restored"]
    assert restored["severity"] == "critical"
    assert restored["counts"]["summary"] == (
        f"GuardrailEmergencyDenyAll was removed from arn:aws:iam::{ACCOUNT}:role/AIAgentRole "
        f"by arn:aws:sts::{ACCOUNT}:assumed-role/PlatformEngineer/jane.doe@example.com: put back"
    )
    assert "restored" in _audit_kinds(responder)


def test_an_overwritten_deny_is_put_back_with_its_own_document(responder: Responder) -> None:
    agent = _contained(responder)
    admin = responder.aws.session().client("iam")
    admin.put_role_policy(
        RoleName="AIAgentRole", PolicyName="GuardrailEmergencyDenyAll", PolicyDocument=ALLOW_ALL
    )

    overwrite = _iam_record(
        "iam.containment-policy-overwritten",
        "aaaaaaaa-0000-0000-0000-000000000002",
        roleName="AIAgentRole",
        policyName="GuardrailEmergencyDenyAll",
    )
    responder(overwrite)

    document = admin.get_role_policy(RoleName="AIAgentRole", PolicyName="GuardrailEmergencyDenyAll")[
        "PolicyDocument"
    ]
    assert [(s["Effect"], s["Action"], s["Resource"]) for s in document["Statement"]] == [("Deny", "*", "*")]
    assert denied(lambda: agent.client("s3").list_buckets())


def test_a_silently_removed_deny_is_put_back_on_the_agents_next_event_and_released_with_the_rest(
    responder: Responder,
) -> None:
    from guardrail.respond.release import release  # noqa: PLC0415

    agent = _contained(responder)
    admin = responder.aws.session().client("iam")
    admin.delete_role_policy(RoleName="AIAgentRole", PolicyName="GuardrailEmergencyDenyAll")

    later = responder(critical(event_id=fresh_id()))  # no event said anything about the deny

    assert later["status"] == "joined"
    assert denied(lambda: agent.client("s3").list_buckets())
    assert [m["kind"] for m in responder.aws.published()] == ["restored"]

    release(f"arn:aws:iam::{ACCOUNT}:role/AIAgentRole", "INC-2: investigated", "oncall", responder.runtime)
    assert not denied(lambda: agent.client("s3").list_buckets())
    assert admin.list_role_policies(RoleName="AIAgentRole")["PolicyNames"] == ["AgentPermissions"]


def _template_iam_policy(agent_roles: list[str]) -> str:
    """The responder's IAM statements as template.yaml writes them (containment and its fallback), rendered
    for these AgentRoleNames, beside an allow of everything that is not IAM."""
    import yaml  # noqa: PLC0415

    from tests.conftest import ROOT  # noqa: PLC0415
    from tests.integration.test_organizations import _CfnLoader, _render  # noqa: PLC0415

    template = yaml.load((ROOT / "template.yaml").read_text(), Loader=_CfnLoader)  # noqa: S506
    statements = [
        s
        for policy in template["Resources"]["ResponderFunction"]["Properties"]["Policies"]
        if isinstance(policy, dict) and "Statement" in policy
        for s in policy["Statement"]
        if "Sid" in s and s["Sid"].startswith(("ContainAgent", "FallBackToAwsDenyAll"))
    ]
    parameters = {"AgentRoleNames": agent_roles, "AgentUserNames": ["ai-agent*"]}
    rendered = [_render(s, parameters) for s in statements]
    everything_else = {"Effect": "Allow", "NotAction": "iam:*", "Resource": "*"}
    return json.dumps({"Version": "2012-10-17", "Statement": [everything_else, *rendered]})


def _session_event(role: dict[str, Any], session: str) -> dict[str, Any]:
    event = critical(event_id=fresh_id())
    identity = event["detail"]["userIdentity"]
    identity["arn"] = f"arn:aws:sts::{ACCOUNT}:assumed-role/{role['RoleName']}/{session}"
    identity["principalId"] = f"{role['RoleId']}:{session}"
    identity["sessionContext"]["sessionIssuer"].update(
        arn=role["Arn"], userName=role["RoleName"], principalId=role["RoleId"]
    )
    return event


def test_a_role_under_a_path_is_contained_with_the_templates_own_grants(make_responder: Any) -> None:
    import boto3  # noqa: PLC0415

    responder = make_responder({"GUARDRAIL_AGENT_PRINCIPALS": "arn:aws:iam::*:role/agents/AIAgent*"})
    admin = responder.aws.session().client("iam")
    trust = '{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":{"AWS":"*"},"Action":"sts:AssumeRole"}]}'
    role = admin.create_role(RoleName="AIAgentX", Path="/agents/", AssumeRolePolicyDocument=trust)["Role"]
    admin.put_role_policy(RoleName="AIAgentX", PolicyName="AgentPermissions", PolicyDocument=ALLOW_ALL)
    credentials = (
        responder.aws.session()
        .client("sts")
        .assume_role(RoleArn=role["Arn"], RoleSessionName="claude")["Credentials"]
    )
    agent = boto3.session.Session(
        aws_access_key_id=credentials["AccessKeyId"],
        aws_secret_access_key=credentials["SecretAccessKey"],
        aws_session_token=credentials["SessionToken"],
        region_name="us-east-1",
    )
    assert not denied(lambda: agent.client("s3").list_buckets())
    # From here the responder holds only the template's IAM grants (rendered for agents/AIAgent*).
    admin.put_user_policy(
        UserName="guardrail-responder",
        PolicyName="replay",
        PolicyDocument=_template_iam_policy(["agents/AIAgent*"]),
    )
    assert denied(lambda: admin.create_role(RoleName="Other", AssumeRolePolicyDocument=trust))

    summary = responder(_session_event(role, "claude"))

    assert summary["status"] == "contained"
    assert denied(lambda: agent.client("s3").list_buckets())


def test_a_star_never_crosses_a_path(make_responder: Any) -> None:
    responder = make_responder()  # the default patterns: arn:aws:iam::*:role/AIAgent*, ...
    admin = responder.aws.session().client("iam")
    trust = '{"Version":"2012-10-17","Statement":[]}'
    role = admin.create_role(RoleName="BreakGlass", Path="/AIAgentTools/", AssumeRolePolicyDocument=trust)[
        "Role"
    ]

    summary = responder(_session_event(role, "jane"))

    assert summary["decision"] != "contain"
    assert responder.writes("iam") == []
    assert admin.list_role_policies(RoleName="BreakGlass")["PolicyNames"] == []


def test_no_value_from_an_event_can_make_a_state_table_write_fail(responder: Responder) -> None:
    # An identity the responder does not model, with an ARN far past DynamoDB's 2,048-byte key limit.
    event = critical(event_id=fresh_id())
    event["detail"]["userIdentity"] = {
        "type": "WebIdentityUser",
        "arn": f"arn:aws:sts::{ACCOUNT}:assumed-role/x/" + "é" * 3000,
        "accountId": ACCOUNT,
    }
    assert responder(event)["status"] == "reported"  # critical, by a principal that is not an agent
    (incident,) = responder.runtime.store.records.incidents()
    assert len(incident.key.encode()) < 1024  # bounded
    again = copy.deepcopy(event)
    again["detail"]["eventID"] = fresh_id()
    assert responder(again)["status"] == "joined"  # the same ARN always gives the same key
    # An IAM call whose requestID is 5,000 characters: looked up as the responder's own write, and not.
    removal = _iam_record("iam.emergency-policy-removed", "r" * 5000, roleName="SomeRole", policyName="Other")
    assert responder(removal)["status"] in {"reported", "ignored"}


@pytest.mark.parametrize(
    ("where", "value"),
    [
        ("session", "s" * 200),  # AWS issues session names of 2-64 characters (Identity Center's: user names)
        ("account", "not-an-account"),
    ],
)
def test_identities_aws_would_never_issue_are_refused(responder: Responder, where: str, value: str) -> None:
    event = critical(event_id=fresh_id())
    identity = event["detail"]["userIdentity"]
    if where == "session":
        identity["arn"] = f"arn:aws:sts::{ACCOUNT}:assumed-role/AIAgentRole/{value}"
        identity["principalId"] = f"AROAEXAMPLEAGENTROLE:{value}"
    else:
        identity["accountId"] = identity["sessionContext"]["sessionIssuer"]["accountId"] = value
        event["detail"]["recipientAccountId"] = value
        event["account"] = value
    summary = responder(event)
    assert summary["status"] == "refused"
    assert responder.writes("iam") == []
