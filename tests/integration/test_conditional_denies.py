"""Conditional denies, proven by an evaluator that reads conditions (moto does not).

Each containment mode runs through the real handler on moto; the policies IAM then holds on the agent's
role are read back from IAM and handed, with the agent's own permissions, to the IAM policy simulator
(tests/simulator/oracle.py): a session issued before the containment must be refused, and what happens to a
session issued after it is exactly what the mode promises. Expectations are literal, not derived from the
code under test.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import unquote

import pytest

from tests.integration.conftest import ACCOUNT, Responder, critical, fresh_id
from tests.simulator import oracle

pytestmark = pytest.mark.skipif(oracle.available() is not None, reason=str(oracle.available()))

ROLE = "AIAgentRole"
SESSION_ARN = f"arn:aws:sts::{ACCOUNT}:assumed-role/{ROLE}/claude-code-session"


def _held_policies(responder: Responder) -> list[dict[str, Any]]:
    """Every policy IAM holds on the agent's role, as IAM returns it (inline and attached)."""
    iam = responder.aws.session().client("iam")
    policies = []
    for name in iam.list_role_policies(RoleName=ROLE)["PolicyNames"]:
        document = iam.get_role_policy(RoleName=ROLE, PolicyName=name)["PolicyDocument"]
        if isinstance(document, str):
            document = json.loads(unquote(document))
        policies.append({"name": name, "policy": document})
    for attached in iam.list_attached_role_policies(RoleName=ROLE)["AttachedPolicies"]:
        arn = attached["PolicyArn"]
        version = iam.get_policy(PolicyArn=arn)["Policy"]["DefaultVersionId"]
        document = iam.get_policy_version(PolicyArn=arn, VersionId=version)["PolicyVersion"]["Document"]
        if isinstance(document, str):
            document = json.loads(unquote(document))
        policies.append({"name": attached["PolicyName"], "policy": document})
    return policies


def _contained_with(make_responder: Any, mode: str) -> list[dict[str, Any]]:
    responder = make_responder({"GUARDRAIL_CONTAINMENT_ACTION": mode})
    event = critical(event_id=fresh_id())
    responder.agent(event)  # the agent's role exists, with its own allow-all permissions
    assert responder(event)["status"] == "contained"
    return _held_policies(responder)


def _decisions(policies: list[dict[str, Any]], issued: list[str]) -> list[str]:
    return oracle.decide(
        [
            {
                "principal": SESSION_ARN,
                "action": action,
                "resource": resource,
                "accountId": ACCOUNT,
                "context": {
                    "aws:TokenIssueTime": when,
                    "aws:userid": "AROAEXAMPLEAGENT01:claude-code-session",
                },
                "policies": policies,
            }
            for when in issued
            for action, resource in ACTIONS
        ]
    )


