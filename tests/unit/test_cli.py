"""`guardrail classify`: one JSON line per event, a clear line on stderr per failure, exit 1 if any."""

from __future__ import annotations

import gzip
import io
import json
import shutil
from pathlib import Path

import pytest

from guardrail.operate.cli import classify_command, main
from tests.conftest import EVENTS

FIELDS = {"source", "event_id", "event_time", "event_source", "event_name", "principal", "account", "region",
          "category", "severity", "rule_ids", "decision", "reason"}  # fmt: skip


def run(paths: list[Path]) -> tuple[int, list[dict[str, object]], str]:
    out, err = io.StringIO(), io.StringIO()
    status = classify_command(paths, out, err)
    return status, [json.loads(line) for line in out.getvalue().splitlines()], err.getvalue()


def test_classifies_a_directory_recursively() -> None:
    status, rows, err = run([EVENTS])
    assert status == 0, err
    sequences = sum(len(p.read_text().splitlines()) for p in EVENTS.rglob("*.jsonl"))
    assert len(rows) == len(list(EVENTS.rglob("*.json"))) + sequences  # JSON Lines: one event a line
    assert all(set(row) >= FIELDS for row in rows)
    by_source = {Path(str(r["source"])).name: r for r in rows}
    assert by_source["cloudtrail.logging-stopped.json"]["decision"] == "contain"
    assert by_source["s3-list-buckets.json"]["category"] == "benign"
    assert by_source["s3-create-bucket.json"]["category"] == "write"  # an agent's write, in production


def test_bad_input_is_reported_and_the_rest_processed(tmp_path: Path) -> None:
    shutil.copy(EVENTS / "rules" / "kms.key-deletion-scheduled.json", tmp_path / "good.json")
    (tmp_path / "bad.json").write_text('{"detail-type": "AWS API Call via CloudTrail", "detail": {}}')
    (tmp_path / "broken.jsonl").write_text("{oops\n")
    record = json.loads((EVENTS / "rules" / "s3.bucket-deleted.json").read_text())["detail"]
    (tmp_path / "trail.json.gz").write_bytes(gzip.compress(json.dumps({"Records": [record]}).encode()))
    (tmp_path / "notes.txt").write_text("ignored: not an event file")
    status, rows, err = run([tmp_path])
    assert status == 1
    assert sorted(str(r["event_name"]) for r in rows) == ["DeleteBucket", "ScheduleKeyDeletion"]
    assert "bad.json: invalid event: detail.eventSource: Field required" in err
    assert "broken.jsonl:1: not JSON" in err
    assert "Traceback" not in err


def test_missing_file_is_an_error_line(tmp_path: Path) -> None:
    status, rows, err = run([tmp_path / "nope.json"])
    assert (status, rows) == (1, [])
    assert "nope.json" in err


def test_bad_configuration_exits_2(monkeypatch: object, capsys: object) -> None:
    import pytest  # noqa: PLC0415

    mp = pytest.MonkeyPatch()
    mp.setenv("GUARDRAIL_CONTAIN_AT", "whenever")
    try:
        assert main(["classify", str(EVENTS / "benign")]) == 2
    finally:
        mp.undo()


def test_docs_rules_md_is_generated_from_the_catalogue() -> None:
    from guardrail.detect.catalogue import default_catalogue  # noqa: PLC0415
    from guardrail.operate.cli import render_rules  # noqa: PLC0415

    expected = render_rules(default_catalogue(), EVENTS.parent / "tests/data/cloudtrail/expected.tsv")
    actual = (EVENTS.parent / "docs" / "rules.md").read_text()
    assert actual == expected, "docs/rules.md is stale: run `make patterns`"


def test_environments_prints_the_policies_in_force(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("GUARDRAIL_ENVIRONMENT_POLICIES", raising=False)
    assert main(["environments", "--json"]) == 0
    policies = json.loads(capsys.readouterr().out)
    assert list(policies) == ["sandbox", "development", "staging", "production"]
    assert policies["production"]["writes"] == "high"
    monkeypatch.setenv("GUARDRAIL_ENVIRONMENT_POLICIES", '{"production": {"writes": "loud"}}')
    assert main(["environments"]) == 2
    assert "environments.production.writes: 'loud' is not one of" in capsys.readouterr().err
