"""What can still be undone of a call an agent made, how, and until when.

The knowledge is data (``data/recovery.yaml``: one entry per call, each citing the AWS page it was checked
against); this module reads it and applies it to one recorded call: the outcome (undo, by hand, lost), the
steps with the record's own values filled in, and the deadline, from the date the response names or the
window the request set. Pure: no AWS, no clock but the one it is handed.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from functools import cache
from importlib import resources
from typing import Any

from guardrail.errors import CatalogueError
from guardrail.model import AutoRestore

_ENTRY_KEYS = {"call", "when", "outcome", "how", "steps", "deadline", "heal", "source"}
_STEP_KEYS = {"call", "params", "restore"}
_DEADLINE_KEYS = {"date", "days", "default_days"}
_PLACEHOLDER = re.compile(r"\{((?:request|response)\.[A-Za-z0-9_.]+)(\?)?\}")


class Outcome(StrEnum):
    UNDO = "undo"  # the steps put it back, and are safe to run
    BY_HAND = "by_hand"  # recoverable, but a person decides how
    LOST = "lost"  # cannot be undone


@dataclass(frozen=True)
class Change:
    """One call of an agent, as the flight record (or CloudTrail's event history) keeps it."""

    event_id: str
    time: datetime
    source: str
    name: str
    region: str
    account: str
    request: Mapping[str, Any]
    response: Mapping[str, Any] | None = None
    error_code: str | None = None
    resources: tuple[str, ...] = ()
    read_only: bool = False
    verdict: Mapping[str, Any] = field(default_factory=dict)  # category, severity, decision, rule
    origin: str = "flight"  # flight (routed to the responder) or cloudtrail (LookupEvents)


@dataclass(frozen=True)
class Step:
    """One AWS call that puts something back: `service:Operation`, with the record's values filled in."""

    call: str
    params: Mapping[str, Any]
    restore: str | None = None  # a step whose parameters are computed when it runs (management-events)

    @property
    def service(self) -> str:
        return self.call.split(":", 1)[0]

    @property
    def operation(self) -> str:
        return self.call.split(":", 1)[1]


@dataclass(frozen=True)
class Recovery:
    """What can be done about one change."""

    outcome: Outcome
    how: str
    steps: tuple[Step, ...] = ()
    deadline: datetime | None = None
    heal: AutoRestore | None = None
    source: str = ""
    missing: tuple[str, ...] = ()  # record values a step needed and the record lacks: then by hand

    def to_dict(self) -> dict[str, Any]:
        return {
            "outcome": self.outcome.value,
            "how": self.how,
            "steps": [{"call": s.call, "params": dict(s.params), "restore": s.restore} for s in self.steps],
            "deadline": iso(self.deadline) if self.deadline else None,
            "heal": self.heal.value if self.heal else None,
            "source": self.source,
            "missing": list(self.missing),
        }


@dataclass(frozen=True)
class _Deadline:
    date: str | None
    days: str | None
    default_days: int | None


@dataclass(frozen=True)
class Entry:
    call: str  # eventSource:eventName
    when: tuple[tuple[str, tuple[object, ...]], ...]
    outcome: Outcome
    how: str
    steps: tuple[Step, ...]
    deadline: _Deadline | None
    heal: AutoRestore | None
    source: str

    def holds(self, change: Change) -> bool:
        return all(_value(change, path) in values for path, values in self.when)


def iso(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


# How CloudTrail writes a deletion date (Java's default formats, with and without the comma), seen in
# AWS's own examples: "Nov 2, 2021, 11:25:25 PM", "Jan 1, 2019 12:00:00 AM", "Apr 12, 2021 18:58:30 PM".
_DATE_FORMATS = (
    "%b %d, %Y, %I:%M:%S %p",
    "%b %d, %Y %I:%M:%S %p",
    "%b %d, %Y, %H:%M:%S",
    "%b %d, %Y %H:%M:%S",
)


def parse_date(value: object) -> datetime | None:
    """A date as CloudTrail or an SDK writes it (ISO 8601, epoch seconds, Java's format), in UTC; None
    when it cannot be read."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        try:
            return datetime.fromtimestamp(value, UTC)
        except (OverflowError, OSError, ValueError):
            return None
    if not isinstance(value, str) or not value.strip() or len(value) > 64:
        return None
    text = value.strip()
    try:
        parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
        return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
    except ValueError:
        pass
    # "18:58:30 PM" is a 24-hour time with a stray marker: read the hour as written.
    fixed = re.sub(r"\b(1[3-9]|2[0-3])(:\d\d:\d\d) [AP]M$", r"\1\2", text)
    for form in _DATE_FORMATS:
        try:
            return datetime.strptime(fixed, form).replace(tzinfo=UTC)
        except ValueError:
            continue
    return None


def _value(change: Change, path: str) -> object:
    root, _, rest = path.partition(".")
    node: object = change.request if root == "request" else (change.response or {})
    for segment in rest.split("."):
        if not isinstance(node, Mapping):
            return None
        node = node.get(segment)
    if isinstance(node, str) and node.lower() in ("true", "false"):
        return node.lower() == "true"  # CloudTrail writes some flags as strings
    return node


def _fill(template: object, change: Change, missing: list[str]) -> object:
    """A step's parameter with the record's values in it; a value the record lacks is named in `missing`."""
    if isinstance(template, Mapping):
        filled = {k: _fill(v, change, missing) for k, v in template.items()}
        return {k: v for k, v in filled.items() if v is not _OMIT}
    if isinstance(template, str):
        whole = _PLACEHOLDER.fullmatch(template)
        if whole:
            value = _value(change, whole.group(1))
            if value is None or value == "":
                if whole.group(2):
                    return _OMIT
                missing.append(whole.group(1))
            return value
        return _PLACEHOLDER.sub(lambda m: str(_value(change, m.group(1)) or "(not in the record)"), template)
    return template


_OMIT = object()


class RecoveryBook:
    """recovery.yaml, compiled: entries by (event source, event name), in the order they are tried."""

    def __init__(self, entries: list[Entry]) -> None:
        self.entries = entries
        self._index: dict[str, list[Entry]] = {}
        for entry in entries:
            self._index.setdefault(entry.call, []).append(entry)

    def entry_for(self, change: Change) -> Entry | None:
        for entry in self._index.get(f"{change.source}:{change.name}", ()):
            if entry.holds(change):
                return entry
        return None

    def recovery(self, change: Change) -> Recovery | None:
        """What can be done about a change; None when the book knows nothing of its call. A failed call
        changed nothing and needs nothing."""
        entry = self.entry_for(change)
        if entry is None:
            return None
        missing: list[str] = []
        steps = tuple(
            Step(s.call, _fill(s.params, change, missing), s.restore)  # type: ignore[arg-type]
            for s in entry.steps
        )
        how = str(_fill(entry.how, change, []))
        outcome = entry.outcome
        if missing and outcome is Outcome.UNDO:
            # The record lacks what the call needs: say so, and let a person fill it in.
            outcome = Outcome.BY_HAND
            how += f" (the record does not name {', '.join(sorted(set(missing)))}: run it by hand)"
        return Recovery(
            outcome, how, steps, _deadline(entry.deadline, change), entry.heal, entry.source, tuple(missing)
        )


def _deadline(spec: _Deadline | None, change: Change) -> datetime | None:
    if spec is None:
        return None
    if spec.date:
        named = parse_date(_value(change, spec.date))
        if named is not None:
            return named
    days = _value(change, spec.days) if spec.days else None
    if isinstance(days, str) and days.isdigit():
        days = int(days)
    if not isinstance(days, int) or isinstance(days, bool) or not 0 < days <= 3650:
        days = spec.default_days
    return change.time + timedelta(days=days) if days else None


def compile_book(document: object) -> RecoveryBook:
    """recovery.yaml's document as a RecoveryBook; every mistake in it is a CatalogueError naming the entry."""
    if not isinstance(document, Mapping) or document.get("version") != 1:
        raise CatalogueError("recovery.yaml: expected version 1 and a list of recoveries")
    raw = document.get("recoveries")
    if not isinstance(raw, list) or not raw:
        raise CatalogueError("recovery.yaml: recoveries must be a non-empty list")
    return RecoveryBook([_entry(item, i) for i, item in enumerate(raw)])


def _entry(item: object, index: int) -> Entry:
    where = f"recovery.yaml: recoveries[{index}]"
    if not isinstance(item, Mapping):
        raise CatalogueError(f"{where}: expected a mapping")
    unknown = set(item) - _ENTRY_KEYS
    if unknown:
        raise CatalogueError(f"{where}: unknown keys {sorted(unknown)}")
    call = item.get("call")
    if not isinstance(call, str) or not re.fullmatch(r"[a-z0-9.-]+\.amazonaws\.com:[A-Za-z0-9]+", call):
        raise CatalogueError(f"{where}: call must be eventSource:eventName, not {call!r}")
    where = f"recovery.yaml: {call}"
    try:
        outcome = Outcome(str(item.get("outcome")))
        heal = AutoRestore(item["heal"]) if item.get("heal") is not None else None
    except ValueError as exc:
        raise CatalogueError(f"{where}: {exc}") from None
    how, source = item.get("how"), item.get("source")
    if not isinstance(how, str) or not how.strip():
        raise CatalogueError(f"{where}: how must say what to do")
    if not isinstance(source, str) or not source.startswith("https://docs.aws.amazon.com/"):
        raise CatalogueError(f"{where}: source must be the AWS documentation page it was checked against")
    when = item.get("when") or {}
    if not isinstance(when, Mapping) or not all(
        isinstance(k, str) and k.startswith(("request.", "response.")) for k in when
    ):
        raise CatalogueError(f"{where}: when maps request.<x> or response.<x> to values")
    conditions = tuple((k, tuple(v) if isinstance(v, list) else (v,)) for k, v in when.items())
    steps = tuple(_step(s, where) for s in item.get("steps") or [])
    if (outcome is Outcome.UNDO) != bool(steps):
        raise CatalogueError(f"{where}: an undo has steps, and only an undo")
    if heal is not None and outcome is not Outcome.UNDO:
        raise CatalogueError(f"{where}: only an undo can heal (the responder runs its steps)")
    return Entry(
        call, conditions, outcome, " ".join(how.split()), steps, _deadline_spec(item, where), heal, source
    )


def _step(raw: object, where: str) -> Step:
    if not isinstance(raw, Mapping) or set(raw) - _STEP_KEYS or not isinstance(raw.get("call"), str):
        raise CatalogueError(f"{where}: a step is {{call: service:Operation, params: {{...}}}}")
    call = raw["call"]
    if not re.fullmatch(r"[a-z0-9-]+:[A-Z][A-Za-z0-9]+", call):
        raise CatalogueError(f"{where}: step call {call!r} is not service:Operation")
    params = raw.get("params") or {}
    if not isinstance(params, Mapping):
        raise CatalogueError(f"{where}: step params must be a mapping")
    return Step(call, params, raw.get("restore"))


def _deadline_spec(item: Mapping[str, Any], where: str) -> _Deadline | None:
    spec = item.get("deadline")
    if spec is None:
        return None
    if not isinstance(spec, Mapping) or set(spec) - _DEADLINE_KEYS:
        raise CatalogueError(f"{where}: deadline has date, days and default_days")
    default = spec.get("default_days")
    if default is not None and (not isinstance(default, int) or default <= 0):
        raise CatalogueError(f"{where}: default_days must be a positive number of days")
    return _Deadline(spec.get("date"), spec.get("days"), default)


@cache
def default_book() -> RecoveryBook:
    from guardrail.detect.catalogue import load_yaml

    text = resources.files("guardrail").joinpath("data/recovery.yaml").read_text(encoding="utf-8")
    return compile_book(load_yaml(text, "recovery.yaml"))


# Request parameters that name what a call acts on, by the end of their name (CloudTrail writes them in
# each service's own casing: keyId, BucketName, dBInstanceIdentifier, instancesSet.items[].instanceId).
_NAMING = re.compile(r"(?:id|ids|name|names|arn|arns|identifier|key|bucket)$", re.IGNORECASE)
NAMED_LIMIT = 20  # resources kept per call
_NAMED_TEXT = 512


def named_resources(request: Mapping[str, Any], resources: tuple[str, ...] = ()) -> tuple[str, ...]:
    """The ARNs and ids a call names: CloudTrail's `resources`, then the request's naming parameters, in
    the order they appear; bounded in number and length, whatever the record holds."""
    found: dict[str, None] = dict.fromkeys(r[:_NAMED_TEXT] for r in resources)

    def visit(node: object, key: str, depth: int) -> None:
        if len(found) >= NAMED_LIMIT or depth > 4:
            return
        if isinstance(node, Mapping):
            for k, v in list(node.items())[:50]:
                visit(v, str(k), depth + 1)
        elif isinstance(node, list):
            for v in node[:NAMED_LIMIT]:
                visit(v, key, depth + 1)
        elif isinstance(node, str) and node and (node.startswith("arn:") or _NAMING.search(key)):
            found.setdefault(node[:_NAMED_TEXT], None)

    visit(request, "", 0)
    return tuple(found)[:NAMED_LIMIT]
