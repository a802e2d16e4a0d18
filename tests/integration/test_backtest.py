"""The backtest: the same decisions as the live responder, over a trail archive in S3's real key layout.

The archive lives in moto S3 (two accounts, two regions, three days, gzipped CloudTrail log files with
`Records`), and the live responder's decisions come from the real handler on moto with IAM enforced.
"""

from __future__ import annotations

import copy
import gzip
import json
import shutil
import subprocess
import tempfile
import uuid
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import msgspec
import pytest

from guardrail.operate.backtest import Selection, load_settings, run
from guardrail.operate.cli import main
from guardrail.operate.replay import EmbeddedAws
from guardrail.report.backtest import render_html
from tests.conftest import EVENTS, load_event
from tests.integration.conftest import Responder

PROD, DEV = "111122223333", "444455556666"
SETTINGS = {"GUARDRAIL_ACCOUNT_ENVIRONMENTS": json.dumps({PROD: "production", DEV: "development"})}
START = datetime(2026, 11, 18, 9, 0, tzinfo=UTC)
TEMPLATE = load_event("rules/dynamodb.table-deleted.json")["detail"]


def record(
    account: str,
    role: str,
    session: str,
    when: datetime,
    source: str,
    name: str,
    request: dict[str, Any] | None = None,
    *,
    region: str = "us-east-1",
    error: str | None = None,
    read_only: bool = False,
) -> dict[str, Any]:
    """A CloudTrail record as a trail's log file holds it (no EventBridge envelope)."""
    detail = copy.deepcopy(TEMPLATE)
    identity = detail["userIdentity"]
    identity["arn"] = f"arn:aws:sts::{account}:assumed-role/{role}/{session}"
    identity["accountId"] = account
    identity["principalId"] = f"AROA{role.upper()[:12]:<12}:{session}".replace(" ", "X")
    issuer = identity["sessionContext"]["sessionIssuer"]
    issuer.update({"arn": f"arn:aws:iam::{account}:role/{role}", "accountId": account, "userName": role})
    issuer["principalId"] = identity["principalId"].split(":")[0]
    detail.update(
        {
            "eventTime": when.strftime("%Y-%m-%dT%H:%M:%SZ"),
            "eventSource": source,
            "eventName": name,
            "awsRegion": region,
            "requestParameters": request or {},
            "eventID": str(uuid.uuid4()),
            "requestID": str(uuid.uuid4()),
            "recipientAccountId": account,
            "readOnly": read_only,
        }
    )
    if error:
        detail["errorCode"] = error
        detail["errorMessage"] = f"User is not authorized to perform: {name}"
    return detail


def scenario() -> tuple[list[dict[str, Any]], dict[str, Any], str]:
    """Three days of a small organization: the agent, the CI role, humans. Returns the records, the record
    the agent must be contained at, and the record of its table deletion."""
    records: list[dict[str, Any]] = []
    for day in range(3):
        morning = START + timedelta(days=day)
        for minute in range(0, 120, 7):  # humans: ordinary work in both accounts and regions
            when = morning + timedelta(minutes=minute)
            records.append(record(PROD, "PlatformEngineer", "jane.doe@example.com", when, "ec2.amazonaws.com",
                                  "DescribeInstances", read_only=True))  # fmt: skip
            records.append(record(DEV, "Developer", "sam@example.com", when, "s3.amazonaws.com", "PutObject",
                                  {"bucketName": "dev-artifacts", "key": f"build/{minute}.zip"}, region="eu-west-1"))  # fmt: skip
        # The CI role deletes yesterday's ephemeral stacks in development: reported, never contained.
        for n in range(5):
            records.append(record(DEV, "AIAgentCI", "github-actions", morning + timedelta(minutes=30, seconds=20 * n),
                                  "cloudformation.amazonaws.com", "DeleteStack", {"stackName": f"pr-{day}-{n}"}))  # fmt: skip
        # A human deletes a production table: critical, reported, never contained.
        if day == 1:
            records.append(record(PROD, "PlatformEngineer", "jane.doe@example.com", morning + timedelta(minutes=50),
                                  "dynamodb.amazonaws.com", "DeleteTable", {"tableName": "old-sessions"}))  # fmt: skip
    # Day 3: the agent reads, probes its fence (refused calls), then deletes a production table.
    probe_start = START + timedelta(days=2, hours=1)
    for n in range(3):
        records.append(record(PROD, "AIAgentRole", "claude-code", probe_start - timedelta(minutes=5 - n),
                              "dynamodb.amazonaws.com", "DescribeTable", {"tableName": "orders"}, read_only=True))  # fmt: skip
    probes = ["ListRoles", "GetRole", "ListPolicies", "ListUsers", "GetAccountAuthorizationDetails", "ListAttachedRolePolicies",
              "ListRolePolicies", "GetPolicy", "ListGroups", "GetUser", "ListAccessKeys"]  # fmt: skip
    contained_at = None
    for n, name in enumerate(probes):
        refused = record(PROD, "AIAgentRole", "claude-code", probe_start + timedelta(seconds=15 * n), "iam.amazonaws.com",
                         name, read_only=True, error="AccessDenied")  # fmt: skip
        records.append(refused)
        if n == 9:
            contained_at = refused  # the tenth refused call in five minutes: access_denied_spike
    deletion = record(PROD, "AIAgentRole", "claude-code", probe_start + timedelta(minutes=4), "dynamodb.amazonaws.com",
                      "DeleteTable", {"tableName": "orders"})  # fmt: skip
    records.append(deletion)
    assert contained_at is not None
    return records, contained_at, deletion


