"""template.yaml: lint-clean, routing generated from the catalogue, and every sample routed as intended."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import boto3
import pytest
import yaml
from moto import mock_aws

from guardrail.detect.catalogue import default_catalogue
from guardrail.detect.routing import PATTERN_SIZE_LIMIT, _compact, all_patterns
from guardrail.model import Category
from tests.conftest import EVENTS, ROOT
from tests.eventbridge import envelope, router

TEMPLATE = ROOT / "template.yaml"


class _CfnLoader(yaml.SafeLoader):
    """Reads CloudFormation short-form tags (!Ref, !GetAtt ...) as plain data."""


def _tag(loader: yaml.SafeLoader, suffix: str, node: yaml.Node) -> Any:
    if isinstance(node, yaml.ScalarNode):
        return {suffix: loader.construct_scalar(node)}
    if isinstance(node, yaml.SequenceNode):
        return {suffix: loader.construct_sequence(node, deep=True)}
    return {suffix: loader.construct_mapping(node, deep=True)}  # type: ignore[arg-type]


_CfnLoader.add_multi_constructor("!", _tag)


@pytest.fixture(scope="module")
def template() -> dict[str, Any]:
    data: dict[str, Any] = yaml.load(TEMPLATE.read_text(), Loader=_CfnLoader)  # noqa: S506
    return data


def _rule_patterns(template: dict[str, Any]) -> dict[str, dict[str, Any]]:
    found = {}
    for resource in template["Resources"].values():
        for name, event in resource.get("Properties", {}).get("Events", {}).items():
            if event["Type"] == "EventBridgeRule":
                found[name] = event["Properties"]["Pattern"]
    return found


def test_cfn_lint_is_clean() -> None:
    from cfnlint.api import lint_file  # noqa: PLC0415

    matches = lint_file(TEMPLATE)
    assert [str(m) for m in matches] == []


def test_template_patterns_are_the_generated_ones(template: dict[str, Any]) -> None:
    generated = all_patterns(default_catalogue())
    in_template = _rule_patterns(template)
    assert set(in_template) == set(generated), "every generated pattern is one rule in template.yaml"
    for name, pattern in in_template.items():
        assert pattern == generated[name], f"{name}: run `make patterns`"


def test_patterns_fit_eventbridge_limit() -> None:
    for pattern in all_patterns(default_catalogue()).values():
        assert len(_compact(pattern)) <= PATTERN_SIZE_LIMIT


def test_template_sets_only_settings_the_code_reads(template: dict[str, Any]) -> None:
    source = (ROOT / "layers" / "guardrail" / "guardrail" / "settings.py").read_text()
    variables = template["Resources"]["ResponderFunction"]["Properties"]["Environment"]["Variables"]
    for name in variables:
        if name.startswith("GUARDRAIL_"):
            assert f'"{name}"' in source, f"{name} is set by the template but never read"


def _samples(folder: str) -> list[Path]:
    return sorted((EVENTS / folder).glob("*.json"))


def _category(event: dict[str, Any]) -> Category:
    """What the classifier makes of it (anything but benign must be routed), with the default settings:
    production, the strictest environment."""
    from guardrail.detect.classifier import classify  # noqa: PLC0415
    from guardrail.detect.cloudtrail import parse_event  # noqa: PLC0415
    from guardrail.settings import Settings  # noqa: PLC0415

    return classify(parse_event(event), Settings.from_env({})).category


# The benign samples that the default routing carries on purpose, written out: CreateTags (ec2's
# Lifecycle-tag rule looks through an array, which routing cannot, so the name is routed) and Lambda's
# UpdateFunctionCode (the own-function rule compares with the deployed name prefix, routed by name).
ROUTED_BY_NAME = {"benign/ec2-create-tags-owner.json", "benign/lambda-update-code.json"}


def _routed_by_name(event: dict[str, Any]) -> bool:
    return any(json.loads((EVENTS / p).read_text()) == event for p in ROUTED_BY_NAME)


@mock_aws
def test_every_flagged_sample_is_routed_and_no_benign_one_is(template: dict[str, Any]) -> None:
    from guardrail.detect.routing import OPTIONAL_RULES  # noqa: PLC0415

    patterns = _rule_patterns(template)  # the template's own patterns, as deployed
    routed = router({n: p for n, p in patterns.items() if n not in OPTIONAL_RULES})  # on by default
    routed_writes = router({"AgentWrites": patterns["AgentWrites"]})  # on with RouteAgentWrites
    benign_not_routed = writes = 0
    for path in sorted(EVENTS.rglob("*.json")):
        event = json.loads(path.read_text())
        where = path.relative_to(EVENTS)
        category = _category(event)
        if category is Category.WRITE:
            # Writes no rule flags reach the responder only through the optional AgentWrites route.
            assert routed_writes(event), f"{where}: an agent's write, not routed by AgentWrites"
            writes += 1
            # and the default routes carry it only where the generator routes that call by name
            assert routed(event) is _routed_by_name(event), f"{where}: routing does not follow the request"
            benign_not_routed += not _routed_by_name(event)
        elif category is not Category.BENIGN:
            assert routed(event), f"{where}: flagged by the classifier but never routed"
        elif path.parent.name == "benign":
            # A benign call is routed only where the generator routes that call by name on purpose.
            assert routed(event) is _routed_by_name(event), f"{where}: routing does not follow the request"
            benign_not_routed += not _routed_by_name(event)
    assert benign_not_routed >= 5  # routine creates, deploys, versioning on, protection on
    assert writes >= 5
    read = json.loads((EVENTS / "benign" / "s3-list-buckets.json").read_text())
    assert not routed_writes(read), "AgentWrites routes writes only"


@mock_aws
def test_every_flagged_real_record_is_routed_and_no_read_by_a_human(template: dict[str, Any]) -> None:
    """The real records under tests/data/cloudtrail, through the template's own patterns: anything the
    classifier flags reaches the responder; a human's read-only call never does."""
    from guardrail.detect.classifier import classify  # noqa: PLC0415
    from guardrail.detect.cloudtrail import parse_event  # noqa: PLC0415
    from guardrail.detect.routing import OPTIONAL_RULES  # noqa: PLC0415
    from guardrail.settings import Settings  # noqa: PLC0415

    patterns = _rule_patterns(template)
    routed = router({n: p for n, p in patterns.items() if n not in OPTIONAL_RULES})
    flagged = reads = 0
    data = ROOT / "tests" / "data" / "cloudtrail"
    for path in sorted(data.glob("*.jsonl")):
        for number, line in enumerate(path.read_text().splitlines(), start=1):
            event = envelope(json.loads(line), number)
            verdict = classify(parse_event(event), Settings.from_env({}))
            where = f"{path.name}:{number}"
            if verdict.category is not Category.BENIGN:
                assert routed(event), f"{where}: {verdict.category} but never routed"
                flagged += 1
            elif event["detail"].get("readOnly") is True:
                assert not routed(event), f"{where}: a read-only call by a human was routed"
                reads += 1
    assert flagged >= 150
    assert reads >= 75


