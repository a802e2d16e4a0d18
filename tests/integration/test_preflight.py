"""`guardrail preflight` against an account on moto: it lists the agents the deployed settings will watch,
finds what would leave the responder silently useless, and exits non-zero for it."""

from __future__ import annotations

import io
import json
from contextlib import redirect_stdout
from typing import Any

import boto3
import pytest
from moto import mock_aws

from guardrail.detect.catalogue import default_catalogue
from guardrail.detect.routing import OPTIONAL_RULES, all_patterns
from guardrail.operate.cli import main

STACK = "gr-test"
REGION = "us-east-1"
TRUST = json.dumps(
    {
        "Version": "2012-10-17",
        "Statement": [
            {"Effect": "Allow", "Principal": {"Service": "lambda.amazonaws.com"}, "Action": "sts:AssumeRole"}
        ],
    }
)
TEMPLATE = {
    "Resources": {
        "ResponderRole": {
            "Type": "AWS::IAM::Role",
            "Properties": {"AssumeRolePolicyDocument": json.loads(TRUST)},
        },
        "ResponderFunction": {
            "Type": "AWS::Lambda::Function",
            "Properties": {
                "Runtime": "python3.13",
                "Handler": "app.handler",
                "Role": {"Fn::GetAtt": ["ResponderRole", "Arn"]},
                "Code": {"ZipFile": "def handler(event, context):\n    return {}\n"},
                "Environment": {
                    "Variables": {
                        "GUARDRAIL_AGENT_PRINCIPALS": "arn:aws:iam::*:role/AIAgent*,arn:aws:iam::*:user/ai-agent*",
                        "GUARDRAIL_PROTECTED_PRINCIPALS": "arn:aws:iam::*:role/AIAgentBreakGlass",
                        "GUARDRAIL_OWN_NAME_PREFIX": f"{STACK}-",
                        "GUARDRAIL_ACCOUNT_ENVIRONMENTS": json.dumps({"222233334444": "staging"}),
                        "GUARDRAIL_DRY_RUN": "true",
                    }
                },
            },
        },
    }
}


def _run(*args: str) -> tuple[int, str]:
    out = io.StringIO()
    with redirect_stdout(out):
        status = main(["preflight", *args])
    return status, out.getvalue()


@pytest.fixture
def account() -> Any:
    with mock_aws():
        cloudformation = boto3.client("cloudformation", region_name=REGION)
        cloudformation.create_stack(
            StackName=STACK, TemplateBody=json.dumps(TEMPLATE), Capabilities=["CAPABILITY_IAM"]
        )
        iam = boto3.client("iam")
        for role in ("AIAgentRole", "AIAgentBreakGlass", "DeployPipeline"):
            iam.create_role(RoleName=role, AssumeRolePolicyDocument=TRUST)
        iam.create_role(RoleName="AIAgentTools", Path="/teams/", AssumeRolePolicyDocument=TRUST)
        iam.create_user(UserName="ai-agent-ci")
        iam.create_user(UserName="jane")
        boto3.client("s3", region_name=REGION).create_bucket(Bucket="trail-logs")
        trail = boto3.client("cloudtrail", region_name=REGION)
        trail.create_trail(Name="management", S3BucketName="trail-logs", IsMultiRegionTrail=True)
        trail.start_logging(Name="management")
        function = boto3.client("lambda", region_name=REGION).list_functions()["Functions"][0]["FunctionArn"]
        events = boto3.client("events", region_name=REGION)
        for name, pattern in all_patterns(default_catalogue()).items():
            if name in OPTIONAL_RULES:
                continue
            events.put_rule(Name=f"{STACK}-{name}-X1", EventPattern=json.dumps(pattern))
            events.put_targets(Rule=f"{STACK}-{name}-X1", Targets=[{"Id": "responder", "Arn": function}])
        yield {"events": events, "trail": trail, "iam": iam}


def test_it_lists_the_agents_it_will_watch_and_passes(account: Any) -> None:
    status, text = _run("--stack", STACK, "--json")
    report = json.loads(text)
    assert status == 0, report["findings"]
    assert sorted(a["arn"].split(":")[-1] for a in report["agents"]) == [
        "role/AIAgentRole",
        "user/ai-agent-ci",
    ]
    # a * never crosses a path: /teams/AIAgentTools is not matched by role/AIAgent*
    assert [a["arn"].split(":")[-1] for a in report["exempt"]] == ["role/AIAgentBreakGlass"]
    levels = {(f["check"], f["level"]) for f in report["findings"]}
    assert ("agents", "warning") in levels  # the overlap is flagged
    assert ("dry run", "warning") in levels
    assert ("trail", "ok") in levels
    assert ("routing", "ok") in levels
    environments = {e["account"]: e["environment"] for e in report["environments"]}
    assert environments == {"123456789012": "production", "222233334444": "staging"}
    assert "RouteAgentWrites" in text  # production watches writes the default routing does not carry


def test_no_agent_at_all_fails(account: Any) -> None:
    for role in ("AIAgentRole", "AIAgentBreakGlass"):
        account["iam"].delete_role(RoleName=role)
    account["iam"].delete_user(UserName="ai-agent-ci")
    status, text = _run("--stack", STACK)
    assert status == 1
    assert "ERROR    agents: no role or user in this account matches the agent patterns" in text
    assert "FAILED" in text


def test_a_stopped_trail_fails(account: Any) -> None:
    account["trail"].stop_logging(Name="management")
    status, text = _run("--stack", STACK)
    assert status == 1
    assert "ERROR    trail: no trail logs management events in us-east-1" in text


def test_a_disabled_routing_rule_fails(account: Any) -> None:
    account["events"].disable_rule(Name=f"{STACK}-GenericDestructiveCalls-X1")
    status, text = _run("--stack", STACK)
    assert status == 1
    assert "routing rule GenericDestructiveCalls" in text
    assert "is disabled" in text


def test_a_missing_stack_is_said_plainly(account: Any) -> None:
    assert main(["preflight", "--stack", "no-such-stack"]) == 2
