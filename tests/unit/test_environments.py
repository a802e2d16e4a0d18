"""Environment policies as data, windows and escalation: pure, no AWS."""

from __future__ import annotations

import copy
import json
from datetime import UTC, datetime
from typing import Any

import pytest

from guardrail.detect.classifier import classify, escalate
from guardrail.detect.cloudtrail import parse_event
from guardrail.detect.lifecycle import ephemeral_instances, from_request
from guardrail.detect.windows import Bucket, reached, resources_of, tally_of
from guardrail.environments import Counter, load_policies
from guardrail.errors import ConfigurationError
from guardrail.model import Category, Decision, Environment, Severity
from guardrail.respond.containment import principal_key
from guardrail.settings import Settings
from tests.conftest import load_event

ACCOUNT = "111122223333"


def settings_in(environment: str, **env: str) -> Settings:
    return Settings.from_env({"GUARDRAIL_ACCOUNT_ENVIRONMENTS": json.dumps({ACCOUNT: environment}), **env})


def verdict(relative: str, settings: Settings, **detail: Any) -> Any:
    event = copy.deepcopy(load_event(relative))
    event["detail"].update(detail)
    return classify(parse_event(event), settings)


# --- the shipped policies, environment by environment ---------------------------------------------------


def test_every_environment_has_a_policy_and_unknown_accounts_are_production() -> None:
    policies = load_policies()
    assert set(policies.by_environment) == set(Environment)
    assert (
        verdict("rules/s3.bucket-deleted.json", Settings.from_env({})).environment is Environment.PRODUCTION
    )


@pytest.mark.parametrize(
    ("environment", "sample", "decision"),
    [
        # sandbox: destroy freely; escalation and tampering reported; logging/responder tampering contains
        ("sandbox", "rules/rds.instance-deleted-without-final-snapshot.json", Decision.IGNORE),
        ("sandbox", "access-denied/s3-delete-bucket-denied.json", Decision.IGNORE),
        ("sandbox", "rules/iam.admin-policy-attached.json", Decision.NOTIFY),
        ("sandbox", "rules/guardduty.detector-deleted.json", Decision.NOTIFY),
        ("sandbox", "rules/cloudtrail.logging-stopped.json", Decision.CONTAIN),
        ("sandbox", "rules/events.guardrail-rule-disabled.json", Decision.CONTAIN),
        ("sandbox", "benign/s3-create-bucket.json", Decision.IGNORE),
        # development: deletions reported (ephemeral ones allowed, see test_classifier), the rest by severity
        ("development", "rules/rds.instance-deleted-without-final-snapshot.json", Decision.NOTIFY),
        ("development", "rules/cloudtrail.logging-stopped.json", Decision.CONTAIN),
        ("development", "benign/s3-create-bucket.json", Decision.IGNORE),
        # staging: any successful destructive call contains, even a medium one
        ("staging", "rules/s3.bucket-policy-deleted.json", Decision.NOTIFY),  # tampering, medium
        ("staging", "rules/sqs.queue-deleted-or-purged.json", Decision.CONTAIN),
        ("staging", "benign/s3-create-bucket.json", Decision.IGNORE),
        # production: read-only agents
        ("production", "benign/s3-create-bucket.json", Decision.CONTAIN),
        ("production", "benign/s3-list-buckets.json", Decision.IGNORE),
        ("production", "rules/s3.bucket-policy-deleted.json", Decision.CONTAIN),
        ("production", "access-denied/s3-delete-bucket-denied.json", Decision.NOTIFY),
        ("production", "access-denied/iam-list-roles-denied.json", Decision.IGNORE),
    ],
)
def test_environment_decides(environment: str, sample: str, decision: Decision) -> None:
    assert verdict(sample, settings_in(environment)).decision is decision


