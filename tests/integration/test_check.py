"""The scheduled check against moto (IAM enforced): containments put back with no event at all, and the
responder's own routing, trail and alarms checked for drift."""

from __future__ import annotations

import json
from typing import Any

import pytest

from guardrail.detect.catalogue import default_catalogue
from guardrail.detect.routing import OPTIONAL_RULES, all_patterns
from guardrail.respond.check import Deployment, check_all
from tests.integration.conftest import ACCOUNT, Responder, critical, denied, fresh_id

PREFIX = "guardrail-responder-"
RESPONDER_ARN = f"arn:aws:lambda:us-east-1:{ACCOUNT}:function:{PREFIX}ResponderFunction-AbC123"
ALARMS = (f"{PREFIX}ContainmentFailuresAlarm-X1", f"{PREFIX}InvalidEventsAlarm-X2")


@pytest.fixture
def deployed(responder: Responder) -> Deployment:
    """The stack's routing rules (the generated patterns, targeting the responder), a trail logging
    management events in every region, and its alarms: as `sam deploy` leaves them."""
    session = responder.aws.session()
    events = session.client("events")
    for name, pattern in all_patterns(default_catalogue()).items():
        if name in OPTIONAL_RULES:
            continue
        rule = f"{PREFIX}ResponderFunction{name}-AbC123"
        events.put_rule(Name=rule, EventPattern=json.dumps(pattern), State="ENABLED")
        events.put_targets(Rule=rule, Targets=[{"Id": "Responder", "Arn": RESPONDER_ARN}])
    session.client("s3").create_bucket(Bucket="org-trail")
    trail = session.client("cloudtrail")
    trail.create_trail(Name="org-trail", S3BucketName="org-trail", IsMultiRegionTrail=True)
    trail.start_logging(Name="org-trail")
    for alarm in ALARMS:
        session.client("cloudwatch").put_metric_alarm(
            AlarmName=alarm, MetricName="ContainmentFailures", Namespace="GuardrailResponder", Statistic="Sum",
            Period=60, EvaluationPeriods=1, Threshold=1, ComparisonOperator="GreaterThanOrEqualToThreshold",
        )  # fmt: skip
    return Deployment(RESPONDER_ARN, ALARMS, "us-east-1")


def test_as_deployed_nothing_is_reported(responder: Responder, deployed: Deployment) -> None:
    report = check_all(responder.runtime, deployed)
    assert report.summary() == {"containments_checked": 0, "restored": [], "drift": [], "errors": []}
    assert responder.aws.published() == []


def test_a_containment_removed_silently_is_put_back_with_no_event_at_all(
    responder: Responder, deployed: Deployment
) -> None:
    agent = responder.agent(critical())
    responder(critical(event_id=fresh_id()))
    responder.aws.published()
    responder.aws.session().client("iam").delete_role_policy(
        RoleName="AIAgentRole", PolicyName="GuardrailEmergencyDenyAll"
    )
    assert not denied(lambda: agent.client("s3").list_buckets())

    report = check_all(responder.runtime, deployed)

    assert report.containments == 1
    assert denied(lambda: agent.client("s3").list_buckets())
    (restored,) = report.restored
    assert restored["summary"] == (
        f"GuardrailEmergencyDenyAll was removed from arn:aws:iam::{ACCOUNT}:role/AIAgentRole: put back "
        "(found by the scheduled check)"
    )
    (message,) = responder.aws.published()
    assert (message["kind"], message["severity"], message["status"]) == ("restored", "critical", "contained")
    assert check_all(responder.runtime, deployed).restored == []  # in place now: nothing to do


def _drift(responder: Responder, deployed: Deployment) -> list[str]:
    report = check_all(responder.runtime, deployed)
    assert report.errors == []
    if report.drift:
        (message,) = responder.aws.published()
        assert (message["kind"], message["severity"]) == ("drift", "critical")
        assert message["counts"]["summary"] == "; ".join(report.drift)
    return report.drift


def test_a_disabled_or_retargeted_rule_is_drift(responder: Responder, deployed: Deployment) -> None:
    events = responder.aws.session().client("events")
    events.disable_rule(Name=f"{PREFIX}ResponderFunctionDestructiveCalls-AbC123")
    events.remove_targets(Rule=f"{PREFIX}ResponderFunctionAccessDenied-AbC123", Ids=["Responder"])
    assert _drift(responder, deployed) == [
        f"routing rule DestructiveCalls ({PREFIX}ResponderFunctionDestructiveCalls-AbC123) is disabled",
        f"routing rule AccessDenied ({PREFIX}ResponderFunctionAccessDenied-AbC123) no longer targets the responder",
    ]


