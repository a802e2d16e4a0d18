"""After the stop: what the agent did, from its flight record and (where allowed) CloudTrail's event history,
and the follow-up of a containment: self-healing, then the damage report, recorded and announced.

Nothing here may delay or undo a containment: the follow-up runs after the IAM write and the first message,
and every failure in it is logged, counted and named in the report, never raised.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from aws_lambda_powertools.metrics import MetricUnit

from guardrail.detect.cloudtrail import parse_event
from guardrail.detect.recovery import Change
from guardrail.errors import InvalidEventError
from guardrail.model import PrincipalKind
from guardrail.report.damage import damage_message, damage_report
from guardrail.telemetry import logger, metrics

if TYPE_CHECKING:
    from collections.abc import Callable
    from datetime import datetime

    from guardrail.detect.verdict import Verdict
    from guardrail.incident import Incident
    from guardrail.model import ApiCall, Principal
    from guardrail.report.damage import DamageReport
    from guardrail.respond.runtime import Runtime
    from guardrail.respond.state.store import IncidentStore

LOOKUP_PERMISSIONS = ("cloudtrail:LookupEvents",)
LOOKUP_INTERVAL = 0.5  # LookupEvents allows 2 requests a second per account and region
LOOKUP_PAGES = 10  # 500 events; an agent doing more in the window is summarised by the flight record
LOOKUP_SECONDS = 20.0  # at most, after the containment and its message, inside the function's 60 s
AUDIT_LINES = 100  # changes kept in the incident's audit record of a report (the report counts them all)


def change_of_call(call: ApiCall, verdict: Verdict | None = None, origin: str = "flight") -> Change:
    from guardrail.detect.recovery import named_resources

    return Change(
        event_id=call.event_id,
        time=call.event_time,
        source=call.event_source,
        name=call.event_name,
        region=call.region,
        account=call.account,
        request=call.request,
        response=call.response,
        error_code=call.error_code,
        resources=named_resources(call.request, call.resources),
        read_only=call.is_read,
        verdict=(
            {"category": verdict.category.value, "severity": verdict.severity.value}
            if verdict is not None
            else {}
        ),
        origin=origin,
    )


def lookup_attribute(principal: Principal) -> dict[str, str] | None:
    """How CloudTrail's event history finds the principal's calls: a session by its access key (this
    session only), an IAM user by its name; None when neither is known."""
    if principal.kind is PrincipalKind.USER and principal.name:
        return {"AttributeKey": "Username", "AttributeValue": principal.name}
    if principal.access_key_id:
        return {"AttributeKey": "AccessKeyId", "AttributeValue": principal.access_key_id}
    if principal.session_name:
        return {"AttributeKey": "Username", "AttributeValue": principal.session_name}
    return None


@dataclass
class EventHistory:
    """CloudTrail's LookupEvents, paged and paced to its rate limit; management events of one region."""

    client: Any
    sleep: Callable[[float], None] = time.sleep
    clock: Callable[[], float] = time.monotonic
    max_pages: int = LOOKUP_PAGES
    _last: float | None = field(default=None, repr=False)

    def _pace(self) -> None:
        if self._last is not None:
            wait = LOOKUP_INTERVAL - (self.clock() - self._last)
            if wait > 0:
                self.sleep(wait)
        self._last = self.clock()

    def changes(
        self, principal: Principal, start: datetime, end: datetime, until: float | None = None
    ) -> tuple[list[Change], list[str]]:
        """The principal's calls between start and end; notes say what could not be read. `until` (a
        clock() value) stops paging in time for the caller's own deadline."""
        attribute = lookup_attribute(principal)
        if attribute is None:
            return [], ["CloudTrail's event history not asked: the event names no access key or user name"]
        found: list[Change] = []
        notes: list[str] = []
        kwargs: dict[str, Any] = {
            "LookupAttributes": [attribute],
            "StartTime": start,
            "EndTime": end,
            "MaxResults": 50,
        }
        unreadable = 0
        for page_number in range(self.max_pages):
            if until is not None and self.clock() + LOOKUP_INTERVAL >= until:
                notes.append("CloudTrail's event history: stopped early, out of time")
                break
            self._pace()
            page = self.client.lookup_events(**kwargs)
            for event in page.get("Events", []):
                try:
                    call = parse_event(json.loads(event.get("CloudTrailEvent") or "null"))
                except (InvalidEventError, json.JSONDecodeError, TypeError):
                    unreadable += 1
                    continue
                found.append(change_of_call(call, origin="cloudtrail"))
            token = page.get("NextToken")
            if not token:
                break
            kwargs["NextToken"] = token
            if page_number == self.max_pages - 1:
                notes.append(
                    f"CloudTrail's event history: more than {self.max_pages * 50} events, the oldest not read"
                )
        if unreadable:
            notes.append(f"CloudTrail's event history: {unreadable} event(s) could not be read")
        return found, notes