@mock_aws
def test_parameter_level_routing_follows_the_request(template: dict[str, Any]) -> None:
    from guardrail.detect.routing import OPTIONAL_RULES  # noqa: PLC0415

    routed = router({n: p for n, p in _rule_patterns(template).items() if n not in OPTIONAL_RULES})
    event = json.loads((EVENTS / "rules" / "s3.versioning-suspended.json").read_text())
    assert routed(event)
    for status, expected in (("Enabled", False), ("suspended", True), ("Disabled", True)):
        event["detail"]["eventID"] = f"id-{status}"
        event["detail"]["requestParameters"]["VersioningConfiguration"]["Status"] = status
        assert routed(event) is expected, status
    tags = json.loads((EVENTS / "rules" / "ec2.lifecycle-tag-changed.json").read_text())
    tags["detail"]["eventID"] = "id-owner-and-lifecycle"
    tags["detail"]["requestParameters"]["tagSet"]["items"] = [
        {"key": "Owner", "value": "x"},
        {"key": "lifecycle", "value": "y"},
    ]
    assert routed(tags)  # one element of the list is enough, whatever its case


def test_sam_local_env_file_names_the_function_and_only_known_settings(template: dict[str, Any]) -> None:
    env = json.loads((ROOT / "functions" / "responder" / "local-env.json").read_text())
    assert set(env) == {"ResponderFunction"}
    assert "ResponderFunction" in template["Resources"]
    declared = template["Resources"]["ResponderFunction"]["Properties"]["Environment"]["Variables"]
    for name in env["ResponderFunction"]:
        if name.startswith("GUARDRAIL_"):
            assert name in declared, f"{name} is in local-env.json but not in the template"
    assert env["ResponderFunction"]["GUARDRAIL_DRY_RUN"] == "true"  # a local invoke never contains anyone


def _statements(template: dict[str, Any], function: str) -> list[dict[str, Any]]:
    """A function's policy statements, conditional ones (Fn::If) as when their condition holds."""
    statements = []
    for policy in template["Resources"][function]["Properties"].get("Policies", []):
        if isinstance(policy, dict) and "Statement" in policy:
            for statement in policy["Statement"]:
                if "If" in statement:  # !If [condition, statement, !Ref AWS::NoValue]
                    statement = statement["If"][1]
                statements.append(statement)
    return statements


def _allowed(template: dict[str, Any], function: str, prefix: str) -> set[str]:
    return {
        action
        for s in _statements(template, function)
        if s["Effect"] == "Allow"
        for action in (s["Action"] if isinstance(s["Action"], list) else [s["Action"]])
        if action.startswith(prefix)
    }


