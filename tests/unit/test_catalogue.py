"""The catalogue is data: every rule is valid, has a sample event, and that sample classifies as intended."""

from __future__ import annotations

import dataclasses
from collections import Counter
from typing import Any

import pytest

from guardrail.detect.catalogue import compile_catalogue, default_catalogue, load_yaml
from guardrail.detect.classifier import classify
from guardrail.detect.cloudtrail import parse_event
from guardrail.errors import CatalogueError
from guardrail.model import Category
from tests.conftest import EVENTS, load_event

CATALOGUE = default_catalogue()
# Curated and generic rules alike: adding either means an entry and a sample event.
RULE_IDS = [r.id for r in (*CATALOGUE.rules, *CATALOGUE.generic_rules.values())]


def test_every_rule_has_a_sample_and_every_sample_a_rule() -> None:
    samples = {p.stem for p in (EVENTS / "rules").glob("*.json")}
    assert set(RULE_IDS) - samples == set(), "rules without a sample event in events/rules/"
    assert samples - set(RULE_IDS) == set(), "samples in events/rules/ named after no rule"


@pytest.mark.parametrize("rule_id", RULE_IDS)
def test_rule_sample_classifies_as_intended(rule_id: str, settings: Any) -> None:
    rule = CATALOGUE.by_id(rule_id)
    verdict = classify(parse_event(load_event(f"rules/{rule_id}.json")), settings)
    assert verdict.top_rule is rule, f"{rule_id}: top rule was {verdict.rule_ids}"
    assert verdict.category is rule.category
    assert verdict.severity is rule.severity
    assert rule_id in verdict.summary()["rule_ids"]


def test_catalogue_covers_the_checklist() -> None:
    covered = {r.source.removesuffix(".amazonaws.com") for r in CATALOGUE.rules}
    checklist = {
        "ec2", "rds", "s3", "cloudformation", "dynamodb", "cloudtrail", "config", "guardduty", "iam", "kms",
        "backup", "lambda", "ecs", "eks", "ecr", "route53", "sns", "sqs", "secretsmanager",
        "elasticfilesystem", "elasticache", "redshift", "organizations", "securityhub", "events",
    }  # fmt: skip
    assert checklist <= covered
    categories = Counter(r.category for r in CATALOGUE.rules)
    assert categories[Category.DESTRUCTIVE]
    assert categories[Category.GUARDRAIL_TAMPERING]
    assert categories[Category.PRIVILEGE_ESCALATION]


def test_lookup_is_indexed_by_source_and_name() -> None:
    assert all(len(k) == 2 for k in CATALOGUE.index)
    # A name shared by two services is two keys: eks DeleteCluster is not redshift DeleteCluster.
    eks = CATALOGUE.index[("eks.amazonaws.com", "DeleteCluster")]
    redshift = CATALOGUE.index[("redshift.amazonaws.com", "DeleteCluster")]
    assert {r.id for r in eks}.isdisjoint({r.id for r in redshift})
    # Most severe first, so the first rule found decides.
    for rules in CATALOGUE.index.values():
        ranks = [r.severity.rank for r in rules]
        assert ranks == sorted(ranks, reverse=True)


