"""`guardrail backtest --athena-sql`: the generated query, run for real on DuckDB (the Trino dialect
translated by sqlglot) over the table AWS documents for CloudTrail, selects exactly the records the
routing patterns deliver through moto's EventBridge; its result, read back, backtests as the log files do."""

from __future__ import annotations

import csv
import gzip
import io
import json
from datetime import date
from pathlib import Path
from typing import Any

import duckdb
import pytest
import sqlglot
from moto import mock_aws

from guardrail.detect.catalogue import default_catalogue
from guardrail.detect.routing import OPTIONAL_RULES, all_patterns
from guardrail.errors import InvalidEventError
from guardrail.operate.athena import Untranslatable, athena_sql, pattern_condition, record_of, records_of
from guardrail.operate.backtest import load_settings, run
from tests.conftest import EVENTS, ROOT
from tests.eventbridge import envelope, router

# The table of AWS's "Create a table for CloudTrail logs in Athena" (docs.aws.amazon.com/athena/latest/ug/
# create-cloudtrail-table.html), in DuckDB's types.
COLUMNS = {
    "eventversion": "VARCHAR",
    "useridentity": "STRUCT(type VARCHAR, principalid VARCHAR, arn VARCHAR, accountid VARCHAR, "
    "invokedby VARCHAR, accesskeyid VARCHAR, username VARCHAR, "
    "onbehalfof STRUCT(userid VARCHAR, identitystorearn VARCHAR), "
    "sessioncontext STRUCT(attributes STRUCT(mfaauthenticated VARCHAR, creationdate VARCHAR), "
    "sessionissuer STRUCT(type VARCHAR, principalid VARCHAR, arn VARCHAR, accountid VARCHAR, "
    "username VARCHAR), ec2roledelivery VARCHAR))",
    "eventtime": "VARCHAR",
    "eventsource": "VARCHAR",
    "eventname": "VARCHAR",
    "awsregion": "VARCHAR",
    "sourceipaddress": "VARCHAR",
    "useragent": "VARCHAR",
    "errorcode": "VARCHAR",
    "errormessage": "VARCHAR",
    "requestparameters": "VARCHAR",
    "responseelements": "VARCHAR",
    "additionaleventdata": "VARCHAR",
    "requestid": "VARCHAR",
    "eventid": "VARCHAR",
    "resources": "STRUCT(arn VARCHAR, accountid VARCHAR, type VARCHAR)[]",
    "eventtype": "VARCHAR",
    "apiversion": "VARCHAR",
    "readonly": "VARCHAR",
    "recipientaccountid": "VARCHAR",
}
STRUCT_FIELDS: dict[str, Any] = {
    "type": None,
    "principalid": None,
    "arn": None,
    "accountid": None,
    "invokedby": None,
    "accesskeyid": None,
    "username": None,
    "onbehalfof": {"userid": None, "identitystorearn": None},
    "sessioncontext": {
        "attributes": {"mfaauthenticated": None, "creationdate": None},
        "sessionissuer": {
            "type": None,
            "principalid": None,
            "arn": None,
            "accountid": None,
            "username": None,
        },
        "ec2roledelivery": None,
    },
}


def _struct(value: Any, fields: dict[str, Any]) -> Any:
    """What the SerDe makes of a JSON object under a struct type: the declared fields, lower-cased, as
    text; the rest dropped."""
    if not isinstance(value, dict):
        return None
    lowered = {k.lower(): v for k, v in value.items()}
    out = {}
    for name, inner in fields.items():
        v = lowered.get(name)
        if inner is not None:
            out[name] = _struct(v, inner)
        elif v is None or isinstance(v, dict | list):
            out[name] = None
        else:
            out[name] = str(v).lower() if isinstance(v, bool) else str(v)
    return out


def _text(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, bool):
        return str(value).lower()
    return value if isinstance(value, str) else json.dumps(value)


def row_of(record: dict[str, Any]) -> dict[str, Any]:
    """A CloudTrail record as the table holds it."""
    resources = record.get("resources")
    return {
        "eventversion": _text(record.get("eventVersion")),
        "useridentity": _struct(record.get("userIdentity"), STRUCT_FIELDS),
        "eventtime": _text(record.get("eventTime")),
        "eventsource": _text(record.get("eventSource")),
        "eventname": _text(record.get("eventName")),
        "awsregion": _text(record.get("awsRegion")),
        "sourceipaddress": _text(record.get("sourceIPAddress")),
        "useragent": _text(record.get("userAgent")),
        "errorcode": _text(record.get("errorCode")),
        "errormessage": _text(record.get("errorMessage")),
        "requestparameters": _text(record.get("requestParameters")),
        "responseelements": _text(record.get("responseElements")),
        "additionaleventdata": _text(record.get("additionalEventData")),
        "requestid": _text(record.get("requestID")),
        "eventid": _text(record.get("eventID")),
        "resources": [_struct(r, {"arn": None, "accountid": None, "type": None}) for r in resources]
        if isinstance(resources, list)
        else None,
        "eventtype": _text(record.get("eventType")),
        "apiversion": _text(record.get("apiVersion")),
        "readonly": _text(record.get("readOnly")),
        "recipientaccountid": _text(record.get("recipientAccountId")),
    }