def test_iam_permissions_are_exactly_what_the_actions_declare(template: dict[str, Any]) -> None:
    from guardrail.respond.containment import containment_permissions, release_permissions  # noqa: PLC0415

    assert _allowed(template, "ResponderFunction", "iam:") == containment_permissions()
    assert _allowed(template, "ReleaseFunction", "iam:") == release_permissions()


def test_table_permissions_are_exactly_what_the_store_declares(template: dict[str, Any]) -> None:
    from guardrail.respond.state.table import RELEASE_TABLE_PERMISSIONS, RESPONDER_TABLE_PERMISSIONS  # noqa: PLC0415

    assert _allowed(template, "ResponderFunction", "dynamodb:") == set(RESPONDER_TABLE_PERMISSIONS)
    assert _allowed(template, "ReleaseFunction", "dynamodb:") == set(RELEASE_TABLE_PERMISSIONS)


def test_lookup_permissions_are_exactly_what_the_lookups_declare(template: dict[str, Any]) -> None:
    from guardrail.detect.lifecycle import LIFECYCLE_PERMISSIONS  # noqa: PLC0415

    assert _allowed(template, "ResponderFunction", "ec2:") == set(LIFECYCLE_PERMISSIONS)
    assert _allowed(template, "ReleaseFunction", "ec2:") == set()


@pytest.mark.parametrize("function", ["ResponderFunction", "ReleaseFunction", "SlackNotifierFunction"])
def test_no_write_on_every_resource_and_iam_writes_only_on_agents(
    template: dict[str, Any], function: str
) -> None:
    from guardrail.detect.lifecycle import LIFECYCLE_PERMISSIONS  # noqa: PLC0415
    from guardrail.respond.investigate import LOOKUP_PERMISSIONS  # noqa: PLC0415
    from guardrail.respond.organizations import DIRECTORY_PERMISSIONS, MEMBER_PERMISSIONS  # noqa: PLC0415

    for statement in _statements(template, function):
        if (
            set(statement.get("Action", [])) & set(DIRECTORY_PERMISSIONS)
            or statement.get("Action") in MEMBER_PERMISSIONS
        ):
            # Central mode: the organization's accounts, and only the member containment role by name; or
            # the one role the operator named in Identity Center's administration account.
            assert (
                "${MemberRoleName}" in json.dumps(statement["Resource"])
                or "organizations::" in json.dumps(statement["Resource"])
                or statement["Resource"] == {"Ref": "IdentityCenterAdminRoleArn"}
            )
            continue
        actions = statement["Action"] if isinstance(statement["Action"], list) else [statement["Action"]]
        if statement["Resource"] == "*":
            # Only the lookups, which are reads without resource-level permissions.
            assert set(actions) <= set(LIFECYCLE_PERMISSIONS) | set(LOOKUP_PERMISSIONS), (
                f"{function}: {statement.get('Sid')} on every resource"
            )
        if statement["Effect"] == "Allow" and any(a.startswith("iam:") for a in actions):
            # Role and user ARNs built from the agent name parameters, nothing else.
            rendered = json.dumps(statement["Resource"])
            assert (
                "AgentRoleNames" in rendered
                or "AgentUserNames" in rendered
                or rendered == '"arn:aws:iam::*:policy/guardrail/GuardrailIdentityCenterDeny"'
            ), statement.get("Sid")


def test_responder_is_denied_iam_on_its_own_stack(template: dict[str, Any]) -> None:
    denies = [s for s in _statements(template, "ResponderFunction") if s["Effect"] == "Deny"]
    assert any(s["Action"] == "iam:*" and "${AWS::StackName}-*" in json.dumps(s["Resource"]) for s in denies)


def test_agent_principals_setting_is_built_from_the_same_names(template: dict[str, Any]) -> None:
    variables = template["Resources"]["ResponderFunction"]["Properties"]["Environment"]["Variables"]
    rendered = json.dumps(variables["GUARDRAIL_AGENT_PRINCIPALS"])
    assert "AgentRoleNames" in rendered
    assert "AgentUserNames" in rendered
    assert "assumed-role" in rendered


def test_notification_permissions_are_exactly_what_the_code_declares(template: dict[str, Any]) -> None:
    from guardrail.report.message import PUBLISH_PERMISSIONS  # noqa: PLC0415
    from guardrail.report.slack_delivery import NOTIFIER_PERMISSIONS  # noqa: PLC0415

    for function in ("ResponderFunction", "ReleaseFunction"):
        assert _allowed(template, function, "sns:") | _allowed(template, function, "kms:") == set(
            PUBLISH_PERMISSIONS
        )
    notifier = {
        a
        for prefix in ("secretsmanager:", "dynamodb:", "sns:", "iam:")
        for a in _allowed(template, "SlackNotifierFunction", prefix)
    }
    assert notifier == set(NOTIFIER_PERMISSIONS)
    assert template["Resources"]["SlackNotifierFunction"]["Condition"] == "HasSlack"


