"""Incidents in the state table: one open incident per principal, exact dedupe of redeliveries, audit.

One table (keys pk/sk, TTL attribute expires_at) holds four kinds of state, each kept by its own part:
  records.py   PRINCIPAL#<key> / OPEN, INCIDENT#<id> / META   the per-principal lock and the incident
  ledger.py    EVENT#<event id> / EVENT, INCIDENT#<id> / COUNTS   events handled; an incident's counts
  windows.py   WINDOW#<key> / M#<epoch minute>                the principal's counts per minute
  audit.py     INCIDENT#<id> / AUDIT#<time>#<kind>            one record per containment, failure, release
  flight.py    FLIGHT#<key> / CALL#<time>#<event id>          every routed event of a watched agent

What one event does touches several of them, and must happen exactly once: the store reads them in one
consistent BatchGetItem, and writes an event's claim, incident, audit record, marker, window count and
flight record in one transaction, so a race between concurrent invocations has exactly one winner and nothing is half-written.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from guardrail.errors import GuardrailError
from guardrail.incident import IncidentStatus, iso_time
from guardrail.respond.state.audit import AuditTrail
from guardrail.respond.state.flight import FlightRecord
from guardrail.respond.state.ledger import EventLedger, event_key, is_marker, is_own, own_key, request_ids
from guardrail.respond.state.records import IncidentRecords, OpenIncident, lock_key, meta_key
from guardrail.respond.state.table import StateTable, cancellation_codes, from_item, to_attr
from guardrail.respond.state.windows import WindowCounts, bucket_of, is_window, minute_of

if TYPE_CHECKING:
    from collections.abc import Callable
    from datetime import datetime

    from mypy_boto3_dynamodb import DynamoDBClient

    from guardrail.detect.windows import Bucket, Tally
    from guardrail.incident import Incident


class IncidentMissing(GuardrailError):
    """A principal's lock names an incident that has no record: the lock was not written by the responder
    (it writes both in one transaction)."""


@dataclass(frozen=True)
class Lookup:
    held: dict[str, OpenIncident]  # the keys asked about that an open incident holds
    seen: bool = False  # this event was handled already (a redelivery or a retry)
    seen_in: str | None = None  # the incident it belongs to, if it joined or opened one
    notified: bool = True  # False: the event was recorded but its notification did not go out
    failed_id: str | None = None  # a failed containment of this principal: its retry reuses the incident
    window: dict[int, Bucket] = field(default_factory=dict)  # the principal's minute buckets, if asked
    own: str | None = (
        None  # the event is CloudTrail's record of the responder's own IAM write, for this incident
    )

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


class IncidentStore:
    """The state table, as the responder and the operators use it: its parts, and what spans them."""

    def __init__(
        self, client: DynamoDBClient, table: str, clock: Callable[[], datetime], flight_days: int = 30
    ) -> None:
        self.table = StateTable(client, table, clock)
        self.records = IncidentRecords(self.table)
        self.ledger = EventLedger(self.table)
        self.windows = WindowCounts(self.table)
        self.audit = AuditTrail(self.table)
        self.flight = FlightRecord(self.table, flight_days)

    def lookup(
        self, keys: list[str], event_id: str, tally: Tally | None = None, request_id: str | None = None
    ) -> Lookup:
        """One consistent read: which of `keys` an open incident holds, whether this event was handled
        already, (given a tally) the principal's window buckets, and (given an IAM request id) whether the
        event records the responder's own write."""
        keys = list(dict.fromkeys(keys))  # BatchGetItem refuses a key asked for twice
        wanted = [lock_key(k) for k in keys] + [event_key(event_id)]
        if tally is not None:
            wanted += self.windows.keys(tally)
        if request_id:
            wanted.append(own_key(request_id))
        locks: dict[str, dict[str, Any]] = {}
        seen, seen_in, notified, failed_id, own = False, None, True, None, None
        window: dict[int, Bucket] = {}
        for raw in self.table.read_all(wanted):
            item = from_item(raw)
            if is_own(item):
                own = str(item.get("incident_id") or "")
            elif is_marker(item):
                seen, seen_in, notified = True, item.get("incident_id"), bool(item.get("notified", True))
            elif is_window(item):
                window[minute_of(item)] = bucket_of(item)
            elif self.records.is_open(item):
                locks[item["pk"].removeprefix("PRINCIPAL#")] = item
            elif item.get("status") == IncidentStatus.FAILED.value:
                failed_id = item.get("incident_id")
        held = {k: OpenIncident.from_lock(k, locks[k]) for k in keys if k in locks}
        return Lookup(held, seen, seen_in, notified, failed_id, window, own)

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
        flight: Any = None,
    ) -> Claim:
        """Claim the principal for this incident, write it and its audit record, mark the event handled
        and count it in its windows.

        A failed containment is recorded without marking the event, so Lambda's retry contains again.
        `mark_event=False`: the event was already marked and counted (a window it had filled is acted on).
        """
        items = [
            *self.records.claim(incident),
            self.audit.entry(incident.id, audit_kind, incident.responder, audit),
        ]
        marker_at = len(items)
        if incident.status is not IncidentStatus.FAILED and mark_event:
            items.append(self.ledger.mark(event_id, incident.id, notified=False))
            if tally is not None:
                items.append(self.windows.count(tally, bucket))
        elif incident.status is not IncidentStatus.FAILED:
            items.append(self.ledger.repoint(event_id, incident.id))
        # After the marker, whose position in the cancellation reasons is fixed.
        items += self.ledger.own(request_ids(incident.actions), incident.id, "contain")
        if flight is not None:
            items.append(flight)
        db = self.table.db
        try:
            db.transact_write_items(TransactItems=items)
        except db.exceptions.TransactionCanceledException as exc:
            reasons = cancellation_codes(exc)
            duplicate = (
                len(reasons) > marker_at and reasons[marker_at].get("Code") == "ConditionalCheckFailed"
            )
            if reasons and reasons[0].get("Code") == "ConditionalCheckFailed":
                winner = from_item(reasons[0].get("Item") or {}).get("incident_id", "")
                return Claim(False, str(winner), duplicate=duplicate)
            if duplicate:
                return Claim(False, incident.id, duplicate=True)
            raise
        return Claim(True, incident.id)

    def count(self, event_id: str, tally: Tally, bucket: Bucket | None, flight: Any = None) -> bool:
        """Count an event that opens or joins nothing. False when this event was already counted."""
        db = self.table.db
        items = [self.ledger.mark(event_id, None), self.windows.count(tally, bucket)]
        try:
            db.transact_write_items(TransactItems=[*items, *([flight] if flight is not None else [])])
        except db.exceptions.TransactionCanceledException as exc:
            reasons = cancellation_codes(exc)
            if reasons and reasons[0].get("Code") == "ConditionalCheckFailed":
                return False
            raise
        return True

    def join(
        self,
        incident_id: str,
        event_id: str,
        event_name: str = "",
        *,
        tally: Tally | None = None,
        bucket: Bucket | None = None,
        mark_event: bool = True,
        flight: Any = None,
    ) -> bool:
        """Count a later event into an open incident (and its windows, given a tally). False when this
        event was already counted."""
        now = iso_time(self.table.clock())
        # The update comes first: its position in the cancellation reasons is fixed whatever follows.
        rest: list[Any] = []
        if mark_event:
            rest.append(self.ledger.mark(event_id, incident_id))
            if tally is not None:
                rest.append(self.windows.count(tally, bucket))
        if flight is not None:
            rest.append(flight)  # last: the positions of the marker's reasons stay fixed
        listing = self.ledger.is_listing(incident_id)
        db = self.table.db
        while True:
            update = self.ledger.add(incident_id, event_id, event_name, now, listing=listing)
            try:
                db.transact_write_items(TransactItems=[{"Update": update}, *rest])
                return True
            except db.exceptions.TransactionCanceledException as exc:
                reasons = cancellation_codes(exc)
                if len(reasons) > 1 and reasons[1].get("Code") == "ConditionalCheckFailed":
                    return False  # the event marker exists: a redelivery
                if reasons and reasons[0].get("Code") == "ConditionalCheckFailed":
                    if not listing:
                        raise IncidentMissing(incident_id) from exc
                    # The id list is full: keep counting, stop listing (and stop trying, in this container).
                    self.ledger.stop_listing(incident_id)
                    listing = False
                    continue
                raise

    def close(
        self,
        incident: Incident,
        released_by: str,
        reason: str,
        undone: list[dict[str, Any]],
        evidence: dict[str, Any] | None = None,
    ) -> None:
        """Release: free the principal, mark the incident released, and audit who and why (and what the
        platform vouches for of who)."""
        self.table.db.transact_write_items(
            TransactItems=[
                *self.records.release(incident, released_by, reason, undone),
                self.audit.entry(
                    incident.id,
                    "release",
                    released_by,
                    {"reason": reason, "undone": undone, "evidence": evidence},
                ),
                *self.ledger.own(request_ids(undone), incident.id, "release"),
            ]
        )

    def acted(
        self,
        incident_id: str,
        update: str,
        condition: str,
        values: dict[str, Any],
        audit: tuple[str, str, dict[str, Any]] | None = None,
    ) -> bool:
        """What a person did to an incident (respond/people.py), written only if `condition` holds on the
        incident's record, with its audit record in the same transaction. False when the condition failed
        (someone was first: a double click, a second person, a closed incident)."""
        names = {k: v for k, v in (("#s", "status"), ("#at", "at")) if k in update + condition}
        request: dict[str, Any] = {
            "TableName": self.table.name,
            "Key": meta_key(incident_id),
            "UpdateExpression": update,
            "ConditionExpression": f"attribute_exists(pk) AND ({condition})",
        }
        if names:
            request["ExpressionAttributeNames"] = names
        if values:
            request["ExpressionAttributeValues"] = {k: to_attr(v) for k, v in values.items()}
        items: list[Any] = [{"Update": request}]
        if audit is not None:
            kind, actor, details = audit
            items.append(self.audit.entry(incident_id, kind, actor, details))
        db = self.table.db
        try:
            db.transact_write_items(TransactItems=items)
        except db.exceptions.TransactionCanceledException as exc:
            reasons = exc.response.get("CancellationReasons") or []
            if reasons and reasons[0].get("Code") == "ConditionalCheckFailed":
                return False
            raise
        return True

    def amended(
        self,
        incident: Incident,
        changed: list[str],
        redone: list[dict[str, Any]],
        by: str | None,
        kind: str = "restored",
    ) -> None:
        """Record actions added to a containment after it opened (put back: `restored`; widened to the role:
        `widened`): the new actions (released with the rest), an audit record of what changed and who
        changed it when known, and the request ids CloudTrail will echo."""
        details = {"changed": changed, "changed_by": by, "actions": redone}
        self.table.db.transact_write_items(
            TransactItems=[
                self.records.restored(incident.id, redone),
                self.audit.entry(incident.id, kind, incident.responder, details),
                *([self.records.widened(incident.key)] if kind == "widened" else []),
                *self.ledger.own(request_ids(redone), incident.id, "contain"),
            ]
        )