def corpus() -> list[dict[str, Any]]:
    """Every sample event's record and every published record of a call (tests/data/cloudtrail), each with
    an id of its own, and variants at the edges of the translation."""
    found: list[dict[str, Any]] = []
    for path in sorted(EVENTS.rglob("*.json")):
        document = json.loads(path.read_text())
        if isinstance(document.get("detail"), dict):
            found.append(document["detail"])
    for path in sorted((ROOT / "tests" / "data" / "cloudtrail").glob("*.jsonl")):
        found += [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    found = [r for r in found if r.get("eventSource") and r.get("eventName")]
    base = json.loads((EVENTS / "rules" / "s3.versioning-suspended.json").read_text())["detail"]
    for status in ("Enabled", "SUSPENDED", "disabled"):
        found.append(base | {"requestParameters": {"VersioningConfiguration": {"Status": status}}})
    denied = json.loads((EVENTS / "access-denied" / "s3-delete-bucket-denied.json").read_text())["detail"]
    for code in ("Client.UnauthorizedOperation", "SomethingAccessDeniedHere", "Throttling", "AccessDenied_"):
        found.append(denied | {"errorCode": code})
    found.append(denied | {"eventName": "Delete%Things_"})  # LIKE's own characters, as text
    records = [dict(r, eventID=f"record-{n:04d}") for n, r in enumerate(found)]
    for n, record in enumerate(records):
        # Three days, two regions, so that a selection has something to leave out.
        record["eventTime"] = f"2026-11-{18 + n % 3:02d}T{n % 24:02d}:00:00Z"
        record["awsRegion"] = ("us-east-1", "eu-west-1")[n % 2]
    return records


def _table(records: list[dict[str, Any]], folder: Path) -> Any:
    lines = folder / "table.jsonl"
    lines.write_text("".join(json.dumps(row_of(r)) + "\n" for r in records))
    con = duckdb.connect()
    columns = ", ".join(f"'{name}': '{kind}'" for name, kind in COLUMNS.items())
    con.execute(
        f"CREATE TABLE cloudtrail_logs AS SELECT * FROM read_json('{lines}', columns={{{columns}}}, "
        "format='newline_delimited')"
    )
    return con


def _run(con: Any, sql: str) -> list[dict[str, Any]]:
    translated = sqlglot.transpile(sql, read="trino", write="duckdb")
    assert len(translated) == 1
    cursor = con.execute(translated[0])
    names = [d[0] for d in cursor.description]
    return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]


@pytest.fixture(scope="module")
def records() -> list[dict[str, Any]]:
    return corpus()


@pytest.fixture(scope="module")
def routed_ids(records: list[dict[str, Any]]) -> dict[str, set[str]]:
    with mock_aws():
        patterns = all_patterns(default_catalogue())
        default = router({n: p for n, p in patterns.items() if n not in OPTIONAL_RULES})
        writes = router({n: p for n, p in patterns.items() if n in OPTIONAL_RULES})
        found: dict[str, set[str]] = {"default": set(), "writes": set()}
        for n, record in enumerate(records):
            event = envelope(record, n)
            if default(event):
                found["default"].add(record["eventID"])
            if writes(event):
                found["writes"].add(record["eventID"])
        return found


def test_the_query_selects_exactly_what_the_patterns_route(
    records: list[dict[str, Any]], routed_ids: dict[str, set[str]], tmp_path: Path
) -> None:
    con = _table(records, tmp_path)
    selected = {row["eventid"] for row in _run(con, athena_sql())}
    expected = routed_ids["default"]
    assert len(expected) > 200
    assert len(records) - len(expected) > 200  # reads and routine writes are left out: a real test
    assert selected - expected == set(), "selected but never routed"
    assert expected - selected == set(), "routed but not selected"
    with_writes = {row["eventid"] for row in _run(con, athena_sql(agent_writes=True))}
    assert with_writes == expected | routed_ids["writes"]
    assert routed_ids["writes"] - expected  # the optional route adds writes the default ones leave


def test_the_selection_narrows_the_query(
    records: list[dict[str, Any]], routed_ids: dict[str, set[str]], tmp_path: Path
) -> None:
    con = _table(records, tmp_path)
    sql = athena_sql(since=date(2026, 11, 19), until=date(2026, 11, 19), regions=frozenset({"eu-west-1"}))
    selected = {row["eventid"] for row in _run(con, sql)}
    by_id = {r["eventID"]: r for r in records}
    expected = {
        i
        for i in routed_ids["default"]
        if by_id[i]["eventTime"].startswith("2026-11-19") and by_id[i]["awsRegion"] == "eu-west-1"
    }
    assert expected
    assert selected == expected


