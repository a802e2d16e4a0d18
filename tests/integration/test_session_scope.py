"""Session scope: one session of a shared role contained, the others left working; a containing call
from another session widens to the whole role. Through the real handler on moto (IAM enforced).

moto ignores conditions on Deny statements, so the per-session deny would refuse every session there: what
the deny really does is proven with the IAM policy simulator (tests/simulator/oracle.py) on the documents
IAM holds, and the policy documents are asserted literally. The widened deny-all has no condition: moto
proves that one.
"""

from __future__ import annotations

import copy
import json
from typing import Any
from urllib.parse import unquote

import pytest

from guardrail.operate.replay import agent_is_denied
from guardrail.respond.release import release
from tests.integration.conftest import ACCOUNT, Responder, critical, fresh_id
from tests.simulator import oracle

ROLE = "AIAgentRole"
ROLE_ID = "AROAEXAMPLEAGENT01"
SCOPE = {"GUARDRAIL_CONTAINMENT_SCOPE": "session"}
BEFORE = "2026-11-20T03:00:00Z"  # the sessions' issue time in the sample events (03:02:11Z) is after this
LATER = "2099-01-01T00:00:00Z"  # a session issued after the containment


def session_event(
    session: str, issued: str = "2026-11-20T03:02:11Z", source_identity: str | None = None
) -> dict[str, Any]:
    """The sample DeleteTable by another session of the shared role."""
    event = copy.deepcopy(critical(event_id=fresh_id()))
    identity = event["detail"]["userIdentity"]
    identity["arn"] = f"arn:aws:sts::{ACCOUNT}:assumed-role/{ROLE}/{session}"
    identity["principalId"] = f"{ROLE_ID}:{session}"
    identity["sessionContext"]["attributes"]["creationDate"] = issued
    if source_identity:
        identity["sessionContext"]["sourceIdentity"] = source_identity
    return event


def role_policies(responder: Responder) -> dict[str, dict[str, Any]]:
    iam = responder.aws.session().client("iam")
    found = {}
    for name in iam.list_role_policies(RoleName=ROLE)["PolicyNames"]:
        document = iam.get_role_policy(RoleName=ROLE, PolicyName=name)["PolicyDocument"]
        found[name] = json.loads(unquote(document)) if isinstance(document, str) else document
    return found


def decisions(policies: dict[str, dict[str, Any]], sessions: list[tuple[str, str, str | None]]) -> list[str]:
    """For each (session name, issue time, source identity): may it delete a table?"""
    return oracle.decide(
        [
            {
                "principal": f"arn:aws:sts::{ACCOUNT}:assumed-role/{ROLE}/{name}",
                "action": "dynamodb:DeleteTable",
                "resource": f"arn:aws:dynamodb:eu-west-1:{ACCOUNT}:table/orders",
                "accountId": ACCOUNT,
                "context": {
                    "aws:userid": f"{ROLE_ID}:{name}",
                    "aws:TokenIssueTime": issued,
                    **({"aws:SourceIdentity": source} if source else {}),
                },
                "policies": [{"name": n, "policy": p} for n, p in policies.items()],
            }
            for name, issued, source in sessions
        ]
    )


needs_oracle = pytest.mark.skipif(oracle.available() is not None, reason=str(oracle.available()))


@needs_oracle
def test_one_session_is_contained_and_the_roles_other_sessions_keep_working(make_responder: Any) -> None:
    responder = make_responder(SCOPE)
    first = session_event("claude-code-session")
    responder.agent(first)
    outcome = responder(first)
    assert outcome["status"] == "contained"
    assert any("Only session AROAEXAMPLEAGENT01:claude-code-session" in n for n in outcome["notes"])

    policies = role_policies(responder)
    assert set(policies) == {"AgentPermissions", "GuardrailDenySession"}
    (statement,) = policies["GuardrailDenySession"]["Statement"]
    assert statement["Effect"] == "Deny"
    assert statement["Action"] == "*"
    assert statement["Condition"]["StringEquals"] == {"aws:userid": "AROAEXAMPLEAGENT01:claude-code-session"}
    assert set(statement["Condition"]["DateLessThan"]) == {"aws:TokenIssueTime"}

    assert decisions(
        policies,
        [
            ("claude-code-session", BEFORE, None),  # the offending session
            ("ci-pipeline", BEFORE, None),  # another agent on the same role
            ("claude-code-session", LATER, None),  # the same name, issued after: the documented trade-off
        ],
    ) == ["ExplicitlyDenied", "Allowed", "Allowed"]

    # A late delivery of the contained session's own call joins; nothing widens.
    late = session_event("claude-code-session")
    assert responder(late)["status"] == "joined"
    assert set(role_policies(responder)) == {"AgentPermissions", "GuardrailDenySession"}


