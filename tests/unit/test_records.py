"""Every record CloudTrail delivers is read: API calls, console actions, console sign-ins, service events, and
any other detail-type; what CloudTrail leaves out is filled in and named, never a reason to refuse. And on
real records written by others, the classifier does what a person reading them would."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest

from guardrail.detect.catalogue import default_catalogue
from guardrail.detect.classifier import classify
from guardrail.detect.cloudtrail import parse_event, parse_line
from guardrail.errors import InvalidEventError
from guardrail.model import Category, Decision, PrincipalKind, RecordKind, Severity
from guardrail.operate.coverage import recall
from guardrail.settings import Settings
from tests.conftest import EVENTS, load_event

DATA = Path(__file__).resolve().parents[1] / "data" / "cloudtrail"
SETTINGS = Settings.from_env({})


def _verdict(event: object, settings: Settings = SETTINGS) -> Any:
    return classify(parse_event(event), settings)


def test_the_root_users_console_sign_in_is_critical() -> None:
    verdict = _verdict(load_event("principals/root-console-login.json"))
    assert verdict.call.kind is RecordKind.SIGN_IN
    assert (verdict.category, verdict.severity, verdict.decision) == (
        Category.ROOT_ACTIVITY,
        Severity.CRITICAL,
        Decision.NOTIFY,
    )


def test_a_failed_sign_in_is_a_refused_attempt_and_counts_in_the_windows() -> None:
    event = load_event("access-denied/console-login-failed.json")
    assert _verdict(event).category is Category.ACCESS_DENIED
    # the same failure by an agent's user counts towards its access_denied window
    agent = Settings.from_env({"GUARDRAIL_AGENT_PRINCIPALS": "arn:aws:iam::*:user/jane"})
    verdict = _verdict(event, agent)
    assert verdict.is_agent
    assert verdict.category is Category.ACCESS_DENIED
    policy = agent.policies[verdict.environment]
    assert policy.counts(verdict.category, is_agent=True)


def test_a_sign_in_without_mfa_is_reported_and_never_contained() -> None:
    event = load_event("rules/signin.without-mfa.json")
    verdict = _verdict(event)
    assert (verdict.category, verdict.decision) == (Category.SIGN_IN, Decision.NOTIFY)
    agent = Settings.from_env({"GUARDRAIL_AGENT_PRINCIPALS": "arn:aws:iam::*:user/jane"})
    assert _verdict(event, agent).decision is Decision.NOTIFY  # an agent's too: reported
    with_mfa = load_event("benign/console-login-with-mfa.json")
    assert _verdict(with_mfa).category is Category.BENIGN
    federated = copy.deepcopy(event)  # federated sign-ins always say MFAUsed No: their MFA is the IdP's
    federated["detail"]["userIdentity"] = load_event("rules/s3.versioning-suspended.json")["detail"][
        "userIdentity"
    ]
    assert _verdict(federated).category is Category.BENIGN


def test_a_service_event_is_aws_acting_and_never_contained() -> None:
    event = load_event("records/service-event-kms-key-deleted.json")
    verdict = _verdict(event)
    assert verdict.call.kind is RecordKind.SERVICE_EVENT
    assert verdict.call.principal.kind is PrincipalKind.SERVICE
    assert verdict.category is Category.DESTRUCTIVE
    # even when the record names an agent's session, it is AWS that acted
    event["detail"]["userIdentity"] = load_event("rules/s3.versioning-suspended.json")["detail"][
        "userIdentity"
    ]
    verdict = _verdict(event)
    assert not verdict.is_agent
    assert verdict.decision is not Decision.CONTAIN


@pytest.mark.parametrize("detail_type", ["AWS Insight via CloudTrail", "AWS Something New via CloudTrail"])
def test_other_cloudtrail_detail_types_are_read_and_benign(detail_type: str) -> None:
    event = load_event("records/insight.json")
    event["detail-type"] = detail_type
    verdict = _verdict(event)
    assert (verdict.category, verdict.decision) == (Category.BENIGN, Decision.IGNORE)
    assert verdict.call.kind is RecordKind.OTHER


def test_what_is_not_cloudtrail_is_still_refused() -> None:
    event = load_event("records/insight.json")
    event["detail-type"] = "EC2 Instance State-change Notification"
    with pytest.raises(InvalidEventError, match="not a CloudTrail record"):
        parse_event(event)


def test_what_cloudtrail_leaves_out_comes_from_the_envelope_and_is_said() -> None:
    event = load_event("records/agent-delete-without-event-id.json")
    verdict = _verdict(event)
    call = verdict.call
    assert call.event_id == event["id"]
    assert call.event_time.isoformat().startswith(event["time"].rstrip("Z"))
    assert call.region == event["region"]
    assert set(call.gaps) == {"eventID", "eventTime", "awsRegion"}
    assert any("no eventID" in n for n in verdict.notes)
    assert verdict.decision is Decision.CONTAIN  # an agent's tampering: nothing about it is unknown
    # The fast path (JSON text, as `guardrail classify` reads lines) reads it the same.
    assert parse_line(json.dumps(event)).event_id == event["id"]


def test_a_bare_record_without_an_id_gets_a_stable_one() -> None:
    record = load_event("records/agent-delete-without-event-id.json")["detail"]
    first, again = parse_event(record), parse_event(copy.deepcopy(record))
    assert first.event_id == again.event_id
    assert first.event_id.startswith("sha256:")
    other = {**record, "requestParameters": {"x": 1}}
    assert parse_event(other).event_id != first.event_id  # one event id, one outcome: no collisions


def test_a_record_without_a_caller_is_reported_and_never_contained() -> None:
    verdict = _verdict(load_event("records/delete-without-user-identity.json"))
    assert verdict.call.principal.kind is PrincipalKind.UNKNOWN
    assert (verdict.category, verdict.decision) == (Category.DESTRUCTIVE, Decision.NOTIFY)
    assert "names no caller" in verdict.reason


def test_aws_internal_calls_without_an_identity_type_are_aws_acting() -> None:
    event = load_event("rules/s3.versioning-suspended.json")
    event["detail"]["userIdentity"] = {"accountId": "111122223333", "invokedBy": "AWS Internal"}
    verdict = _verdict(event)
    assert verdict.call.principal.kind is PrincipalKind.SERVICE
    assert verdict.decision is not Decision.CONTAIN


def test_an_empty_or_unreadable_time_is_left_out() -> None:
    for value in ("", "redacted"):
        event = load_event("rules/s3.versioning-suspended.json")
        event["detail"]["eventTime"] = value
        assert "eventTime" in parse_event(event).gaps


@pytest.mark.parametrize(
    ("event_type", "kind"),
    [
        ("AwsConsoleSignin", RecordKind.SIGN_IN),  # older records spell it so
        ("AwsServiceEvent", RecordKind.SERVICE_EVENT),
        ("AwsVpceEvent", RecordKind.API_CALL),  # a call through a VPC endpoint
        ("AwsCloudTrailInsight", RecordKind.OTHER),
    ],
)
def test_a_bare_records_kind_is_its_event_type(event_type: str, kind: RecordKind) -> None:
    record = load_event("rules/s3.versioning-suspended.json")["detail"]
    record["eventType"] = event_type
    assert parse_event(record).kind is kind


def test_every_sample_of_every_kind_is_read() -> None:
    for path in sorted(EVENTS.rglob("*.json")):
        parse_event(json.loads(path.read_text()))  # raises for a refused record


def test_real_records_written_by_others_are_read_and_classified_as_a_person_would() -> None:
    """The labelled set under tests/data/cloudtrail (sources and licences in SOURCES.md). The issue's
    targets, on records the classifier has not seen: >= 95 % destructive, >= 98 % refused, >= 95 % ordinary.
    On this set it must do at least as well."""
    found = recall(DATA / "expected.tsv", SETTINGS, default_catalogue())
    assert found.invalid == [], "a record AWS can deliver was refused"
    assert sum(found.total.values()) >= 500
    assert found.rate("destructive") >= 0.95, found.misses
    assert found.rate("refused") >= 0.98, found.misses
    assert found.rate("ordinary") >= 0.95, found.misses
    assert found.misses == [], "docs/rules.md reports every miss: fix it or explain it there"
