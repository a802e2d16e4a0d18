"""The damage report: what an agent changed, grouped by resource in time order, and for each change what
can still be recovered, how, and until when.

Pure: built from the agent's recorded changes (its flight record, and CloudTrail's event history where the
operator allows it) and the recovery book (detect/recovery.py); rendered as text (the CLI, email), as a
JSON document (the incident, the SNS message) and as Slack blocks (report/slack.py).
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from guardrail.detect.recovery import default_book, iso
from guardrail.report.message import record_message, release_command, target_resource

if TYPE_CHECKING:
    from collections.abc import Iterable
    from datetime import datetime, timedelta

    from guardrail.detect.recovery import Change, Recovery, RecoveryBook
    from guardrail.incident import Incident

LINE_LIMIT = 200  # changes listed; the counts cover all of them
READ_LIMIT = 50  # resources read, listed


@dataclass(frozen=True)
class DamageLine:
    """One change, and what can be done about it."""

    change: Change
    recovery: Recovery | None

    @property
    def status(self) -> str:
        """failed (nothing changed), undo, by_hand, lost, or unknown (no recovery known for the call)."""
        if self.change.error_code:
            return "failed"
        return self.recovery.outcome.value if self.recovery else "unknown"

    def to_dict(self) -> dict[str, Any]:
        change = self.change
        return {
            "event_id": change.event_id,
            "time": iso(change.time),
            "source": change.source,
            "name": change.name,
            "region": change.region,
            "account": change.account,
            "error_code": change.error_code,
            "status": self.status,
            "resources": list(change.resources),
            "origin": change.origin,
            "recovery": self.recovery.to_dict() if self.recovery and not change.error_code else None,
        }


@dataclass(frozen=True)
class DamageReport:
    principal: str
    incident_id: str | None
    since: datetime
    generated_at: datetime
    groups: tuple[tuple[str, tuple[DamageLine, ...]], ...]  # by resource, first touched first
    reads: tuple[tuple[str, tuple[str, ...]], ...] = ()  # resource read, and the calls that read it
    notes: tuple[str, ...] = ()
    clipped: int = 0  # changes left out of the listing (LINE_LIMIT)
    totals: tuple[tuple[str, int], ...] = ()  # every change by status, listed or not

    @property
    def lines(self) -> list[DamageLine]:
        return [line for _, lines in self.groups for line in lines]

    def counts(self) -> dict[str, int]:
        """Changes by status: all of them, including those the listing left out."""
        counted = Counter(dict(self.totals)) if self.totals else Counter(line.status for line in self.lines)
        return {k: counted.get(k, 0) for k in ("undo", "by_hand", "lost", "unknown", "failed")}

    def undoable(self) -> list[DamageLine]:
        """The changes `guardrail undo --apply` can put back, oldest first."""
        return [line for line in sorted(self.lines, key=lambda x: x.change.time) if line.status == "undo"]

    def to_dict(self) -> dict[str, Any]:
        return {
            "principal": self.principal,
            "incident_id": self.incident_id,
            "since": iso(self.since),
            "generated_at": iso(self.generated_at),
            "counts": self.counts(),
            "resources": [
                {"resource": resource, "changes": [line.to_dict() for line in lines]}
                for resource, lines in self.groups
            ],
            "reads": [{"resource": r, "calls": list(names)} for r, names in self.reads],
            "notes": list(self.notes),
            "clipped": self.clipped,
        }


def resource_of(change: Change) -> str:
    """What a change acted on, as precisely as the record says: CloudTrail's resource ARN, else the
    request's naming parameter."""
    if change.resources:
        return change.resources[0]
    return target_resource(dict(change.request)) or f"({change.source.split('.')[0]}, no resource named)"


def damage_report(
    changes: Iterable[Change],
    *,
    principal: str,
    since: datetime,
    now: datetime,
    incident_id: str | None = None,
    notes: Iterable[str] = (),
    book: RecoveryBook | None = None,
) -> DamageReport:
    """The report on `changes` (any order, duplicates by event id dropped; the flight record's copy wins)."""
    book = book or default_book()
    unique: dict[str, Change] = {}
    for change in changes:
        unique.setdefault(change.event_id, change)
    ordered = sorted(unique.values(), key=lambda c: (c.time, c.event_id))
    every = [DamageLine(c, book.recovery(c)) for c in ordered if not c.read_only]
    totals = Counter(line.status for line in every)
    shown, clipped = every[-LINE_LIMIT:], max(0, len(every) - LINE_LIMIT)
    groups: dict[str, list[DamageLine]] = {}
    for line in shown:
        groups.setdefault(resource_of(line.change), []).append(line)
    reads: dict[str, list[str]] = {}
    for change in ordered:
        if change.read_only and not change.error_code:
            names = reads.setdefault(resource_of(change), [])
            if change.name not in names:
                names.append(change.name)
    return DamageReport(
        principal,
        incident_id,
        since,
        now,
        tuple((r, tuple(lines)) for r, lines in groups.items()),
        tuple((r, tuple(n)) for r, n in list(reads.items())[:READ_LIMIT]),
        tuple(notes),
        clipped,
        tuple(sorted(totals.items())),
    )


def relative(deadline: datetime, now: datetime) -> str:
    """'in 6 days', 'in 5 hours', '3 days ago': how long is left, in the unit a person would use."""
    delta: timedelta = deadline - now
    seconds = abs(delta.total_seconds())
    if seconds < 3600:
        amount, unit = max(1, round(seconds / 60)), "minute"
    elif seconds < 48 * 3600:
        amount, unit = round(seconds / 3600), "hour"
    else:
        amount, unit = round(seconds / 86400), "day"
    text = f"{amount} {unit}{'s' if amount != 1 else ''}"
    return f"in {text}" if delta.total_seconds() >= 0 else f"{text} ago: too late"