def test_slack_actions_permissions_are_exactly_what_the_code_declares(template: dict[str, Any]) -> None:
    from guardrail.respond.interactions import ENDPOINT_PERMISSIONS  # noqa: PLC0415
    from guardrail.respond.people import WORKER_PERMISSIONS  # noqa: PLC0415

    endpoint = {
        a
        for statement in _statements(template, "SlackActionsFunction")
        for a in (statement["Action"] if isinstance(statement["Action"], list) else [statement["Action"]])
    }
    # The public function: its secret and the queue, nothing of IAM, the state or the topic.
    assert endpoint == set(ENDPOINT_PERMISSIONS)
    worker = {
        a
        for prefix in ("secretsmanager:", "sqs:", "lambda:")
        for a in _allowed(template, "ReleaseFunction", prefix)
    }
    assert worker == set(WORKER_PERMISSIONS)
    resources = template["Resources"]
    slack_parts = [
        "SlackActionsFunction", "SlackActionsUrl", "SlackActionsUrlPermission", "SlackActionsInvokePermission",
        "SlackActionsQueue", "SlackActionsQueuePolicy", "SlackActionsWork", "SlackActionsLogGroup",
    ]  # fmt: skip
    assert all(resources[name]["Condition"] == "HasSlackActions" for name in slack_parts)
    for statement in _statements(template, "ReleaseFunction"):
        if set(statement["Action"] if isinstance(statement["Action"], list) else [statement["Action"]]) & set(
            WORKER_PERMISSIONS
        ):
            assert statement["Resource"] in (
                {"Ref": "SlackSecretArn"},
                {"GetAtt": "SlackActionsQueue.Arn"},
                {"GetAtt": "ResponderFunction.Arn"},
            )


def test_the_slack_endpoint_is_the_only_public_url_and_is_bounded(template: dict[str, Any]) -> None:
    resources = template["Resources"]
    urls = {k: v for k, v in resources.items() if v["Type"] == "AWS::Lambda::Url"}
    assert list(urls) == ["SlackActionsUrl"]
    assert urls["SlackActionsUrl"]["Properties"]["AuthType"] == "NONE"
    public = {
        v["Properties"]["Action"]: v["Properties"]
        for v in resources.values()
        if v["Type"] == "AWS::Lambda::Permission" and v["Properties"].get("Principal") == "*"
    }
    # Since October 2025 a public function URL needs both; neither may open the function otherwise.
    assert public["lambda:InvokeFunctionUrl"]["FunctionUrlAuthType"] == "NONE"
    assert public["lambda:InvokeFunction"]["InvokedViaFunctionUrl"] is True
    assert {p["FunctionName"]["Ref"] for p in public.values()} == {"SlackActionsFunction"}
    function = resources["SlackActionsFunction"]["Properties"]
    assert function["ReservedConcurrentExecutions"] == {"Ref": "SlackActionsConcurrency"}
    assert function["Timeout"] <= 10
    work = resources["SlackActionsWork"]["Properties"]
    assert (work["BatchSize"], work["ScalingConfig"]["MaximumConcurrency"]) == (1, 2)
    assert work["FunctionResponseTypes"] == ["ReportBatchItemFailures"]
    queue = resources["SlackActionsQueue"]["Properties"]
    assert queue["RedrivePolicy"]["deadLetterTargetArn"] == {"GetAtt": "FailureQueue.Arn"}
    assert template["Outputs"]["SlackInteractivityUrl"]["Value"] == {"GetAtt": "SlackActionsUrl.FunctionUrl"}


def test_alarms_watch_real_metrics_and_notify_the_topic(template: dict[str, Any]) -> None:
    package = ROOT / "layers" / "guardrail" / "guardrail"
    source = "".join(path.read_text() for path in sorted(package.rglob("*.py")))
    alarms = {
        k: v["Properties"] for k, v in template["Resources"].items() if v["Type"] == "AWS::CloudWatch::Alarm"
    }
    assert {"ContainmentFailuresAlarm", "InvalidEventsAlarm", "ResponderErrorsAlarm", "ResponderThrottlesAlarm",
            "FailureQueueAlarm"} <= set(alarms)  # fmt: skip
    for name, alarm in alarms.items():
        assert alarm["AlarmActions"] == [{"Ref": "IncidentTopic"}], name
        if alarm["Namespace"] == "GuardrailResponder":
            assert f'name="{alarm["MetricName"]}"' in source, (
                f"{name}: the code never emits {alarm['MetricName']}"
            )
            assert alarm["Dimensions"] == [{"Name": "service", "Value": "guardrail-responder"}]


def test_read_only_denied_calls_are_a_switch(template: dict[str, Any]) -> None:
    denied = template["Resources"]["ResponderFunction"]["Properties"]["Events"]["AccessDenied"]["Properties"]
    assert denied["State"] == {
        "If": ["RoutesReadOnly", "ENABLED_WITH_ALL_CLOUDTRAIL_MANAGEMENT_EVENTS", "ENABLED"]
    }
    assert template["Parameters"]["RouteReadOnlyAccessDenied"]["Default"] == "false"


