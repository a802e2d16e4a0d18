"""Replay and the handler, end to end against a real (moto) server on 127.0.0.1."""

from __future__ import annotations

import json
import os
import re
from typing import Any

import boto3
import pytest

from guardrail.aws import AwsClients
from guardrail.detect.cloudtrail import parse_event
from guardrail.errors import InvalidEventError
from guardrail.operate.cli import main
from guardrail.operate.replay import EmbeddedAws, invoke, load_handler, replay
from guardrail.respond.runtime import Runtime, use_runtime
from guardrail.settings import Settings
from tests.conftest import EVENTS, load_event


def _shape(text: str) -> list[str]:
    """A transcript with what changes from run to run (incident ids, milliseconds) masked."""
    text = re.sub(r"GR-\d{8}T\d{6}Z-[0-9a-f]{8}", "GR-<id>", text)
    text = re.sub(r"\+\s*\d+\.\d+ ms", "+<ms> ms", text)
    text = re.sub(r"\d+\.\d+ ms after", "<ms> ms after", text)
    return [line.rstrip() for line in text.splitlines()]


def test_demo_shows_three_outcomes_as_the_readme_says(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["demo"]) == 0
    out = capsys.readouterr().out
    assert "benign / info -> IGNORE" in out
    assert "access_denied / medium -> NOTIFY" in out
    assert "destructive / critical -> CONTAIN" in out
    # The README's transcript of the containment is what `make demo` prints, line for line, call for call.
    heading = "An agent deletes a production database without a final snapshot"
    readme = (EVENTS.parent / "README.md").read_text()
    promised = _shape(heading + readme.split("```\n" + heading, 1)[1].split("```", 1)[0])
    printed = _shape(heading + out.split(heading, 1)[1])
    assert len(promised) > 10
    assert printed[: len(promised)] == promised


def test_replay_json_reports_each_event_in_order(capsys: pytest.CaptureFixture[str]) -> None:
    paths = [
        EVENTS / "benign" / "s3-list-buckets.json",
        EVENTS / "rules" / "kms.key-deletion-scheduled.json",
    ]
    assert main(["replay", "--json", *map(str, paths)]) == 0
    results = json.loads(capsys.readouterr().out)
    assert [r["decision"] for r in results] == ["ignore", "contain"]
    assert results[0]["event_id"] == load_event("benign/s3-list-buckets.json")["detail"]["eventID"]
    for result in results:
        assert {"event_id", "category", "severity", "decision", "calls", "error"} <= set(result)
        assert all({"service", "operation", "ms"} == set(c) for c in result["calls"])
    assert results[0]["calls"] == []  # an ignored event makes no AWS call at all


def test_invalid_event_is_quarantined_with_its_reason(tmp_path: Any) -> None:
    bad = {"detail-type": "AWS API Call via CloudTrail", "detail": {"eventName": "DeleteBucket"}}
    with EmbeddedAws() as aws:
        session = aws.session()
        settings = Settings.from_env(aws.settings_env)
        use_runtime(Runtime(settings=settings, aws=AwsClients(session=session)))
        try:
            handler = load_handler()
            summary = invoke(handler, bad)
        finally:
            use_runtime(None)
        assert summary["status"] == "quarantined"
        assert "detail.eventSource: Field required" in summary["error"]
        sqs = session.client("sqs")
        messages = sqs.receive_message(QueueUrl=aws.settings_env["GUARDRAIL_QUARANTINE_QUEUE_URL"])[
            "Messages"
        ]
        kept = json.loads(messages[0]["Body"])
        assert kept["event"] == bad  # nothing lost
        assert "detail.eventSource: Field required" in kept["reason"]


def test_without_a_quarantine_queue_the_invocation_fails_so_lambda_keeps_the_event() -> None:
    use_runtime(Runtime(settings=Settings.from_env({}), aws=AwsClients(session=boto3.session.Session())))
    try:
        handler = load_handler()
        with pytest.raises(InvalidEventError, match="expected a JSON object|neither an EventBridge"):
            invoke(handler, {"hello": "world"})
    finally:
        use_runtime(None)


def test_replay_reports_unreadable_files_without_stopping(tmp_path: Any) -> None:
    missing = tmp_path / "missing.json"
    results = replay([missing, EVENTS / "benign" / "s3-list-buckets.json"])
    assert results[0]["error"]
    assert "missing.json" in results[0]["error"]
    assert results[1]["decision"] == "ignore"


def test_replay_aws_uses_the_configured_endpoint_and_settings(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """`--aws` talks to whatever boto3 is configured for (here a moto server the test started, as an
    operator would point it at a sandbox account), with the GUARDRAIL_* settings of the environment."""
    with EmbeddedAws(account="111122223333", enforce_iam=False) as aws:
        agent = load_event("rules/kms.key-deletion-scheduled.json")
        aws.agent_session(parse_event(agent))
        for name, value in {**aws.settings_env, "GUARDRAIL_DRY_RUN": "true"}.items():
            monkeypatch.setenv(name, value)
        assert (
            main(["replay", "--aws", "--json", str(EVENTS / "rules" / "kms.key-deletion-scheduled.json")])
            == 0
        )
        (result,) = json.loads(capsys.readouterr().out)
        assert (result["decision"], result["status"]) == ("contain", "dry_run")
        assert result["verified"] is None  # no agent session to try with: nothing claimed
        assert [c["operation"] for c in result["calls"]][:2] == ["BatchGetItem", "GetCallerIdentity"]
        assert not [c for c in result["calls"] if c["service"] == "iam"]  # dry run: never an IAM write
        store = boto3.client("dynamodb").scan(TableName="guardrail-state")["Items"]
        assert any(i["sk"]["S"] == "META" and i["status"]["S"] == "dry_run" for i in store)


def test_replay_gives_the_process_its_logger_back() -> None:
    from guardrail.telemetry import logger  # noqa: PLC0415

    before = logger.log_level
    replay([EVENTS / "benign" / "s3-list-buckets.json"])
    assert logger.log_level == before
    assert os.environ.get("POWERTOOLS_METRICS_DISABLED") == "true"  # the test session's own setting, kept


def test_replay_of_a_sequence_shows_the_escalation_as_it_happens(capsys: pytest.CaptureFixture[str]) -> None:
    probe = EVENTS / "sequences" / "access-denied-probe.jsonl"
    assert main(["replay", "--json", str(probe)]) == 0
    results = json.loads(capsys.readouterr().out)
    assert [r["status"] for r in results] == ["counted"] * 9 + ["contained", "joined", "joined"]
    tenth = results[9]
    assert tenth["thresholds"][0]["name"] == "access_denied_spike"
    assert tenth["thresholds"][0]["count"] == 10
    assert tenth["verified"] is True  # the agent's own session is denied after the tenth
    assert [c["service"] for c in results[0]["calls"]] == ["dynamodb"] * 3  # read, count, re-read

    assert main(["replay", str(probe)]) == 0
    out = capsys.readouterr().out
    assert (
        "THRESHOLD REACHED: access_denied_spike: 10 refused calls in 5 min (threshold 10) -> CONTAIN" in out
    )