def test_production_contains_a_failed_destruction_and_staging_does_not() -> None:
    failed = {"errorCode": "InvalidParameterCombination", "errorMessage": "deletion protection"}
    sample = "rules/rds.instance-deleted-without-final-snapshot.json"
    production = verdict(sample, settings_in("production"), **failed)
    assert production.decision is Decision.CONTAIN
    assert "a failed destructive call by an agent contains in production" in production.reason
    staging = verdict(sample, settings_in("staging"), **failed)
    assert staging.decision is Decision.CONTAIN  # high after the failure: by severity, still contained
    minor = verdict("rules/sqs.queue-deleted-or-purged.json", settings_in("staging"), **failed)
    assert minor.decision is not Decision.CONTAIN


def test_protected_principals_are_never_contained_by_a_policy() -> None:
    settings = settings_in("production", GUARDRAIL_PROTECTED_PRINCIPALS="arn:aws:iam::*:role/AIAgentRole")
    write = verdict("benign/s3-create-bucket.json", settings)
    assert write.decision is Decision.NOTIFY
    assert "GUARDRAIL_PROTECTED_PRINCIPALS" in write.reason


def test_non_agents_are_decided_as_everywhere() -> None:
    event = copy.deepcopy(load_event("benign/s3-create-bucket.json"))
    event["detail"]["userIdentity"]["arn"] = f"arn:aws:sts::{ACCOUNT}:assumed-role/Deployer/ci"
    event["detail"]["userIdentity"]["sessionContext"]["sessionIssuer"]["arn"] = (
        f"arn:aws:iam::{ACCOUNT}:role/Deployer"
    )
    event["detail"]["userIdentity"]["sessionContext"]["sessionIssuer"]["userName"] = "Deployer"
    result = classify(parse_event(event), settings_in("production"))
    assert (result.category, result.decision) == (Category.BENIGN, Decision.IGNORE)


# --- overrides and validation ------------------------------------------------------------------------------


def test_an_override_replaces_the_keys_it_names_and_keeps_the_others() -> None:
    policies = load_policies('{"development": {"thresholds": {}}, "production": {"writes": "medium"}}')
    assert policies[Environment.DEVELOPMENT].thresholds == ()
    assert policies[Environment.DEVELOPMENT].ephemeral.value == "allow"  # kept
    assert policies[Environment.PRODUCTION].writes is Severity.MEDIUM
    assert len(policies[Environment.PRODUCTION].thresholds) == 4  # kept


def test_yaml_overrides_work_too() -> None:
    yaml_override = "environments:\n  staging:\n    decide: {destructive: notify}\n"
    policies = load_policies(yaml_override)
    overridden = settings_in("staging", GUARDRAIL_ENVIRONMENT_POLICIES=yaml_override)
    assert verdict("rules/sqs.queue-deleted-or-purged.json", overridden).decision is Decision.NOTIFY
    rule = policies[Environment.STAGING].rule_for(Category.DESTRUCTIVE)
    assert rule.decision.value == "notify"


def test_every_problem_is_named_at_once() -> None:
    override = {
        "qa": {},
        "staging": {
            "decide": {"destructive": "maybe", "benign": "contain"},
            "thresholds": {
                "spike": {
                    "counts": "refusals",
                    "at": 0,
                    "minutes": 90,
                    "severity": "huge",
                    "decision": "ignore",
                },
                "partial": {"counts": "services"},
            },
            "ephemeral": "sometimes",
            "colour": "blue",
        },
    }
    with pytest.raises(ConfigurationError) as raised:
        Settings.from_env({"GUARDRAIL_ENVIRONMENT_POLICIES": json.dumps(override)})
    text = str(raised.value)
    for expected in (
        "GUARDRAIL_ENVIRONMENT_POLICIES",
        "'qa' is not one of sandbox, development, staging, production",
        "environments.staging: unknown key(s) ['colour']",
        "environments.staging.ephemeral: 'sometimes' is not one of allow, lower, none",
        "environments.staging.decide.destructive: 'maybe' is not one of",
        "benign is decided the same everywhere",
        "thresholds.spike.counts: 'refusals' is not one of",
        "thresholds.spike.at: 0 is not a positive whole number",
        "thresholds.spike.minutes: 90 is not a whole number of minutes from 1 to 60",
        "thresholds.spike.severity: 'huge' is not one of",
        "thresholds.spike.decision: a threshold notifies or contains",
        "thresholds.partial: missing ['at', 'decision', 'minutes', 'severity']",
    ):
        assert expected in text, expected


