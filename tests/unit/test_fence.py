"""guardrail fence: valid IAM policy grammar, within the size limits, and covering every resource the
template creates (a new kind of resource in template.yaml fails here until the fence covers it)."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
import yaml

from guardrail.operate.cli import main
from guardrail.operate.fence import BOUNDARY_LIMIT, SCP_LIMIT, fence, size
from tests.conftest import ROOT
from tests.template.test_template import _CfnLoader

STACK = "guardrail-responder"
ACCOUNT = "111122223333"
_ACTION = re.compile(r"^(\*|[a-z0-9-]+:[A-Za-z0-9*]+)$")
_ARN = re.compile(r"^arn:aws:[a-z0-9-]+:[a-z0-9*-]*:(\d{12}|\*|aws)?:\S+$")
_OPERATORS = {"ArnEquals", "ArnLike", "ForAnyValue:StringLike", "StringEquals", "StringLike", "Bool"}


def _as_list(value: Any) -> list[str]:
    return value if isinstance(value, list) else [value]


def valid_policy(document: dict[str, Any], *, scp: bool = False) -> list[str]:
    """Problems with a policy's grammar, as IAM's and Organizations' validators would refuse it."""
    problems = []
    if set(document) != {"Version", "Statement"} or document["Version"] != "2012-10-17":
        problems.append("top level must be exactly Version 2012-10-17 and Statement")
    sids = [s.get("Sid") for s in document["Statement"]]
    if len(set(sids)) != len(sids):
        problems.append("Sids must be unique")
    for statement in document["Statement"]:
        allowed = {"Sid", "Effect", "Action", "NotAction", "Resource", "NotResource", "Condition"}
        if not set(statement) <= allowed:
            problems.append(f"{statement.get('Sid')}: unknown keys {set(statement) - allowed}")
        if "Principal" in statement or "NotPrincipal" in statement:
            problems.append(f"{statement.get('Sid')}: identity policies and SCPs take no Principal")
        if not re.fullmatch(r"[A-Za-z0-9]+", statement.get("Sid", "")):
            problems.append(f"{statement.get('Sid')}: a Sid is alphanumeric")
        if statement["Effect"] not in ("Allow", "Deny"):
            problems.append(f"{statement['Sid']}: Effect")
        for action in _as_list(statement.get("Action", [])):
            if not _ACTION.match(action):
                problems.append(f"{statement['Sid']}: action {action!r}")
        for resource in _as_list(statement.get("Resource", [])):
            if resource != "*" and not _ARN.match(resource):
                problems.append(f"{statement['Sid']}: resource {resource!r}")
        for operator in statement.get("Condition", {}):
            if operator not in _OPERATORS:
                problems.append(f"{statement['Sid']}: condition operator {operator!r}")
        if scp and statement["Effect"] == "Allow" and statement.get("Resource") != "*":
            problems.append(f"{statement['Sid']}: SCP Allow statements take Resource *")
    return problems


def _wildcard(pattern: str, value: str) -> bool:
    """IAM's wildcard matching: * any run of characters (slashes included), ? one character."""
    regex = "".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in pattern)
    return re.fullmatch(regex, value) is not None


def denies(
    document: dict[str, Any], action: str, resource: str, context: dict[str, str] | None = None
) -> bool:
    """Whether a Deny of the document applies to the request (the few condition operators the fence uses)."""
    for statement in document["Statement"]:
        if statement["Effect"] != "Deny":
            continue
        if not any(_wildcard(a, action) for a in _as_list(statement["Action"])):
            continue
        if not any(_wildcard(r, resource) for r in _as_list(statement["Resource"])):
            continue
        condition = statement.get("Condition", {})
        holds = True
        for _operator, tests in condition.items():
            for key, expected in tests.items():
                value = (context or {}).get(key)
                holds = holds and value is not None and any(_wildcard(e, value) for e in _as_list(expected))
        if holds:
            return True
    return False


