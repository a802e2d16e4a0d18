"""The incident message, its email text and subject, and its Slack rendering: pure, no AWS."""

from __future__ import annotations

import copy
import json
import os
from datetime import UTC, datetime
from typing import Any

import pytest

from guardrail.detect.classifier import classify
from guardrail.detect.cloudtrail import parse_event
from guardrail.incident import Incident, IncidentStatus
from guardrail.model import Decision
from guardrail.report.message import (
    agent_tool,
    attributes,
    email_text,
    incident_message,
    sns_payload,
    subject,
    target_resource,
)
from guardrail.report.slack import BLOCK_LIMIT, HEADER_LIMIT, SECTION_LIMIT, TRUNCATED, render
from guardrail.respond.containment import IncidentRef, ResponderIdentity, plan_containment
from guardrail.settings import Settings
from tests.conftest import EVENTS, load_event

OPENED = datetime(2026, 11, 20, 3, 12, 50, tzinfo=UTC)
RESPONDER = ResponderIdentity.from_caller_arn(
    "111122223333", "arn:aws:sts::111122223333:assumed-role/guardrail-fn/x"
)
RUNBOOK = "https://example.com/runbook"


def message_for(event: dict[str, Any], status: str | None = None) -> dict[str, Any]:
    """The first message the responder would publish for this event, with fixed ids and times."""
    settings = Settings.from_env({})
    verdict = classify(parse_event(event), settings)
    incident = None
    if verdict.decision is not Decision.IGNORE:
        plan = plan_containment(verdict, settings, RESPONDER)
        ref = IncidentRef("GR-20261120T031250Z-00000000", OPENED)
        contained = verdict.decision is Decision.CONTAIN and plan.target is not None and plan.blocked is None
        incident = Incident(
            id=ref.id,
            status=IncidentStatus.CONTAINED if contained else IncidentStatus.REPORTED,
            key=plan.key or "key",
            principal_arn=verdict.call.principal.arn,
            account=verdict.call.account,
            region=verdict.call.region,
            opened_at=OPENED,
            verdict=verdict.summary(),
            actions=[
                {**a.describe(plan.target, ref).to_item(), "at": "2026-11-20T03:12:50Z", "details": {}}
                for a in plan.actions
            ]
            if contained and plan.target
            else [],  # fmt: skip
            containment_ms=42.0 if contained else None,
        )
        status = status or incident.status.value
    return incident_message(verdict, status or "ignored", incident, runbook_url=RUNBOOK)


def sample_paths() -> list[str]:
    return sorted(str(p.relative_to(EVENTS)) for p in EVENTS.rglob("*.json"))


@pytest.mark.parametrize("relative", sample_paths())
def test_slack_rendering_matches_the_golden_file(relative: str) -> None:
    """Reviewed by eye once; a change in rendering shows up here. GUARDRAIL_UPDATE_GOLDEN=1 rewrites."""
    rendered = render(message_for(load_event(relative)))
    golden = EVENTS.parent / "tests" / "golden" / "slack" / (relative.replace("/", "__"))
    text = json.dumps(rendered, indent=2, ensure_ascii=False) + "\n"
    if os.environ.get("GUARDRAIL_UPDATE_GOLDEN") == "1":
        golden.write_text(text)
    assert golden.exists(), f"no golden file for {relative}: run with GUARDRAIL_UPDATE_GOLDEN=1 and review it"
    assert text == golden.read_text()
    assert len(rendered["blocks"]) <= BLOCK_LIMIT


def test_subject_format_and_limit() -> None:
    message = message_for(load_event("rules/cloudtrail.logging-stopped.json"))
    assert subject(message) == "[CRITICAL][CONTAINED] AIAgentRole: StopLogging"
    event = load_event("rules/cloudtrail.logging-stopped.json")
    event["detail"]["userIdentity"]["sessionContext"]["sessionIssuer"]["userName"] = "R" * 500
    assert len(subject(message_for(event))) < 100


def test_attributes_for_filter_policies() -> None:
    message = message_for(load_event("rules/cloudtrail.logging-stopped.json"))
    values = {k: v["StringValue"] for k, v in attributes(message).items()}
    assert values == {"severity": "critical", "category": "guardrail_tampering", "decision": "contain",
                      "status": "contained", "kind": "incident", "environment": "production", "account": "111122223333"}  # fmt: skip


def test_email_text_tells_the_whole_story() -> None:
    text = email_text(message_for(load_event("rules/rds.instance-deleted-without-final-snapshot.json")))
    for expected in (
        "[CRITICAL][CONTAINED] AIAgentRole: DeleteDBInstance",
        "DeleteDBInstance (rds.amazonaws.com) on orders-prod",
        "arn:aws:sts::111122223333:assumed-role/AIAgentRole/claude-code-session",
        "account 111122223333 (production), region eu-west-1",
        "put_role_deny_all",
        "MITRE ATT&CK T1485",
        "Fix: Restore from retained automated backups",
        "guardrail release --principal arn:aws:iam::111122223333:role/AIAgentRole",
        "cloudtrail: https://eu-west-1.console.aws.amazon.com/cloudtrailv2/home?region=eu-west-1#/events/",
        f"runbook: {RUNBOOK}",
    ):
        assert expected in text, expected