def test_unreadable_override_is_a_clear_error() -> None:
    with pytest.raises(ConfigurationError, match="not JSON or YAML"):
        load_policies("{not: [closed")
    with pytest.raises(ConfigurationError, match="distinct counts are kept up to 200"):
        load_policies(
            '{"production": {"thresholds": {"x": {"counts": "resources", "at": 500, "minutes": 5,'
            ' "severity": "high", "decision": "contain"}}}}'
        )


# --- windows ------------------------------------------------------------------------------------------------


def test_a_tally_counts_what_the_policy_watches() -> None:
    production = settings_in("production")
    refused = verdict("access-denied/s3-delete-bucket-denied.json", production)
    tally = tally_of(
        refused, production.policies[Environment.PRODUCTION], principal_key(refused.call.principal)
    )
    assert tally is not None
    assert (tally.access_denied, tally.destructive, tally.span) == (1, 0, 5)
    assert tally.minute == int(refused.call.event_time.timestamp()) // 60
    assert tally.services == ("s3.amazonaws.com",)
    deleted = verdict("rules/s3.bucket-deleted.json", production)
    tally = tally_of(deleted, production.policies[Environment.PRODUCTION], "k")
    assert tally is not None
    assert tally.destructive == 1
    assert tally.resources == resources_of(deleted) != ()
    # Nothing to count: a benign read, a non-agent, an environment without windows.
    read = verdict("benign/s3-list-buckets.json", production)
    assert tally_of(read, production.policies[Environment.PRODUCTION], "k") is None
    sandbox = settings_in("sandbox")
    assert (
        tally_of(verdict("rules/s3.bucket-deleted.json", sandbox), sandbox.policies[Environment.SANDBOX], "k")
        is None
    )


def test_resources_are_bounded_per_event() -> None:
    event = copy.deepcopy(load_event("rules/ec2.instances-terminated.json"))
    event["detail"]["requestParameters"] = {
        "instancesSet": {"items": [{"instanceId": f"i-{n:017x}" + "x" * 300} for n in range(100)]}
    }
    found = resources_of(classify(parse_event(event), settings_in("production")))
    assert len(found) == 20
    assert all(len(r) <= 160 for r in found)


def test_thresholds_count_only_their_window_and_only_the_events_that_add_to_them() -> None:
    production = settings_in("production")
    policy = production.policies[Environment.PRODUCTION]
    refused = verdict("access-denied/iam-list-roles-denied.json", production)
    tally = tally_of(refused, policy, "k")
    assert tally is not None
    m = tally.minute
    buckets = {m - 5: Bucket(access_denied=50), m - 4: Bucket(access_denied=4), m: Bucket(access_denied=5)}
    assert reached(policy, buckets, tally, include_tally=False) == ()  # 9 inside the window; m-5 is outside
    (hit,) = reached(policy, buckets, tally, include_tally=True)
    assert (hit.threshold.name, hit.count, hit.threshold.counts) == (
        "access_denied_spike",
        10,
        Counter.ACCESS_DENIED,
    )
    # A full destructive window is not this refusal's doing: it is not raised for it.
    assert reached(policy, {m: Bucket(destructive=99)}, tally, include_tally=True) == ()


def test_distinct_counts_union_across_minutes() -> None:
    production = settings_in("production")
    policy = production.policies[Environment.PRODUCTION]
    deleted = verdict("rules/s3.bucket-deleted.json", production)
    tally = tally_of(deleted, policy, "k")
    assert tally is not None
    m = tally.minute
    services = [f"svc{n}.amazonaws.com" for n in range(9)]
    buckets = {m - 1: Bucket(services=frozenset(services[:6])), m: Bucket(services=frozenset(services[3:]))}
    hits = {h.threshold.name: h.count for h in reached(policy, buckets, tally, include_tally=True)}
    assert hits == {"services_touched": 10}  # 9 distinct + s3