def write_archive(
    s3: Any, bucket: str, records: list[dict[str, Any]], *, organization: str | None = None
) -> int:
    """Records into gzipped log files under CloudTrail's key layout, a file per account, region and hour."""
    s3.create_bucket(Bucket=bucket)
    files: dict[str, list[dict[str, Any]]] = {}
    for item in records:
        when = datetime.strptime(item["eventTime"], "%Y-%m-%dT%H:%M:%SZ")
        account, region = item["recipientAccountId"], item["awsRegion"]
        base = f"AWSLogs/{organization}/{account}" if organization else f"AWSLogs/{account}"
        key = (f"{base}/CloudTrail/{region}/{when:%Y/%m/%d}/{account}_CloudTrail_{region}_{when:%Y%m%dT%H}00Z_"
               f"{uuid.uuid5(uuid.NAMESPACE_URL, base + region + str(when.hour)).hex[:16]}.json.gz")  # fmt: skip
        files.setdefault(key, []).append(item)
    for key, items in files.items():
        s3.put_object(Bucket=bucket, Key=key, Body=gzip.compress(json.dumps({"Records": items}).encode()))
    # What a trail bucket also holds, and a backtest must not read as records.
    s3.put_object(Bucket=bucket, Key=f"AWSLogs/{PROD}/CloudTrail-Digest/us-east-1/2026/11/18/digest.json.gz",
                  Body=gzip.compress(b'{"digestStartTime": "x"}'))  # fmt: skip
    return len(files)


@pytest.fixture
def archive(account: EmbeddedAws) -> tuple[Any, dict[str, Any], dict[str, Any], int]:
    s3 = account.session().client("s3")
    records, contained_at, deletion = scenario()
    files = write_archive(s3, "org-trail", records, organization="o-a1b2c3d4e5")
    return s3, contained_at, deletion, files


@pytest.mark.parametrize("workers", [1, 2])
def test_backtest_of_a_trail_in_s3_contains_exactly_the_agent_at_the_right_event(
    account: EmbeddedAws, archive: Any, workers: int
) -> None:
    s3, contained_at, deletion, files = archive
    settings, env = load_settings(None, SETTINGS)
    result = run(["s3://org-trail/AWSLogs/"], settings, env, workers=workers, s3=lambda: s3)
    assert result.files == files  # the digest was never listed as a log file
    report = result.to_dict()
    (contained,) = report["would_contain"]
    assert contained["principal"] == f"arn:aws:iam::{PROD}:role/AIAgentRole"
    assert contained["event_id"] == contained_at["eventID"]
    assert contained["thresholds"] == ["access_denied_spike: 10 refused calls in 5 min (threshold 10)"]
    assert contained["event_name"] == "GetUser"  # the tenth refused call
    assert [b["event_name"] for b in contained["before"]][-3:] == [
        "ListRolePolicies",
        "GetPolicy",
        "ListGroups",
    ]
    by_event = {d.event_id: d for d in result.decisions}
    assert by_event[deletion["eventID"]].status == "joined"  # the table deletion would have been refused
    # The CI role: reported (development: deletions are reported), never contained.
    ci = [i for i in report["would_report"] if i["principal"].endswith(":role/AIAgentCI")]
    assert ci
    assert {i["event_name"] for i in ci} == {"DeleteStack"}
    # No human contained; the human's production table deletion is among the critical calls by non-agents.
    assert all(":role/AIAgent" in i["principal"] for i in report["would_contain"] + report["not_containable"])
    humans = {h["principal"]: h for h in report["critical_non_agents"]}
    assert humans[f"arn:aws:iam::{PROD}:role/PlatformEngineer"]["by_event_name"] == {"DeleteTable": 1}
    assert {a["principal"] for a in report["agents"]} == {
        f"arn:aws:iam::{PROD}:role/AIAgentRole",
        f"arn:aws:iam::{DEV}:role/AIAgentCI",
    }
    assert report["unreadable"] == []