@needs_oracle
def test_a_source_identity_is_what_the_session_deny_names(make_responder: Any) -> None:
    responder = make_responder(SCOPE)
    event = session_event("any-name", source_identity="claude-code-jane")
    responder.agent(event)
    assert responder(event)["status"] == "contained"
    policies = role_policies(responder)
    (statement,) = policies["GuardrailDenySession"]["Statement"]
    assert statement["Condition"] == {"StringEquals": {"aws:SourceIdentity": "claude-code-jane"}}
    # The identity survives a new session name and a later issue time; other identities work.
    assert decisions(
        policies,
        [("renamed", LATER, "claude-code-jane"), ("ci-pipeline", BEFORE, "ci-bot")],
    ) == ["ExplicitlyDenied", "Allowed"]


@needs_oracle
def test_another_session_tripping_a_containing_rule_widens_to_the_whole_role(make_responder: Any) -> None:
    responder = make_responder(SCOPE)
    first = session_event("claude-code-session")
    agent = responder.agent(first)
    incident_id = responder(first)["incident_id"]
    assert decisions(role_policies(responder), [("renamed-session", LATER, None)]) == ["Allowed"]

    # The agent assumed the role again under a new name, and deleted another table.
    evasion = session_event("renamed-session", issued="2099-01-01T00:00:00Z")
    outcome = responder(evasion)

    assert outcome["status"] == "widened"
    assert outcome["incident_id"] == incident_id
    assert "containment widened to the whole role AIAgentRole" in outcome["notes"][0]
    policies = role_policies(responder)
    assert set(policies) == {"AgentPermissions", "GuardrailDenySession", "GuardrailEmergencyDenyAll"}
    assert decisions(policies, [("renamed-session", LATER, None), ("ci-pipeline", BEFORE, None)]) == [
        "ExplicitlyDenied",
        "ExplicitlyDenied",
    ]
    assert agent_is_denied(agent)  # an unconditional deny: moto enforces this one
    widened = [m for m in responder.aws.published() if m["kind"] == "widened"]
    assert len(widened) == 1
    assert widened[0]["severity"] == "critical"
    trail = [a["kind"] for a in responder.runtime.store.audit.trail(incident_id)]
    assert "widened" in trail

    # Release undoes both layers, and nothing else.
    release(
        f"arn:aws:iam::{ACCOUNT}:role/{ROLE}",
        "reviewed: the agent's task is fixed",
        "jane",
        responder.runtime,
    )
    assert set(role_policies(responder)) == {"AgentPermissions"}
    assert not agent_is_denied(agent)


def test_role_scope_stays_the_default(make_responder: Any) -> None:
    responder = make_responder()
    event = session_event("claude-code-session")
    responder.agent(event)
    assert responder(event)["status"] == "contained"
    assert set(role_policies(responder)) == {"AgentPermissions", "GuardrailEmergencyDenyAll"}


def test_the_replay_sample_shows_a_session_containment_widening(monkeypatch: pytest.MonkeyPatch) -> None:
    from guardrail.operate.replay import replay  # noqa: PLC0415
    from tests.conftest import EVENTS  # noqa: PLC0415

    monkeypatch.setenv("GUARDRAIL_CONTAINMENT_SCOPE", "session")
    first, second = replay([EVENTS / "sequences" / "shared-role-evasion.jsonl"])
    assert (first["status"], second["status"]) == ("contained", "widened")
    assert second["incident_id"] == first["incident_id"]
    assert "session AROAEXAMPLEAGENT01:claude-code-session (credentials issued before" in second["notes"][0]
    assert [n["subject"] for n in second["notifications"]] == [
        "[CRITICAL][CONTAINED][WIDENED] AIAgentRole: DeleteTable"
    ]
