"""The audit trail: one record per containment, failure, race and release of an incident.

Items: INCIDENT#<id> / AUDIT#<time>#<kind>. Written in the same transaction as what they record, except a
record on its own (a failed release, a raced containment).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from guardrail.incident import iso_time
from guardrail.respond.state.table import from_item, item

if TYPE_CHECKING:
    from guardrail.respond.state.table import StateTable


@dataclass
class AuditTrail:
    table: StateTable

    def entry(self, incident_id: str, kind: str, actor: str | None, details: dict[str, Any]) -> Any:
        """The transaction item that records `kind` on the incident."""
        now = iso_time(self.table.clock())
        values = {
            "pk": f"INCIDENT#{incident_id}",
            "sk": f"AUDIT#{now}#{kind}",
            "kind": kind,
            "at": now,
            "actor": actor,
            "details": details,
        }
        return {"Put": {"TableName": self.table.name, "Item": item(values)}}

    def record(self, incident_id: str, kind: str, actor: str | None, details: dict[str, Any]) -> None:
        """An audit record on its own (a failed release, a raced containment)."""
        self.table.db.transact_write_items(TransactItems=[self.entry(incident_id, kind, actor, details)])

    def trail(self, incident_id: str) -> list[dict[str, Any]]:
        response = self.table.db.query(
            TableName=self.table.name,
            KeyConditionExpression="pk = :pk AND begins_with(sk, :audit)",
            ExpressionAttributeValues={":pk": {"S": f"INCIDENT#{incident_id}"}, ":audit": {"S": "AUDIT#"}},
            ConsistentRead=True,
        )
        return [from_item(i) for i in response.get("Items", [])]
