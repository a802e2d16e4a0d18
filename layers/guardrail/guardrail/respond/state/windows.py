"""The principals' windows in the state table: one small item per principal and minute.

Items: WINDOW#<principal key> / M#<epoch minute> with the minute's counts: access_denied and destructive
(atomic ADDs), resources and services (string sets, capped at MAX_DISTINCT); each expires with the longest
window. What an event adds and which thresholds a window reaches is decided in guardrail.detect.windows.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from guardrail.detect.windows import Bucket
from guardrail.environments import MAX_DISTINCT
from guardrail.respond.state.table import bounded, from_item

if TYPE_CHECKING:
    from guardrail.detect.windows import Tally
    from guardrail.respond.state.table import StateTable

WINDOW_TTL_SLACK_MINUTES = 10  # window buckets outlive their longest window by this much


def window_key(key: str, minute: int) -> dict[str, Any]:
    return {"pk": {"S": f"WINDOW#{bounded(key)}"}, "sk": {"S": f"M#{minute}"}}


def is_window(item: dict[str, Any]) -> bool:
    return str(item["pk"]).startswith("WINDOW#")


def minute_of(item: dict[str, Any]) -> int:
    return int(item["sk"].removeprefix("M#"))


def bucket_of(item: dict[str, Any]) -> Bucket:
    return Bucket(
        access_denied=int(item.get("access_denied") or 0),
        destructive=int(item.get("destructive") or 0),
        resources=frozenset(item.get("resources") or ()),
        services=frozenset(item.get("services") or ()),
    )


@dataclass
class WindowCounts:
    table: StateTable

    def keys(self, tally: Tally) -> list[dict[str, Any]]:
        """Every bucket of the principal's longest window that ends at the event's minute."""
        return [window_key(tally.key, m) for m in tally.minutes]

    def count(self, tally: Tally, bucket: Bucket | None) -> Any:
        """The transaction item that adds one event to its minute bucket: atomic ADDs, so concurrent
        invocations lose no count. The distinct sets stop growing at MAX_DISTINCT (past any threshold), so
        the item stays small."""
        adds = ["access_denied :denied", "destructive :destructive"]
        values: dict[str, Any] = {
            ":denied": {"N": str(tally.access_denied)},
            ":destructive": {"N": str(tally.destructive)},
            # Past the longest window nothing reads the bucket; TTL removes it a little later.
            ":expires": {"N": str((tally.minute + tally.span + WINDOW_TTL_SLACK_MINUTES) * 60)},
        }
        if tally.resources and not (bucket and bucket.resources_full):
            adds.append("resources :resources")
            values[":resources"] = {"SS": list(tally.resources)}
        if tally.services and not (bucket and len(bucket.services) >= MAX_DISTINCT):
            adds.append("services :services")
            values[":services"] = {"SS": list(tally.services)}
        return {
            "Update": {
                "TableName": self.table.name,
                "Key": window_key(tally.key, tally.minute),
                "UpdateExpression": f"ADD {', '.join(adds)} SET expires_at = :expires",
                "ExpressionAttributeValues": values,
            }
        }

    def read(self, tally: Tally) -> dict[int, Bucket]:
        """The principal's minute buckets, read again after this event's counts were written."""
        return {
            minute_of(item): bucket_of(item) for item in map(from_item, self.table.read_all(self.keys(tally)))
        }

    def forget(self, key: str) -> int:
        """Drop a principal's window buckets (on release: counts from before it must not re-contain). All of
        them, expired or not: windows are counted by event time, and a late event reads old minutes."""
        db, name = self.table.db, self.table.name
        kwargs: dict[str, Any] = {
            "TableName": name,
            "KeyConditionExpression": "pk = :pk",
            "ExpressionAttributeValues": {":pk": {"S": f"WINDOW#{bounded(key)}"}},
            "ProjectionExpression": "pk, sk",
            "ConsistentRead": True,
        }
        forgotten = 0
        while True:
            response = db.query(**kwargs)
            for found in response.get("Items", []):
                db.delete_item(TableName=name, Key={"pk": found["pk"], "sk": found["sk"]})
                forgotten += 1
            if "LastEvaluatedKey" not in response:
                return forgotten
            kwargs["ExclusiveStartKey"] = response["LastEvaluatedKey"]