def test_sns_payload_sends_text_to_email_and_json_to_everyone_else() -> None:
    message = message_for(load_event("rules/cloudtrail.logging-stopped.json"))
    payload = sns_payload(message)
    assert payload["MessageStructure"] == "json"
    bodies = json.loads(payload["Message"])
    assert json.loads(bodies["default"]) == json.loads(json.dumps(message))
    assert bodies["email"].startswith("[CRITICAL][CONTAINED]")
    assert len(payload["Message"].encode()) < 256 * 1024


@pytest.mark.parametrize(
    ("user_agent", "tool"),
    [
        ("claude-code/2.0.37 aws-cli/2.22.35 md/awscrt#0.23.8", "Claude Code (via AWS CLI)"),
        ("Cursor/0.48 Boto3/1.37.3 md/Botocore#1.37.3", "Cursor (via boto3)"),
        ("devin-agent/1.4 aws-sdk-js/3.758.0", "Devin (via AWS SDK for JavaScript)"),
        ("APN/1.0 HashiCorp/1.0 Terraform/1.11.2", "Terraform"),
        ("aws-cli/2.22.35 Python/3.12", "AWS CLI"),
        ("GitHub-Copilot/1.0 botocore/1.35", "GitHub Copilot (via botocore)"),
        ("something else", None),
        (None, None),
    ],
)
def test_agent_tool_from_user_agent(user_agent: str | None, tool: str | None) -> None:
    assert agent_tool(user_agent) == tool


def test_target_resource() -> None:
    assert (
        target_resource({"instancesSet": {"items": [{"instanceId": "i-1"}, {"instanceId": "i-2"}]}})
        == "i-1, i-2"
    )
    assert target_resource({"bucketName": "b", "Host": "h"}) == "b"
    assert target_resource({"flag": True}) is None


def hostile_event() -> dict[str, Any]:
    event = copy.deepcopy(load_event("rules/s3.bucket-deleted.json"))
    event["detail"]["requestParameters"]["bucketName"] = (
        "<!channel> <@U123> <https://evil.example|click me> " + "x" * 10_000
    )
    event["detail"]["userAgent"] = "<!here> claude-code/1.0 & `rm -rf` <@U999>"
    event["detail"]["userIdentity"]["arn"] = "arn:aws:sts::111122223333:assumed-role/AIAgentRole/<!everyone>"
    return event


def _texts(node: object) -> list[str]:
    """Every text Slack renders in a message (mrkdwn and plain text), wherever it sits in the blocks."""
    if isinstance(node, dict):
        found = [node["text"]] if isinstance(node.get("text"), str) else []
        return found + [
            t for k, v in node.items() if k != "text" or not isinstance(v, str) for t in _texts(v)
        ]
    if isinstance(node, list):
        return [t for item in node for t in _texts(item)]
    return []


def test_hostile_text_is_escaped_and_notifies_nobody() -> None:
    texts = _texts(render(message_for(hostile_event())))
    joined = "\n".join(texts)
    # Slack parses mentions and links only from a raw "<": not one may reach it, from any field.
    assert "<" not in joined
    assert ">" not in joined
    # What the attacker wrote is shown, as entities, exactly (expectations written out, not computed).
    assert "`&lt;!channel&gt; &lt;@U123&gt; &lt;https://evil.example|click me&gt; xxx" in joined
    assert "assumed-role/AIAgentRole/&lt;!everyone&gt;`" in joined
    assert TRUNCATED in joined


def test_block_kit_limits_are_respected_by_truncating() -> None:
    rendered = render(message_for(hostile_event()))
    header = rendered["blocks"][0]["text"]["text"]
    assert len(header) <= HEADER_LIMIT
    for block in rendered["blocks"]:
        if block["type"] == "section" and "text" in block:
            assert len(block["text"]["text"]) <= SECTION_LIMIT
        for field in block.get("fields", []):
            assert len(field["text"]) <= 2000


def test_statuses_are_stated_plainly() -> None:
    event = load_event("rules/cloudtrail.logging-stopped.json")
    texts = {
        status: json.dumps(render(message_for(event, status))) for status in ("failed", "dry_run", "released")
    }
    assert "CONTAINMENT FAILED: the agent may still be active" in texts["failed"]
    assert "Dry run: would contain" in texts["dry_run"]
    assert "Released" in texts["released"]


