"""A storm: 1,000 destructive calls by one agent within a minute, through the real handler against moto."""

from __future__ import annotations

import json
import math
from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import Any

from botocore.config import Config

from guardrail.operate.replay import agent_is_denied
from tests.integration.test_windows import START, at, table_items

STORM = 1000
# DynamoDB bills a write per started KB of the item's larger version, twice inside a transaction.
KB = 1024


def _size(item: dict[str, Any]) -> int:
    """An item's size as DynamoDB counts it, near enough: names plus values (JSON-encoded here)."""
    return sum(len(name) + len(json.dumps(value)) for name, value in item.items())


# moto copies every table for each transaction, so its transactions slow down as the table fills (the
# storm leaves 3,000 items), and it does not honour TransactWriteItems' ClientRequestToken: a transaction
# retried after a client timeout reads there as a redelivery. DynamoDB makes such a retry idempotent
# (botocore fills the token, and a retry resends it); here the client waits instead of retrying.
PATIENT = Config(read_timeout=120, retries={"mode": "standard", "max_attempts": 1})


def test_a_storm_gives_one_incident_one_containment_and_bounded_state(make_responder: Any) -> None:
    responder = make_responder(config=PATIENT)
    now = [datetime(2026, 11, 20, 3, 0, 5, tzinfo=UTC)]

    def clock() -> datetime:  # the responder's clock moves with the storm: 60 ms an event, 60 s in all
        return now[0]

    responder.runtime.clock = clock
    agent = responder.agent(at("rules/dynamodb.table-deleted.json", START))
    statuses: Counter[str] = Counter()
    for i in range(STORM):
        moment = START + timedelta(milliseconds=60 * i)
        now[0] = moment
        statuses[responder(at("rules/dynamodb.table-deleted.json", moment))["status"]] += 1

    assert statuses == {"contained": 1, "joined": STORM - 1}
    assert responder.writes("iam") == ["PutRolePolicy", "TagRole"]  # one containment
    assert agent_is_denied(agent)

    messages = responder.aws.published()
    kinds = Counter(m["kind"] for m in messages)
    assert kinds["incident"] == 1
    assert kinds["update"] <= 1  # at most one summary a minute; the storm lasts one
    assert kinds["damage"] == 1  # the damage report, once, after the containment
    assert len(messages) == kinds["incident"] + kinds["update"] + kinds["damage"]

    items = table_items(responder)
    by_kind = Counter(i["pk"]["S"].split("#", 1)[0] + "/" + i["sk"]["S"].split("#", 1)[0] for i in items)
    assert by_kind == {
        "PRINCIPAL/OPEN": 1,
        "INCIDENT/META": 1,
        "INCIDENT/COUNTS": 1,  # the small item every joining event updates
        "EVENT/EVENT": STORM,  # every event marked once (24 h TTL), so redeliveries are not recounted
        "WINDOW/M": 1,  # counted until the agent was held; after that the incident counts
        "OWN/OWN": 2,  # the request ids of its PutRolePolicy and TagRole: CloudTrail's echo is not tampering
        "FLIGHT/CALL": STORM,  # the agent's flight record: every call, for the damage report (30 days' TTL)
        "INCIDENT/AUDIT": 2,  # the containment, and the damage report sent after it
    }
    (counts,) = [i for i in items if i["sk"]["S"] == "COUNTS"]
    assert int(counts["event_count"]["N"]) == STORM  # every event counted
    assert sum(int(v["N"]) for v in counts["counts_by_name"]["M"].values()) == STORM
    assert len(counts["event_ids"]["L"]) == 25  # the first ones; the markers name the rest for 24 h
    largest = max(_size(i) for i in items)
    assert largest < 8 * KB, "no record grows with the storm"
    # What one joining event costs the incident's partition: a transactional update of the counts item
    # (2 WCU per started KB). 1,000 WCU/s per partition then absorbs bursts of 250 events a second.
    counts_wcu = 2 * math.ceil(_size(counts) / KB)
    assert counts_wcu <= 4

    # The next call after the minute carries the storm's summary: one message for all that joined.
    now[0] = START + timedelta(seconds=75)
    assert responder(at("rules/dynamodb.table-deleted.json", now[0]))["status"] == "joined"
    update = responder.aws.published()[-1]
    assert update["kind"] == "update"
    assert update["counts"]["events"] == STORM + 1
    assert update["counts"]["since_last_update"] == STORM
    assert update["counts"]["by_event_name"] == {"DeleteTable": STORM}

    per_event = Counter(c["operation"] for c in responder.calls)
    calls = sum(per_event.values())
    assert calls <= 3 * STORM, per_event  # a read, a transaction, and now and then a summary
    print(f"\nstorm: {calls / STORM:.2f} AWS calls/event {dict(per_event)}; COUNTS {_size(counts)} B")