def test_a_rewritten_pattern_is_drift(responder: Responder, deployed: Deployment) -> None:
    events = responder.aws.session().client("events")
    events.put_rule(
        Name=f"{PREFIX}ResponderFunctionRootActivity-AbC123",
        EventPattern=json.dumps({"source": ["nothing.ever"]}),
        State="ENABLED",
    )
    assert _drift(responder, deployed) == [
        "routing rule RootActivity is missing, or its pattern was rewritten"
    ]


def test_a_stopped_trail_and_a_deleted_alarm_are_drift(responder: Responder, deployed: Deployment) -> None:
    session = responder.aws.session()
    session.client("cloudtrail").stop_logging(Name="org-trail")
    session.client("cloudwatch").delete_alarms(AlarmNames=[ALARMS[0]])
    assert _drift(responder, deployed) == [
        "no trail logs management events in us-east-1: the responder sees nothing",
        f"alarm {ALARMS[0]} is missing",
    ]


def test_selectors_that_drop_management_writes_are_drift(responder: Responder, deployed: Deployment) -> None:
    responder.aws.session().client("cloudtrail").put_event_selectors(
        TrailName="org-trail", EventSelectors=[{"ReadWriteType": "ReadOnly", "IncludeManagementEvents": True}]
    )
    assert _drift(responder, deployed) == [
        "no trail logs management events in us-east-1: the responder sees nothing"
    ]


def test_what_could_not_be_checked_is_an_error_not_a_pass(responder: Responder, deployed: Deployment) -> None:
    class Broken:
        def __getattr__(self, name: str) -> Any:
            raise RuntimeError("cloudtrail unreachable")

    responder.runtime.aws._cache["cloudtrail"] = Broken()
    report = check_all(responder.runtime, deployed)
    assert report.errors == ["trail drift: could not check: cloudtrail unreachable"]


@pytest.mark.parametrize(
    ("selectors", "logs"),
    [
        ({"EventSelectors": [], "AdvancedEventSelectors": []}, True),  # CloudTrail's default
        ({"EventSelectors": [{"ReadWriteType": "WriteOnly", "IncludeManagementEvents": True}]}, True),
        ({"EventSelectors": [{"ReadWriteType": "All", "IncludeManagementEvents": False}]}, False),
        ({"AdvancedEventSelectors": [{"FieldSelectors": [{"Field": "eventCategory", "Equals": ["Management"]}]}]}, True),
        ({"AdvancedEventSelectors": [{"FieldSelectors": [
            {"Field": "eventCategory", "Equals": ["Management"]}, {"Field": "readOnly", "Equals": ["true"]}]}]}, False),
        ({"AdvancedEventSelectors": [{"FieldSelectors": [{"Field": "eventCategory", "Equals": ["Data"]}]}]}, False),
    ],
)  # fmt: skip
def test_which_selectors_log_management_writes(selectors: dict[str, Any], logs: bool) -> None:
    from guardrail.respond.check import _logs_management_writes  # noqa: PLC0415

    assert _logs_management_writes(selectors) is logs


def _seed_lock(responder: Responder) -> str:
    """What an agent with dynamodb:PutItem on the table would write to make itself immune (the table's own
    policy refuses it in AWS; moto does not evaluate table policies)."""
    key = f"arn:aws:iam::{ACCOUNT}:role/AIAgentRole"
    responder.aws.session().client("dynamodb").put_item(
        TableName=responder.runtime.settings.state_table,
        Item={
            "pk": {"S": f"PRINCIPAL#{key}"},
            "sk": {"S": "OPEN"},
            "incident_id": {"S": "GR-20261202T000000Z-deadbeef"},
            "status": {"S": "contained"},
            "opened_at": {"S": "2026-12-02T00:00:00.000000Z"},
            "summary_at": {"N": "0"},
        },
    )
    return key


def test_a_seeded_lock_is_removed_by_the_scheduled_check(responder: Responder, deployed: Deployment) -> None:
    key = _seed_lock(responder)
    assert _drift(responder, deployed) == [
        f"a forged lock on {key} names incident GR-20261202T000000Z-deadbeef, which does not exist: removed"
    ]
    assert responder.runtime.store.records.open_for(key) is None


def test_a_seeded_lock_gives_no_immunity_to_the_next_event(responder: Responder) -> None:
    agent = responder.agent(critical())
    key = _seed_lock(responder)

    summary = responder(critical(event_id=fresh_id()))

    assert summary["status"] == "contained"  # the lock went, and the event was decided afresh
    assert denied(lambda: agent.client("s3").list_buckets())
    assert responder.runtime.store.records.open_for(key).incident_id == summary["incident_id"]