# What each kind of resource template.yaml creates is, as an ARN, and one write that must be denied on it.
# A resource type missing here makes the coverage test fail: fence it, then add it.
COVERAGE: dict[str, tuple[str, str] | tuple[str, str, dict[str, str]]] = {
    "AWS::Serverless::Function": ("lambda:UpdateFunctionConfiguration", f"arn:aws:lambda:us-east-1:{ACCOUNT}:function:{STACK}-ResponderFunction-AbC123"),
    "AWS::Serverless::LayerVersion": ("lambda:DeleteLayerVersion", f"arn:aws:lambda:us-east-1:{ACCOUNT}:layer:{STACK}-guardrail:7"),
    "AWS::Events::Rule": ("events:DisableRule", f"arn:aws:events:us-east-1:{ACCOUNT}:rule/{STACK}-central/{STACK}-CentralEvents-AbC123"),
    "AWS::Events::EventBus": ("events:DeleteEventBus", f"arn:aws:events:us-east-1:{ACCOUNT}:event-bus/{STACK}-central"),
    "AWS::Events::EventBusPolicy": ("events:RemovePermission", f"arn:aws:events:us-east-1:{ACCOUNT}:event-bus/{STACK}-central"),
    "AWS::DynamoDB::Table": ("dynamodb:PutItem", f"arn:aws:dynamodb:us-east-1:{ACCOUNT}:table/{STACK}-StateTable-AbC123"),
    "AWS::SNS::Topic": ("sns:Publish", f"arn:aws:sns:us-east-1:{ACCOUNT}:{STACK}-IncidentTopic-AbC123"),
    "AWS::SNS::TopicPolicy": ("sns:SetTopicAttributes", f"arn:aws:sns:us-east-1:{ACCOUNT}:{STACK}-IncidentTopic-AbC123"),
    "AWS::SNS::Subscription": ("sns:Unsubscribe", f"arn:aws:sns:us-east-1:{ACCOUNT}:{STACK}-IncidentTopic-AbC123:0f1e2d3c"),
    "AWS::SQS::Queue": ("sqs:PurgeQueue", f"arn:aws:sqs:us-east-1:{ACCOUNT}:{STACK}-QuarantineQueue-AbC123"),
    "AWS::SQS::QueuePolicy": ("sqs:SetQueueAttributes", f"arn:aws:sqs:us-east-1:{ACCOUNT}:{STACK}-FailureQueue-AbC123"),
    "AWS::CloudWatch::Alarm": ("cloudwatch:DeleteAlarms", f"arn:aws:cloudwatch:us-east-1:{ACCOUNT}:alarm:{STACK}-ContainmentFailuresAlarm-AbC123"),
    "AWS::Logs::LogGroup": ("logs:DeleteLogGroup", f"arn:aws:logs:us-east-1:{ACCOUNT}:log-group:{STACK}-ResponderLogGroup-AbC123"),
    "AWS::KMS::Alias": ("kms:DeleteAlias", f"arn:aws:kms:us-east-1:{ACCOUNT}:alias/{STACK}-incidents"),
    # The key has no name of its own: its alias does.
    "AWS::KMS::Key": ("kms:ScheduleKeyDeletion", f"arn:aws:kms:us-east-1:{ACCOUNT}:key/0f1e2d3c-aaaa", {"kms:ResourceAliases": f"alias/{STACK}-incidents"}),
    "AWS::Lambda::Permission": ("lambda:RemovePermission", f"arn:aws:lambda:us-east-1:{ACCOUNT}:function:{STACK}-ResponderFunction-AbC123"),
    # The Slack actions endpoint and the queue's mapping to the release function (named by the function).
    "AWS::Lambda::Url": ("lambda:UpdateFunctionUrlConfig", f"arn:aws:lambda:us-east-1:{ACCOUNT}:function:{STACK}-SlackActionsFunction-AbC123"),
    "AWS::Lambda::EventSourceMapping": ("lambda:DeleteEventSourceMapping", f"arn:aws:lambda:us-east-1:{ACCOUNT}:event-source-mapping:0f1e2d3c-aaaa", {"lambda:FunctionArn": f"arn:aws:lambda:us-east-1:{ACCOUNT}:function:{STACK}-ReleaseFunction-AbC123"}),
    # The prepared Identity Center deny: a new default version would lift a user's containment.
    "AWS::IAM::ManagedPolicy": ("iam:CreatePolicyVersion", f"arn:aws:iam::{ACCOUNT}:policy/guardrail/GuardrailIdentityCenterDeny"),
}  # fmt: skip
# Created without a resource of its own in the template: each function's role (SAM), the generated rules
# (the responder's EventBridgeRule events), the stack.
IMPLIED = [
    ("iam:PutRolePolicy", f"arn:aws:iam::{ACCOUNT}:role/{STACK}-ResponderFunctionRole-AbC123"),
    ("iam:DeleteRole", f"arn:aws:iam::{ACCOUNT}:role/{STACK}-ReleaseFunctionRole-AbC123"),
    (
        "events:PutTargets",
        f"arn:aws:events:us-east-1:{ACCOUNT}:rule/{STACK}-ResponderFunctionDestructiveCalls-AbC123",
    ),
    ("scheduler:DeleteSchedule", f"arn:aws:scheduler:us-east-1:{ACCOUNT}:schedule/default/{STACK}-check"),
    # The Slack secret (named by the operator as docs/notifications.md asks): its signing secret forges clicks.
    (
        "secretsmanager:GetSecretValue",
        f"arn:aws:secretsmanager:us-east-1:{ACCOUNT}:secret:guardrail/slack-AbCdEf",
    ),
    (
        "secretsmanager:PutSecretValue",
        f"arn:aws:secretsmanager:us-east-1:{ACCOUNT}:secret:{STACK}-slack-AbCdEf",
    ),
    ("cloudformation:DeleteStack", f"arn:aws:cloudformation:us-east-1:{ACCOUNT}:stack/{STACK}/0f1e2d3c-aaaa"),
]


@pytest.fixture(scope="module")
def boundary() -> dict[str, Any]:
    return fence(
        STACK, account=ACCOUNT, agent_roles=("AIAgent*", "agents/AIAgent*"), agent_users=("ai-agent*",)
    )