def deadline_text(deadline: datetime | None, now: datetime) -> str:
    if deadline is None:
        return ""
    return f"before {deadline.strftime('%Y-%m-%d %H:%M UTC')} ({relative(deadline, now)})"


_LABELS = {
    "undo": "CAN BE UNDONE",
    "by_hand": "RECOVERABLE BY HAND",
    "lost": "CANNOT BE UNDONE",
    "unknown": "NO RECOVERY KNOWN",
    "failed": "FAILED (nothing changed)",
}


def line_text(line: DamageLine, now: datetime) -> list[str]:
    """One change as the report prints it: what, when, the verdict, then what can be done."""
    change, recovery = line.change, line.recovery
    head = (
        f"{change.time.strftime('%H:%M:%S')}  {change.name} ({change.source.split('.')[0]}, {change.region})"
    )
    out = [f"  {head}: {_LABELS[line.status]}"]
    if line.status == "failed":
        out.append(f"      error {change.error_code}")
        return out
    if recovery is None:
        out.append("      check it by hand: the recovery book has no entry for this call")
        return out
    out.append(f"      {recovery.how}")
    for step in recovery.steps if line.status == "undo" else ():
        params = ", ".join(f"{k}={v}" for k, v in step.params.items())
        out.append(f"      -> {step.call}({params})")
    if recovery.deadline is not None and line.status in ("undo", "by_hand"):
        out.append(f"      {deadline_text(recovery.deadline, now)}")
    return out


def report_text(report: DamageReport, now: datetime | None = None) -> str:
    """The report for a terminal or an email."""
    now = now or report.generated_at
    counts = report.counts()
    title = f"DAMAGE REPORT: {report.principal}" + (
        f" (incident {report.incident_id})" if report.incident_id else ""
    )
    lines = [
        title,
        f"changes since {iso(report.since)}: {counts['undo']} can be undone, {counts['by_hand']} by hand, "
        f"{counts['lost']} cannot be undone, {counts['unknown']} unknown, {counts['failed']} failed",
    ]
    if not report.groups:
        lines.append("  no change recorded for this principal in that time")
    for resource, group in report.groups:
        lines += ["", resource]
        for line in group:
            lines += line_text(line, now)
    if report.clipped:
        lines += ["", f"  ... and {report.clipped} more changes, older or beyond what a message holds"]
    if report.reads:
        lines += ["", "READ (from CloudTrail's event history)"]
        lines += [f"  {resource}: {', '.join(names)}" for resource, names in report.reads]
    if report.notes:
        lines += [""] + [f"NOTE: {note}" for note in report.notes]
    if counts["undo"]:
        lines += [
            "",
            "Undo what can be undone: guardrail undo " + (report.incident_id or "INCIDENT_ID") + " --apply",
        ]
    return "\n".join(lines) + "\n"


def summary_of(report: DamageReport, now: datetime | None = None, limit: int = 8) -> str:
    """The few lines a chat message can hold: the first changes, what each allows, and the count left."""
    now = now or report.generated_at
    bits = []
    for line in report.lines[:limit]:
        what = f"{line.change.name} on {resource_of(line.change)}: {_LABELS[line.status].lower()}"
        if line.recovery and line.recovery.deadline and line.status in ("undo", "by_hand"):
            what += f", {deadline_text(line.recovery.deadline, now)}"
        bits.append(what)
    more = len(report.lines) - limit
    if more > 0:
        bits.append(f"and {more} more")
    return "; ".join(bits) or "no change recorded"


MESSAGE_LINES = 25  # changes in a message; SNS carries the document twice and the email text once in 256 KB
MESSAGE_BYTES = 60_000


def _for_a_message(report: DamageReport, lines: int) -> DamageReport:
    """The report cut to its first `lines` changes, each naming at most three resources: what fits a
    message whatever the agent did. The counts in the message are the whole report's."""
    groups: list[tuple[str, tuple[DamageLine, ...]]] = []
    left = lines
    for resource, group in report.groups:
        if left <= 0:
            break
        kept = tuple(
            DamageLine(
                replace(line.change, resources=tuple(r[:256] for r in line.change.resources[:3])),
                line.recovery,
            )
            for line in group[:left]
        )
        left -= len(kept)
        groups.append((resource[:512], kept))
    shown = sum(len(g) for _, g in groups)
    return replace(
        report,
        groups=tuple(groups),
        reads=report.reads[:10],
        clipped=report.clipped + len(report.lines) - shown,
    )


def damage_message(
    incident: Incident, report: DamageReport, runbook_url: str | None = None, restored: Iterable[str] = ()
) -> dict[str, Any]:
    """The follow-up message of a containment: the damage report, and what the responder put back itself."""
    counts = report.counts()
    headline = (
        f"{counts['undo']} can be undone, {counts['by_hand']} recoverable by hand, "
        f"{counts['lost']} cannot be undone, {counts['unknown']} unknown"
    )
    restored = [r[:1000] for r in restored]
    for lines in (MESSAGE_LINES, 5):
        shown = _for_a_message(report, lines)
        damage = {**shown.to_dict(), "counts": counts, "text": report_text(shown), "restored": restored}
        if len(json.dumps(damage, default=str)) <= MESSAGE_BYTES:
            break
    return record_message(
        incident,
        runbook_url,
        kind="damage",
        reason=f"Damage report: {headline}",
        counts={"events": incident.event_count, "summary": summary_of(report)},
        damage=damage,
        release_command=release_command(incident) if incident.status.value == "contained" else None,
    )