def test_reserved_concurrency_is_opt_in(template: dict[str, Any]) -> None:
    assert template["Parameters"]["ResponderReservedConcurrency"]["Default"] == 0


FORWARDER = ROOT / "forwarder.yaml"
MEMBER = ROOT / "member.yaml"


def test_forwarder_is_lint_clean_and_its_patterns_are_generated() -> None:
    from cfnlint.api import lint_file  # noqa: PLC0415

    from guardrail.detect.routing import GLOBAL_SOURCES, forwarder_patterns  # noqa: PLC0415

    assert [str(m) for m in lint_file(FORWARDER)] == []
    forwarder: dict[str, Any] = yaml.load(FORWARDER.read_text(), Loader=_CfnLoader)  # noqa: S506
    rules = {
        k: v["Properties"]["EventPattern"]
        for k, v in forwarder["Resources"].items()
        if v["Type"] == "AWS::Events::Rule"
    }
    assert rules == forwarder_patterns(default_catalogue()), (
        "run `guardrail patterns` and update forwarder.yaml"
    )
    for pattern in rules.values():
        detail = pattern["detail"]
        for entry in detail.get("$or", [detail]):
            assert set(entry["eventSource"]) <= set(GLOBAL_SOURCES)


@mock_aws
def test_forwarder_carries_global_service_samples_and_nothing_regional() -> None:
    from guardrail.detect.routing import GLOBAL_SOURCES, forwarder_patterns  # noqa: PLC0415

    events = boto3.client("events", region_name="us-east-1")
    sqs = boto3.client("sqs", region_name="us-east-1")
    url = sqs.create_queue(QueueName="forwarded")["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    for name, pattern in forwarder_patterns(default_catalogue()).items():
        events.put_rule(Name=name, EventPattern=json.dumps(pattern))
        events.put_targets(Rule=name, Targets=[{"Id": "q", "Arn": arn}])
    forwarded_any = False
    for path in sorted(EVENTS.rglob("*.json")):
        event = json.loads(path.read_text())
        events.put_events(
            Entries=[
                {
                    "Source": event["source"],
                    "DetailType": event["detail-type"],
                    "Detail": json.dumps(event["detail"]),
                }
            ]
        )
        received = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10).get("Messages", [])
        for message in received:
            sqs.delete_message(QueueUrl=url, ReceiptHandle=message["ReceiptHandle"])
        is_global = event["detail"].get("eventSource") in GLOBAL_SOURCES
        if is_global and _category(event) is not Category.BENIGN:
            assert received, path.name
        if not is_global:
            assert not received, path.name
        forwarded_any |= bool(received)
    assert forwarded_any


def test_patterns_write_is_idempotent() -> None:
    from guardrail.detect.routing import forwarder_rules, member_rules, rewrite, template_events  # noqa: PLC0415

    catalogue = default_catalogue()
    for path, block, indent in (
        (TEMPLATE, template_events(catalogue), 8),
        (FORWARDER, forwarder_rules(catalogue), 2),
        (MEMBER, member_rules(catalogue), 2),
    ):
        text = path.read_text()
        assert rewrite(text, block, indent) == text, f"{path.name} is not what `make patterns` writes"


def _joins(node: Any) -> Any:
    if isinstance(node, dict):
        for key, value in node.items():
            if key in ("Join", "Fn::Join"):
                yield value
            yield from _joins(value)
    elif isinstance(node, list):
        for item in node:
            yield from _joins(item)


@pytest.mark.parametrize("name", ["template.yaml", "forwarder.yaml", "member.yaml"])
def test_every_join_delimiter_is_a_literal(name: str) -> None:
    """CloudFormation refuses a function as Fn::Join's delimiter; cfn-lint does not catch it under SAM."""
    document = yaml.load((ROOT / name).read_text(), Loader=_CfnLoader)  # noqa: S506  (a loader for !Tags)
    for delimiter, _values in _joins(document):
        assert isinstance(delimiter, str), f"{name}: Fn::Join delimiter {delimiter!r}"


def test_organization_permissions_are_exactly_what_the_code_declares(template: dict[str, Any]) -> None:
    from guardrail.respond.organizations import DIRECTORY_PERMISSIONS, MEMBER_PERMISSIONS  # noqa: PLC0415

    assert _allowed(template, "ResponderFunction", "sts:") == set(MEMBER_PERMISSIONS)
    assert _allowed(template, "ResponderFunction", "organizations:") == set(DIRECTORY_PERMISSIONS)
    assert _allowed(template, "ReleaseFunction", "sts:") == set(MEMBER_PERMISSIONS)
    assert _allowed(template, "ReleaseFunction", "organizations:") == {"organizations:DescribeAccount"}
    bus_policy = template["Resources"]["CentralBusPolicy"]["Properties"]["Statement"]
    assert bus_policy["Condition"] == {"StringEquals": {"aws:PrincipalOrgID": {"Ref": "OrganizationId"}}}
    assert bus_policy["Action"] == "events:PutEvents"


