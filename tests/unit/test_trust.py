"""The jailer cannot be steered by the prisoner: what an event must be before it is believed (issue 13).

Every expectation here is written out by hand, not derived from the code under test.
"""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from guardrail.detect.catalogue import default_catalogue
from guardrail.detect.classifier import classify
from guardrail.detect.cloudtrail import forgery, parse_event
from guardrail.detect.routing import all_patterns, forwarder_patterns
from guardrail.model import Decision, PrincipalKind
from guardrail.settings import Settings
from tests.conftest import EVENTS, load_event

ROLE_EVENT = "rules/dynamodb.table-deleted.json"


def _event(relative: str = ROLE_EVENT) -> dict[str, Any]:
    return copy.deepcopy(load_event(relative))


def test_every_sample_aws_delivers_is_believed() -> None:
    for path in sorted(EVENTS.rglob("*.json")):
        event = json.loads(path.read_text())
        assert forgery(parse_event(event)) is None, path.name


def test_an_envelope_from_a_source_that_is_not_aws_is_refused() -> None:
    event = _event()
    event["source"] = "my.agent"
    assert "'my.agent' is not AWS" in (forgery(parse_event(event)) or "")


def test_a_bare_record_handed_over_directly_is_refused() -> None:
    record = _event()["detail"]
    assert "a bare CloudTrail record" in (forgery(parse_event(record)) or "")


@pytest.mark.parametrize(
    ("field", "value", "expected"),
    [
        # The role a containment writes to comes from the issuer; the agent check reads the session ARN.
        (("sessionIssuer", "userName"), "BreakGlassAdmin", "names disagree"),
        (("sessionIssuer", "arn"), "arn:aws:iam::111122223333:role/BreakGlassAdmin", "names disagree"),
        (("sessionIssuer", "accountId"), "999999999999", "accounts disagree"),
        (
            ("arn",),
            "arn:aws:sts::111122223333:assumed-role/AIAgentRole/../../BreakGlassAdmin",
            "not an assumed-role",
        ),
        (("arn",), "arn:aws:sts::999999999999:assumed-role/AIAgentRole/s", "accounts disagree"),
        (("principalId",), "AROAEXAMPLEAGENTROLE:another-session", "names another session"),
        (("principalId",), "AROAOTHERROLE:claude-code-session", "is not a session of"),
        (("sessionIssuer", "arn"), "arn:aws:iam::111122223333:user/AIAgentRole", "is not an IAM role ARN"),
    ],
)
def test_a_record_whose_identity_fields_disagree_is_refused(
    field: tuple[str, ...], value: str, expected: str
) -> None:
    event = _event()
    identity = event["detail"]["userIdentity"]
    node = identity if len(field) == 1 else identity["sessionContext"]["sessionIssuer"]
    node[field[-1]] = value
    reason = forgery(parse_event(event)) or ""
    assert expected in reason
    assert reason.startswith("userIdentity does not describe one principal")


def test_role_names_iam_would_refuse_are_refused() -> None:
    for name in ("A" * 65, "AIAgent Role", "AIAgent/Role", "AIAgentRolé", ""):
        event = _event()
        identity = event["detail"]["userIdentity"]
        identity["arn"] = f"arn:aws:sts::111122223333:assumed-role/{name}/s"
        identity["principalId"] = "AROAEXAMPLEAGENTROLE:s"
        identity["sessionContext"]["sessionIssuer"]["arn"] = f"arn:aws:iam::111122223333:role/{name}"
        identity["sessionContext"]["sessionIssuer"]["userName"] = name
        assert forgery(parse_event(event)) is not None, name
    assert forgery(parse_event(_event())) is None  # 64 characters of [\w+=,.@-] are fine
    long_ok = _event()
    name = "A" * 64
    identity = long_ok["detail"]["userIdentity"]
    identity["arn"] = f"arn:aws:sts::111122223333:assumed-role/{name}/claude-code-session"
    identity["sessionContext"]["sessionIssuer"]["arn"] = f"arn:aws:iam::111122223333:role/agents/{name}"
    identity["sessionContext"]["sessionIssuer"]["userName"] = name
    assert forgery(parse_event(long_ok)) is None


def test_an_iam_user_record_that_names_two_users_is_refused() -> None:
    event = _event("principals/iam-user-terminate.json")
    event["detail"]["userIdentity"]["userName"] = "BreakGlassAdmin"
    assert "names disagree" in (forgery(parse_event(event)) or "")