def test_escalation_raises_severity_and_decision_and_says_why() -> None:
    production = settings_in("production")
    policy = production.policies[Environment.PRODUCTION]
    refused = verdict("access-denied/iam-list-roles-denied.json", production)
    tally = tally_of(refused, policy, "k")
    assert tally is not None
    hits = reached(policy, {tally.minute: Bucket(access_denied=9)}, tally, include_tally=True)
    raised = escalate(refused, hits)
    assert (refused.severity, refused.decision) == (Severity.LOW, Decision.IGNORE)
    assert (raised.severity, raised.decision) == (Severity.HIGH, Decision.CONTAIN)
    assert raised.reason.startswith("access_denied_spike: 10 refused calls in 5 min (threshold 10): contain")
    assert raised.summary()["thresholds"][0]["count"] == 10
    protected = settings_in("production", GUARDRAIL_PROTECTED_PRINCIPALS="arn:aws:iam::*:role/AIAgent*")
    kept = escalate(verdict("access-denied/iam-list-roles-denied.json", protected), hits)
    assert kept.decision is Decision.NOTIFY


# --- the Lifecycle tag ----------------------------------------------------------------------------------------


def test_a_request_can_state_the_lifecycle_tag() -> None:
    event = load_event("rules/ec2.lifecycle-tag-changed.json")  # CreateTags Lifecycle=ephemeral
    assert from_request(parse_event(event)) is True
    event["detail"]["requestParameters"]["tagSet"]["items"][0]["value"] = "permanent"
    assert from_request(parse_event(event)) is False
    plain = parse_event(load_event("rules/s3.bucket-deleted.json"))
    assert from_request(plain) is None


class _Ec2:
    def __init__(self, reservations: list[dict[str, Any]] | Exception) -> None:
        self.answer = reservations

    def describe_instances(self, **_: Any) -> dict[str, Any]:
        if isinstance(self.answer, Exception):
            raise self.answer
        return {"Reservations": self.answer}


def _instance(instance_id: str, lifecycle: str | None) -> dict[str, Any]:
    tags = [{"Key": "Lifecycle", "Value": lifecycle}] if lifecycle else []
    return {"Instances": [{"InstanceId": instance_id, "Tags": tags}]}


def test_instances_are_ephemeral_only_when_every_one_is_known_and_tagged() -> None:
    assert ephemeral_instances(
        _Ec2([_instance("i-1", "ephemeral"), _instance("i-2", "Ephemeral")]), ["i-1", "i-2"]
    )
    assert (
        ephemeral_instances(_Ec2([_instance("i-1", "ephemeral"), _instance("i-2", None)]), ["i-1", "i-2"])
        is False
    )
    assert ephemeral_instances(_Ec2([_instance("i-1", "ephemeral")]), ["i-1", "i-2"]) is None  # i-2 gone
    assert ephemeral_instances(_Ec2(TimeoutError("slow")), ["i-1"]) is None


def test_event_time_decides_the_minute() -> None:
    production = settings_in("production")
    refused = verdict(
        "access-denied/iam-list-roles-denied.json", production, eventTime="2026-11-20T03:07:59Z"
    )
    tally = tally_of(refused, production.policies[Environment.PRODUCTION], "k")
    assert tally is not None
    assert tally.minute == int(datetime(2026, 11, 20, 3, 7, tzinfo=UTC).timestamp()) // 60
    assert tally.minutes == list(range(tally.minute - 4, tally.minute + 1))


def test_distinct_resources_reach_their_threshold() -> None:
    production = settings_in("production")
    policy = production.policies[Environment.PRODUCTION]
    deleted = verdict("rules/s3.bucket-deleted.json", production)
    tally = tally_of(deleted, policy, "k")
    assert tally is not None
    m = tally.minute
    earlier = frozenset(f"s3.amazonaws.com:bucket-{n}" for n in range(49))
    hits = {
        h.threshold.name: h.count
        for h in reached(policy, {m - 2: Bucket(resources=earlier)}, tally, include_tally=True)
    }
    assert hits == {"resources_touched": 50}
    # The same 49 again, in another minute, are still 49 distinct resources, not 98.
    again = {m - 2: Bucket(resources=earlier), m - 1: Bucket(resources=earlier)}
    assert reached(policy, again, tally, include_tally=False) == ()