@pytest.fixture(scope="module")
def scp() -> dict[str, Any]:
    return fence(STACK, form="scp", agent_roles=("AIAgent*", "**/AIAgent*"), agent_users=("ai-agent*",))


def test_both_forms_are_valid_policies_within_their_size_limits(
    boundary: dict[str, Any], scp: dict[str, Any]
) -> None:
    assert valid_policy(boundary) == []
    assert valid_policy(scp, scp=True) == []
    assert size(boundary) <= BOUNDARY_LIMIT
    assert size(scp) <= SCP_LIMIT
    many = fence(
        STACK,
        form="scp",
        agent_roles=tuple(f"team{i}/AIAgent*" for i in range(8)),
        agent_users=("ai-agent*",),
    )
    assert size(many) <= SCP_LIMIT  # eight role paths still fit


def test_the_boundary_takes_nothing_else_away(boundary: dict[str, Any]) -> None:
    assert boundary["Statement"][0] == {
        "Sid": "WhatTheirOwnPoliciesAllow",
        "Effect": "Allow",
        "Action": "*",
        "Resource": "*",
    }
    assert not denies(boundary, "s3:PutObject", "arn:aws:s3:::team-bucket/x")
    assert not denies(
        boundary, "lambda:UpdateFunctionCode", f"arn:aws:lambda:us-east-1:{ACCOUNT}:function:billing-api"
    )


def test_the_fence_covers_every_resource_the_template_creates(boundary: dict[str, Any]) -> None:
    template = yaml.load((ROOT / "template.yaml").read_text(), Loader=_CfnLoader)  # noqa: S506
    types = {r["Type"] for r in template["Resources"].values()}
    assert types - set(COVERAGE) == set(), "a new kind of resource: fence it, then add it to COVERAGE"
    for kind in sorted(types):
        action, arn, *context = COVERAGE[kind]
        assert denies(boundary, action, arn, *context), f"{kind}: {action} on {arn} is not fenced"
    for action, arn in IMPLIED:
        assert denies(boundary, action, arn), f"{action} on {arn} is not fenced"
    # The key has no stack name of its own: its alias does.
    key = f"arn:aws:kms:us-east-1:{ACCOUNT}:key/0f1e2d3c-aaaa"
    assert denies(
        boundary, "kms:ScheduleKeyDeletion", key, {"kms:ResourceAliases": f"alias/{STACK}-incidents"}
    )
    assert not denies(boundary, "kms:ScheduleKeyDeletion", key, {"kms:ResourceAliases": "alias/team-key"})


def test_the_agents_own_containment_cannot_be_undone_by_them(boundary: dict[str, Any]) -> None:
    for role in ("AIAgentRole", "agents/AIAgentX"):
        arn = f"arn:aws:iam::{ACCOUNT}:role/{role}"
        assert denies(boundary, "iam:DeleteRolePolicy", arn)
        assert denies(boundary, "iam:PutRolePolicy", arn)
    assert denies(boundary, "iam:UpdateAccessKey", f"arn:aws:iam::{ACCOUNT}:user/ai-agent-ci")
    aws_deny_all = {"iam:PolicyARN": "arn:aws:iam::aws:policy/AWSDenyAll"}
    assert denies(boundary, "iam:DetachUserPolicy", f"arn:aws:iam::{ACCOUNT}:user/anyone", aws_deny_all)
    assert denies(boundary, "cloudtrail:StopLogging", f"arn:aws:cloudtrail:us-east-1:{ACCOUNT}:trail/org")


def test_the_scp_applies_to_the_agents_only(scp: dict[str, Any]) -> None:
    table = f"arn:aws:dynamodb:us-east-1:{ACCOUNT}:table/{STACK}-StateTable-AbC123"
    agent = {"aws:PrincipalArn": f"arn:aws:iam::{ACCOUNT}:role/agents/AIAgentX"}
    human = {"aws:PrincipalArn": f"arn:aws:iam::{ACCOUNT}:role/PlatformEngineer"}
    assert denies(scp, "dynamodb:PutItem", table, agent)
    assert not denies(scp, "dynamodb:PutItem", table, human)
    assert all("aws:PrincipalArn" in s["Condition"]["ArnLike"] for s in scp["Statement"])
    with pytest.raises(ValueError, match="name the agents"):
        fence(STACK, form="scp")


def test_the_command_prints_the_policy(capsys: pytest.CaptureFixture[str]) -> None:
    assert (
        main(["fence", "--stack-name", "gr-prod", "--account", ACCOUNT, "--agent-roles", "AIAgent*,ci/Bot*"])
        == 0
    )
    printed = json.loads(capsys.readouterr().out)
    assert valid_policy(printed) == []
    assert denies(
        printed,
        "lambda:InvokeFunction",
        f"arn:aws:lambda:us-east-1:{ACCOUNT}:function:gr-prod-ReleaseFunction-X",
    )
    assert denies(printed, "iam:PutRolePolicy", f"arn:aws:iam::{ACCOUNT}:role/ci/BotOne")
