"""`guardrail investigate` and `guardrail undo`: the damage report on demand, and the recovery plan run by
an operator, step by step, each step in the incident's audit trail."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from guardrail.detect.recovery import parse_date
from guardrail.errors import GuardrailError
from guardrail.model import Principal, PrincipalKind
from guardrail.report.damage import LINE_LIMIT, deadline_text

if TYPE_CHECKING:
    from datetime import datetime

    from guardrail.incident import Incident
    from guardrail.report.damage import DamageReport
    from guardrail.respond.runtime import Runtime
    from guardrail.respond.undo import UndoPlan

_ARN = re.compile(
    r"^arn:aws[\w-]*:(?:iam|sts)::(\d{12}):(role|user|assumed-role)/(?:.*/)?([\w+=,.@-]+?)(?:/([\w+=,.@-]+))?$"
)


@dataclass(frozen=True)
class Subject:
    """Whom an investigation is about: the state-table key of its flight record, and what CloudTrail's
    event history can find it by."""

    key: str
    principal: str
    who: Principal
    incident: Incident | None = None


def subject_of(rt: Runtime, incident_id: str | None, principal: str | None) -> Subject:
    from guardrail.respond.containment import Target

    if incident_id:
        incident = rt.store.records.get(incident_id)
        if incident is None:
            raise GuardrailError(f"no incident {incident_id} in the state table")
        return Subject(incident.key, incident.principal_arn, _principal(incident.principal_arn), incident)
    if not principal:
        raise GuardrailError("name an incident id or --principal ARN")
    return Subject(Target.from_arn(principal).key, principal, _principal(principal))


def _principal(arn: str) -> Principal:
    """Enough of a principal for CloudTrail's event history: a user by name, a session by its name."""
    match = _ARN.match(arn)
    if not match:
        return Principal(PrincipalKind.UNKNOWN, arn, "", "")
    account, kind, name, session = match.groups()
    if kind == "user":
        return Principal(PrincipalKind.USER, arn, account, name)
    return Principal(PrincipalKind.ROLE, arn, account, name, session_name=session)


def damage_of(
    rt: Runtime,
    subject: Subject,
    hours: int,
    now: datetime,
    *,
    cloudtrail: bool = False,
    region: str | None = None,
) -> DamageReport:
    """The subject's damage report: from `hours` before its incident opened (or before now) until now."""
    from guardrail.respond.investigate import EventHistory, investigate

    start = now
    if subject.incident is not None:
        # The hours before the call that opened the incident (its delivery can lag, a replay much more).
        called = parse_date(subject.incident.verdict.get("event_time"))
        start = min(subject.incident.opened_at, called or subject.incident.opened_at)
    history = None
    if cloudtrail:
        where = region or (subject.incident.region if subject.incident else None) or "us-east-1"
        history = EventHistory(rt.aws.client("cloudtrail", where))
    return investigate(
        rt.store,
        subject.key,
        principal=subject.principal,
        since=start - timedelta(hours=hours),
        now=now,
        incident_id=subject.incident.id if subject.incident else None,
        history=history,
        who=subject.who,
    )


def plan_text(plan: UndoPlan, now: datetime) -> str:
    """The recovery plan as `guardrail undo` prints it: every step, its AWS call, its deadline; then what
    a person must do, and what is gone."""
    lines = ["RECOVERY PLAN"]
    if not plan.steps:
        lines.append("  nothing here can be undone by this tool")
    if plan.left_out:
        lines.append(
            f"  NOTE: {plan.left_out} older changes are not in this plan: the report lists the newest "
            f"{LINE_LIMIT}; check those by hand in CloudTrail (event history or the trail's logs)"
        )
    for planned in plan.steps:
        deadline = deadline_text(planned.deadline, now)
        lines.append(f"  {planned.number}. {planned.describe()}" + (f"\n     {deadline}" if deadline else ""))
    for title, group in (
        ("BY HAND", plan.by_hand),
        ("CANNOT BE UNDONE", plan.lost),
        ("NO RECOVERY KNOWN", plan.unknown),
    ):
        if group:
            lines += ["", title]
            for line in group:
                how = line.recovery.how if line.recovery else "the recovery book has no entry for this call"
                deadline = deadline_text(line.recovery.deadline, now) if line.recovery else ""
                lines.append(
                    f"  {line.change.name} at {line.change.time:%Y-%m-%d %H:%M:%S}: {how}"
                    + (f" {deadline}" if deadline else "")
                )
    return "\n".join(lines) + "\n"


def run_undo(rt: Runtime, subject: Subject, plan: UndoPlan, now: datetime, out: Any) -> int:
    """Carry out the plan's steps one by one with the operator's credentials, each recorded in the
    incident's audit trail with its request id; stop at the first failure."""
    from guardrail.respond.undo import UndoFailed, apply

    caller = rt.aws.sts.get_caller_identity()
    actor, account = str(caller["Arn"]), str(caller["Account"])

    def record(kind: str, details: dict[str, Any]) -> None:
        if subject.incident is not None:
            rt.store.audit.record(subject.incident.id, kind, actor, details)
        step = f"{details['step']}. {details['call']}"
        if details.get("error"):
            print(f"FAILED {step}: {details['error']}", file=out)
        else:
            print(f"done   {step} (request {details.get('request_id') or '-'})", file=out)

    try:
        applied = apply(plan, rt.aws.client, now, record, account=account)
    except UndoFailed as exc:
        print(f"guardrail: undo stopped: {exc}", file=out)
        return 1
    print(f"{len(applied.done)} step(s) done, by {actor}", file=out)
    return 0