def test_the_selection_prunes_accounts_regions_and_days_before_listing(
    account: EmbeddedAws, archive: Any
) -> None:
    s3, _contained_at, _deletion, _files = archive
    listed: list[str] = []
    real = s3.list_objects_v2

    def spy(**kwargs: Any) -> Any:
        listed.append(kwargs["Prefix"])
        return real(**kwargs)

    s3.list_objects_v2 = spy  # the paginator calls the client's method
    settings, env = load_settings(None, SETTINGS)
    selection = Selection(since=date(2026, 11, 20), until=date(2026, 11, 20), accounts=frozenset({PROD}),
                          regions=frozenset({"us-east-1"}))  # fmt: skip
    result = run(["s3://org-trail/"], settings, env, selection, s3=lambda: s3)
    assert all(DEV not in p for p in listed)
    assert all("eu-west-1" not in p and "/18/" not in p and "/19/" not in p for p in listed)
    assert result.outside == 0
    assert result.events > 0
    assert len(result.to_dict()["would_contain"]) == 1


def test_backtest_and_live_responder_agree_event_by_event(make_responder: Any, tmp_path: Path) -> None:
    """The recorded access-denied probe, then more of the agent's calls: statuses compared one by one."""
    events = [
        json.loads(line)
        for line in (EVENTS / "sequences" / "access-denied-probe.jsonl").read_text().splitlines()
    ]
    later = datetime.strptime(events[-1]["detail"]["eventTime"], "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
    for n, relative in enumerate(["rules/dynamodb.table-deleted.json", "benign/ec2-run-instances.json",
                                  "principals/iam-user-terminate.json", "rules/generic.grants-to-another.json",
                                  "rules/s3.bucket-deleted.json"]):  # fmt: skip
        event = copy.deepcopy(load_event(relative))
        event["detail"]["eventTime"] = (later + timedelta(seconds=10 * (n + 1))).strftime(
            "%Y-%m-%dT%H:%M:%SZ"
        )
        events.append(event)
    responder: Responder = make_responder()
    for event in events:
        responder.agent(event)  # the principals exist, so the live containment really writes IAM
    live = [responder(event)["status"] for event in events]
    path = tmp_path / "sequence.jsonl"
    path.write_text("".join(json.dumps(e) + "\n" for e in events))
    settings, env = load_settings(None, dict(responder.aws.settings_env))
    decided = {d.event_id: d.status for d in run([str(path)], settings, env).decisions}
    backtest = [decided.get(e["detail"]["eventID"], "ignored") for e in events]
    assert backtest == live
    assert "contained" in live
    assert "joined" in live
    assert "counted" in live


def test_the_report_renders_in_a_headless_browser(account: EmbeddedAws, archive: Any, tmp_path: Path) -> None:
    s3, *_ = archive
    settings, env = load_settings(None, SETTINGS)
    report = run(["s3://org-trail/"], settings, env, s3=lambda: s3).to_dict()
    page = tmp_path / "report.html"
    page.write_text(render_html(report))
    text = page.read_text()
    assert "http://" not in text.replace("http://www.w3.org/2000/svg", "")
    assert "https://" not in text
    assert "<script" not in text
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    if browser is None:
        pytest.fail("chromium is not installed: `make test` installs it (Debian's chromium package)")
    common = [browser, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars"]
    dom = subprocess.run(
        [*common, "--dump-dom", page.as_uri()], capture_output=True, text=True, timeout=120, check=True
    )
    assert "What the responder would have done" in dom.stdout
    assert dom.stdout.count("<svg") >= 3  # the agent, the CI role, the human with a report
    shot = tmp_path / "report.png"
    subprocess.run([*common, f"--screenshot={shot}", "--window-size=1100,2200", page.as_uri()],
                   capture_output=True, timeout=120, check=True)  # fmt: skip
    assert shot.stat().st_size > 20_000  # a rendered page, not a blank one


def test_hostile_names_are_text_in_the_page() -> None:
    report = {"events": 1, "files": 1, "would_contain": [{
        "time": "2026-11-20T03:10:41Z", "principal": "<script>alert(1)</script>", "event_name": "<img src=x onerror=alert(1)>",
        "thresholds": [], "rules": ["x"], "joined": 0, "before": [{"time": "2026-11-20T03:10:41Z", "event_name": "'\"><b>", "status": "counted"}]}],
        "timelines": [{"principal": "</svg><script>", "per_minute": [[1, 2]], "markers": [{"minute": 1, "status": "contained", "incident": "<i>", "time": "t"}]}]}  # fmt: skip
    page = render_html(report)
    assert "<script" not in page
    assert "<img" not in page
    assert "<i>" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "&#x27;&quot;&gt;&lt;b&gt;" in page
    assert "&lt;/svg&gt;&lt;script&gt;" in page


def test_cli_backtest_writes_the_report_and_json(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert (
        main(
            [
                "backtest",
                str(EVENTS / "sequences" / "access-denied-probe.jsonl"),
                "--report",
                str(tmp_path / "out"),
            ]
        )
        == 0
    )
    text = capsys.readouterr().out
    assert "would contain: 1" in text
    assert "access_denied_spike" in text
    data = json.loads((tmp_path / "out" / "report.json").read_text())
    assert len(data["would_contain"]) == 1
    assert (tmp_path / "out" / "report.html").read_text().startswith("<!doctype html>")
    broken = tmp_path / "broken.jsonl"
    broken.write_text('{"not": "cloudtrail"}\nnot json\n')
    assert main(["backtest", str(broken), "--json"]) == 0
    reasons = {u["reason"]: u["records"] for u in json.loads(capsys.readouterr().out)["unreadable"]}
    assert sum(reasons.values()) == 2
    assert any("not JSON" in r for r in reasons)


def test_workers_decide_exactly_as_one_process(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Helpers send what the replay reads apart from each verdict, read only when wanted: every outcome,
    incident and count must be the one process's, over every published and sample record (many services,
    principals, roots, Identity Center users, refusals) and a request msgpack cannot hold."""
    samples: list[dict[str, Any]] = []
    for path in sorted((Path(__file__).parents[1] / "data" / "cloudtrail").glob("*.jsonl")):
        samples += [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    samples += [
        json.loads(path.read_text())["detail"]
        for path in sorted(EVENTS.rglob("*.json"))
        if isinstance(json.loads(path.read_text()).get("detail"), dict)
    ]
    huge = record(PROD, "AIAgentRole", "agent", START, "dynamodb.amazonaws.com", "DeleteTable",
                  {"tableName": "orders", "limit": 2**70})  # fmt: skip
    records = []
    for n in range(3 * len(samples)):
        item = copy.deepcopy(samples[n % len(samples)])
        item["eventID"] = str(uuid.UUID(int=n))
        item["eventTime"] = (START + timedelta(seconds=7 * n)).strftime("%Y-%m-%dT%H:%M:%SZ")
        records.append(item)
    records.insert(len(records) // 2, huge)
    refused = record(DEV, "AIAgentCI", "ci", START, "iam.amazonaws.com", "ListRoles", error="AccessDenied",
                     read_only=True)  # fmt: skip
    records.insert(0, refused)  # counted: one refusal, far below its threshold
    trail = tmp_path / "trail"
    trail.mkdir()
    for n in range(0, len(records), 200):
        path = trail / f"111122223333_CloudTrail_us-east-1_{n:06d}.json.gz"
        path.write_bytes(gzip.compress(json.dumps({"Records": records[n : n + 200]}).encode()))
    settings, env = load_settings(None, SETTINGS)
    spills = tmp_path / "tmp"
    spills.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(spills))  # where this run's spill files go

    one, two = (run([str(trail)], settings, env, workers=w) for w in (1, 2))
    assert two.decisions == one.decisions
    assert two.incidents == one.incidents
    assert {**two.to_dict(), "seconds": 0} == {**one.to_dict(), "seconds": 0}
    assert {"contained", "reported", "joined", "counted", "not_containable"} <= set(one.statuses())
    assert next(d for d in one.decisions if d.event_id == huge["eventID"]).status in ("contained", "joined")
    assert not list(spills.iterdir())  # the spill files removed


def test_a_helpers_spill_file_reads_back_as_its_verdicts(tmp_path: Path) -> None:
    """What a helper writes, read back: the replay's fields at once, each whole verdict equal to the one
    the scan made, whether it was spilled as the record's own JSON (a log file) or as the verdict itself
    (a file of JSON lines; one through pickle: an integer msgpack cannot hold)."""
    from guardrail.operate.backtest import RECORD, VERDICT, LogFile, _scan_in_worker, _spilled, scan

    huge = record(PROD, "AIAgentRole", "agent", START, "dynamodb.amazonaws.com", "DeleteTable",
                  {"tableName": "orders", "limit": 2**70})  # fmt: skip
    plain = record(PROD, "AIAgentRole", "agent", START + timedelta(seconds=1), "s3.amazonaws.com",
                   "DeleteBucket", {"bucketName": "reports"})  # fmt: skip
    log = tmp_path / "111122223333_CloudTrail_us-east-1_x.json.gz"
    log.write_bytes(gzip.compress(json.dumps({"Records": [huge, plain]}).encode()))
    lines = tmp_path / "records.jsonl"
    lines.write_text("".join(json.dumps(r) + "\n" for r in (huge, plain)))
    env = {**SETTINGS}
    settings, _ = load_settings(None, env)
    for number, (path, kind) in enumerate(((log, RECORD), (lines, VERDICT))):
        file = LogFile(str(path))
        mine = scan(file, settings, Selection())
        sent = _scan_in_worker(file, env, Selection(), str(tmp_path / f"{number}.msgpack"))
        assert sent.acted == []
        assert sent.spilled is not None
        read = _spilled(sent.spilled)
        # The replay's fields equal (the last, where the verdict is, differs by design).
        assert [msgspec.structs.astuple(a)[:-1] for a in read] == [
            msgspec.structs.astuple(a)[:-1] for a in mine.acted
        ]
        assert [a.source[-1] for a in read] == [kind, kind]  # not decoded until asked
        assert [a.verdict(settings) for a in read] == [a.verdict(settings) for a in mine.acted]
        assert read[0].verdict(settings).call.request["limit"] == 2**70


def test_this_process_spills_a_log_files_records_and_keeps_other_verdicts(tmp_path: Path) -> None:
    """The scanning process keeps a log file's records as their JSON in its own spill file (not a quarter
    of a million parsed objects to hold and free), read again into the same verdict; a verdict no JSON
    stands for (a file of JSON lines) it keeps as it is."""
    from guardrail.operate.backtest import RECORD, LogFile, Spill, scan

    agent = record(PROD, "AIAgentRole", "agent", START, "dynamodb.amazonaws.com", "DeleteTable",
                   {"tableName": "orders"})  # fmt: skip
    log = tmp_path / "111122223333_CloudTrail_us-east-1_x.json.gz"
    log.write_bytes(gzip.compress(json.dumps({"Records": [agent]}).encode()))
    lines = tmp_path / "records.jsonl"
    lines.write_text(json.dumps(agent) + "\n")
    settings, _ = load_settings(None, {**SETTINGS})
    whole = scan(LogFile(str(log)), settings, Selection()).acted[0].verdict(settings)

    spill = tmp_path / "0.here"
    [kept] = scan(LogFile(str(log)), settings, Selection(), spill=Spill(str(spill))).acted
    assert kept.source == (str(spill), 0, spill.stat().st_size, RECORD)
    assert json.loads(spill.read_bytes()) == agent  # the record as the trail wrote it
    assert kept.verdict(settings) == whole

    other = tmp_path / "1.here"
    [held] = scan(LogFile(str(lines)), settings, Selection(), spill=Spill(str(other))).acted
    assert held.source == whole
    assert not other.exists()  # nothing to spill: no file
