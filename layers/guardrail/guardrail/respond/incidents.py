"""Incidents in the state table: one open incident per principal, exact dedupe of redeliveries, audit.

Items (one table, keys pk/sk, TTL attribute expires_at):
  PRINCIPAL#<role or user ARN> / OPEN           the claim: which incident holds this principal now
  INCIDENT#<id>                / META           the incident: who, what, actions, release
  INCIDENT#<id>                / COUNTS         its counts: events, by name, first ids, last summarised
  INCIDENT#<id>                / AUDIT#<time>#<kind>   one record per containment, failure, release
  EVENT#<CloudTrail eventID>   / EVENT          an event already handled (kept 24 h: Lambda retries
                                                throttled asynchronous events for up to 6 h)
  WINDOW#<principal key>       / M#<epoch minute>   the principal's counts for that minute: access_denied,
                                                destructive (ADD), resources, services (string sets, capped);
                                                expires with the longest window

Every claim is a conditional write inside one transaction with the incident and its audit record, so a
race between concurrent invocations has exactly one winner and nothing is half-written.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from guardrail.detect.windows import Bucket, Tally
from guardrail.environments import MAX_DISTINCT
from guardrail.errors import GuardrailError
from guardrail.incident import OPEN_STATUSES, Incident, IncidentStatus, iso_time

if TYPE_CHECKING:
    from collections.abc import Callable

    from mypy_boto3_dynamodb import DynamoDBClient

EVENT_MARKER_TTL = timedelta(hours=24)
# How long a non-containing incident (dry run, not containable) gathers later events before a new one opens.
INCIDENT_WINDOW = timedelta(hours=1)
# Ids kept on an incident (the first ones); every event is still counted, and every event's marker names
# its incident for 24 h. Few, because the counts item is written once per joining event: its size is the
# write cost of a storm on the incident's partition.
EVENT_IDS_CAP = 25
# The incident's fields that change with every joining event: kept apart from the incident (COUNTS), so a
# storm's writes touch a small item rather than the whole record.
COUNT_FIELDS = (
    "event_ids",
    "event_count",
    "counts_by_name",
    "last_event_at",
    "summarized_count",
    "summarized_by_name",
)
# Later events of an open incident are summarised at most this often (SNS, and so email and Slack).
SUMMARY_INTERVAL = timedelta(seconds=60)
# A claim to announce an incident is taken over after this long: shorter than Lambda's first retry (about a
# minute), longer than any publish.
ANNOUNCE_LEASE = timedelta(seconds=30)
WINDOW_TTL_SLACK_MINUTES = 10  # window buckets outlive their longest window by this much


# What each side needs of the table (transactions need the per-item permissions of what they contain).
RESPONDER_TABLE_PERMISSIONS = (
    "dynamodb:BatchGetItem",
    "dynamodb:GetItem",
    "dynamodb:PutItem",
    "dynamodb:UpdateItem",
    "dynamodb:ConditionCheckItem",
)
RELEASE_TABLE_PERMISSIONS = (
    "dynamodb:GetItem",
    "dynamodb:PutItem",
    "dynamodb:UpdateItem",
    "dynamodb:DeleteItem",
    "dynamodb:ConditionCheckItem",
    "dynamodb:Query",  # the released principal's window buckets, to forget them
)


UNPROCESSED_RETRIES = 3


class IncompleteReadError(GuardrailError):
    """The state table would not return every key asked for (throttling): the event is retried."""


@dataclass(frozen=True)
class OpenIncident:
    incident_id: str
    status: IncidentStatus
    key: str
    summary_at: int  # epoch seconds of the last message about it

    @classmethod
    def from_lock(cls, key: str, lock: dict[str, Any]) -> OpenIncident:
        return cls(lock["incident_id"], IncidentStatus(lock["status"]), key, int(lock.get("summary_at") or 0))


@dataclass(frozen=True)
class Lookup:
    held: dict[str, OpenIncident]  # the keys asked about that an open incident holds
    seen: bool = False  # this event was handled already (a redelivery or a retry)
    seen_in: str | None = None  # the incident it belongs to, if it joined or opened one
    notified: bool = True  # False: the event was recorded but its notification did not go out
    failed_id: str | None = None  # a failed containment of this principal: its retry reuses the incident
    window: dict[int, Bucket] = field(default_factory=dict)  # the principal's minute buckets, if asked

    @property
    def open(self) -> OpenIncident | None:
        """The first key asked about that an open incident holds."""
        return next(iter(self.held.values()), None)


@dataclass(frozen=True)
class Claim:
    """The result of trying to open an incident."""

    won: bool
    incident_id: str  # ours when won, the winner's when another invocation claimed first
    duplicate: bool = False  # this very event was handled concurrently


# --- (de)serialisation ---------------------------------------------------------------------------------


def _to_attr(value: Any) -> Any:
    from boto3.dynamodb.types import TypeSerializer

    # DynamoDB wants Decimal, never float; a JSON round trip converts every number at once.
    return TypeSerializer().serialize(json.loads(json.dumps(value), parse_float=Decimal))


def _item(values: dict[str, Any]) -> dict[str, Any]:
    return {k: _to_attr(v) for k, v in values.items() if v is not None}


def _from_item(item: dict[str, Any]) -> dict[str, Any]:
    from boto3.dynamodb.types import TypeDeserializer

    deserializer = TypeDeserializer()

    def plain(value: Any) -> Any:
        if isinstance(value, Decimal):
            return int(value) if value == value.to_integral_value() else float(value)
        if isinstance(value, dict):
            return {k: plain(v) for k, v in value.items()}
        if isinstance(value, list | set):
            return [plain(v) for v in value]
        return value

    return {k: plain(deserializer.deserialize(v)) for k, v in item.items()}


def _lock_key(key: str) -> dict[str, Any]:
    return {"pk": {"S": f"PRINCIPAL#{key}"}, "sk": {"S": "OPEN"}}


def _meta_key(incident_id: str) -> dict[str, Any]:
    return {"pk": {"S": f"INCIDENT#{incident_id}"}, "sk": {"S": "META"}}


def _counts_key(incident_id: str) -> dict[str, Any]:
    return {"pk": {"S": f"INCIDENT#{incident_id}"}, "sk": {"S": "COUNTS"}}


def _incident_items(incident: Incident) -> tuple[dict[str, Any], dict[str, Any]]:
    """The incident as its two items: the record, and the counts that every joining event updates."""
    values = incident.to_dict()
    counts = {name: values.pop(name) for name in COUNT_FIELDS}
    pk = f"INCIDENT#{incident.id}"
    return {"pk": pk, "sk": "META", **values}, {"pk": pk, "sk": "COUNTS", **counts}


def _merged(items: list[dict[str, Any]]) -> dict[str, Incident]:
    """Incidents from their META and COUNTS items, by id (an incident without COUNTS keeps its own)."""
    meta: dict[str, dict[str, Any]] = {}
    counts: dict[str, dict[str, Any]] = {}
    for raw in items:
        item = _from_item(raw)
        (meta if item["sk"] == "META" else counts)[item["pk"]] = item
    return {
        data["incident_id"]: Incident.from_dict({**data, **counts.get(pk, {})}) for pk, data in meta.items()
    }


def _event_key(event_id: str) -> dict[str, Any]:
    return {"pk": {"S": f"EVENT#{event_id}"}, "sk": {"S": "EVENT"}}


def _window_key(key: str, minute: int) -> dict[str, Any]:
    return {"pk": {"S": f"WINDOW#{key}"}, "sk": {"S": f"M#{minute}"}}


def _bucket(item: dict[str, Any]) -> Bucket:
    return Bucket(
        access_denied=int(item.get("access_denied") or 0),
        destructive=int(item.get("destructive") or 0),
        resources=frozenset(item.get("resources") or ()),
        services=frozenset(item.get("services") or ()),
    )


def _cancellation_codes(exc: Exception) -> list[dict[str, Any]]:
    return list(getattr(exc, "response", {}).get("CancellationReasons") or [])


class IncidentStore:
    """The state table, as the responder and the operators use it."""

    def __init__(self, client: DynamoDBClient, table: str, clock: Callable[[], datetime]) -> None:
        self._db = client
        self._table = table
        self._clock = clock
        self._full_ids: set[str] = set()  # incidents whose id list is full: joins only count

    # --- reads ---------------------------------------------------------------------------------------

    def lookup(self, keys: list[str], event_id: str, tally: Tally | None = None) -> Lookup:
        """One consistent read: which of `keys` an open incident holds, whether this event was handled
        already, and (given a tally) the principal's window buckets."""
        keys = list(dict.fromkeys(keys))  # BatchGetItem refuses a key asked for twice
        wanted = [_lock_key(k) for k in keys] + [_event_key(event_id)]
        if tally is not None:
            wanted += [_window_key(tally.key, m) for m in tally.minutes]
        locks: dict[str, dict[str, Any]] = {}
        seen, seen_in, notified, failed_id = False, None, True, None
        window: dict[int, Bucket] = {}
        for raw in self._read_all(wanted):
            item = _from_item(raw)
            pk = item["pk"]
            if pk.startswith("EVENT#"):
                seen, seen_in, notified = True, item.get("incident_id"), bool(item.get("notified", True))
            elif pk.startswith("WINDOW#"):
                window[int(item["sk"].removeprefix("M#"))] = _bucket(item)
            elif self._is_open(item):
                locks[pk.removeprefix("PRINCIPAL#")] = item
            elif item.get("status") == IncidentStatus.FAILED.value:
                failed_id = item.get("incident_id")
        held = {k: OpenIncident.from_lock(k, locks[k]) for k in keys if k in locks}
        return Lookup(held, seen, seen_in, notified, failed_id, window)

    def window(self, tally: Tally) -> dict[int, Bucket]:
        """The principal's minute buckets, read again after this event's counts were written."""
        buckets: dict[int, Bucket] = {}
        for raw in self._read_all([_window_key(tally.key, m) for m in tally.minutes]):
            item = _from_item(raw)
            buckets[int(item["sk"].removeprefix("M#"))] = _bucket(item)
        return buckets

    def _read_all(self, keys: list[Any]) -> list[dict[str, Any]]:
        """BatchGetItem until every key is read. Under throttling DynamoDB returns some keys unprocessed;
        taking an unread lock or event marker for absent would count or announce wrongly, so after a few
        tries the read fails and Lambda retries the event."""
        request: Any = {self._table: {"Keys": keys, "ConsistentRead": True}}
        items: list[dict[str, Any]] = []
        for attempt in range(UNPROCESSED_RETRIES + 1):
            response = self._db.batch_get_item(RequestItems=request)
            items.extend(response.get("Responses", {}).get(self._table, []))
            request = response.get("UnprocessedKeys") or {}
            if not request:
                return items
            time.sleep(0.05 * 2**attempt)
        raise IncompleteReadError(
            f"the state table left {len(request[self._table]['Keys'])} key(s) unread after {UNPROCESSED_RETRIES} retries"
        )

    def _is_open(self, lock: dict[str, Any]) -> bool:
        if lock.get("status") not in OPEN_STATUSES:
            return False
        expires = lock.get("expires_at")
        return expires is None or int(expires) > int(self._clock().timestamp())

    def open_for(self, key: str) -> OpenIncident | None:
        response = self._db.get_item(TableName=self._table, Key=_lock_key(key), ConsistentRead=True)
        item = response.get("Item")
        if not item:
            return None
        lock = _from_item(item)
        return OpenIncident.from_lock(key, lock) if self._is_open(lock) else None

    def get(self, incident_id: str) -> Incident | None:
        found = _merged(self._read_all([_meta_key(incident_id), _counts_key(incident_id)]))
        return found.get(incident_id)

    def audit_trail(self, incident_id: str) -> list[dict[str, Any]]:
        response = self._db.query(
            TableName=self._table,
            KeyConditionExpression="pk = :pk AND begins_with(sk, :audit)",
            ExpressionAttributeValues={":pk": {"S": f"INCIDENT#{incident_id}"}, ":audit": {"S": "AUDIT#"}},
            ConsistentRead=True,
        )
        return [_from_item(i) for i in response.get("Items", [])]

    def incidents(self, limit: int = 100) -> list[Incident]:
        """Recent incidents, newest first. A scan: the table is small, and this is an operator's command."""
        items: list[dict[str, Any]] = []
        kwargs: dict[str, Any] = {
            "TableName": self._table,
            "FilterExpression": "sk IN (:meta, :counts)",
            "ExpressionAttributeValues": {":meta": {"S": "META"}, ":counts": {"S": "COUNTS"}},
        }
        while True:
            response = self._db.scan(**kwargs)
            items.extend(response.get("Items", []))
            if "LastEvaluatedKey" not in response:
                break
            kwargs["ExclusiveStartKey"] = response["LastEvaluatedKey"]
        found = sorted(_merged(items).values(), key=lambda i: i.opened_at, reverse=True)
        return found[:limit]

    # --- writes --------------------------------------------------------------------------------------

    def _audit(self, incident_id: str, kind: str, actor: str | None, details: dict[str, Any]) -> Any:
        now = self._clock()
        return {
            "Put": {
                "TableName": self._table,
                "Item": _item(
                    {
                        "pk": f"INCIDENT#{incident_id}",
                        "sk": f"AUDIT#{iso_time(now)}#{kind}",
                        "kind": kind,
                        "at": iso_time(now),
                        "actor": actor,
                        "details": details,
                    }
                ),
            }
        }

    def open(
        self,
        incident: Incident,
        event_id: str,
        audit_kind: str,
        audit: dict[str, Any],
        *,
        tally: Tally | None = None,
        bucket: Bucket | None = None,
        mark_event: bool = True,
    ) -> Claim:
        """Claim the principal for this incident, write it and its audit record, mark the event handled
        and count it in its windows.

        A failed containment is recorded without marking the event, so Lambda's retry contains again.
        `mark_event=False`: the event was already marked and counted (a window it had filled is acted on).
        """
        now = self._clock()
        lock: dict[str, Any] = {
            "pk": f"PRINCIPAL#{incident.key}",
            "sk": "OPEN",
            "incident_id": incident.id,
            "status": incident.status.value,
            "opened_at": iso_time(incident.opened_at),
            "summary_at": int(now.timestamp()),
        }
        if incident.status is not IncidentStatus.CONTAINED:
            # Only a real containment holds until release; the others gather events for a window.
            lock["expires_at"] = int((now + INCIDENT_WINDOW).timestamp())
        items: list[Any] = [
            {
                "Put": {
                    "TableName": self._table,
                    "Item": _item(lock),
                    "ConditionExpression": "attribute_not_exists(pk) OR #s IN (:failed, :released) "
                    "OR (attribute_exists(expires_at) AND expires_at < :now)",
                    "ExpressionAttributeNames": {"#s": "status"},
                    "ExpressionAttributeValues": {
                        ":failed": {"S": IncidentStatus.FAILED.value},
                        ":released": {"S": IncidentStatus.RELEASED.value},
                        ":now": {"N": str(int(now.timestamp()))},
                    },
                    "ReturnValuesOnConditionCheckFailure": "ALL_OLD",
                }
            },
            *({"Put": {"TableName": self._table, "Item": _item(part)}} for part in _incident_items(incident)),
            self._audit(incident.id, audit_kind, incident.responder, audit),
        ]
        marker_at = len(items)
        if incident.status is not IncidentStatus.FAILED and mark_event:
            items.append(self._marker(event_id, incident.id, notified=False))
            if tally is not None:
                items.append(self._count(tally, bucket))
        elif incident.status is not IncidentStatus.FAILED:
            # Marked and counted before: point the marker here, so a retry announces what this records.
            items.append(
                {
                    "Update": {
                        "TableName": self._table,
                        "Key": _event_key(event_id),
                        "UpdateExpression": "SET incident_id = :id, notified = :no REMOVE announcing_at",
                        "ExpressionAttributeValues": {":id": {"S": incident.id}, ":no": {"BOOL": False}},
                    }
                }
            )
        try:
            self._db.transact_write_items(TransactItems=items)
        except self._db.exceptions.TransactionCanceledException as exc:
            reasons = _cancellation_codes(exc)
            duplicate = (
                len(reasons) > marker_at and reasons[marker_at].get("Code") == "ConditionalCheckFailed"
            )
            if reasons and reasons[0].get("Code") == "ConditionalCheckFailed":
                winner = _from_item(reasons[0].get("Item") or {}).get("incident_id", "")
                return Claim(False, str(winner), duplicate=duplicate)
            if duplicate:
                return Claim(False, incident.id, duplicate=True)
            raise
        return Claim(True, incident.id)

    def _count(self, tally: Tally, bucket: Bucket | None) -> Any:
        """Add one event to its minute bucket: atomic ADDs, so concurrent invocations lose no count. The
        distinct sets stop growing at MAX_DISTINCT (past any threshold), so the item stays small."""
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
                "TableName": self._table,
                "Key": _window_key(tally.key, tally.minute),
                "UpdateExpression": f"ADD {', '.join(adds)} SET expires_at = :expires",
                "ExpressionAttributeValues": values,
            }
        }

    def count(self, event_id: str, tally: Tally, bucket: Bucket | None) -> bool:
        """Count an event that opens or joins nothing. False when this event was already counted."""
        try:
            self._db.transact_write_items(
                TransactItems=[self._marker(event_id, None), self._count(tally, bucket)]
            )
        except self._db.exceptions.TransactionCanceledException as exc:
            reasons = _cancellation_codes(exc)
            if reasons and reasons[0].get("Code") == "ConditionalCheckFailed":
                return False
            raise
        return True

    def forget_windows(self, key: str) -> int:
        """Drop a principal's window buckets (on release: counts from before it must not re-contain). All of
        them, expired or not: windows are counted by event time, and a late event reads old minutes."""
        kwargs: dict[str, Any] = {
            "TableName": self._table,
            "KeyConditionExpression": "pk = :pk",
            "ExpressionAttributeValues": {":pk": {"S": f"WINDOW#{key}"}},
            "ProjectionExpression": "pk, sk",
            "ConsistentRead": True,
        }
        forgotten = 0
        while True:
            response = self._db.query(**kwargs)
            for item in response.get("Items", []):
                self._db.delete_item(TableName=self._table, Key={"pk": item["pk"], "sk": item["sk"]})
                forgotten += 1
            if "LastEvaluatedKey" not in response:
                return forgotten
            kwargs["ExclusiveStartKey"] = response["LastEvaluatedKey"]

    def _marker(self, event_id: str, incident_id: str | None, *, notified: bool = True) -> Any:
        expires = int((self._clock() + EVENT_MARKER_TTL).timestamp())
        values = {"pk": f"EVENT#{event_id}", "sk": "EVENT", "incident_id": incident_id, "expires_at": expires}
        return {
            "Put": {
                "TableName": self._table,
                "Item": _item({**values, "notified": notified}),
                "ConditionExpression": "attribute_not_exists(pk)",
            }
        }

    def claim_announcement(self, event_id: str) -> bool:
        """Whether this invocation announces what the event opened. Concurrent deliveries of one event all
        see it recorded and not yet announced; one conditional write picks who announces. A claim older
        than ANNOUNCE_LEASE is taken over: its holder failed, and Lambda's retry must announce."""
        now = int(self._clock().timestamp())
        try:
            self._db.update_item(
                TableName=self._table,
                Key=_event_key(event_id),
                UpdateExpression="SET announcing_at = :now",
                ConditionExpression="attribute_exists(pk) AND notified = :no "
                "AND (attribute_not_exists(announcing_at) OR announcing_at < :stale)",
                ExpressionAttributeValues={
                    ":now": {"N": str(now)},
                    ":no": {"BOOL": False},
                    ":stale": {"N": str(now - int(ANNOUNCE_LEASE.total_seconds()))},
                },
            )
        except self._db.exceptions.ConditionalCheckFailedException:
            return False
        return True

    def release_announcement(self, event_id: str) -> None:
        """Give the claim back after a failed announcement, so the retry announces at once."""
        self._db.update_item(
            TableName=self._table, Key=_event_key(event_id), UpdateExpression="REMOVE announcing_at"
        )

    def mark_notified(self, event_id: str) -> None:
        self._db.update_item(
            TableName=self._table,
            Key=_event_key(event_id),
            UpdateExpression="SET notified = :yes",
            ExpressionAttributeValues={":yes": {"BOOL": True}},
        )

    def claim_summary(self, held: OpenIncident) -> bool:
        """Whether this invocation sends the next summary of an open incident: at most one per interval,
        decided by a conditional write on the lock (attempted only once the interval has passed)."""
        now = self._clock()
        cutoff = int((now - SUMMARY_INTERVAL).timestamp())
        if held.summary_at > cutoff:
            return False
        try:
            self._db.update_item(
                TableName=self._table,
                Key=_lock_key(held.key),
                UpdateExpression="SET summary_at = :now",
                ConditionExpression="incident_id = :id AND summary_at <= :cutoff",
                ExpressionAttributeValues={
                    ":now": {"N": str(int(now.timestamp()))},
                    ":id": {"S": held.incident_id},
                    ":cutoff": {"N": str(cutoff)},
                },
            )
        except self._db.exceptions.ConditionalCheckFailedException:
            return False
        return True

    def mark_summarized(self, incident: Incident) -> None:
        self._db.update_item(
            TableName=self._table,
            Key=_counts_key(incident.id),
            UpdateExpression="SET summarized_count = :count, summarized_by_name = :names",
            ExpressionAttributeValues={
                ":count": {"N": str(incident.event_count)},
                ":names": _to_attr(incident.counts_by_name),
            },
        )

    def join(
        self,
        incident_id: str,
        event_id: str,
        event_name: str = "",
        *,
        tally: Tally | None = None,
        bucket: Bucket | None = None,
        mark_event: bool = True,
    ) -> bool:
        """Count a later event into an open incident (and its windows, given a tally). False when this
        event was already counted."""
        now = iso_time(self._clock())
        # The update comes first: its position in the cancellation reasons is fixed whatever follows.
        rest: list[Any] = []
        if mark_event:
            rest.append(self._marker(event_id, incident_id))
            if tally is not None:
                rest.append(self._count(tally, bucket))
        listing = incident_id not in self._full_ids
        while True:
            update = self._join_update(incident_id, event_id, event_name, now, listing=listing)
            try:
                self._db.transact_write_items(TransactItems=[{"Update": update}, *rest])
                return True
            except self._db.exceptions.TransactionCanceledException as exc:
                reasons = _cancellation_codes(exc)
                if len(reasons) > 1 and reasons[1].get("Code") == "ConditionalCheckFailed":
                    return False  # the event marker exists: a redelivery
                if listing and reasons and reasons[0].get("Code") == "ConditionalCheckFailed":
                    # The id list is full: keep counting, stop listing (and stop trying, in this container).
                    self._full_ids.add(incident_id)
                    listing = False
                    continue
                raise

    def _join_update(
        self, incident_id: str, event_id: str, event_name: str, now: str, *, listing: bool
    ) -> Any:
        update: dict[str, Any] = {
            "TableName": self._table,
            "Key": _counts_key(incident_id),
            "UpdateExpression": "ADD event_count :one, counts_by_name.#name :one SET last_event_at = :now",
            "ConditionExpression": "attribute_exists(pk)",
            "ExpressionAttributeNames": {"#name": event_name or "unknown"},
            "ExpressionAttributeValues": {":one": {"N": "1"}, ":now": {"S": now}},
        }
        if listing:
            update["UpdateExpression"] += ", event_ids = list_append(if_not_exists(event_ids, :empty), :id)"
            update["ConditionExpression"] += " AND size(event_ids) < :cap"
            update["ExpressionAttributeValues"].update(
                {":empty": {"L": []}, ":id": {"L": [{"S": event_id}]}, ":cap": {"N": str(EVENT_IDS_CAP)}}
            )
        return update

    def close(self, incident: Incident, released_by: str, reason: str, undone: list[dict[str, Any]]) -> None:
        """Release: free the principal, mark the incident released, and audit who and why."""
        now = iso_time(self._clock())
        self._db.transact_write_items(
            TransactItems=[
                {
                    "Delete": {
                        "TableName": self._table,
                        "Key": _lock_key(incident.key),
                        "ConditionExpression": "incident_id = :id",
                        "ExpressionAttributeValues": {":id": {"S": incident.id}},
                    }
                },
                {
                    "Update": {
                        "TableName": self._table,
                        "Key": _meta_key(incident.id),
                        "UpdateExpression": "SET #s = :released, released_at = :now, released_by = :by, "
                        "release_reason = :why, release_actions = :undone",
                        "ExpressionAttributeNames": {"#s": "status"},
                        "ExpressionAttributeValues": {
                            ":released": {"S": IncidentStatus.RELEASED.value},
                            ":now": {"S": now},
                            ":by": {"S": released_by},
                            ":why": {"S": reason},
                            ":undone": _to_attr(undone),
                        },
                    }
                },
                self._audit(incident.id, "release", released_by, {"reason": reason, "undone": undone}),
            ]
        )

    def record(self, incident_id: str, kind: str, actor: str | None, details: dict[str, Any]) -> None:
        """An audit record on its own (a failed release, a raced containment)."""
        self._db.transact_write_items(TransactItems=[self._audit(incident_id, kind, actor, details)])
