"""operate/logfiles.py: CloudTrail log files read by msgspec, every record giving the same call or the same
error as parse_event gives it."""

from __future__ import annotations

import gzip
import json
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from guardrail.detect.cloudtrail import call_of, documents_in, text_of
from guardrail.errors import InvalidEventError
from guardrail.model import ApiCall
from guardrail.operate.logfiles import documents, log_file_records
from tests.conftest import load_event

ENVELOPE = load_event("rules/s3.bucket-deleted.json")
START = datetime(2026, 1, 1, tzinfo=UTC)


def _every_record() -> list[Any]:
    """The published records (tests/data/cloudtrail) and every sample event's record, and the odd ones a
    log file could hold: what the fast path must read exactly as parse_event does, or leave to it."""
    root = Path(__file__).resolve().parents[2]
    found: list[Any] = []
    for path in sorted((root / "tests" / "data" / "cloudtrail").glob("*.jsonl")):
        found += [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    for path in sorted((root / "events").rglob("*.json")):
        document = json.loads(path.read_text())
        if isinstance(document, dict) and isinstance(document.get("detail"), dict):
            found.append(document["detail"])
    record = ENVELOPE["detail"]
    found += [
        {k: v for k, v in record.items() if k != "eventID"},  # its id: a hash of its JSON
        {**record, "eventID": ""},
        {**record, "detail": None},  # an envelope's key: parse_event reads it as an envelope
        {**record, "detail-type": "AWS API Call via CloudTrail"},
        {**record, "userIdentity": {"accountId": "111122223333"}},  # neither a type nor invokedBy
        {**record, "userIdentity": "someone"},
        {**record, "eventName": ""},
        {**record, "eventTime": "redacted"},
        {**record, "eventType": "AwsServiceEvent"},
        {**record, "eventType": 7},
        {**record, "readOnly": "true"},
        {
            **record,
            "requestParameters": {"n": 10**30, "f": 1.5e300, "s": "\u2028é\x00", "deep": [[{"x": None}]]},
        },
        "a string",
        7,
        None,
        [],
    ]
    return found


def _calls(documents: list[tuple[str, object]]) -> list[tuple[str, object]]:
    read: list[tuple[str, object]] = []
    for where, document in documents:
        try:
            read.append((where, call_of(document)))
        except InvalidEventError as exc:
            read.append((where, f"error: {exc}"))
    return read


def test_log_file_fast_path_reads_every_record_as_parse_event_does() -> None:
    records = _every_record()
    raw = gzip.compress(json.dumps({"Records": records}).encode())
    fast = documents("log.json.gz", text_of("log.json.gz", raw))
    slow = list(documents_in("log.json.gz", raw))
    assert (
        [w for w, _ in fast]
        == [w for w, _ in slow]
        == [f"log.json.gz#Records[{i}]" for i in range(len(records))]
    )
    # Every ordinary record comes parsed (or refused), the odd ones as JSON for parse_event.
    ordinary = [
        r
        for r in records
        if isinstance(r, dict)
        and r.get("eventID")
        and r.get("eventSource")
        and r.get("eventName")
        and isinstance(r.get("userIdentity", {}), dict)
        and isinstance(r.get("eventType", ""), str)
        and not {"detail", "detail-type"} & r.keys()
    ]
    # msgspec is strict where pydantic is lax ("true" for readOnly, "redacted" or nanoseconds for a time):
    # those few go the slow way, to the same call.
    fast_count = sum(isinstance(d, ApiCall | InvalidEventError) for _, d in fast)
    assert len(ordinary) - 5 <= fast_count <= len(ordinary)
    assert len(ordinary) > 500
    assert all(not isinstance(d, ApiCall) for _, d in slow)
    fast_calls, slow_calls = _calls(fast), _calls(slow)
    for (where, a), (_, b) in zip(fast_calls, slow_calls, strict=True):
        if isinstance(a, ApiCall) and "eventTime" in a.gaps:
            assert isinstance(b, ApiCall)
            assert "eventTime" in b.gaps  # the time it was read: not equal
            a, b = replace(a, event_time=b.event_time), b
        assert a == b, where
    errors = [c for _, c in fast_calls if isinstance(c, str)]
    assert any("neither a type nor the AWS service" in e for e in errors)
    assert any("eventName" in e for e in errors)


def test_a_log_files_ascii_bytes_are_read_as_its_text_is_and_anything_else_as_text() -> None:
    """log_file_records skips the text copy only where that cannot change a thing: ASCII bytes; and gives
    each record's own JSON, which the backtest spills and reads again."""
    records = _every_record()
    ascii_file = json.dumps({"Records": records}).encode()  # as CloudTrail writes: non-ASCII escaped
    read = log_file_records("log.json", ascii_file)
    assert read is not None
    from_bytes, raws = read
    assert [json.loads(bytes(raw)) for raw in raws] == records
    from_text = documents("log.json", text_of("log.json", ascii_file))

    def same(calls: list[tuple[str, object]]) -> list[tuple[str, object]]:  # a time read now aside
        return [(w, replace(c, event_time=START) if isinstance(c, ApiCall) and "eventTime" in c.gaps else c)
                for w, c in _calls(calls)]  # fmt: skip

    assert same(from_bytes) == same(from_text)
    # UTF-8 beyond ASCII, a byte-order mark, bytes that are not UTF-8, not a log file: read as text, which
    # takes the first two and says what is wrong with the third.
    utf8 = json.dumps({"Records": records}, ensure_ascii=False).encode()
    for raw in (utf8, b"\xef\xbb\xbf" + ascii_file, b'{"Records": [{"eventID": "\xff"}]}', b"[]"):
        assert log_file_records("log.json", raw) is None
    assert same(documents("log.json", text_of("log.json", utf8))) == same(from_text)
    assert same(documents("log.json", text_of("log.json", b"\xef\xbb\xbf" + ascii_file))) == same(from_text)
    with pytest.raises(InvalidEventError, match="not UTF-8"):
        text_of("log.json", b'{"Records": [{"eventID": "\xff"}]}')


def test_a_file_the_fast_path_cannot_decode_is_read_the_slow_way() -> None:
    record = ENVELOPE["detail"]
    text = '{"Records": [' + json.dumps(record) + ", {not json}]}"
    broken = _calls(documents("x.json", text))
    assert broken == _calls(list(documents_in("x.json", text.encode())))
    [(where, error)] = broken
    assert where == "x.json:1"
    assert str(error).startswith("error: x.json:1: not JSON (Expecting property name")
    lines = (json.dumps({"Records": [record]}) + "\n" + json.dumps(ENVELOPE) + "\n").encode()
    read = _calls(documents("x.jsonl", lines.decode()))
    assert [w for w, _ in read] == ["x.jsonl:1#Records[0]", "x.jsonl:2"]
    assert all(not isinstance(c, str) for _, c in read)
