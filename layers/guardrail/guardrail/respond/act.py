"""Acting on a verdict: windows, containment, reports, notifications, release.

Imported only when an event calls for action, so an ignored event pays for none of it (cold start).

Order matters during an incident: when the decision is contain, the IAM write that stops the agent is the
first AWS write for the event (a consistent read of the state table comes before it, to avoid repeating a
containment); recording the incident comes after, and notifying after that. Nothing after the IAM write
can undo or delay it.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from aws_lambda_powertools.metrics import MetricUnit

from guardrail.detect.classifier import escalate
from guardrail.detect.cloudtrail import IAM_NAME
from guardrail.detect.verdict import PRINCIPAL_TEXT_LIMIT
from guardrail.detect.windows import Bucket, Tally, reached, tally_of
from guardrail.errors import RefusedEventError
from guardrail.incident import Incident, IncidentStatus, new_incident_id
from guardrail.model import Category, Decision, PrincipalKind, Severity
from guardrail.report.message import incident_message
from guardrail.respond.check import restore_containment
from guardrail.respond.containment import (
    CONSISTENCY_NOTE,
    ActionRecord,
    AttachRoleDenyAll,
    Blocked,
    ContainmentFailed,
    ContainmentPlan,
    IncidentRef,
    PutRoleDenyAll,
    PutRoleDenySession,
    SessionRef,
    Target,
    TargetKind,
    apply_plan,
    holding,
    plan_containment,
    principal_key,
)
from guardrail.respond.organizations import MemberAccessError, refusal
from guardrail.respond.outcome import Outcome, quarantine
from guardrail.respond.state.ledger import request_ids
from guardrail.respond.state.store import Claim, IncidentMissing, Lookup
from guardrail.telemetry import logger, metrics

if TYPE_CHECKING:
    from collections.abc import Sequence

    from guardrail.detect.verdict import Verdict
    from guardrail.environments import ThresholdHit
    from guardrail.respond.runtime import Runtime
    from guardrail.respond.state.records import OpenIncident

# Rules whose call changes a containment: the containment it names is checked at once.
CONTAINMENT_CHANGES = frozenset(
    {"iam.emergency-policy-removed", "iam.containment-policy-overwritten", "iam.deny-all-fallback-detached"}
)


def act(verdict: Verdict, rt: Runtime, started: float, event: object = None) -> Outcome:
    """Act on a verdict that calls for it, after the principal's windows have had their say.

    One consistent read tells whether the principal is held already, whether this event was seen, and the
    window counts; the event is then counted exactly once, in the same transaction as whatever it opens or
    joins.
    """
    call = verdict.call
    policy = rt.settings.policies[verdict.environment]
    key = principal_key(call.principal)
    tally = tally_of(verdict, policy, key)
    if rt.settings.is_central:
        # A central responder acts only for its members; anything else is kept, never acted on.
        foreign = refusal(call, rt.identity().account, rt.is_member)
        if foreign is not None:
            return quarantine(
                event if event is not None else verdict.summary(), RefusedEventError(foreign), rt
            )

    if (
        tally is None
        and verdict.decision is Decision.IGNORE
        and call.principal.kind is not PrincipalKind.ROOT
    ):
        # A watched agent's event that nothing acts on and no window counts: its flight record, and no more.
        rt.store.flight.record(verdict, key)
        return Outcome(status="ignored", verdict=verdict)
    keys = [key, report_key(key, verdict)] + ([report_key(key, None)] if tally else [])
    changed = _containment_named(verdict)
    if changed is not None:
        keys.append(changed)
    # The responder's own IAM writes come back through CloudTrail; their request ids were recorded.
    own_request = call.request_id if call.event_source == "iam.amazonaws.com" else None
    found = rt.store.lookup(keys, call.event_id, tally, own_request)
    # The agent's flight record goes into whatever this event writes (see state/flight.py).
    flight = rt.store.flight.entry(verdict, key) if verdict.is_agent else None
    if found.own is not None:
        logger.info(
            "the responder's own IAM write", extra={"incident_id": found.own, "event_id": call.event_id}
        )
        return Outcome(status="own_action", verdict=verdict, incident_id=found.own or None)
    if found.seen:
        return _already_handled(found, verdict, rt, tally, started)
    target = found.held.get(changed) if changed is not None else None
    if target is not None and target.status is IncidentStatus.CONTAINED:
        # This very call changes a containment: check it at once, whoever made the call.
        _check_containment(target, verdict, rt, changed_by=call.principal.arn or call.principal.display)
    held = found.held.get(key)
    if held is not None and held.session_scoped and verdict.decision is Decision.CONTAIN:
        widened = _widen(held, verdict, rt)
        if widened is not None:
            _join(held, verdict, rt, flight=flight)  # counted in the incident like any later event
            return Outcome(status="widened", verdict=verdict, incident_id=held.incident_id, notes=[widened])
    if held is not None:
        if (
            held is not target
            and held.status is IncidentStatus.CONTAINED
            and rt.store.records.claim_check(held)
        ):
            _check_containment(held, verdict, rt, changed_by=None, periodic=True)
        try:
            # Held already: windows have nothing left to decide.
            return _join(held, verdict, rt, flight=flight)
        except IncidentMissing:
            if rt.store.records.get(held.incident_id) is not None or not rt.store.records.drop_lock(
                held.key, held.incident_id
            ):
                raise
            # Someone wrote this lock to make the principal immune: gone, the event is decided afresh.
            metrics.add_metric(name="ForgedLocks", unit=MetricUnit.Count, value=1)
            logger.error(
                "a forged lock was removed", extra={"key": held.key, "incident_id": held.incident_id}
            )
            return act(verdict, rt, started, event)
    bucket = found.window.get(tally.minute) if tally else None
    if tally is not None:
        verdict = _escalated(verdict, reached(policy, found.window, tally, include_tally=True))
    outcome = _act(verdict, rt, started, found, tally, bucket, flight=flight)
    if tally is not None and outcome.status in _WINDOW_MAY_STILL_ACT:
        return _recheck(verdict, rt, started, tally) or outcome
    return outcome


def _widen(held: OpenIncident, verdict: Verdict, rt: Runtime) -> str | None:
    """A session-scoped containment, and a containing call from another session of the role (an agent
    that re-assumed the role under a new name, or a sibling gone wrong): deny the whole role, at once,
    under the same incident. Returns why, or None when nothing was widened."""
    incident = rt.store.records.get(held.incident_id)
    if incident is None:
        return None
    done = [ActionRecord.from_item(a) for a in incident.actions if not a.get("error")]
    sessions = [r for r in done if r.action == PutRoleDenySession.name]
    if not sessions or any(r.action in _ROLE_WIDE for r in done):
        return None
    ref = IncidentRef(incident.id, incident.opened_at)
    caller = verdict.call.principal
    if any(SessionRef.from_dict(r.details.get("session") or {}).includes(caller, ref) for r in sessions):
        return None  # the contained session's own call, delivered late: already denied
    target = Target.from_arn(sessions[0].target)
    iam = rt.iam_for(target.account)
    if iam is None:
        return None
    records = apply_plan(ContainmentPlan(target, (PutRoleDenyAll(),)), ref, iam)
    who = caller.source_identity or caller.principal_id or caller.arn
    why = (
        f"containment widened to the whole role {target.name}: {verdict.call.event_name} "
        f"({verdict.top_rule.id if verdict.top_rule else verdict.category.value}) came from another session "
        f"({who}) while {SessionRef.from_dict(sessions[0].details.get('session') or {}).describe()} was contained"
    )
    items = [r.to_item() for r in records]
    rt.store.amended(incident, [why], items, caller.arn or None, kind="widened")
    metrics.add_metric(name="ContainmentsWidened", unit=MetricUnit.Count, value=1)
    logger.warning("containment widened to the role", extra={"incident_id": incident.id, "why": why})
    widened = rt.store.records.get(incident.id) or incident
    critical = replace(verdict, severity=Severity.CRITICAL)
    _announce(critical, widened, rt, kind="widened", summary={"summary": why})
    return why


_ROLE_WIDE = frozenset({PutRoleDenyAll.name, AttachRoleDenyAll.name})


def _containment_named(verdict: Verdict) -> str | None:
    """The principal whose containment this call changes (a Guardrail policy or AWSDenyAll written,
    removed or detached), by its state-table key; None for any other call."""
    if not any(rule.id in CONTAINMENT_CHANGES for rule in verdict.rules):
        return None
    call = verdict.call
    for parameter, kind in (("roleName", TargetKind.ROLE), ("userName", TargetKind.USER)):
        name = call.request.get(parameter)
        if isinstance(name, str) and IAM_NAME.match(name):
            return Target(kind, name, call.account).key
    return None


def _check_containment(
    held: OpenIncident, verdict: Verdict, rt: Runtime, *, changed_by: str | None, periodic: bool = False
) -> None:
    """Containment is a fact to check, not a memory (see check.restore_containment): whatever changed is put
    back and announced as critical, naming who changed it when the event says. A periodic check that cannot
    read IAM is logged and counted, and the event goes on; a check prompted by a change to the containment
    fails the invocation instead (retried)."""
    incident = rt.store.records.get(held.incident_id)
    if incident is None:
        return
    try:
        found = restore_containment(incident, rt, changed_by)
    except Exception:
        if not periodic:
            raise
        logger.exception("could not check the containment", extra={"incident_id": incident.id})
        metrics.add_metric(name="ContainmentCheckFailures", unit=MetricUnit.Count, value=1)
        return
    if found is None:
        return
    summary = found.summary(changed_by)
    critical = replace(verdict, severity=Severity.CRITICAL)
    _announce(critical, incident, rt, kind="restored", summary={"summary": summary, "changed": found.changed})
    if found.failed:
        raise ContainmentFailed(
            f"containment of {incident.key} changed and not put back: {'; '.join(found.failed)}", found.redone
        )


# Outcomes after which a window filled by concurrent events may still call for more.
_WINDOW_MAY_STILL_ACT = frozenset({"counted", "reported", "joined", "duplicate"})


def _escalated(verdict: Verdict, hits: tuple[ThresholdHit, ...]) -> Verdict:
    if not hits:
        return verdict
    raised = escalate(verdict, hits)
    metrics.add_metric(name="ThresholdsReached", unit=MetricUnit.Count, value=1)
    logger.warning(
        "window threshold reached",
        extra={"thresholds": [h.to_dict() for h in hits], "decision": raised.decision.value},
    )
    return raised


def _act(
    verdict: Verdict,
    rt: Runtime,
    started: float,
    found: Lookup,
    tally: Tally | None,
    bucket: Bucket | None,
    *,
    mark_event: bool = True,
    flight: dict[str, Any] | None = None,
) -> Outcome:
    call = verdict.call
    if verdict.decision is Decision.CONTAIN or call.principal.kind is PrincipalKind.ROOT:
        # Root is never contained (nothing in IAM can), but it is recorded as an incident with the steps.
        return contain(verdict, rt, started, found, tally, bucket, mark_event=mark_event, flight=flight)
    if verdict.decision is Decision.NOTIFY:
        return report(verdict, rt, found, tally, bucket, mark_event=mark_event, flight=flight)
    assert tally is not None  # an ignored event reaches here only to be counted
    if not rt.store.count(call.event_id, tally, bucket, flight):
        return Outcome(status="duplicate", verdict=verdict)
    return Outcome(status="counted", verdict=verdict)


def _recheck(verdict: Verdict, rt: Runtime, started: float, tally: Tally) -> Outcome | None:
    """Read the windows again now that this event is in them. Concurrent events each read the counts
    before any of them wrote; the last to write sees the total, so a burst that fills a window is acted on
    even when no later event comes."""
    policy = rt.settings.policies[verdict.environment]
    hits = reached(policy, rt.store.windows.read(tally), tally, include_tally=False)
    if not hits or escalate(verdict, hits).decision.rank <= verdict.decision.rank:
        return None  # nothing more to do: counted and logged once, where it was decided
    return _act(_escalated(verdict, hits), rt, started, Lookup({}), None, None, mark_event=False)


def report_key(key: str, verdict: Verdict | None) -> str:
    """Reports group by principal and finding; every window spike of a principal shares one report."""
    if verdict is None or verdict.thresholds:
        return f"{key}#report#window"
    return finding_report_key(key, verdict.rule_ids, verdict.category)


def finding_report_key(key: str, rule_ids: Sequence[str], category: Category) -> str:
    """The report group of a finding no window raised: its top rule, or its category when no rule named it."""
    finding = rule_ids[0] if rule_ids else category.value
    return f"{key}#report#{finding}"


def contain(
    verdict: Verdict,
    rt: Runtime,
    started: float,
    found: Lookup,
    tally: Tally | None = None,
    bucket: Bucket | None = None,
    *,
    mark_event: bool = True,
    flight: dict[str, Any] | None = None,
    by: dict[str, Any] | None = None,
) -> Outcome:
    """Stop the agent, once per principal, record it, then tell people. Raises ContainmentFailed when
    IAM refuses, after recording and announcing the failure. `by`: the person who chose to contain
    (respond/manual.py), recorded on the incident and in its audit records."""
    settings, call = rt.settings, verdict.call
    plan = plan_containment(verdict, settings, rt.identity(), reachable=rt.can_reach)
    store = rt.store
    if plan.blocked is Blocked.REFUSED:
        # The classifier never decides contain for these: if we get here, something upstream is wrong.
        logger.error(
            "containment refused: reporting instead", extra={"reason": plan.reason, "event_id": call.event_id}
        )
        metrics.add_metric(name="ContainmentRefused", unit=MetricUnit.Count, value=1)
        outcome = Outcome(status="refused", verdict=verdict, error=f"containment refused: {plan.reason}")
        rt.publish(incident_message(verdict, "refused", runbook_url=settings.runbook_url))
        if tally is not None and mark_event:
            store.count(call.event_id, tally, bucket, flight)
        elif flight is not None:
            store.flight.record(verdict, principal_key(call.principal))
        return outcome

    key = plan.key or principal_key(call.principal)
    incident = _new_incident(verdict, rt, key, IncidentStatus.CONTAINED, incident_id=found.failed_id)
    incident.contained_by = by
    incident.reason, incident.manual_steps, incident.caveats = (
        plan.reason or verdict.reason,
        list(plan.manual_steps),
        list(plan.caveats),
    )
    ref = IncidentRef(incident.id, incident.opened_at)

    def claim(kind: str, audit: dict[str, Any]) -> Claim:
        if by is not None:
            audit = {**audit, "contained_by": by}
        return store.open(
            incident,
            call.event_id,
            kind,
            audit,
            tally=tally,
            bucket=bucket,
            mark_event=mark_event,
            flight=flight,
        )

    if plan.blocked is Blocked.NOT_CONTAINABLE:
        incident.status = IncidentStatus.NOT_CONTAINABLE
        logger.error("agent NOT CONTAINABLE here: manual steps required", extra=incident.to_dict())
        metrics.add_metric(name="NotContainable", unit=MetricUnit.Count, value=1)
        return _opened(
            claim("not_containable", {"reason": plan.reason}), verdict, incident, rt, mark_event, flight
        )

    assert plan.target is not None
    if settings.dry_run:
        incident.status = IncidentStatus.DRY_RUN
        incident.actions = [a.describe(plan.target, ref).to_item() for a in plan.actions]
        opened = _opened(
            claim("dry_run", {"would": incident.actions}), verdict, incident, rt, mark_event, flight
        )
        return _followed(opened, incident, verdict, rt)

    try:
        iam = rt.iam_for(plan.target.account)
        assert iam is not None  # the planner only plans for reachable accounts
        records = apply_plan(plan, ref, iam, started, rt.identity_center_admin)
    except (ContainmentFailed, MemberAccessError) as error:
        exc = error if isinstance(error, ContainmentFailed) else ContainmentFailed(str(error), [])
        incident.status = IncidentStatus.FAILED
        incident.actions = [r.to_item() for r in exc.records]
        incident.error = str(exc)
        metrics.add_metric(name="ContainmentFailures", unit=MetricUnit.Count, value=1)
        logger.error("CONTAINMENT FAILED: the agent may still be active", extra=incident.to_dict())
        # Record and announce, then fail the invocation so Lambda retries; neither may mask the failure.
        try:
            store.open(incident, call.event_id, "contain_failed", {"error": str(exc)}, flight=flight)
            _announce(verdict, incident, rt)
        except Exception:
            logger.exception("could not record or announce the failed containment")
        if exc is error:
            raise
        raise exc from error

    incident.actions = [r.to_item() for r in records]
    held, failed = holding(records)
    incident.containment_ms = next((r.ms for r in records if r.action in held), None)
    incident.caveats.append(CONSISTENCY_NOTE)
    if failed:
        # Stopped, but not every layer is in place: say which holds, so nobody reads the incident wrong.
        incident.caveats.append(
            f"Containment holds through {', '.join(held)}; {', '.join(failed)} failed (see actions)."
        )
        metrics.add_metric(name="ContainmentDegraded", unit=MetricUnit.Count, value=1)
        logger.error(
            "containment holds, but not every action succeeded", extra={"held": held, "failed": failed}
        )
    audit = {
        "principal": incident.principal_arn,
        "event_ids": incident.event_ids,
        "containment_ms": incident.containment_ms,
        "actions": incident.actions,
    }
    won = claim("contain", audit)
    if not won.won:
        return _lost_race(plan, won, key, verdict, rt, mark_event, flight)
    metrics.add_metric(name="Contained", unit=MetricUnit.Count, value=1)
    if incident.containment_ms is not None:
        metrics.add_metric(
            name="ContainmentLatency", unit=MetricUnit.Milliseconds, value=incident.containment_ms
        )
    logger.warning("agent contained", extra=incident.to_dict())
    return _followed(_opened(won, verdict, incident, rt, mark_event, flight), incident, verdict, rt)


def _followed(outcome: Outcome, incident: Incident, verdict: Verdict, rt: Runtime) -> Outcome:
    """After the IAM write and the first message, never before: self-healing and the damage report, for
    the invocation that opened the incident. Nothing in it can fail the containment."""
    if outcome.incident_id == incident.id and outcome.status == incident.status.value:
        from guardrail.respond.investigate import follow_up

        follow_up(incident, verdict, rt)
    return outcome


def report(
    verdict: Verdict,
    rt: Runtime,
    found: Lookup,
    tally: Tally | None = None,
    bucket: Bucket | None = None,
    *,
    mark_event: bool = True,
    flight: dict[str, Any] | None = None,
) -> Outcome:
    """Tell people, without containing. Repeats of one finding by one principal join one report for a
    window (summarised at most once a minute); so do events of a principal that is already contained."""
    call = verdict.call
    grouped = report_key(principal_key(call.principal), verdict)
    held = found.held.get(grouped)
    if held is not None:
        return _join(held, verdict, rt, tally, bucket, mark_event=mark_event, flight=flight)
    incident = _new_incident(verdict, rt, grouped, IncidentStatus.REPORTED)
    claim = rt.store.open(
        incident,
        call.event_id,
        "report",
        {"reason": verdict.reason},
        tally=tally,
        bucket=bucket,
        mark_event=mark_event,
        flight=flight,
    )
    return _opened(claim, verdict, incident, rt, mark_event, flight)


def _new_incident(
    verdict: Verdict, rt: Runtime, key: str, status: IncidentStatus, incident_id: str | None = None
) -> Incident:
    call, now = verdict.call, rt.clock()
    return Incident(
        id=incident_id or new_incident_id(now),
        status=status,
        key=key,
        principal_arn=call.principal.arn[:PRINCIPAL_TEXT_LIMIT],
        account=call.account,
        region=call.region,
        opened_at=now,
        verdict=verdict.summary(),
        event_ids=[call.event_id],
        reason=verdict.reason,
        responder=rt.identity().arn if status is not IncidentStatus.REPORTED else None,
        last_event_at=incident_time(now),
        counts_by_name={call.event_name: 1},
        summarized_by_name={call.event_name: 1},
        caller=call.principal.to_dict() if status is IncidentStatus.REPORTED else None,
    )


def incident_time(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _announce(
    verdict: Verdict,
    incident: Incident,
    rt: Runtime,
    *,
    kind: str = "incident",
    summary: dict[str, Any] | None = None,
) -> None:
    message = incident_message(
        verdict,
        incident.status.value,
        incident,
        kind=kind,
        runbook_url=rt.settings.runbook_url,
        summary=summary,
    )
    rt.publish(message)


def _announce_once(verdict: Verdict, incident: Incident, rt: Runtime) -> None:
    """Announce under a claim this invocation holds; give the claim back if the announcement fails."""
    event_id = verdict.call.event_id
    try:
        _announce(verdict, incident, rt)
    except Exception:
        rt.store.ledger.release_announcement(event_id)
        raise
    rt.store.ledger.mark_notified(event_id)


def _follow_winner(
    claim: Claim,
    key: str,
    verdict: Verdict,
    rt: Runtime,
    mark_event: bool = True,
    flight: dict[str, Any] | None = None,
) -> Outcome:
    """Another invocation holds the principal: count this event into its incident, unless it is this very event."""
    held = None if claim.duplicate else rt.store.records.open_for(key)
    if held is None:
        return Outcome(status="duplicate", verdict=verdict, incident_id=claim.incident_id)
    # The lost claim wrote nothing, so the event is counted here; its windows were counted already
    # only when it was marked before (mark_event=False).
    policy = rt.settings.policies[verdict.environment]
    tally = tally_of(verdict, policy, principal_key(verdict.call.principal)) if mark_event else None
    return _join(held, verdict, rt, tally, None, mark_event=mark_event, flight=flight)


def _opened(
    claim: Claim,
    verdict: Verdict,
    incident: Incident,
    rt: Runtime,
    mark_event: bool = True,
    flight: dict[str, Any] | None = None,
) -> Outcome:
    """After a claim: announce a new incident, or count the event into the one that won."""
    if not claim.won:
        return _follow_winner(claim, incident.key, verdict, rt, mark_event, flight)
    if rt.store.ledger.claim_announcement(
        verdict.call.event_id
    ):  # lost only to a delivery of this very event
        _announce_once(verdict, incident, rt)
    notes = (
        [incident.reason, *incident.manual_steps] if incident.status is IncidentStatus.NOT_CONTAINABLE else []
    )
    return Outcome(
        status=incident.status.value,
        verdict=verdict,
        incident_id=incident.id,
        actions=incident.actions,
        containment_ms=incident.containment_ms,
        notes=notes or list(incident.caveats),
    )


def _join(
    held: OpenIncident,
    verdict: Verdict,
    rt: Runtime,
    tally: Tally | None = None,
    bucket: Bucket | None = None,
    *,
    mark_event: bool = True,
    flight: dict[str, Any] | None = None,
) -> Outcome:
    """Count the event into an open incident; the one invocation per interval that wins the claim sends
    a summary of what joined since the last message."""
    call, store = verdict.call, rt.store
    joined = store.join(
        held.incident_id,
        call.event_id,
        call.event_name,
        tally=tally,
        bucket=bucket,
        mark_event=mark_event,
        flight=flight,
    )
    if not joined:
        return Outcome(status="duplicate", verdict=verdict, incident_id=held.incident_id)
    if store.records.claim_summary(held):
        incident = store.records.get(held.incident_id)
        if incident is not None:
            since = datetime.fromtimestamp(held.summary_at, UTC)
            _announce(
                verdict, incident, rt, kind="update", summary=incident.summary_since_last(rt.clock(), since)
            )
            store.ledger.mark_summarized(incident)
    return Outcome(status="joined", verdict=verdict, incident_id=held.incident_id)


def _already_handled(
    found: Lookup, verdict: Verdict, rt: Runtime, tally: Tally | None, started: float
) -> Outcome:
    """A redelivery or a retry. If the first delivery recorded the incident but failed to announce it,
    announce now; if it counted the event but failed acting on the window it filled, act now."""
    incident_id = found.seen_in
    if (
        not found.notified
        and incident_id is not None
        and rt.store.ledger.claim_announcement(verdict.call.event_id)
    ):
        incident = rt.store.records.get(incident_id)
        if incident is not None:
            _announce_once(verdict, incident, rt)
            return Outcome(status="notified_on_retry", verdict=verdict, incident_id=incident_id)
    if tally is not None and tally.key not in found.held:
        acted = _recheck(verdict, rt, started, tally)
        if acted is not None:
            return acted
    return Outcome(status="duplicate", verdict=verdict, incident_id=incident_id)


def _lost_race(
    plan: ContainmentPlan,
    claim: Claim,
    key: str,
    verdict: Verdict,
    rt: Runtime,
    mark_event: bool = True,
    flight: dict[str, Any] | None = None,
) -> Outcome:
    """Another invocation claimed the principal while we were writing to IAM. Our writes repeated
    its own; redo them under its incident so the role's policy and tags name the incident on record."""
    winner = rt.store.records.get(claim.incident_id)
    iam = rt.iam_for(plan.target.account) if plan.target else None
    if winner is not None and winner.status is IncidentStatus.CONTAINED and iam is not None:
        redone = apply_plan(
            plan, IncidentRef(winner.id, winner.opened_at), iam, admin=rt.identity_center_admin
        )
        rt.store.ledger.remember_own(request_ids([r.to_item() for r in redone]), winner.id, "contain")
    rt.store.audit.record(claim.incident_id, "raced", rt.identity().arn, {"event_id": verdict.call.event_id})
    return _follow_winner(claim, key, verdict, rt, mark_event, flight)
