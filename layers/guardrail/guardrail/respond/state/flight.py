"""The agent's flight record: every routed event of a watched agent, kept against its principal.

Items: FLIGHT#<principal key> / CALL#<eventTime>#<eventID>: what it called, on what, whether it succeeded,
the verdict. Kept GUARDRAIL_FLIGHT_DAYS (30 by default), then DynamoDB's TTL removes them.

Written in the transaction the event already makes (its marker, its window count, the incident it opens or
joins), so a failed write loses nothing and a redelivery writes the same item again (the key is the event's
own). An agent's event that writes nothing else (ignored, counted by no window) is recorded on its own,
unless it only read (the routes never deliver a successful read; CloudTrail's event history has them); a
non-agent's ignored event makes no AWS call at all. The request is kept as JSON, reduced when large to its
small parameters: the damage report reads the resources and the parameters that set a deadline.
"""

from __future__ import annotations

import json
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from guardrail.detect.recovery import Change, named_resources, parse_date
from guardrail.respond.state.table import bounded, from_item, item

if TYPE_CHECKING:
    from datetime import datetime

    from guardrail.detect.verdict import Verdict
    from guardrail.respond.state.table import StateTable

REQUEST_LIMIT = 4000  # characters of request JSON kept whole; beyond, only its small parameters
PARAMETER_LIMIT = 512  # a parameter kept from a large request


def flight_key(principal_key: str) -> str:
    return f"FLIGHT#{bounded(principal_key)}"


def _time(moment: datetime) -> str:
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _request_json(request: dict[str, object]) -> tuple[str, bool]:
    text = json.dumps(request, separators=(",", ":"), sort_keys=True, default=str)
    if len(text) <= REQUEST_LIMIT:
        return text, False
    small: dict[str, object] = {}
    for key, value in request.items():
        part = json.dumps(value, separators=(",", ":"), default=str)
        if len(part) <= PARAMETER_LIMIT and len(small) < 40:
            small[key] = value
    return json.dumps(small, separators=(",", ":"), sort_keys=True, default=str)[:REQUEST_LIMIT], True


class FlightRecord:
    def __init__(self, table: StateTable, days: int = 30) -> None:
        self.table = table
        self.days = days

    def entry(self, verdict: Verdict, principal_key: str) -> dict[str, Any]:
        """The transaction item that records one event of an agent."""
        call = verdict.call
        request, clipped = _request_json(call.request)
        values = {
            "pk": flight_key(principal_key),
            "sk": f"CALL#{_time(call.event_time)}#{bounded(call.event_id)}",
            "principal": call.principal.arn[:512],
            "event_id": call.event_id[:256],
            "event_time": _time(call.event_time),
            "event_source": call.event_source,
            "event_name": call.event_name,
            "region": call.region,
            "account": call.account,
            "error_code": (call.error_code or "")[:256] or None,
            "request": request,
            "request_clipped": clipped or None,
            "response": json.dumps(call.response, default=str)[:1024] if call.response else None,
            "resources": list(named_resources(call.request, call.resources)) or None,
            "read_only": call.is_read,
            "verdict": {
                "category": verdict.category.value,
                "severity": verdict.severity.value,
                "decision": verdict.decision.value,
                "rule": verdict.top_rule.id if verdict.top_rule else None,
            },
            "expires_at": int((self.table.clock() + timedelta(days=self.days)).timestamp()),
        }
        return {"Put": {"TableName": self.table.name, "Item": item(values)}}

    def record(self, verdict: Verdict, principal_key: str) -> None:
        """An event that writes nothing else: its record on its own (the same item a redelivery rewrites)."""
        put = self.entry(verdict, principal_key)["Put"]
        self.table.db.put_item(TableName=put["TableName"], Item=put["Item"])

    def of(self, principal_key: str, since: datetime | None = None, limit: int = 2000) -> list[Change]:
        """The principal's recorded calls, oldest first (since a time, when given; at most `limit`)."""
        expression = "pk = :pk AND begins_with(sk, :call)"
        values: dict[str, Any] = {":pk": {"S": flight_key(principal_key)}, ":call": {"S": "CALL#"}}
        if since is not None:
            expression = "pk = :pk AND sk BETWEEN :since AND :end"
            values = {
                ":pk": values[":pk"],
                ":since": {"S": f"CALL#{_time(since)}"},
                ":end": {"S": "CALL#\uffff"},
            }
        kwargs: dict[str, Any] = {
            "TableName": self.table.name,
            "KeyConditionExpression": expression,
            "ExpressionAttributeValues": values,
            "ConsistentRead": True,
        }
        found: list[Change] = []
        while len(found) < limit:
            page = self.table.db.query(**kwargs)
            found += [change_of(from_item(i)) for i in page.get("Items", [])]
            if "LastEvaluatedKey" not in page:
                break
            kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]
        return found[:limit]


def change_of(stored: dict[str, Any]) -> Change:
    """A flight item as the damage report reads it."""

    def loads(text: object) -> dict[str, Any]:
        try:
            value = json.loads(str(text)) if text else {}
        except json.JSONDecodeError:
            return {}
        return value if isinstance(value, dict) else {}

    return Change(
        event_id=str(stored.get("event_id", "")),
        time=parse_date(stored.get("event_time")) or parse_date(0),  # type: ignore[arg-type]
        source=str(stored.get("event_source", "")),
        name=str(stored.get("event_name", "")),
        region=str(stored.get("region", "")),
        account=str(stored.get("account", "")),
        request=loads(stored.get("request")),
        response=loads(stored.get("response")) or None,
        error_code=stored.get("error_code") or None,
        resources=tuple(stored.get("resources") or ()),
        read_only=bool(stored.get("read_only")),
        verdict=stored.get("verdict") or {},
    )