def test_member_containment_role_trusts_only_the_central_roles_with_the_external_id() -> None:
    """moto does not evaluate trust policies, so the trust policy is held to its exact shape here."""
    from guardrail.detect.lifecycle import LIFECYCLE_PERMISSIONS  # noqa: PLC0415
    from guardrail.respond.containment import containment_permissions, release_permissions  # noqa: PLC0415

    member = yaml.load(MEMBER.read_text(), Loader=_CfnLoader)  # noqa: S506
    role = member["Resources"]["ContainmentRole"]["Properties"]
    (trust,) = role["AssumeRolePolicyDocument"]["Statement"]
    assert trust == {
        "Sid": "CentralResponderOnly",
        "Effect": "Allow",
        "Principal": {"AWS": {"Ref": "CentralRoleArns"}},
        "Action": "sts:AssumeRole",
        "Condition": {"StringEquals": {"sts:ExternalId": {"Ref": "ExternalId"}}},
    }
    assert member["Parameters"]["ExternalId"]["NoEcho"] is True
    assert member["Parameters"]["ExternalId"]["MinLength"] >= 16
    (policy,) = role["Policies"]
    allowed: set[str] = set()
    for statement in policy["PolicyDocument"]["Statement"]:
        actions = statement["Action"] if isinstance(statement["Action"], list) else [statement["Action"]]
        if statement["Effect"] == "Deny":
            assert actions == ["iam:*"]
            assert "${ContainmentRoleName}" in json.dumps(statement["Resource"])
            continue
        allowed |= set(actions)
        if statement["Resource"] == "*":
            assert set(actions) <= set(LIFECYCLE_PERMISSIONS)
        else:
            rendered = json.dumps(statement["Resource"])
            # Agent roles and users, or this account's prepared Identity Center policy.
            assert (
                "AgentRoleNames" in rendered
                or "AgentUserNames" in rendered
                or rendered.endswith(':policy/guardrail/GuardrailIdentityCenterDeny"}')
            ), rendered
    assert allowed == containment_permissions() | release_permissions() | set(LIFECYCLE_PERMISSIONS)


def test_member_forwards_exactly_the_responders_routing_to_the_central_bus() -> None:
    member = yaml.load(MEMBER.read_text(), Loader=_CfnLoader)  # noqa: S506
    rules = {k: v["Properties"] for k, v in member["Resources"].items() if v["Type"] == "AWS::Events::Rule"}
    assert {k: v["EventPattern"] for k, v in rules.items()} == all_patterns(default_catalogue())
    for rule in rules.values():
        (target,) = rule["Targets"]
        assert target["Arn"] == {"Ref": "CentralBusArn"}
        assert "DeadLetterConfig" in target


# --- the state, the topic and the queues are the responder's alone (issue 13) ---------------------------

STACK_ROLES = {"Sub": "arn:${AWS::Partition}:iam::${AWS::AccountId}:role/${AWS::StackName}-*"}
WRITES = {
    "dynamodb:PutItem",
    "dynamodb:UpdateItem",
    "dynamodb:DeleteItem",
    "dynamodb:BatchWriteItem",
    "dynamodb:PartiQLInsert",
    "dynamodb:PartiQLUpdate",
    "dynamodb:PartiQLDelete",
}


def _only_the_stack(condition: dict[str, Any]) -> None:
    """A Deny's condition admits exactly the stack's own roles, and the operators' when given."""
    writers = condition["ArnNotLike"]["aws:PrincipalArn"]["If"]
    assert writers[0] == "HasOperators"
    assert writers[2] == [STACK_ROLES]
    assert writers[1]["Split"][1]["Join"][1][0] == STACK_ROLES
    assert writers[1]["Split"][1]["Join"][1][1] == {"Join": [",", {"Ref": "OperatorRoleArns"}]}


def test_no_principal_but_the_stack_can_write_the_state_table(template: dict[str, Any]) -> None:
    (statement,) = template["Resources"]["StateTable"]["Properties"]["ResourcePolicy"]["PolicyDocument"][
        "Statement"
    ]
    assert (statement["Effect"], statement["Principal"], statement["Resource"]) == ("Deny", "*", "*")
    assert set(statement["Action"]) == WRITES  # a seeded lock (PutItem, UpdateItem, PartiQL...) is refused
    _only_the_stack(statement["Condition"])
    # Every write a function of the stack makes is one of those refused to everyone else.
    from guardrail.respond.state.table import RELEASE_TABLE_PERMISSIONS, RESPONDER_TABLE_PERMISSIONS  # noqa: PLC0415

    reads = {"dynamodb:BatchGetItem", "dynamodb:GetItem", "dynamodb:ConditionCheckItem", "dynamodb:Query"}
    assert set(RESPONDER_TABLE_PERMISSIONS) | set(RELEASE_TABLE_PERMISSIONS) - reads <= WRITES | reads


