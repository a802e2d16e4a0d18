"""Opt-in live check (`pytest -m aws`, real credentials): IAM's own policy simulator evaluates the
revoke-older-sessions document, which moto cannot (it ignores conditions on Deny statements)."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import boto3
import pytest

from guardrail.respond.containment import IncidentRef, revoke_older_sessions_document

pytestmark = pytest.mark.aws


def _decision(document: dict[str, object], token_issued: str) -> str:
    iam = boto3.client("iam")
    result = iam.simulate_custom_policy(
        PolicyInputList=[json.dumps(document)],
        ActionNames=["s3:ListAllMyBuckets"],
        ContextEntries=[
            {
                "ContextKeyName": "aws:TokenIssueTime",
                "ContextKeyValues": [token_issued],
                "ContextKeyType": "date",
            }
        ],
    )
    return str(result["EvaluationResults"][0]["EvalDecision"])


def test_sessions_issued_before_the_cutoff_are_denied_and_later_ones_are_not() -> None:
    if boto3.session.Session().get_credentials() is None:
        pytest.skip("no AWS credentials")
    incident = IncidentRef("GR-20261120T031245Z-0a1b2c3d", datetime(2026, 11, 20, 3, 12, 45, tzinfo=UTC))
    document = revoke_older_sessions_document(incident)
    assert _decision(document, "2026-11-20T03:00:00Z") == "explicitDeny"
    # No Allow in the simulated policy: a session issued after the cutoff is not explicitly denied.
    assert _decision(document, "2026-11-20T03:30:00Z") == "implicitDeny"
