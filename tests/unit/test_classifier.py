"""Decisions: who may be contained, who is only reported, and how failures, roots and tags shift severity."""

from __future__ import annotations

from typing import Any

import pytest

from guardrail.detect.classifier import ROOT_NOTE, classify
from guardrail.detect.cloudtrail import parse_event
from guardrail.model import Category, Decision, Environment, PrincipalKind, Severity
from guardrail.settings import Settings
from tests.conftest import EVENTS, load_event


def verdict_of(relative: str, settings: Settings | None = None, **kwargs: Any) -> Any:
    return classify(parse_event(load_event(relative)), settings or Settings.from_env({}), **kwargs)


STAGING = Settings.from_env({"GUARDRAIL_ACCOUNT_ENVIRONMENTS": '{"111122223333": "staging"}'})
# The policies of the catalogue-only days: every category decided by GUARDRAIL_NOTIFY_AT / CONTAIN_AT.
BY_SEVERITY = '{"production": {"decide": {}, "writes": null}}'


@pytest.mark.parametrize("path", sorted(p.name for p in (EVENTS / "benign").glob("*.json")))
def test_benign_samples_are_ignored_where_writes_are_not_watched(path: str) -> None:
    verdict = verdict_of(f"benign/{path}", STAGING)
    assert (verdict.category, verdict.severity, verdict.decision) == (
        Category.BENIGN,
        Severity.INFO,
        Decision.IGNORE,
    )
    assert verdict.rule_ids == []


@pytest.mark.parametrize("path", sorted(p.name for p in (EVENTS / "benign").glob("*.json")))
def test_in_production_an_agent_write_is_high_and_a_read_is_ignored(path: str) -> None:
    verdict = verdict_of(f"benign/{path}")
    if verdict.call.read_only is not False:  # a read, or a console sign-in (no readOnly)
        assert (verdict.category, verdict.decision) == (Category.BENIGN, Decision.IGNORE)
    else:
        assert (verdict.category, verdict.severity, verdict.decision) == (
            Category.WRITE,
            Severity.HIGH,
            Decision.CONTAIN,
        )
        assert "a successful write by an agent in production" in verdict.reason


def test_critical_agent_call_is_contained() -> None:
    verdict = verdict_of("rules/rds.instance-deleted-without-final-snapshot.json")
    assert verdict.decision is Decision.CONTAIN
    assert verdict.is_agent
    assert not verdict.is_protected
    assert verdict.rule_ids == ["rds.instance-deleted-without-final-snapshot", "rds.instance-deleted"]
    assert "destructive call by an agent contains in production" in verdict.reason
    by_severity = verdict_of(
        "rules/rds.instance-deleted-without-final-snapshot.json",
        Settings.from_env({"GUARDRAIL_ENVIRONMENT_POLICIES": BY_SEVERITY}),
    )
    assert by_severity.decision is Decision.CONTAIN
    assert "GUARDRAIL_CONTAIN_AT=high" in by_severity.reason


def test_denied_attempt_at_a_flagged_call_is_reported_not_contained() -> None:
    verdict = verdict_of("access-denied/s3-delete-bucket-denied.json")
    assert verdict.category is Category.ACCESS_DENIED
    assert verdict.severity is Severity.MEDIUM
    assert verdict.decision is Decision.NOTIFY
    assert verdict.rule_ids == ["access.denied", "s3.bucket-deleted"]
    assert "refused attempt at: S3 bucket deleted" in verdict.reason


def test_denied_routine_call_is_low_and_ignored_by_default() -> None:
    verdict = verdict_of("access-denied/iam-list-roles-denied.json")
    assert (verdict.category, verdict.severity, verdict.decision) == (
        Category.ACCESS_DENIED,
        Severity.LOW,
        Decision.IGNORE,
    )


@pytest.mark.parametrize(
    "code",
    ["AccessDenied", "AccessDeniedException", "UnauthorizedOperation", "Client.UnauthorizedOperation",
     "UnauthorizedAccess"],
)  # fmt: skip
def test_any_authorization_failure_is_access_denied_whatever_the_call(code: str) -> None:
    event = load_event("rules/cloudtrail.logging-stopped.json")
    event["detail"]["errorCode"] = code
    verdict = classify(parse_event(event), Settings.from_env({}))
    assert verdict.category is Category.ACCESS_DENIED
    assert verdict.decision is not Decision.CONTAIN