def test_the_stacks_functions_run_as_roles_named_after_the_stack(template: dict[str, Any]) -> None:
    # The resource policies admit "<stack name>-*" roles: SAM names each function's generated role so.
    functions = [r for r in template["Resources"].values() if r["Type"] == "AWS::Serverless::Function"]
    assert len(functions) >= 3
    assert all("Role" not in f["Properties"] for f in functions)


def test_only_the_responder_publishes_to_the_topic(template: dict[str, Any]) -> None:
    policy = template["Resources"]["IncidentTopicPolicy"]["Properties"]
    assert policy["Topics"] == [{"Ref": "IncidentTopic"}]
    allow, deny = policy["PolicyDocument"]["Statement"]
    assert (allow["Effect"], allow["Principal"], allow["Action"]) == (
        "Allow",
        {"Service": "cloudwatch.amazonaws.com"},
        "sns:Publish",
    )
    assert (deny["Effect"], deny["Principal"], deny["Action"]) == ("Deny", "*", "sns:Publish")
    assert deny["Condition"]["Bool"] == {"aws:PrincipalIsAWSService": "false"}
    _only_the_stack(deny["Condition"])


def test_nobody_else_sends_to_purges_or_empties_the_queues(template: dict[str, Any]) -> None:
    covered = set()
    for resource in template["Resources"].values():
        if resource["Type"] != "AWS::SQS::QueuePolicy":
            continue
        for statement in resource["Properties"]["PolicyDocument"]["Statement"]:
            if statement["Effect"] == "Deny":
                assert statement["Principal"] == "*"
                assert set(statement["Action"]) == {
                    "sqs:SendMessage",
                    "sqs:PurgeQueue",
                    "sqs:DeleteMessage",
                    "sqs:SetQueueAttributes",
                }
                _only_the_stack(statement["Condition"])
                covered.add(statement["Resource"]["GetAtt"].split(".")[0])  # !GetAtt Queue.Arn
    assert covered == {"QuarantineQueue", "FailureQueue", "SlackActionsQueue"}


def test_member_roles_are_assumed_only_inside_the_organization(template: dict[str, Any]) -> None:
    found = 0
    for function in ("ResponderFunction", "ReleaseFunction"):
        for statement in _statements(template, function):
            if (
                statement.get("Action") == "sts:AssumeRole"
                and statement.get("Sid") != "AssumeIdentityCenterAdminRole"
            ):
                assert statement["Condition"] == {
                    "StringEquals": {"aws:ResourceOrgID": {"Ref": "OrganizationId"}}
                }
                found += 1
    assert found == 2


def test_the_scheduled_check_holds_exactly_what_it_declares(template: dict[str, Any]) -> None:
    from guardrail.respond.check import CHECK_PERMISSIONS  # noqa: PLC0415
    from guardrail.respond.containment import containment_permissions  # noqa: PLC0415

    assert _allowed(template, "CheckerFunction", "iam:") == containment_permissions()
    reads = {
        a
        for prefix in ("events:", "cloudtrail:", "cloudwatch:")
        for a in _allowed(template, "CheckerFunction", prefix)
    }
    assert reads == {p for p in CHECK_PERMISSIONS if not p.startswith("dynamodb:")}
    assert {"dynamodb:Scan", "dynamodb:DeleteItem"} <= _allowed(template, "CheckerFunction", "dynamodb:")
    (schedule,) = template["Resources"]["CheckerFunction"]["Properties"]["Events"].values()
    assert schedule["Type"] == "ScheduleV2"
    assert schedule["Properties"]["ScheduleExpression"] == "rate(5 minutes)"
    alarms = template["Resources"]["CheckerFunction"]["Properties"]["Environment"]["Variables"][
        "GUARDRAIL_ALARM_NAMES"
    ]
    named = {a["Ref"] for a in alarms["Join"][1]}
    created = {k for k, v in template["Resources"].items() if v["Type"] == "AWS::CloudWatch::Alarm"}
    # Every alarm but the check's own two is checked for (those would report their own absence).
    assert named == created - {"DriftAlarm", "CheckerErrorsAlarm"}


def _conditional(template: dict[str, Any], function: str, sid: str) -> tuple[str, dict[str, Any]]:
    """A statement granted only under a condition: (the condition, the statement)."""
    for policy in template["Resources"][function]["Properties"].get("Policies", []):
        for statement in policy.get("Statement", []) if isinstance(policy, dict) else []:
            if "If" in statement and statement["If"][1].get("Sid") == sid:
                return statement["If"][0], statement["If"][1]
    raise AssertionError(f"{function} has no conditional statement {sid}")