def _minimal(**rule: object) -> dict[str, object]:
    base: dict[str, object] = {
        "id": "svc.thing-done",
        "source": "svc.amazonaws.com",
        "names": ["DoThing"],
        "category": "destructive",
        "severity": "high",
        "title": "t",
        "why": "w",
        "attack": "T1485",
        "fix": "f",
    }
    base.update(rule)
    denied = {
        "error_codes": ["AccessDenied"],
        "rule": {**base, "id": "access.denied", "category": "access_denied", "names": None, "source": None},
    }
    denied["rule"] = {k: v for k, v in denied["rule"].items() if v is not None}  # type: ignore[union-attr]
    return {"access_denied": denied, "rules": [base]}


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"id": "Bad Id"}, "must look like service.what-it-catches"),
        ({"severity": "apocalyptic"}, "apocalyptic"),
        ({"category": "benign"}, "assigned by the classifier"),
        ({"attack": "1485"}, "not a MITRE ATT&CK technique id"),
        ({"names": []}, "names must be a non-empty list"),
        ({"colour": "red"}, "unknown keys ['colour']"),
        ({"when": {"x": {"regex": ".*"}}}, "unknown operator 'regex'"),
        ({"when": {"x": {"self": "yes"}}}, "self takes true or false"),
        ({"when": {"x": []}}, "one_of needs a non-empty list"),
        ({"why": "  "}, "'why' must be a non-empty string"),
    ],
)
def test_malformed_rules_are_refused_with_the_reason(change: dict[str, object], message: str) -> None:
    with pytest.raises(CatalogueError, match=message.replace("[", r"\[").replace("]", r"\]")):
        compile_catalogue(_minimal(**change))


def test_duplicate_rule_ids_are_refused() -> None:
    document = _minimal()
    document["rules"] = [*document["rules"], *document["rules"]]  # type: ignore[misc]
    with pytest.raises(CatalogueError, match="duplicate rule id svc.thing-done"):
        compile_catalogue(document)


def test_invalid_yaml_is_a_catalogue_error() -> None:
    with pytest.raises(CatalogueError, match="not valid YAML"):
        load_yaml("rules: [unclosed")


def test_denied_rule_must_be_access_denied() -> None:
    document = _minimal()
    document["access_denied"]["rule"]["category"] = "destructive"  # type: ignore[index]
    with pytest.raises(CatalogueError, match="category must be access_denied"):
        compile_catalogue(document)


def _call_with(request: dict[str, object], actor: str = "AIAgentRole") -> Any:
    event = load_event("rules/s3.bucket-deleted.json")
    detail = event["detail"]
    detail["eventSource"], detail["eventName"], detail["requestParameters"] = (
        "svc.amazonaws.com",
        "DoThing",
        request,
    )
    detail["userIdentity"]["sessionContext"]["sessionIssuer"]["userName"] = actor
    return parse_event(event)


@pytest.mark.parametrize(
    ("when", "request_params", "matches"),
    [
        ({"flag": [False]}, {"flag": False}, True),
        ({"flag": [False]}, {"flag": "FALSE"}, True),
        ({"flag": [False]}, {"flag": True}, False),
        ({"flag": [False]}, {}, False),
        ({"n": [0]}, {"n": 0}, True),
        ({"a.b": ["x"]}, {"a": {"b": "X"}}, True),
        ({"a.b": ["x"]}, {"a": "not a mapping"}, False),
        ({"items[].key": ["Lifecycle"]}, {"items": [{"key": "Owner"}, {"key": "lifecycle"}]}, True),
        ({"items[].key": ["Lifecycle"]}, {"items": {"key": "Lifecycle"}}, True),  # XML's one-element list
        ({"items[].key": ["Lifecycle"]}, {"items": [{"key": "Owner"}]}, False),
        ({"name": {"prefix": "guard"}}, {"name": "GuardrailRule"}, True),
        ({"arn": {"suffix": "/admin"}}, {"arn": "arn:x/Admin"}, True),
        ({"name": {"glob": ["*guardrail*", "*BreakGlass*"]}}, {"name": "stack-BreakGlass-1"}, True),
        ({"name": {"glob": "*guardrail*"}}, {"name": "stack-GUARDRAIL-1"}, False),  # case-sensitive
        ({"name": {"glob": "a?c"}}, {"name": "abc"}, False),  # '*' is the only wildcard
        ({"name": {"glob": "a?c"}}, {"name": "a?c"}, True),
        ({"name": {"glob": "*guardrail*"}}, {"name": 42}, False),
        ({"tags.Lifecycle": {"exists": True}}, {"tags": {"Lifecycle": "x"}}, True),
        ({"tags.Lifecycle": {"exists": False}}, {"tags": {"Owner": "x"}}, True),
        ({"roleName": {"self": True}}, {"roleName": "aiagentrole"}, True),
        ({"roleName": {"self": True}}, {"roleName": "Other"}, False),
        ({"roleName": {"self": False}}, {"roleName": "Other"}, True),
        ({"roleName": {"self": False}}, {}, False),  # no target named: the caller's own
    ],
)
def test_conditions(when: dict[str, object], request_params: dict[str, object], matches: bool) -> None:
    catalogue = compile_catalogue(_minimal(when=when))
    call = _call_with(request_params)
    assert bool(catalogue.matching(call)) is matches