def test_failed_destructive_call_is_still_reported_one_step_lower() -> None:
    verdict = verdict_of("failed/rds-delete-missing-instance.json")
    assert verdict.category is Category.DESTRUCTIVE
    assert verdict.severity is Severity.HIGH  # critical, lowered for DBInstanceNotFound
    assert "the call failed (DBInstanceNotFound)" in verdict.reason


def test_root_is_always_critical_and_never_contained() -> None:
    verdict = verdict_of("principals/root-delete-trail.json")
    assert verdict.call.principal.kind is PrincipalKind.ROOT
    assert (verdict.severity, verdict.decision) == (Severity.CRITICAL, Decision.NOTIFY)
    assert ROOT_NOTE in verdict.reason
    benign = load_event("benign/s3-create-bucket.json")
    benign["detail"]["userIdentity"] = load_event("principals/root-delete-trail.json")["detail"][
        "userIdentity"
    ]
    verdict = classify(parse_event(benign), Settings.from_env({}))
    assert (verdict.category, verdict.severity, verdict.decision) == (
        Category.ROOT_ACTIVITY,
        Severity.CRITICAL,
        Decision.NOTIFY,
    )


def test_non_agents_are_reported_at_critical_and_never_contained() -> None:
    critical = verdict_of("principals/human-delete-table.json")
    assert not critical.is_agent
    assert critical.decision is Decision.NOTIFY
    high = verdict_of(
        "rules/s3.bucket-deleted.json",
        Settings.from_env({"GUARDRAIL_AGENT_PRINCIPALS": "arn:aws:iam::*:role/Nobody"}),
    )
    assert high.decision is Decision.IGNORE
    assert "not a watched agent" in high.reason


def test_protected_principal_is_reported_never_contained() -> None:
    settings = Settings.from_env({"GUARDRAIL_PROTECTED_PRINCIPALS": "arn:aws:iam::*:role/AIAgentRole"})
    verdict = verdict_of("rules/dynamodb.table-deleted.json", settings)
    assert verdict.is_agent
    assert verdict.is_protected
    assert verdict.decision is Decision.NOTIFY
    assert "GUARDRAIL_PROTECTED_PRINCIPALS" in verdict.reason


def test_agent_matched_by_role_arn_behind_the_session() -> None:
    settings = Settings.from_env({"GUARDRAIL_AGENT_PRINCIPALS": "arn:aws:iam::111122223333:role/AIAgentRole"})
    verdict = verdict_of("rules/dynamodb.table-deleted.json", settings)
    assert verdict.is_agent
    assert verdict.decision is Decision.CONTAIN


def test_iam_user_agent_is_contained() -> None:
    verdict = verdict_of("principals/iam-user-terminate.json")
    assert verdict.call.principal.kind is PrincipalKind.USER
    assert verdict.decision is Decision.CONTAIN


def test_identity_center_role_is_recognised() -> None:
    settings = Settings.from_env(
        {"GUARDRAIL_AGENT_PRINCIPALS": "arn:aws:sts::*:assumed-role/AWSReservedSSO_AIAgent*/*"}
    )
    verdict = verdict_of("principals/identity-center-delete-table.json", settings)
    assert verdict.call.principal.kind is PrincipalKind.IDENTITY_CENTER
    assert verdict.is_agent
    assert verdict.decision is Decision.CONTAIN


@pytest.mark.parametrize(
    ("contain_at", "notify_at", "expected"),
    [
        ("critical", "medium", Decision.NOTIFY),
        ("high", "medium", Decision.CONTAIN),
        ("critical", "critical", Decision.IGNORE),
    ],
)
def test_thresholds(contain_at: str, notify_at: str, expected: Decision) -> None:
    settings = Settings.from_env(
        {
            "GUARDRAIL_CONTAIN_AT": contain_at,
            "GUARDRAIL_NOTIFY_AT": notify_at,
            "GUARDRAIL_ENVIRONMENT_POLICIES": BY_SEVERITY,
        }
    )
    assert verdict_of("rules/s3.bucket-deleted.json", settings).decision is expected  # a high-severity call


