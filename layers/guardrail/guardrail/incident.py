"""An incident: one principal held (contained, reported, not containable) for what it did, and its release.

The record the responder keeps, the messages describe and the operators release. Shared vocabulary: the
state table stores it (respond), the messages render it (report); it knows neither.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any


class IncidentStatus(StrEnum):
    CONTAINED = "contained"
    DRY_RUN = "dry_run"  # would have contained; nothing was written to IAM
    NOT_CONTAINABLE = "not_containable"  # a human must act: the incident says how
    FAILED = "failed"  # CONTAINMENT FAILED: the agent may still be active
    RELEASED = "released"
    REPORTED = "reported"  # notified, not contained: repeats of the same finding join it for a window


# An open incident holds its principal: later events join it instead of acting again.
OPEN_STATUSES = frozenset(
    {
        IncidentStatus.CONTAINED,
        IncidentStatus.DRY_RUN,
        IncidentStatus.NOT_CONTAINABLE,
        IncidentStatus.REPORTED,
    }
)


@dataclass(frozen=True)
class Actor:
    """A person acting on an incident from Slack: who Slack vouched for (team and user ids, from a request
    signed with the app's signing secret), and the name they had then (for people to read; ids decide)."""

    team_id: str
    user_id: str
    name: str

    @property
    def display(self) -> str:
        """How incidents record them (released_by, acknowledged_by): ids first, the name to read."""
        return f"slack:{self.team_id}/{self.user_id} (@{self.name})"

    def to_dict(self) -> dict[str, str]:
        return {"team_id": self.team_id, "user_id": self.user_id, "name": self.name}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Actor:
        return cls(str(data["team_id"]), str(data["user_id"]), str(data["name"]))


# What a release can undo: a containment, or a dry run's record of one (a not-containable hold wrote
# nothing, and lapses within the hour).
RELEASABLE_STATUSES = frozenset({IncidentStatus.CONTAINED, IncidentStatus.DRY_RUN})
INCIDENT_ID_PATTERN = r"^GR-\d{8}T\d{6}Z-[0-9a-f]{8}$"  # what new_incident_id makes


def new_incident_id(now: datetime) -> str:
    return f"GR-{now.astimezone(UTC):%Y%m%dT%H%M%SZ}-{secrets.token_hex(4)}"


def iso_time(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


@dataclass
class Incident:
    id: str
    status: IncidentStatus
    key: str  # the principal's identity in the table: a path-free role or user ARN, or the caller ARN
    principal_arn: str
    account: str
    region: str
    opened_at: datetime
    verdict: dict[str, Any]  # the triggering event's classification summary
    event_ids: list[str] = field(default_factory=list)
    event_count: int = 1
    actions: list[dict[str, Any]] = field(default_factory=list)
    containment_ms: float | None = None  # handler start to the containment IAM write's completion
    reason: str = ""
    manual_steps: list[str] = field(default_factory=list)
    caveats: list[str] = field(default_factory=list)
    error: str | None = None
    responder: str | None = None
    released_at: str | None = None
    released_by: str | None = None
    release_reason: str | None = None
    release_actions: list[dict[str, Any]] = field(default_factory=list)
    last_event_at: str | None = None
    counts_by_name: dict[str, int] = field(default_factory=dict)
    summarized_count: int = 1
    summarized_by_name: dict[str, int] = field(default_factory=dict)
    # The caller as CloudTrail named it (model.Principal's fields): what "Contain now" contains later.
    caller: dict[str, Any] | None = None
    # People acting from Slack (respond/people.py): each an Actor's dict plus "at" (and a request's reason).
    acknowledged: dict[str, Any] | None = None
    release_request: dict[str, Any] | None = None  # two-person release: asked, not yet approved
    contained_by: dict[str, Any] | None = None  # a person chose to contain (this incident is theirs)
    followed_by: str | None = None  # a report a person contained: the containment's incident id

    def to_dict(self) -> dict[str, Any]:
        return {
            "incident_id": self.id,
            "status": self.status.value,
            "key": self.key,
            "principal_arn": self.principal_arn,
            "account": self.account,
            "region": self.region,
            "opened_at": iso_time(self.opened_at),
            "verdict": self.verdict,
            "event_ids": self.event_ids,
            "event_count": self.event_count,
            "actions": self.actions,
            "containment_ms": self.containment_ms,
            "reason": self.reason,
            "manual_steps": self.manual_steps,
            "caveats": self.caveats,
            "error": self.error,
            "responder": self.responder,
            "released_at": self.released_at,
            "released_by": self.released_by,
            "release_reason": self.release_reason,
            "release_actions": self.release_actions,
            "last_event_at": self.last_event_at,
            "counts_by_name": self.counts_by_name,
            "summarized_count": self.summarized_count,
            "summarized_by_name": self.summarized_by_name,
            "caller": self.caller,
            "acknowledged": self.acknowledged,
            "release_request": self.release_request,
            "contained_by": self.contained_by,
            "followed_by": self.followed_by,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Incident:
        return cls(
            id=data["incident_id"],
            status=IncidentStatus(data["status"]),
            key=data["key"],
            principal_arn=data.get("principal_arn", ""),
            account=data.get("account", ""),
            region=data.get("region", ""),
            opened_at=datetime.fromisoformat(data["opened_at"].replace("Z", "+00:00")),
            verdict=data.get("verdict") or {},
            event_ids=list(data.get("event_ids") or []),
            event_count=int(data.get("event_count") or 0),
            actions=list(data.get("actions") or []),
            containment_ms=float(data["containment_ms"]) if data.get("containment_ms") is not None else None,
            reason=data.get("reason", ""),
            manual_steps=list(data.get("manual_steps") or []),
            caveats=list(data.get("caveats") or []),
            error=data.get("error"),
            responder=data.get("responder"),
            released_at=data.get("released_at"),
            released_by=data.get("released_by"),
            release_reason=data.get("release_reason"),
            release_actions=list(data.get("release_actions") or []),
            last_event_at=data.get("last_event_at"),
            counts_by_name={str(k): int(v) for k, v in (data.get("counts_by_name") or {}).items()},
            summarized_count=int(data.get("summarized_count") or 0),
            summarized_by_name={str(k): int(v) for k, v in (data.get("summarized_by_name") or {}).items()},
            caller=data.get("caller"),
            acknowledged=data.get("acknowledged"),
            release_request=data.get("release_request"),
            contained_by=data.get("contained_by"),
            followed_by=data.get("followed_by"),
        )

    def summary_since_last(self, now: datetime, since: datetime) -> dict[str, Any]:
        """What joined since the last summary: "+57 more calls by AIAgentRole in the last 60 s (...)"."""
        new = max(0, self.event_count - self.summarized_count)
        by_name = {
            name: count - self.summarized_by_name.get(name, 0)
            for name, count in self.counts_by_name.items()
            if count > self.summarized_by_name.get(name, 0)
        }
        top = sorted(by_name.items(), key=lambda kv: -kv[1])[:5]
        seconds = max(1, int((now - since).total_seconds()))
        who = self.key.rsplit("/", 1)[-1].split("#", 1)[0]
        detail = ", ".join(f"{name} x{count}" for name, count in top)
        return {
            "events": self.event_count,
            "since_last_update": new,
            "by_event_name": dict(top),
            "window_seconds": seconds,
            "summary": f"+{new} more calls by {who} in the last {seconds} s"
            + (f": {detail}" if detail else ""),
        }