def test_unknown_calls_cost_one_lookup_and_match_nothing(settings: Any) -> None:
    class Counting(dict[tuple[str, str], Any]):
        lookups = 0

        def get(self, key: Any, default: Any = None) -> Any:
            Counting.lookups += 1
            return super().get(key, default)

    counted = dataclasses.replace(CATALOGUE, index=Counting(CATALOGUE.index))
    verdict = classify(parse_event(load_event("benign/s3-create-bucket.json")), settings, counted)
    assert Counting.lookups == 1  # one dictionary access by (source, name), nothing else
    # No rule, and the generic layer finds nothing destroyed: a write, which production's policy raises.
    assert verdict.rules == ()
    assert verdict.category is Category.WRITE
    assert ("s3.amazonaws.com", "CreateBucket") not in CATALOGUE.index


# Written out by hand from what each call does to an account, not read from rules.yaml: a change of
# category or severity in the catalogue must be a deliberate change here too.
EXPECTED = {
    "cloudtrail.logging-stopped": ("guardrail_tampering", "critical"),
    "cloudtrail.management-events-dropped": ("guardrail_tampering", "critical"),
    "guardduty.detector-deleted": ("guardrail_tampering", "critical"),
    "rds.instance-deleted-without-final-snapshot": ("destructive", "critical"),
    "dynamodb.table-deleted": ("destructive", "critical"),
    "kms.key-deletion-scheduled": ("destructive", "critical"),
    "backup.recovery-point-deleted": ("destructive", "critical"),
    "s3.bucket-deleted": ("destructive", "high"),
    "ec2.instances-terminated": ("destructive", "high"),
    "iam.admin-policy-attached": ("privilege_escalation", "critical"),
    "iam.access-key-for-other-user": ("privilege_escalation", "high"),
    "s3.access-logging-disabled": ("guardrail_tampering", "high"),
    "signin.without-mfa": ("sign_in", "medium"),
    "generic.destroys": ("destructive", "low"),
    "generic.destroys-data": ("destructive", "medium"),
    "generic.weakens-protection": ("guardrail_tampering", "high"),
    "generic.grants-to-another": ("privilege_escalation", "medium"),
}


@pytest.mark.parametrize(("rule_id", "expected"), sorted(EXPECTED.items()))
def test_key_samples_classify_as_written_down(rule_id: str, expected: tuple[str, str], settings: Any) -> None:
    verdict = classify(parse_event(load_event(f"rules/{rule_id}.json")), settings)
    assert verdict.rule_ids[0] == rule_id
    assert (verdict.category.value, verdict.severity.value) == expected


def test_every_glob_of_a_condition_matches_the_whole_value(settings: Any) -> None:
    """As EventBridge's wildcard does: AdministratorAccess-Amplify (a real AWS managed policy) is not
    AdministratorAccess, whichever of the rule's globs it comes first in."""
    event = load_event("rules/iam.admin-policy-attached.json")
    event["detail"]["requestParameters"]["policyArn"] = "arn:aws:iam::aws:policy/AdministratorAccess-Amplify"
    assert "iam.admin-policy-attached" not in classify(parse_event(event), settings).rule_ids
    event["detail"]["requestParameters"]["policyArn"] = "arn:aws:iam::aws:policy/AdministratorAccess"
    assert classify(parse_event(event), settings).rule_ids[0] == "iam.admin-policy-attached"