def test_ephemeral_deletes_follow_the_environment() -> None:
    development = Settings.from_env({"GUARDRAIL_ACCOUNT_ENVIRONMENTS": '{"111122223333": "development"}'})
    allowed = verdict_of("rules/s3.bucket-deleted.json", development, lifecycle=lambda _call: True)
    assert allowed.decision is Decision.IGNORE
    assert "agents may delete ephemeral resources in development" in allowed.reason
    # Not ephemeral, or not knowable: reported in development, and the reason says which.
    kept = verdict_of("rules/s3.bucket-deleted.json", development, lifecycle=lambda _call: False)
    assert (kept.severity, kept.decision) == (Severity.HIGH, Decision.NOTIFY)
    unknown = verdict_of("rules/s3.bucket-deleted.json", development, lifecycle=lambda _call: None)
    assert (unknown.severity, unknown.decision) == (Severity.HIGH, Decision.NOTIFY)
    assert "could not be known; treated as not ephemeral" in unknown.reason
    no_lookup = verdict_of("rules/s3.bucket-deleted.json", development)
    assert "could not be known" in no_lookup.reason

    lower = Settings.from_env(
        {"GUARDRAIL_ENVIRONMENT_POLICIES": '{"production": {"ephemeral": "lower", "decide": {}}}'}
    )
    lowered = verdict_of("rules/s3.bucket-deleted.json", lower, lifecycle=lambda _call: True)
    assert (lowered.severity, lowered.decision) == (Severity.MEDIUM, Decision.NOTIFY)
    assert "Lifecycle=ephemeral, so severity is lowered one step" in lowered.reason
    # Tampering is never discounted: retagging is how a resource becomes "ephemeral".
    tampering = verdict_of("rules/ec2.lifecycle-tag-changed.json", lower, lifecycle=lambda _call: True)
    assert tampering.severity is Severity.HIGH


def test_production_never_looks_at_the_lifecycle_tag() -> None:
    asked: list[object] = []
    verdict = verdict_of("rules/s3.bucket-deleted.json", lifecycle=lambda call: asked.append(call) or True)
    assert asked == []
    assert verdict.decision is Decision.CONTAIN
    assert "a Lifecycle tag is not considered in production" in verdict.reason


def test_environment_comes_from_the_account_and_defaults_to_production() -> None:
    settings = Settings.from_env({"GUARDRAIL_ACCOUNT_ENVIRONMENTS": '{"111122223333": "sandbox"}'})
    assert verdict_of("rules/s3.bucket-deleted.json", settings).environment is Environment.SANDBOX
    assert verdict_of("rules/s3.bucket-deleted.json").environment is Environment.PRODUCTION


def test_summary_has_the_documented_fields() -> None:
    summary = verdict_of("rules/s3.bucket-deleted.json").summary()
    assert {"event_id", "event_time", "event_source", "event_name", "principal", "account", "region", "category",
            "severity", "rule_ids", "decision", "reason"} <= set(summary)  # fmt: skip
    assert summary["principal"] == "arn:aws:sts::111122223333:assumed-role/AIAgentRole/claude-code-session"
    assert summary["event_time"].endswith("Z")


def test_every_sample_event_parses() -> None:
    paths = sorted(EVENTS.rglob("*.json"))
    assert len(paths) >= 130  # the rules' samples and the others: a glob that found nothing proves nothing
    for path in paths:
        event = load_event(str(path.relative_to(EVENTS)))
        call = parse_event(event)
        # the record's own id, or (where CloudTrail left it out) the envelope's
        assert call.event_id == event["detail"].get("eventID", event["id"]), path


def test_quiet_is_what_no_rule_flags_no_window_counts_and_root_did_not_make() -> None:
    """Verdict.is_quiet: the one test by which the handler stops and the backtest only counts."""
    assert verdict_of("benign/s3-list-buckets.json").is_quiet(Settings.from_env({}))
    # Ignored as classified, yet the access-denied window counts it: not quiet (the probe of its fence).
    denied = verdict_of("access-denied/iam-list-roles-denied.json")
    assert denied.decision is Decision.IGNORE
    assert not denied.is_quiet(Settings.from_env({}))
    assert not verdict_of("principals/root-console-login.json").is_quiet(Settings.from_env({}))
    assert not verdict_of("rules/dynamodb.table-deleted.json").is_quiet(Settings.from_env({}))
