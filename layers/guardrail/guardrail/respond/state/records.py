"""The per-principal lock and the incident record.

Items:
  PRINCIPAL#<role or user ARN> / OPEN    the lock: which incident holds this principal now
  INCIDENT#<id>                / META    the incident: who, what, actions, release
  INCIDENT#<id>                / COUNTS  written here when the incident opens; counted by the ledger

Claiming the lock is a conditional put: a principal is held by at most one open incident, and a race
between invocations has exactly one winner.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from guardrail.incident import OPEN_STATUSES, Incident, IncidentStatus, iso_time
from guardrail.respond.state.ledger import counts_key
from guardrail.respond.state.table import bounded, from_item, item, to_attr

if TYPE_CHECKING:
    from guardrail.respond.state.table import StateTable

# How long a non-containing incident (dry run, not containable) gathers later events before a new one opens.
INCIDENT_WINDOW = timedelta(hours=1)
# Later events of an open incident are summarised at most this often (SNS, and so email and Slack).
SUMMARY_INTERVAL = timedelta(seconds=60)
# A contained principal's later events check that its containment is still in place at most this often:
# a storm must not turn into a storm of IAM reads. A change to the containment itself is checked at once.
CHECK_INTERVAL = timedelta(seconds=30)
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


@dataclass(frozen=True)
class OpenIncident:
    incident_id: str
    status: IncidentStatus
    key: str
    summary_at: int  # epoch seconds of the last message about it
    checked_at: int = 0  # epoch seconds of the last check that its containment is in place
    session_scoped: bool = False  # one session of the role is denied, not the role: it may widen

    @classmethod
    def from_lock(cls, key: str, lock: dict[str, Any]) -> OpenIncident:
        return cls(
            lock["incident_id"],
            IncidentStatus(lock["status"]),
            key,
            int(lock.get("summary_at") or 0),
            int(lock.get("checked_at") or 0),
            lock.get("scope") == "session",
        )


def lock_key(key: str) -> dict[str, Any]:
    return {"pk": {"S": f"PRINCIPAL#{bounded(key)}"}, "sk": {"S": "OPEN"}}


def meta_key(incident_id: str) -> dict[str, Any]:
    return {"pk": {"S": f"INCIDENT#{incident_id}"}, "sk": {"S": "META"}}


def incident_items(incident: Incident) -> tuple[dict[str, Any], dict[str, Any]]:
    """The incident as its two items: the record, and the counts that every joining event updates."""
    values = incident.to_dict()
    counts = {name: values.pop(name) for name in COUNT_FIELDS}
    pk = f"INCIDENT#{incident.id}"
    return {"pk": pk, "sk": "META", **values}, {"pk": pk, "sk": "COUNTS", **counts}


def merged(items: list[dict[str, Any]]) -> dict[str, Incident]:
    """Incidents from their META and COUNTS items, by id (an incident without COUNTS keeps its own)."""
    meta: dict[str, dict[str, Any]] = {}
    counts: dict[str, dict[str, Any]] = {}
    for raw in items:
        found = from_item(raw)
        (meta if found["sk"] == "META" else counts)[found["pk"]] = found
    return {
        data["incident_id"]: Incident.from_dict({**data, **counts.get(pk, {})}) for pk, data in meta.items()
    }


@dataclass
class IncidentRecords:
    table: StateTable

    def is_open(self, lock: dict[str, Any]) -> bool:
        if lock.get("status") not in OPEN_STATUSES:
            return False
        expires = lock.get("expires_at")
        return expires is None or int(expires) > self.table.now()

    def claim(self, incident: Incident) -> list[Any]:
        """The transaction items that claim the principal for this incident (first, so its cancellation
        reason says who holds it) and write the incident's two items."""
        now = self.table.clock()
        lock: dict[str, Any] = {
            "pk": f"PRINCIPAL#{bounded(incident.key)}",
            "sk": "OPEN",
            "incident_id": incident.id,
            "status": incident.status.value,
            "opened_at": iso_time(incident.opened_at),
            "summary_at": int(now.timestamp()),
        }
        if any(a.get("action") == "put_role_deny_session" and not a.get("error") for a in incident.actions):
            lock["scope"] = "session"  # later events read the lock, not the incident, to know it may widen
        if incident.status is not IncidentStatus.CONTAINED:
            # Only a real containment holds until release; the others gather events for a window.
            lock["expires_at"] = int((now + INCIDENT_WINDOW).timestamp())
        name = self.table.name
        return [
            {
                "Put": {
                    "TableName": name,
                    "Item": item(lock),
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
            *({"Put": {"TableName": name, "Item": item(part)}} for part in incident_items(incident)),
        ]

    def release(
        self, incident: Incident, released_by: str, reason: str, undone: list[dict[str, Any]]
    ) -> list[Any]:
        """The transaction items that free the principal and mark the incident released."""
        now = iso_time(self.table.clock())
        return [
            {
                "Delete": {
                    "TableName": self.table.name,
                    "Key": lock_key(incident.key),
                    "ConditionExpression": "incident_id = :id",
                    "ExpressionAttributeValues": {":id": {"S": incident.id}},
                }
            },
            {
                "Update": {
                    "TableName": self.table.name,
                    "Key": meta_key(incident.id),
                    "UpdateExpression": "SET #s = :released, released_at = :now, released_by = :by, "
                    "release_reason = :why, release_actions = :undone",
                    "ExpressionAttributeNames": {"#s": "status"},
                    "ExpressionAttributeValues": {
                        ":released": {"S": IncidentStatus.RELEASED.value},
                        ":now": {"S": now},
                        ":by": {"S": released_by},
                        ":why": {"S": reason},
                        ":undone": to_attr(undone),
                    },
                }
            },
        ]

    def open_for(self, key: str) -> OpenIncident | None:
        response = self.table.db.get_item(TableName=self.table.name, Key=lock_key(key), ConsistentRead=True)
        raw = response.get("Item")
        if not raw:
            return None
        lock = from_item(raw)
        return OpenIncident.from_lock(key, lock) if self.is_open(lock) else None

    def get(self, incident_id: str) -> Incident | None:
        found = merged(self.table.read_all([meta_key(incident_id), counts_key(incident_id)]))
        return found.get(incident_id)

    def incidents(self, limit: int = 100) -> list[Incident]:
        """Recent incidents, newest first. A scan: the table is small, and this is an operator's command."""
        items: list[dict[str, Any]] = []
        kwargs: dict[str, Any] = {
            "TableName": self.table.name,
            "FilterExpression": "sk IN (:meta, :counts)",
            "ExpressionAttributeValues": {":meta": {"S": "META"}, ":counts": {"S": "COUNTS"}},
        }
        while True:
            response = self.table.db.scan(**kwargs)
            items.extend(response.get("Items", []))
            if "LastEvaluatedKey" not in response:
                break
            kwargs["ExclusiveStartKey"] = response["LastEvaluatedKey"]
        found = sorted(merged(items).values(), key=lambda i: i.opened_at, reverse=True)
        return found[:limit]

    def locks(self) -> list[dict[str, Any]]:
        """Every principal lock (an operator's or the scheduled check's scan: the table is small)."""
        found: list[dict[str, Any]] = []
        kwargs: dict[str, Any] = {
            "TableName": self.table.name,
            "FilterExpression": "sk = :open",
            "ExpressionAttributeValues": {":open": {"S": "OPEN"}},
        }
        while True:
            response = self.table.db.scan(**kwargs)
            found += [from_item(i) for i in response.get("Items", [])]
            if "LastEvaluatedKey" not in response:
                return found
            kwargs["ExclusiveStartKey"] = response["LastEvaluatedKey"]

    def drop_lock(self, key: str, incident_id: str) -> bool:
        """Remove a lock that names `incident_id` (and nothing else); False when it changed meanwhile."""
        db = self.table.db
        try:
            db.delete_item(
                TableName=self.table.name,
                Key=lock_key(key),
                ConditionExpression="incident_id = :id",
                ExpressionAttributeValues={":id": {"S": incident_id}},
            )
        except db.exceptions.ConditionalCheckFailedException:
            return False
        return True

    def claim_summary(self, held: OpenIncident) -> bool:
        """Whether this invocation sends the next summary of an open incident: at most one per interval."""
        return self._claim_interval(held, "summary_at", held.summary_at, SUMMARY_INTERVAL)

    def claim_check(self, held: OpenIncident) -> bool:
        """Whether this invocation checks that the incident's containment is in place: at most one per
        interval."""
        return self._claim_interval(held, "checked_at", held.checked_at, CHECK_INTERVAL)

    def _claim_interval(self, held: OpenIncident, attribute: str, last: int, interval: timedelta) -> bool:
        """One invocation per interval wins a conditional write on the lock (attempted only once the
        interval has passed since `last`, as the lock was read)."""
        now = self.table.clock()
        cutoff = int((now - interval).timestamp())
        if last > cutoff:
            return False
        db = self.table.db
        try:
            db.update_item(
                TableName=self.table.name,
                Key=lock_key(held.key),
                UpdateExpression="SET #at = :now",
                ConditionExpression="incident_id = :id AND (attribute_not_exists(#at) OR #at <= :cutoff)",
                ExpressionAttributeNames={"#at": attribute},
                ExpressionAttributeValues={
                    ":now": {"N": str(int(now.timestamp()))},
                    ":id": {"S": held.incident_id},
                    ":cutoff": {"N": str(cutoff)},
                },
            )
        except db.exceptions.ConditionalCheckFailedException:
            return False
        return True

    def widened(self, key: str) -> Any:
        """The transaction item that marks a principal's hold as the whole role's now."""
        return {
            "Update": {
                "TableName": self.table.name,
                "Key": lock_key(key),
                "UpdateExpression": "REMOVE #scope",
                "ExpressionAttributeNames": {"#scope": "scope"},
            }
        }

    def restored(self, incident_id: str, redone: list[dict[str, Any]]) -> Any:
        """The transaction item that adds what a check applied again to the incident's actions, so a
        release undoes it too."""
        return {
            "Update": {
                "TableName": self.table.name,
                "Key": meta_key(incident_id),
                "UpdateExpression": "SET actions = list_append(if_not_exists(actions, :none), :redone)",
                "ExpressionAttributeValues": {":none": {"L": []}, ":redone": to_attr(redone)},
            }
        }
