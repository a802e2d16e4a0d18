"""A person's containment: "Contain now" on the incident of an agent that was only reported.

It runs in the responder (the worker invokes it: functions/responder/app.py), because containing is the
responder's job and its permissions: the same planner, the same IAM writes, the same incident, recorded as
chosen by the person. The planner still decides what containing means; a person cannot contain what the
responder would refuse to (a principal that is no watched agent, or a protected one), and cannot contain
twice: the request's event id is the report's, so a repeat is a handled event.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from guardrail.errors import InvalidEventError
from guardrail.incident import INCIDENT_ID_PATTERN, Actor, IncidentStatus, iso_time
from guardrail.model import ApiCall, Category, Decision, Environment, Principal, Severity
from guardrail.respond.containment import principal_key
from guardrail.telemetry import logger

if TYPE_CHECKING:
    from guardrail.detect.verdict import Verdict
    from guardrail.incident import Incident
    from guardrail.respond.runtime import Runtime

REQUEST = "contain_now"


class ContainNowRequest(BaseModel):
    """What the worker sends the responder (lambda:Invoke, RequestResponse)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    guardrail: Literal["contain_now"]
    incident_id: str = Field(pattern=INCIDENT_ID_PATTERN)
    actor: dict[str, str]


def is_request(event: object) -> bool:
    """A person's containment, not an EventBridge event (whose envelope never has this key)."""
    return isinstance(event, dict) and event.get("guardrail") == REQUEST


def contain_now_event(event: object, rt: Runtime) -> dict[str, Any]:
    try:
        request = ContainNowRequest.model_validate(event)
        actor = Actor.from_dict(request.actor)
    except (ValidationError, KeyError) as exc:
        raise InvalidEventError(f"invalid contain_now request: {exc}") from None
    return contain_now(request.incident_id, actor, rt)


def contain_now(report_id: str, actor: Actor, rt: Runtime) -> dict[str, Any]:
    """Contain the agent a report is about. Returns what happened: {"status", "incident_id", "reason"}."""
    from guardrail.respond.act import contain

    started = time.perf_counter()
    report = rt.store.records.get(report_id)
    if report is None:
        return {"status": "unknown", "reason": f"there is no incident {report_id}"}
    if report.followed_by:
        return {"status": "already", "incident_id": report.followed_by, "reason": "contained already"}
    if report.status is not IncidentStatus.REPORTED:
        return {"status": "refused", "reason": f"incident {report_id} is {report.status.value}, not a report"}
    if not report.caller:
        return {
            "status": "refused",
            "reason": "the report does not name its caller (it predates Contain now)",
        }
    principal = Principal.from_dict(report.caller)
    verdict = _verdict(report, principal, actor, rt)
    key = principal_key(principal)
    found = rt.store.lookup([key], verdict.call.event_id)
    held = found.held.get(key)
    if found.seen or held is not None:
        holder = held.incident_id if held is not None else found.seen_in
        _followed(report, holder, actor, rt, "already held")
        return {"status": "already", "incident_id": holder, "reason": "held already by another incident"}
    by = {**actor.to_dict(), "at": iso_time(rt.clock()), "report": report.id}
    outcome = contain(verdict, rt, started, found, by=by)
    logger.warning(
        "contained by a person",
        extra={"report": report.id, "actor": actor.to_dict(), "status": outcome.status},
    )
    if outcome.incident_id and outcome.status in ("contained", "dry_run", "not_containable"):
        _followed(report, outcome.incident_id, actor, rt, outcome.status)
    return {
        "status": outcome.status,
        "incident_id": outcome.incident_id,
        "reason": outcome.error or (verdict.reason if outcome.status == "refused" else ""),
    }


def _followed(report: Incident, incident_id: str | None, actor: Actor, rt: Runtime, status: str) -> None:
    if not incident_id:
        return
    rt.store.acted(
        report.id,
        "SET followed_by = :id",
        "attribute_not_exists(followed_by)",
        {":id": incident_id},
        (
            "contained_by_person",
            actor.display,
            {"actor": actor.to_dict(), "incident": incident_id, "status": status},
        ),
    )


def _verdict(report: Incident, principal: Principal, actor: Actor, rt: Runtime) -> Verdict:
    """The report's finding, decided contain by a person: the rules and environment it was reported under."""
    from guardrail.detect.catalogue import default_catalogue
    from guardrail.detect.verdict import Verdict

    summary = report.verdict
    catalogue = default_catalogue()
    rules = []
    for rule_id in summary.get("rule_ids") or []:
        try:
            rules.append(catalogue.by_id(str(rule_id)))
        except KeyError:
            continue
    severity = Severity(str(summary.get("severity") or Severity.HIGH.value))
    call = ApiCall(
        # One per report: a second Contain now on it is an event already handled.
        event_id=f"contain-now-{report.id}",
        event_time=rt.clock(),
        event_source=str(summary.get("event_source") or "guardrail"),
        event_name=str(summary.get("event_name") or "ContainNow"),
        region=report.region,
        account=report.account or principal.account,
        principal=principal,
        request={},
    )
    return Verdict(
        call=call,
        category=Category(str(summary.get("category") or Category.BENIGN.value)),
        severity=severity if severity.rank >= Severity.HIGH.rank else Severity.HIGH,
        decision=Decision.CONTAIN,
        reason=f"contained by {actor.display} from Slack, on report {report.id}: {report.reason}",
        environment=Environment(str(summary.get("environment") or Environment.PRODUCTION.value)),
        rules=tuple(rules),
        is_agent=rt.settings.is_agent(principal),
        is_protected=rt.settings.is_protected(principal),
    )