def test_the_result_read_back_is_the_record_cloudtrail_wrote(
    records: list[dict[str, Any]], tmp_path: Path
) -> None:
    """What the decision reads survives the table and the CSV: the same call, field for field, but for
    what the documented table has no column for (the session's source identity)."""
    from guardrail.detect.cloudtrail import parse_event

    con = _table(records, tmp_path)
    rows = _run(con, athena_sql())
    text = _csv(rows)
    read = dict(records_of("result.csv", text))
    by_id = {r["eventID"]: r for r in records}
    assert len(read) == len(rows)
    compared = 0
    for where, record in read.items():
        assert isinstance(record, dict), where
        original = by_id[record["eventID"]]
        if "principalid" in (original.get("userIdentity") or {}):
            continue  # a published record that went through Athena once already: lower-cased, unread
        compared += 1
        ours, theirs = parse_event(record), parse_event(original)
        theirs.principal.source_identity = None
        if any(isinstance(r, dict) and "arn" in r for r in original.get("resources") or []):
            theirs.resources = ours.resources  # a published sample's "arn": the table has one column for it
        assert ours.principal == theirs.principal, where
        assert ours == theirs, where
    assert compared > 200


def _csv(rows: list[dict[str, Any]]) -> str:
    """As Athena writes a result: a header, every value quoted, NULL an empty field."""
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=list(rows[0]), quoting=csv.QUOTE_ALL)
    writer.writeheader()
    writer.writerows({k: "" if v is None else v for k, v in row.items()} for row in rows)
    return out.getvalue()


def test_backtest_of_the_result_decides_as_the_backtest_of_the_log_files(
    records: list[dict[str, Any]], tmp_path: Path
) -> None:
    """The query leaves out only what the responder never sees: the incidents are the same."""
    logs = tmp_path / "logs"
    logs.mkdir()
    (logs / "111122223333_CloudTrail_us-east-1_20261118T0000Z_all.json.gz").write_bytes(
        gzip.compress(json.dumps({"Records": records}).encode())
    )
    result = tmp_path / "result.csv"
    result.write_text(_csv(_run(_table(records, tmp_path), athena_sql())))
    settings, env = load_settings(None, {"GUARDRAIL_AGENT_ARN_PATTERNS": "*Agent*,*agent*,*claude*"})
    from_logs = run([str(logs)], settings, env)
    from_result = run([str(result)], settings, env)
    assert from_result.events < from_logs.events

    def incidents(backtest: Any) -> list[tuple[str, str, str, str]]:
        return [(i.status, i.principal, i.event_id, i.event_name) for i in backtest.incidents]

    assert incidents(from_result) == incidents(from_logs)
    assert [i for i in incidents(from_logs) if i[0] == "contained"]
    assert not from_result.unreadable


def test_an_unreadable_row_is_counted_with_its_reason() -> None:
    text = '"eventsource","eventname","useridentity"\n"s3.amazonaws.com","DeleteBucket","{not json"\n'
    [(where, error)] = list(records_of("r.csv", text))
    assert where == "r.csv:2"
    assert isinstance(error, InvalidEventError)
    assert "useridentity is not JSON" in str(error)
    with pytest.raises(InvalidEventError, match="no eventsource"):
        record_of({"something": "else"})
    lines = '{"eventsource": "s3.amazonaws.com", "eventname": "ListBuckets"}\n[1]\n'
    read = list(records_of("unload.json", lines))
    assert read[0][1] == {"eventSource": "s3.amazonaws.com", "eventName": "ListBuckets"}
    assert isinstance(read[1][1], InvalidEventError)


def test_a_pattern_the_translation_does_not_know_is_refused() -> None:
    with pytest.raises(Untranslatable, match="numeric"):
        pattern_condition({"detail": {"requestParameters": {"size": [{"numeric": [">", 5]}]}}})
    with pytest.raises(Untranslatable, match="no column"):
        pattern_condition({"detail": {"tlsDetails": {"tlsVersion": ["TLSv1"]}}})
    with pytest.raises(Untranslatable, match="pattern keys"):
        pattern_condition({"account": ["111122223333"]})


def test_the_command_prints_the_query_and_reads_no_source(capsys: pytest.CaptureFixture[str]) -> None:
    from guardrail.operate.cli import main

    argv = ["backtest", "--athena-sql", "--table", "security.trail", "--since", "2026-01-01"]
    assert main([*argv, "--regions", "eu-west-1"]) == 0
    sql = capsys.readouterr().out
    assert sql == athena_sql(table="security.trail", since=date(2026, 1, 1), regions=frozenset({"eu-west-1"}))
    assert "FROM security.trail" in sql
    assert "-- AgentWrites" not in sql
    assert main(["backtest", "--athena-sql", "--agent-writes"]) == 0
    assert "-- AgentWrites" in capsys.readouterr().out
    assert main(["backtest", "--athena-sql", "somewhere/"]) == 1
    assert "reads no source" in capsys.readouterr().err
    assert main(["backtest", "--athena-sql", "--table", "x; DROP TABLE y"]) == 1
    assert "not a table name" in capsys.readouterr().err