def federated_event() -> dict[str, Any]:
    """A GetFederationToken session minted by the agent user ai-agent-ci, terminating an instance."""
    event = _event("principals/iam-user-terminate.json")
    event["detail"]["userIdentity"] = {
        "type": "FederatedUser",
        "principalId": "111122223333:build-42",
        "arn": "arn:aws:sts::111122223333:federated-user/build-42",
        "accountId": "111122223333",
        "accessKeyId": "ASIAEXAMPLEFEDERATED",
        "sessionContext": {
            "sessionIssuer": {
                "type": "IAMUser",
                "principalId": "AIDAEXAMPLEAGENTUSER",
                "arn": "arn:aws:iam::111122223333:user/ai-agent-ci",
                "accountId": "111122223333",
                "userName": "ai-agent-ci",
            },
            "attributes": {"creationDate": "2026-11-01T10:00:00Z", "mfaAuthenticated": "false"},
        },
    }
    return event


def test_a_federated_session_of_an_agent_user_is_the_agent() -> None:
    call = parse_event(federated_event())
    assert forgery(call) is None
    principal = call.principal
    assert (principal.kind, principal.name, principal.issuer_arn) == (
        PrincipalKind.FEDERATED,
        "ai-agent-ci",
        "arn:aws:iam::111122223333:user/ai-agent-ci",
    )
    verdict = classify(call, Settings())
    assert verdict.is_agent
    assert verdict.decision is Decision.CONTAIN  # TerminateInstances in production, by the default policy


def test_a_federated_session_claiming_another_users_issuer_name_is_refused() -> None:
    event = federated_event()
    event["detail"]["userIdentity"]["sessionContext"]["sessionIssuer"]["userName"] = "BreakGlassAdmin"
    assert "names disagree" in (forgery(parse_event(event)) or "")


def test_every_generated_pattern_admits_only_aws_sources() -> None:
    catalogue = default_catalogue()
    for name, pattern in {**all_patterns(catalogue), **forwarder_patterns(catalogue)}.items():
        assert pattern["source"] == [{"prefix": "aws."}], name


BLINDING = [
    ("events.guardrail-rule-disabled", "DisableRule"),
    ("events.guardrail-targets-removed", "RemoveTargets"),
    ("lambda.guardrail-function-tampered", "PutFunctionConcurrency20171031"),
    ("sns.guardrail-topic-changed", "SetTopicAttributes"),
    ("sns.guardrail-subscription-removed", "Unsubscribe"),
    ("monitoring.guardrail-alarms-deleted", "DeleteAlarms"),
    ("monitoring.guardrail-alarm-rewritten", "PutMetricAlarm"),
    ("sqs.guardrail-queue-changed", "PurgeQueue"),
    ("dynamodb.guardrail-table-changed", "DeleteResourcePolicy"),
    ("iam.guardrail-role-changed", "DetachRolePolicy"),
]


@pytest.mark.parametrize(("rule_id", "name"), BLINDING)
def test_every_call_that_blinds_the_responder_is_critical_tampering(rule_id: str, name: str) -> None:
    call = parse_event(_event(f"rules/{rule_id}.json"))
    assert call.event_name == name
    verdict = classify(call, Settings())  # the default stack name: guardrail-responder
    assert (verdict.rule_ids[0], verdict.category.value, verdict.severity.value) == (
        rule_id,
        "guardrail_tampering",
        "critical",
    )


@pytest.mark.parametrize(("rule_id", "name"), BLINDING)
def test_the_same_call_on_another_stacks_resource_is_not_tampering(rule_id: str, name: str) -> None:
    text = json.dumps(_event(f"rules/{rule_id}.json")).replace("guardrail-responder-", "billing-api-")
    verdict = classify(parse_event(json.loads(text)), Settings())
    assert not any(r.endswith(rule_id.split(".", 1)[1]) for r in verdict.rule_ids), verdict.rule_ids


def test_own_resources_are_known_by_the_deployed_stack_name_not_by_a_word() -> None:
    renamed = json.loads(
        json.dumps(_event("rules/events.guardrail-rule-disabled.json")).replace(
            "guardrail-responder-", "gr-prod-"
        )
    )
    deployed = Settings.from_env({"GUARDRAIL_OWN_NAME_PREFIX": "gr-prod-"})
    assert classify(parse_event(renamed), deployed).rule_ids == ["events.guardrail-rule-disabled"]
    # Another stack's rule, to the default: disabling it is still destruction, not tampering with us.
    assert classify(parse_event(renamed), Settings()).rule_ids == ["generic.destroys"]
    worded = _event("rules/events.guardrail-rule-disabled.json")
    worded["detail"]["requestParameters"]["name"] = "team-guardrail-notes"  # the word alone is nothing
    assert classify(parse_event(worded), deployed).rule_ids == ["generic.destroys"]


def test_a_prefix_that_is_no_stack_name_is_refused_at_start_up() -> None:
    from guardrail.errors import ConfigurationError  # noqa: PLC0415

    with pytest.raises(
        ConfigurationError, match="GUARDRAIL_OWN_NAME_PREFIX: 'not a stack' is not a stack name"
    ):
        Settings.from_env({"GUARDRAIL_OWN_NAME_PREFIX": "not a stack"})