def test_huge_attacker_chosen_values_still_fit_one_sns_message() -> None:
    event = copy.deepcopy(load_event("rules/s3.bucket-deleted.json"))
    event["detail"]["requestParameters"]["bucketName"] = "b" * 1_000_000
    event["detail"]["userAgent"] = "u" * 1_000_000
    event["detail"]["userIdentity"]["arn"] = (
        "arn:aws:sts::111122223333:assumed-role/AIAgentRole/" + "s" * 500_000
    )
    payload = sns_payload(message_for(event))
    assert len(payload["Message"].encode()) < 256 * 1024
    document = json.loads(json.loads(payload["Message"])["default"])
    assert document["event"]["target"].endswith("… (truncated)")


def test_release_message_has_the_same_schema_as_the_incident_message() -> None:
    from guardrail.incident import IncidentStatus  # noqa: PLC0415
    from guardrail.report.message import release_message  # noqa: PLC0415

    event = load_event("rules/rds.instance-deleted-without-final-snapshot.json")
    first = message_for(event)
    settings = Settings.from_env({})
    verdict = classify(parse_event(event), settings)
    incident = Incident(
        id="GR-1", status=IncidentStatus.RELEASED, key="arn:aws:iam::111122223333:role/AIAgentRole",
        principal_arn=verdict.call.principal.arn, account="111122223333", region="eu-west-1", opened_at=OPENED,
        verdict=verdict.summary(), released_by="jane", release_reason="reviewed",
    )  # fmt: skip
    released = release_message(incident)
    assert set(released) == set(first)
    for section in ("principal", "event", "containment"):
        assert set(released[section]) == set(first[section]), section
    assert released["rules"] == first["rules"]
    assert (released["status"], released["containment"]["status"]) == ("released", "released")


def test_the_on_call_engineer_reads_what_the_readme_shows() -> None:
    """The golden files are snapshots of the renderer; this is written out by hand from the README's Slack
    example, so a change to what people read fails here first."""
    rendered = render(message_for(load_event("rules/rds.instance-deleted-without-final-snapshot.json")))
    texts = _texts(rendered)
    assert rendered["text"] == "[CRITICAL][CONTAINED] AIAgentRole: DeleteDBInstance"
    assert texts[1] == ":rotating_light: CRITICAL | CONTAINED | AIAgentRole"
    assert texts[2].startswith(
        "*RDS database deleted without a final snapshot*: `DeleteDBInstance` on `orders-prod`"
    )
    assert "*Where*\n`111122223333` (production), `eu-west-1`" in texts
    assert any(t.startswith(":lock: *Contained*: put_role_deny_all, tag_role") for t in texts)


BOT_STATES = {
    # A contained agent: Acknowledge and Release...
    "contained": ("rules/dynamodb.table-deleted.json", None, {}),
    # Taken by someone: Acknowledge gone, who took it shown.
    "acknowledged": (
        "rules/dynamodb.table-deleted.json",
        None,
        {"acknowledged": {"team_id": "T0GUARD01", "user_id": "U0ALICE01", "name": "alice", "at": "2026-11-20T03:14:02.000000Z"}},
    ),
    # Two-person release: asked, waiting for a second person.
    "release-requested": (
        "rules/dynamodb.table-deleted.json",
        None,
        {"release_request": {"team_id": "T0GUARD01", "user_id": "U0ALICE01", "name": "alice", "at": "2026-11-20T03:20:00.000000Z", "reason": "approved in CHG-1234 <!channel>"}},
    ),
    # A reported agent: Contain now, behind a confirmation.
    "reported": ("rules/generic.grants-to-another.json", None, {}),
    "released": ("rules/dynamodb.table-deleted.json", "released", {}),
}  # fmt: skip


@pytest.mark.parametrize("state", sorted(BOT_STATES))
def test_bot_mode_buttons_match_the_golden_file(state: str) -> None:
    """The Block Kit a bot-mode post carries with Slack actions on (GUARDRAIL_SLACK_ACTIONS=true)."""
    relative, status, people = BOT_STATES[state]
    message = message_for(load_event(relative), status)
    message["people"] = people
    rendered = render(message, actions=True)
    golden = EVENTS.parent / "tests" / "golden" / "slack-bot" / f"{state}.json"
    text = json.dumps(rendered, indent=2, ensure_ascii=False) + "\n"
    if os.environ.get("GUARDRAIL_UPDATE_GOLDEN") == "1":
        golden.write_text(text)
    assert golden.exists(), f"no golden file for {state}: run with GUARDRAIL_UPDATE_GOLDEN=1 and review it"
    assert text == golden.read_text()
    # A webhook's message never carries them (an incoming webhook cannot be interactive).
    assert "guardrail_" not in json.dumps(render(message))


def test_people_are_shown_as_mentions_only_with_slack_ids() -> None:
    message = message_for(load_event("rules/dynamodb.table-deleted.json"))
    message["people"] = {"acknowledged": {"user_id": "<!channel>", "name": "<!here>", "at": "x"}}
    text = json.dumps(render(message, actions=True))
    assert "<!channel>" not in text
    assert "<!here>" not in text
    assert "@&lt;!here&gt;" in text