def test_after_the_stop_permissions_are_exactly_what_the_code_declares(template: dict[str, Any]) -> None:
    from guardrail.respond.investigate import LOOKUP_PERMISSIONS  # noqa: PLC0415
    from guardrail.respond.undo import heal_permissions  # noqa: PLC0415

    condition, lookup = _conditional(template, "ResponderFunction", "ReadCloudTrailEventHistory")
    assert condition == "LooksUpCloudTrail"
    assert {lookup["Action"]} == set(LOOKUP_PERMISSIONS)
    healing: set[str] = set()
    for sid in ("TurnBackOnWhatAgentsTurnedOff", "ReEnableOwnRules"):
        condition, statement = _conditional(template, "ResponderFunction", sid)
        assert condition == "RestoresItself"  # nothing is granted while AutoRestore is empty (the default)
        actions = statement["Action"]
        healing |= set(actions if isinstance(actions, list) else [actions])
    assert healing == heal_permissions()
    _, own_rules = _conditional(template, "ResponderFunction", "ReEnableOwnRules")
    assert own_rules["Resource"] == {
        "Sub": "arn:${AWS::Partition}:events:*:${AWS::AccountId}:rule/${AWS::StackName}-*"
    }
    conditions = template["Conditions"]
    assert conditions["RestoresItself"] == {
        "Not": [
            {"Or": [{"Equals": [{"Ref": "AutoRestore"}, ""]}, {"Equals": [{"Ref": "AutoRestore"}, "none"]}]}
        ]
    }
    assert template["Parameters"]["AutoRestore"]["Default"] == ""


def test_auto_restore_parameter_accepts_exactly_the_kinds_the_settings_know(template: dict[str, Any]) -> None:
    import re  # noqa: PLC0415

    from guardrail.model import AutoRestore  # noqa: PLC0415
    from guardrail.settings import Settings  # noqa: PLC0415

    pattern = re.compile(template["Parameters"]["AutoRestore"]["AllowedPattern"])
    for value in ("", "none", "all", ",".join(AutoRestore), "trail-logging", "guardduty,bucket-versioning"):
        assert pattern.match(value), value
        Settings.from_env({"GUARDRAIL_AUTO_RESTORE": value})  # and the responder reads it
    for value in ("trail", "all,guardduty", "trail-logging,", "delete-everything"):
        assert not pattern.match(value), value


@pytest.mark.parametrize("name", ["template.yaml", "member.yaml"])
def test_every_account_carries_the_prepared_identity_center_policy(name: str) -> None:
    from guardrail.respond.containment import (  # noqa: PLC0415
        IDENTITY_CENTER_PATH,
        IDENTITY_CENTER_POLICY,
        identity_center_document,
    )

    document = yaml.load((ROOT / name).read_text(), Loader=_CfnLoader)  # noqa: S506
    policy = document["Resources"]["IdentityCenterDenyPolicy"]
    assert policy["Type"] == "AWS::IAM::ManagedPolicy"
    # IAM is global: once per account (a member stack in every region makes it in the role's region only).
    assert policy.get("Condition") == (None if name == "template.yaml" else "CreatesRole")
    properties = policy["Properties"]
    assert (properties["ManagedPolicyName"], properties["Path"]) == (
        IDENTITY_CENTER_POLICY,
        IDENTITY_CENTER_PATH,
    )
    assert properties["PolicyDocument"] == identity_center_document([])  # the inert placeholder


def test_the_identity_center_fallback_role_is_assumed_only_when_named(template: dict[str, Any]) -> None:
    for function in ("ResponderFunction", "ReleaseFunction"):
        condition, statement = _conditional(template, function, "AssumeIdentityCenterAdminRole")
        assert condition == "HasIdentityCenterAdmin"
        assert (statement["Action"], statement["Resource"]) == (
            "sts:AssumeRole",
            {"Ref": "IdentityCenterAdminRoleArn"},
        )
        variables = template["Resources"][function]["Properties"]["Environment"]["Variables"]
        assert variables["GUARDRAIL_IDENTITY_CENTER_ADMIN_ROLE_ARN"] == {"Ref": "IdentityCenterAdminRoleArn"}
    assert template["Parameters"]["IdentityCenterAdminRoleArn"]["Default"] == ""


def test_the_slack_app_manifest_asks_for_only_what_the_code_uses() -> None:
    manifest = yaml.safe_load((ROOT / "docs" / "slack-app-manifest.yaml").read_text())
    assert manifest["settings"]["interactivity"]["is_enabled"] is True
    assert manifest["settings"]["interactivity"]["request_url"].startswith("https://")
    # chat.postMessage, chat.update, chat.postEphemeral, views.open (no scope), usergroups.users.list.
    assert manifest["oauth_config"]["scopes"]["bot"] == ["chat:write", "usergroups:read"]
    assert "event_subscriptions" not in manifest["settings"]  # nothing is listened to but clicks