def _sourced(role: str, source_identity: str | None) -> dict[str, Any]:
    """A session of `role` (not named like an agent), carrying a source identity when given."""
    event = _event()
    identity = event["detail"]["userIdentity"]
    identity["arn"] = f"arn:aws:sts::111122223333:assumed-role/{role}/s1"
    identity["principalId"] = "AROAEXAMPLEAGENTROLE:s1"
    identity["sessionContext"]["sessionIssuer"].update(
        arn=f"arn:aws:iam::111122223333:role/{role}", userName=role
    )
    if source_identity is not None:
        identity["sessionContext"]["sourceIdentity"] = source_identity
    return event


def test_a_session_is_an_agent_by_its_source_identity_whatever_role_it_holds() -> None:
    settings = Settings.from_env({"GUARDRAIL_AGENT_SOURCE_IDENTITIES": "claude-code-*,devin-*"})
    verdict = classify(parse_event(_sourced("SharedDevRole", "claude-code-jane")), settings)
    assert (verdict.is_agent, verdict.decision) == (True, Decision.CONTAIN)
    human = classify(parse_event(_sourced("SharedDevRole", "jane")), settings)
    assert human.is_agent is False
    unset = classify(parse_event(_sourced("SharedDevRole", None)), settings)
    assert unset.is_agent is False
    default = classify(parse_event(_sourced("SharedDevRole", "claude-code-jane")), Settings())
    assert default.is_agent is False  # no source-identity pattern: by ARN only


def test_a_protected_role_stays_protected_whatever_its_source_identity() -> None:
    settings = Settings.from_env(
        {
            "GUARDRAIL_AGENT_SOURCE_IDENTITIES": "claude-code-*",
            "GUARDRAIL_PROTECTED_PRINCIPALS": "arn:aws:iam::*:role/BreakGlass",
        }
    )
    verdict = classify(parse_event(_sourced("BreakGlass", "claude-code-jane")), settings)
    assert (verdict.is_agent, verdict.is_protected, verdict.decision) == (True, True, Decision.NOTIFY)


def test_remembered_principals_follow_every_identity_field() -> None:
    # principal_of is remembered per identity: a field it reads must be part of what is remembered.
    first = parse_event(_sourced("SharedDevRole", "claude-code-jane")).principal
    assert parse_event(_sourced("SharedDevRole", "claude-code-jane")).principal == first
    assert parse_event(_sourced("SharedDevRole", "devin-1")).principal.source_identity == "devin-1"
    lying = _sourced("SharedDevRole", "claude-code-jane")
    lying["detail"]["userIdentity"]["sessionContext"]["sessionIssuer"]["userName"] = "BreakGlass"
    assert parse_event(lying).principal.conflict is not None
    other_key = _sourced("SharedDevRole", "claude-code-jane")
    other_key["detail"]["userIdentity"]["accessKeyId"] = "ASIAOTHERKEY"
    assert parse_event(other_key).principal.access_key_id == "ASIAOTHERKEY"


# IAM's name alphabet, and some characters it refuses.
IAM_CHARS = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789+=,.@_-"
NOT_IAM = " /:*?é\u202e\u0000"


@settings(max_examples=400, deadline=None)
@given(
    name=st.text(alphabet=IAM_CHARS + NOT_IAM, min_size=1, max_size=80),
    path=st.lists(st.text(alphabet=IAM_CHARS, min_size=1, max_size=20), max_size=3),
    session=st.text(alphabet=IAM_CHARS + NOT_IAM, min_size=1, max_size=140),
    account=st.sampled_from(["111122223333", "11112222333", "1111222233334", "11112222333x"]),
)
def test_names_at_and_past_iams_limits_are_believed_exactly_when_iam_would_issue_them(
    name: str, path: list[str], session: str, account: str
) -> None:
    """Role names (1-64 of IAM's characters), paths, session names (2-64 for AssumeRole; Identity Center
    writes user names, up to 128) and 12-digit accounts: a record is believed exactly when IAM could have
    issued what it names, and a record that is not believed is refused, whatever else it says."""
    event = _event()
    identity = event["detail"]["userIdentity"]
    issuer = identity["sessionContext"]["sessionIssuer"]
    role_path = "/" + "".join(f"{p}/" for p in path)
    identity["arn"] = f"arn:aws:sts::{account}:assumed-role/{name}/{session}"
    identity["principalId"] = f"{issuer['principalId']}:{session}"
    identity["accountId"] = issuer["accountId"] = event["account"] = event["detail"]["recipientAccountId"] = (
        account
    )
    issuer["arn"] = f"arn:aws:iam::{account}:role{role_path}{name}"
    issuer["userName"] = name
    valid_name = len(name) <= 64 and all(c in IAM_CHARS for c in name)
    valid_session = 2 <= len(session) <= 128 and all(c in IAM_CHARS for c in session)
    valid_account = len(account) == 12 and account.isdigit()
    believed = forgery(parse_event(event)) is None
    assert believed is (valid_name and valid_session and valid_account)