def investigate(
    store: IncidentStore,
    key: str,
    *,
    principal: str,
    since: datetime,
    now: datetime,
    incident_id: str | None = None,
    history: EventHistory | None = None,
    who: Principal | None = None,
    until: float | None = None,
    notes: list[str] | None = None,
) -> DamageReport:
    """The damage report of one principal (by its state-table key) since a time."""
    changes = store.flight.of(key, since)
    notes = list(notes or [])
    if history is not None and who is not None:
        try:
            found, said = history.changes(who, since, now, until)
            changes += found
            notes += said
        except Exception as exc:
            metrics.add_metric(name="LookupEventsFailures", unit=MetricUnit.Count, value=1)
            logger.warning("CloudTrail event history not read", extra={"error": str(exc)})
            notes.append(
                f"CloudTrail's event history could not be read ({type(exc).__name__}): flight record only"
            )
    elif not notes:
        notes.append(
            "Only the calls the routes delivered are here; reads and other calls are in CloudTrail's event "
            "history (GUARDRAIL_LOOKUP_CLOUDTRAIL=true adds them)"
        )
    return damage_report(
        changes, principal=principal, since=since, now=now, incident_id=incident_id, notes=notes
    )


def follow_up(incident: Incident, verdict: Verdict, rt: Runtime) -> None:
    """After a containment and its first message: put back what the operator allowed, then report the
    damage (the incident's audit trail, the topic, the Slack thread). Never raises."""
    try:
        _follow_up(incident, verdict, rt)
    except Exception:
        metrics.add_metric(name="DamageReportFailures", unit=MetricUnit.Count, value=1)
        logger.exception("damage report failed; the containment stands", extra={"incident_id": incident.id})


def _follow_up(incident: Incident, verdict: Verdict, rt: Runtime) -> None:
    from guardrail.incident import IncidentStatus
    from guardrail.respond.undo import heal

    settings, now = rt.settings, rt.clock()
    # The hours before the call that got the agent contained (a delivery can lag, a replay much more).
    since = min(now, verdict.call.event_time) - timedelta(hours=settings.damage_hours)
    history, until, notes = None, None, []
    if settings.lookup_cloudtrail and verdict.call.account != rt.identity().account:
        # The event history is per account: the central account's holds none of a member's calls.
        notes.append(
            f"CloudTrail's event history not asked: the agent is in member account {verdict.call.account}; "
            "run guardrail investigate --cloudtrail there"
        )
    elif settings.lookup_cloudtrail:
        history = EventHistory(rt.aws.client("cloudtrail", verdict.call.region))
        # Leave the function time to publish the report: the lookup gets a fixed budget.
        until = time.monotonic() + LOOKUP_SECONDS
    report = investigate(
        rt.store,
        incident.key,
        principal=incident.principal_arn,
        since=since,
        now=now,
        incident_id=incident.id,
        history=history,
        who=verdict.call.principal,
        until=until,
        notes=notes,
    )
    restored: list[str] = []
    if settings.auto_restore and incident.status is IncidentStatus.CONTAINED:
        account = rt.identity().account

        def record(kind: str, details: dict[str, Any]) -> None:
            rt.store.audit.record(incident.id, f"auto_{kind}", rt.identity().arn, details)

        restored, failed = heal(
            report, settings.auto_restore, settings.own_name_prefix, rt.aws.client, now, account, record
        )
        restored += [f"NOT put back: {f}" for f in failed]
    details = report.to_dict()
    details["resources"] = _clipped_groups(details["resources"])
    rt.store.audit.record(incident.id, "damage_report", rt.identity().arn, {**details, "restored": restored})
    rt.publish(damage_message(incident, report, settings.runbook_url, restored))
    metrics.add_metric(name="DamageReports", unit=MetricUnit.Count, value=1)
    logger.info("damage report sent", extra={"incident_id": incident.id, "counts": report.counts()})


def _clipped_groups(groups: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """At most AUDIT_LINES changes in the audit record: an item holds 400 KB, and the report counts all."""
    kept, left = [], AUDIT_LINES
    for group in groups:
        if left <= 0:
            break
        changes = group["changes"][:left]
        left -= len(changes)
        kept.append({**group, "changes": changes})
    return kept