# A read, the destructive call itself, and the escape an agent would try: writing its own role's policy.
ACTIONS = (
    ("s3:ListAllMyBuckets", "*"),
    ("dynamodb:DeleteTable", f"arn:aws:dynamodb:eu-west-1:{ACCOUNT}:table/orders"),
    ("iam:PutRolePolicy", f"arn:aws:iam::{ACCOUNT}:role/{ROLE}"),
)
BEFORE = "2026-11-20T03:00:00Z"  # the agent's session, issued before the damaging call
# A session issued after the containment (which cuts off at the time it was written, rounded up to the
# minute): an hour from now.
AFTER = (datetime.now(UTC) + timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M:%SZ")


def test_the_oracle_itself_tells_allowed_from_denied() -> None:
    allow = {
        "name": "a",
        "policy": {
            "Version": "2012-10-17",
            "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}],
        },
    }
    deny_old = {
        "name": "d",
        "policy": {
            "Version": "2012-10-17",
            "Statement": [
                {
                    "Effect": "Deny",
                    "Action": "*",
                    "Resource": "*",
                    "Condition": {"DateLessThan": {"aws:TokenIssueTime": "2026-11-20T03:30:00Z"}},
                }
            ],
        },
    }
    assert _decisions([allow, deny_old], [BEFORE, AFTER]) == ["ExplicitlyDenied"] * 3 + ["Allowed"] * 3
    assert _decisions([], [BEFORE]) == ["ImplicitlyDenied"] * 3


def test_revoke_sessions_refuses_the_agents_session_and_lets_a_new_one_work(make_responder: Any) -> None:
    policies = _contained_with(make_responder, "revoke_sessions")
    assert {p["name"] for p in policies} == {"AgentPermissions", "GuardrailRevokeOlderSessions"}
    assert _decisions(policies, [BEFORE, AFTER]) == ["ExplicitlyDenied"] * 3 + ["Allowed"] * 3


def test_both_refuses_the_agents_session_and_any_new_one(make_responder: Any) -> None:
    policies = _contained_with(make_responder, "both")
    assert {p["name"] for p in policies} == {
        "AgentPermissions",
        "GuardrailEmergencyDenyAll",
        "GuardrailRevokeOlderSessions",
    }
    assert _decisions(policies, [BEFORE, AFTER]) == ["ExplicitlyDenied"] * 6


def test_deny_all_refuses_every_session(make_responder: Any) -> None:
    policies = _contained_with(make_responder, "deny_all")
    assert {p["name"] for p in policies} == {"AgentPermissions", "GuardrailEmergencyDenyAll"}
    assert _decisions(policies, [BEFORE, AFTER]) == ["ExplicitlyDenied"] * 6


def _fence_decisions(principal_arn: str, asks: list[tuple[str, str, dict[str, Any]]]) -> list[str]:
    from guardrail.operate.fence import fence  # noqa: PLC0415

    scp = fence(
        "guardrail-responder",
        form="scp",
        account=ACCOUNT,
        agent_roles=("AIAgent*",),
        agent_users=("ai-agent*",),
    )
    allow = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]}
    # The SCP's statements are all Deny: as identity statements they deny exactly as in an SCP.
    policies = [{"name": "allow", "policy": allow}, {"name": "fence", "policy": scp}]
    return oracle.decide(
        [
            {
                "principal": principal_arn,
                "action": action,
                "resource": resource,
                "accountId": ACCOUNT,
                "context": {"aws:PrincipalArn": principal_arn, **context},
                "policies": policies,
            }
            for action, resource, context in asks
        ]
    )


FENCE_ASKS: list[tuple[str, str, dict[str, Any]]] = [
    (
        "lambda:DeleteFunction",
        f"arn:aws:lambda:us-east-1:{ACCOUNT}:function:guardrail-responder-ResponderFunction-X1",
        {},
    ),
    (
        "iam:DetachRolePolicy",
        f"arn:aws:iam::{ACCOUNT}:role/AIAgentRole",
        {"iam:PolicyARN": "arn:aws:iam::aws:policy/AWSDenyAll"},
    ),
    (
        "iam:DetachRolePolicy",
        f"arn:aws:iam::{ACCOUNT}:role/AppRole",
        {"iam:PolicyARN": "arn:aws:iam::aws:policy/ReadOnlyAccess"},
    ),
    ("lambda:DeleteFunction", f"arn:aws:lambda:us-east-1:{ACCOUNT}:function:billing-api", {}),
]


def test_the_fence_denies_agents_the_responder_and_nobody_else() -> None:
    agent = f"arn:aws:iam::{ACCOUNT}:role/AIAgentRole"
    assert _fence_decisions(agent, FENCE_ASKS) == [
        "ExplicitlyDenied",  # the responder's function
        "ExplicitlyDenied",  # detaching AWSDenyAll, the containment's fallback
        "Allowed",  # another managed policy on another role: not the fence's business
        "Allowed",  # another stack's function
    ]
    human = f"arn:aws:iam::{ACCOUNT}:role/PlatformAdmin"
    assert _fence_decisions(human, FENCE_ASKS) == ["Allowed"] * 4  # the conditions scope it to agents
