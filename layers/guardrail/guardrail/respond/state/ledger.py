"""The event ledger and counts: which events were handled, whether their incident was announced, and how
many events each open incident has gathered.

Items:
  EVENT#<CloudTrail eventID> / EVENT    an event already handled (kept 24 h: Lambda retries throttled
                                        asynchronous events for up to 6 h), the incident it belongs to,
                                        whether that was announced, and who is announcing it
  INCIDENT#<id>              / COUNTS   the incident's counts: events, by name, first ids, last summarised
  OWN#<IAM request id>       / OWN      an IAM write the responder made itself (a containment, a release):
                                        CloudTrail's record of it, arriving later, is recognised by its
                                        requestID and never reported as tampering

The marker's conditional put is what makes an event count once: it goes into the same transaction as
whatever the event opens, joins or counts.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from guardrail.respond.state.table import bounded, item, to_attr

if TYPE_CHECKING:
    from guardrail.incident import Incident
    from guardrail.respond.state.table import StateTable

EVENT_MARKER_TTL = timedelta(hours=24)
# Ids kept on an incident (the first ones); every event is still counted, and every event's marker names
# its incident for 24 h. Few, because the counts item is written once per joining event: its size is the
# write cost of a storm on the incident's partition.
EVENT_IDS_CAP = 25
# A claim to announce an incident is taken over after this long: shorter than Lambda's first retry (about a
# minute), longer than any publish.
ANNOUNCE_LEASE = timedelta(seconds=30)
# CloudTrail delivers within minutes; a week covers redeliveries, replays and a late trail.
OWN_REQUEST_TTL = timedelta(days=7)


def event_key(event_id: str) -> dict[str, Any]:
    return {"pk": {"S": f"EVENT#{bounded(event_id)}"}, "sk": {"S": "EVENT"}}


def counts_key(incident_id: str) -> dict[str, Any]:
    return {"pk": {"S": f"INCIDENT#{incident_id}"}, "sk": {"S": "COUNTS"}}


def is_marker(item: dict[str, Any]) -> bool:
    return str(item["pk"]).startswith("EVENT#")


def own_key(request_id: str) -> dict[str, Any]:
    return {"pk": {"S": f"OWN#{bounded(request_id)}"}, "sk": {"S": "OWN"}}


def is_own(item: dict[str, Any]) -> bool:
    return str(item["pk"]).startswith("OWN#")


def request_ids(actions: list[dict[str, Any]]) -> list[str]:
    """The IAM request ids of recorded actions (ActionRecord items), each once."""
    return list(dict.fromkeys(r for a in actions for r in a.get("request_ids") or [] if r))


@dataclass
class EventLedger:
    table: StateTable
    _full_ids: set[str] = field(default_factory=set)  # incidents whose id list is full: joins only count

    def mark(self, event_id: str, incident_id: str | None, *, notified: bool = True) -> Any:
        """The transaction item that marks the event handled; it fails if the event was marked before."""
        expires = int((self.table.clock() + EVENT_MARKER_TTL).timestamp())
        values = {
            "pk": f"EVENT#{bounded(event_id)}",
            "sk": "EVENT",
            "incident_id": incident_id,
            "expires_at": expires,
        }
        return {
            "Put": {
                "TableName": self.table.name,
                "Item": item({**values, "notified": notified}),
                "ConditionExpression": "attribute_not_exists(pk)",
            }
        }

    def own(self, ids: list[str], incident_id: str, kind: str) -> list[Any]:
        """The transaction items that remember IAM writes as the responder's own (`kind`: contain, release)."""
        expires = int((self.table.clock() + OWN_REQUEST_TTL).timestamp())
        return [
            {
                "Put": {
                    "TableName": self.table.name,
                    "Item": item(
                        {
                            "pk": f"OWN#{bounded(i)}",
                            "sk": "OWN",
                            "incident_id": incident_id,
                            "kind": kind,
                            "expires_at": expires,
                        }
                    ),
                }
            }
            for i in ids
        ]

    def remember_own(self, ids: list[str], incident_id: str, kind: str) -> None:
        """Remember IAM writes made outside an incident's own transaction (a raced containment redone)."""
        if ids:
            self.table.db.transact_write_items(TransactItems=self.own(ids, incident_id, kind))

    def repoint(self, event_id: str, incident_id: str) -> Any:
        """The transaction item that points an event marked before at the incident it now opens, so a retry
        announces what this records."""
        return {
            "Update": {
                "TableName": self.table.name,
                "Key": event_key(event_id),
                "UpdateExpression": "SET incident_id = :id, notified = :no REMOVE announcing_at",
                "ExpressionAttributeValues": {":id": {"S": incident_id}, ":no": {"BOOL": False}},
            }
        }

    def claim_announcement(self, event_id: str) -> bool:
        """Whether this invocation announces what the event opened. Concurrent deliveries of one event all
        see it recorded and not yet announced; one conditional write picks who announces. A claim older
        than ANNOUNCE_LEASE is taken over: its holder failed, and Lambda's retry must announce."""
        db, now = self.table.db, self.table.now()
        try:
            db.update_item(
                TableName=self.table.name,
                Key=event_key(event_id),
                UpdateExpression="SET announcing_at = :now",
                ConditionExpression="attribute_exists(pk) AND notified = :no "
                "AND (attribute_not_exists(announcing_at) OR announcing_at < :stale)",
                ExpressionAttributeValues={
                    ":now": {"N": str(now)},
                    ":no": {"BOOL": False},
                    ":stale": {"N": str(now - int(ANNOUNCE_LEASE.total_seconds()))},
                },
            )
        except db.exceptions.ConditionalCheckFailedException:
            return False
        return True

    def release_announcement(self, event_id: str) -> None:
        """Give the claim back after a failed announcement, so the retry announces at once."""
        self.table.db.update_item(
            TableName=self.table.name, Key=event_key(event_id), UpdateExpression="REMOVE announcing_at"
        )

    def mark_notified(self, event_id: str) -> None:
        self.table.db.update_item(
            TableName=self.table.name,
            Key=event_key(event_id),
            UpdateExpression="SET notified = :yes",
            ExpressionAttributeValues={":yes": {"BOOL": True}},
        )

    def is_listing(self, incident_id: str) -> bool:
        """Whether joins still add their event id to the incident (this container has not seen it full)."""
        return incident_id not in self._full_ids

    def stop_listing(self, incident_id: str) -> None:
        self._full_ids.add(incident_id)

    def add(self, incident_id: str, event_id: str, event_name: str, now: str, *, listing: bool) -> Any:
        """The update that counts one more event into an incident (and lists its id while there is room).
        Its condition fails when the incident has no counts item, or, listing, when the id list is full."""
        update: dict[str, Any] = {
            "TableName": self.table.name,
            "Key": counts_key(incident_id),
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

    def mark_summarized(self, incident: Incident) -> None:
        """Remember what the last summary covered: the next one says what joined since."""
        self.table.db.update_item(
            TableName=self.table.name,
            Key=counts_key(incident.id),
            UpdateExpression="SET summarized_count = :count, summarized_by_name = :names",
            ExpressionAttributeValues={
                ":count": {"N": str(incident.event_count)},
                ":names": to_attr(incident.counts_by_name),
            },
        )
