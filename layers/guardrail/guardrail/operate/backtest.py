"""Backtest: what the responder would have done over a trail's history, before anyone turns it on.

It runs the real decision path on every record: the same parser and classifier, the same environment
policies, agent and protected patterns, the same window arithmetic (`detect/windows.py`: tally_of and
reached, per principal and minute, in event-time order) and the same planner (`respond/containment.py`):
what it would contain, report, refuse or hold as not containable. The state table is replaced by its
pure counterpart here (`Simulation`): a principal held by an open incident joins it, a report groups
repeats for an hour, a containment holds until the end. Nothing is written anywhere, ever; an S3 source
is only listed and read.

Sources: local files and folders (what `guardrail classify` reads) and `s3://bucket/prefix` of a trail's
log files, listed level by level in CloudTrail's key layout (`AWSLogs/[<org id>/]<account>/CloudTrail/
<region>/YYYY/MM/DD/`) so that accounts, regions and days outside the question are never listed, and no
object read twice. With `--workers N`, files are parsed and classified in N processes; the windows are
then replayed in one, in event-time order.
"""

from __future__ import annotations

import pickle
import re
from collections import Counter, defaultdict, deque
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from functools import lru_cache
from operator import attrgetter
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import msgspec

from guardrail.detect.classifier import classify, escalate
from guardrail.detect.cloudtrail import (
    EVENT_FILE_SUFFIXES,
    call_of,
    collector_paused,
    event_files,
    text_of,
)
from guardrail.detect.windows import Bucket, reached, tally_of
from guardrail.errors import GuardrailError, InvalidEventError
from guardrail.model import ApiCall, Category, Decision, Environment, PrincipalKind, Severity
from guardrail.operate.athena import RESULT_SUFFIXES, is_result, records_of
from guardrail.operate.logfiles import documents, file_records, record_document
from guardrail.respond.act import finding_report_key, report_key
from guardrail.respond.containment import Blocked, ResponderIdentity, plan_containment, principal_key
from guardrail.respond.state.records import INCIDENT_WINDOW
from guardrail.settings import Settings

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Iterator

    from guardrail.detect.verdict import Verdict
    from guardrail.model import Principal

# CloudTrail's log files (and what `guardrail classify` reads), and query results of --athena-sql.
SOURCE_SUFFIXES = EVENT_FILE_SUFFIXES + RESULT_SUFFIXES
BEFORE = 10  # what the agent did just before: this many of its calls are kept with each containment
TIMELINE_PRINCIPALS = 20
AHEAD = 4  # files queued per helper (benchmarks/backtest_throughput.py: 2 left a helper waiting at times)


# --- sources ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Selection:
    """Which part of a trail to read: days (inclusive), accounts, regions; empty means all."""

    since: date | None = None
    until: date | None = None
    accounts: frozenset[str] = frozenset()
    regions: frozenset[str] = frozenset()

    def keeps_time(self, moment: datetime) -> bool:
        day = moment.astimezone(UTC).date()
        return (self.since is None or day >= self.since) and (self.until is None or day <= self.until)


_ACCOUNT = re.compile(r"^\d{12}$")
_ORG = re.compile(r"^o-[a-z0-9]{10,32}$")
_REGION = re.compile(r"^[a-z]{2}(-[a-z]+)+-\d+$")


def s3_location(source: str) -> tuple[str, str] | None:
    match = re.match(r"^s3://([^/]+)/?(.*)$", source)
    return (match.group(1), match.group(2)) if match else None


def s3_log_files(client: Any, bucket: str, prefix: str, selection: Selection) -> Iterator[str]:
    """Every log file key under the prefix that the selection keeps, walking the key layout with
    Delimiter='/' and pruning whole accounts, regions and days before listing them."""
    if prefix and not prefix.endswith("/") and not prefix.endswith(SOURCE_SUFFIXES):
        prefix += "/"
    yield from _walk(client, bucket, prefix, selection)


def _walk(client: Any, bucket: str, prefix: str, selection: Selection) -> Iterator[str]:
    paginator = client.get_paginator("list_objects_v2")
    for page in paginator.paginate(Bucket=bucket, Prefix=prefix, Delimiter="/"):
        for item in page.get("Contents") or []:
            key = item["Key"]
            if key.endswith(SOURCE_SUFFIXES):
                yield key
        for common in page.get("CommonPrefixes") or []:
            child = common["Prefix"]
            if _keeps(child, selection):
                yield from _walk(client, bucket, child, selection)


def _keeps(prefix: str, selection: Selection) -> bool:
    """Whether a folder of the layout can hold what the selection asks for (pruning, not filtering:
    records are still checked one by one)."""
    parts = [p for p in prefix.split("/") if p]
    last = parts[-1]
    if last in ("CloudTrail-Digest", "CloudTrail-Insight", "CloudTrail-NetworkActivity"):
        return False  # digests and Insights files are not records of calls
    if "CloudTrail" not in parts:
        if _ACCOUNT.match(last) and selection.accounts:
            return last in selection.accounts
        return True
    after = parts[parts.index("CloudTrail") + 1 :]
    if after and selection.regions and _REGION.match(after[0]) and after[0] not in selection.regions:
        return False
    numbers = after[1:4]
    if numbers and all(p.isdigit() for p in numbers):
        return _day_range_overlaps([int(p) for p in numbers], selection)
    return True


def _day_range_overlaps(parts: list[int], selection: Selection) -> bool:
    """parts: [year], [year, month] or [year, month, day] of a folder; whether any of its days is kept."""
    try:
        if len(parts) == 1:
            first, last = date(parts[0], 1, 1), date(parts[0], 12, 31)
        elif len(parts) == 2:
            first = date(parts[0], parts[1], 1)
            last = (first.replace(day=28) + timedelta(days=4)).replace(day=1) - timedelta(days=1)
        else:
            first = last = date(parts[0], parts[1], parts[2])
    except ValueError:
        return True  # not a date after all: read it, and let the records decide
    return (selection.since is None or last >= selection.since) and (
        selection.until is None or first <= selection.until
    )


@dataclass(frozen=True)
class LogFile:
    """One file to read: a local path, or an S3 object."""

    name: str
    bucket: str | None = None
    key: str | None = None

    def read(self, s3: Any = None) -> bytes:
        if self.bucket is None:
            return Path(self.name).read_bytes()
        assert s3 is not None
        assert self.key is not None
        body: bytes = s3.get_object(Bucket=self.bucket, Key=self.key)["Body"].read()
        return body


def log_files(sources: list[str], selection: Selection, s3: Callable[[], Any]) -> list[LogFile]:
    """Every file the sources name, each once, in a stable order."""
    found: dict[str, LogFile] = {}
    for source in sources:
        location = s3_location(source)
        if location is None:
            path = Path(source)
            if not path.exists():
                raise GuardrailError(f"{source}: no such file or folder")
            for file in event_files([path], SOURCE_SUFFIXES):
                found.setdefault(str(file.resolve()), LogFile(str(file)))
            continue
        bucket, prefix = location
        if prefix.endswith(SOURCE_SUFFIXES):
            found.setdefault(source, LogFile(source, bucket, prefix))
            continue
        for key in s3_log_files(s3(), bucket, prefix, selection):
            found.setdefault(f"s3://{bucket}/{key}", LogFile(f"s3://{bucket}/{key}", bucket, key))
    return list(found.values())


# --- one file: parsed and classified (in a worker process, or inline) ---------------------------------


@dataclass
class FileResult:
    """What one file adds: the verdicts the windows and incidents must see (in full), and counts of
    everything else (so a worker sends back little for the many ignored reads)."""

    events: int = 0
    # What the replay reads of each verdict the windows must see. A helper sends them in a spill file
    # (`spilled`) instead, read back where the windows are replayed.
    acted: list[Acted] = field(default_factory=list)
    spilled: str | None = None
    per_minute: Counter[tuple[str, int]] = field(default_factory=Counter)
    agents: Counter[str] = field(default_factory=Counter)
    rules: Counter[str] = field(default_factory=Counter)
    critical_humans: Counter[str] = field(default_factory=Counter)
    unreadable: Counter[str] = field(default_factory=Counter)
    outside: int = 0
    first: datetime | None = None
    last: datetime | None = None


class Acted(msgspec.Struct, array_like=True, gc=False):
    """What the replay reads of a verdict the windows must see. Most of them (a contained agent's later
    calls) only join a hold, so the whole verdict is read (`verdict()`) only when the windows count it or
    it opens an incident: under a thousand of the 254,091 that reach the replay of the benchmark's mixed
    million. Until then the record waits as its own JSON in a spill file, not as the objects parsed from
    it (their memory, and the time to free a quarter of a million of them at the end, serial). A msgspec
    struct: a helper's rows decode straight into these, enums and all, in C; never in a cycle, so never
    tracked by the collector."""

    event_id: str
    time: datetime
    who: str  # as the report names a principal
    key: str  # principal_key: the state table's key
    root: bool
    event_name: str
    environment: Environment
    category: Category
    decision: Decision
    severity: Severity
    is_agent: bool
    reason: str
    rule_ids: tuple[str, ...]
    # The verdict itself, or where it was spilled: (spill file, offset, size, RECORD or VERDICT); in a
    # helper's rows, (offset, size, kind).
    source: Any

    def verdict(self, settings: Settings) -> Verdict:
        if isinstance(self.source, tuple):
            path, offset, size, kind = self.source
            data = _spill_file(path)[offset : offset + size]
            if kind == RECORD:
                # Read and classified again as the scan did: the same record gives the same verdict.
                call = call_of(record_document(f"{path}@{offset}", data))
                self.source = classify(call, settings, environment_of=_environments(settings))
            else:
                self.source = _verdict_of(_codec().full.decode(data))
        verdict: Verdict = self.source
        return verdict


# How a spill file holds a verdict: the record's own JSON (a CloudTrail log file's) or the verdict itself.
RECORD, VERDICT = 0, 1


class Spill:
    """Where a scan puts what the replay may read again of the records it keeps: a record's own JSON, a
    copy of about a kilobyte, when the file gave it (a log file); else the verdict itself, which a
    helper, unable to send the object, encodes (msgpack, or pickle for what msgpack cannot hold).

    `path`: the spill file; None for a helper's, which the helper writes and whose rows the merging
    process gives the path (`_spilled`)."""

    def __init__(self, path: str | None) -> None:
        self.data = bytearray()
        self.path = path

    def keep(self, raw: msgspec.Raw | None, verdict: Verdict) -> Any:
        offset = len(self.data)
        if raw is not None:
            self.data += raw
            kind = RECORD
        elif self.path is None:
            parts = _parts_of(verdict)
            try:
                self.data += _codec().encoder.encode(parts)
            except (OverflowError, TypeError):  # what msgpack cannot hold (an integer beyond 64 bits)
                self.data += _codec().encoder.encode(pickle.dumps(parts))
            kind = VERDICT
        else:
            return verdict
        where = (offset, len(self.data) - offset, kind)
        return where if self.path is None else (self.path, *where)

    def write(self) -> None:
        if self.data and self.path is not None:
            Path(self.path).write_bytes(self.data)


@lru_cache(maxsize=64)
def _spill_file(path: str) -> memoryview:
    """A spill file's bytes, read once while the replay, in time order, wants its verdicts (the files are
    the trail's, a few minutes each: a few dozen hold any moment's)."""
    return memoryview(Path(path).read_bytes())


def acted_of(verdict: Verdict, keys: dict[tuple[Any, ...], str], source: Any = None) -> Acted:
    call = verdict.call
    principal = call.principal
    return Acted(
        call.event_id,
        call.event_time,
        principal.issuer_arn or principal.arn or principal.display,
        _key(principal, keys),
        principal.kind is PrincipalKind.ROOT,
        call.event_name,
        verdict.environment,
        verdict.category,
        verdict.decision,
        verdict.severity,
        verdict.is_agent,
        verdict.reason,
        tuple(verdict.rule_ids),
        verdict if source is None else source,
    )


def _key(principal: Principal, keys: dict[tuple[Any, ...], str]) -> str:
    """principal_key, remembered by what it reads: an agent's thousands of calls share one key."""
    read = (principal.kind, principal.name, principal.account, principal.session_name, principal.issuer_arn,
            principal.arn)  # fmt: skip
    key = keys.get(read)
    if key is None:
        key = keys[read] = principal_key(principal)
    return key


def scan(
    file: LogFile, settings: Settings, selection: Selection, s3: Any = None, spill: Spill | None = None
) -> FileResult:
    """One file's records parsed, classified and counted; with `spill`, what the replay may read again of
    the records it keeps goes there (see Acted), else each keeps its verdict. The collector is paused for
    the file: its objects form no cycles, and a file's worth of them scanned again and again cost more
    than the classification (benchmarks/backtest_throughput.py)."""
    with collector_paused():
        result = _scanned(file, settings, selection, s3, spill)
    if spill is not None:
        spill.write()
    return result


def _scanned(
    file: LogFile, settings: Settings, selection: Selection, s3: Any, spill: Spill | None
) -> FileResult:
    result = FileResult()
    try:
        documents, raws = _documents(file.name, file.read(s3))
    except (OSError, InvalidEventError) as exc:
        result.unreadable[f"file: {_reason(exc)}"] += 1
        return result
    environment_of = _environments(settings)
    keys: dict[tuple[Any, ...], str] = {}
    selective = bool(selection.since or selection.until or selection.accounts or selection.regions)
    first = last = None
    for index, (_where, document) in enumerate(documents):
        try:
            call = call_of(document)
        except InvalidEventError as exc:
            result.unreadable[_reason(exc)] += 1
            continue
        moment = call.event_time
        if selective and (
            not selection.keeps_time(moment)
            or (selection.accounts and call.account not in selection.accounts)
            or (selection.regions and call.region not in selection.regions)
        ):
            result.outside += 1
            continue
        result.events += 1
        verdict = classify(call, settings, environment_of=environment_of)
        principal = call.principal
        who = principal.issuer_arn or principal.arn or principal.display
        result.per_minute[(who, int(moment.timestamp()) // 60)] += 1
        if first is None or moment < first:
            first = moment
        if last is None or moment > last:
            last = moment
        if verdict.is_agent:
            result.agents[who] += 1
        for rule in verdict.rules:
            result.rules[rule.id] += 1
        if verdict.severity is Severity.CRITICAL and not verdict.is_agent:
            result.critical_humans[f"{who}\t{call.event_name}"] += 1
        if not verdict.is_quiet(settings):  # what the live responder acts on (an agent's flight record aside)
            source = None if spill is None else spill.keep(raws[index] if raws else None, verdict)
            result.acted.append(acted_of(verdict, keys, source))
    result.first, result.last = first, last
    return result


def _documents(name: str, raw: bytes) -> tuple[list[tuple[str, object]], list[msgspec.Raw] | None]:
    """A log file's records (with their own JSON), or the rows of a query result of `--athena-sql` as
    records."""
    if name.endswith(RESULT_SUFFIXES):
        return _text_documents(name, text_of(name, raw)), None
    return file_records(name, raw, _text_documents)


def _text_documents(name: str, text: str) -> list[tuple[str, object]]:
    return list(records_of(name, text)) if is_result(name, text) else documents(name, text)


def _environments(settings: Settings) -> Callable[[str], Any]:
    # The Organizations tag lookup is an AWS call: a backtest takes the settings' account map only.
    return lambda account: settings.account_environments.get(account, settings.default_environment)


def _reason(exc: Exception) -> str:
    """An unreadable record's reason without where it was (so reasons count together)."""
    text = str(exc)
    text = re.sub(r"^\S+?(#Records\[\d+\]|:\d+)?: ", "", text, count=1)
    return text[:160]


def _scan_in_worker(file: LogFile, env: dict[str, str], selection: Selection, spill: str) -> FileResult:
    """One file scanned by a helper. What the replay reads goes back in a file, not through the pool's
    pipe: a result of some hundred kilobytes is read from the pipe by a thread of the scanning process,
    chunk by chunk, each chunk waiting for the interpreter lock, and the helper waits with it (measured: a
    third of its time idle). Each record kept is spilled apart (its JSON, or its verdict), read only if the
    replay needs it."""
    settings = _worker_settings(env)
    s3 = _worker_s3() if file.bucket else None
    kept = Spill(None)
    result = scan(file, settings, selection, s3, kept)
    Path(spill).write_bytes(kept.data)
    Path(f"{spill}.light").write_bytes(_codec().encoder.encode(result.acted))
    result.acted, result.spilled = [], spill
    return result


@dataclass(frozen=True)
class _Codec:
    encoder: Any
    light: Any  # a spill file's rows, as Acted
    full: Any  # typed as _parts_of makes them: dataclasses and enums decoded as themselves


_CODECS: list[_Codec] = []


def _codec() -> _Codec:
    if not _CODECS:
        parts = tuple[
            ApiCall, Category, Severity, Decision, str, Environment, tuple[str, ...], bool, bool, tuple[str, ...]
        ]  # fmt: skip
        _CODECS.append(
            _Codec(
                msgspec.msgpack.Encoder(),
                msgspec.msgpack.Decoder(list[Acted]),
                msgspec.msgpack.Decoder(parts | bytes),
            )
        )
    return _CODECS[0]


def _spilled(path: str) -> list[Acted]:
    """A helper's spill file read back: the replay's fields now, each verdict when it is wanted."""
    light = Path(f"{path}.light")
    acted: list[Acted] = _codec().light.decode(light.read_bytes())
    light.unlink()
    for item in acted:
        item.source = (path, *item.source)
    return acted


def _parts_of(verdict: Verdict) -> tuple[Any, ...]:
    """A verdict as it pickles: its rules by id (the catalogue's compiled rules do not pickle)."""
    return (
        verdict.call,
        verdict.category,
        verdict.severity,
        verdict.decision,
        verdict.reason,
        verdict.environment,
        tuple(verdict.rule_ids),
        verdict.is_agent,
        verdict.is_protected,
        verdict.notes,
    )


def _verdict_of(parts: tuple[Any, ...] | bytes) -> Verdict:
    from guardrail.detect.catalogue import default_catalogue
    from guardrail.detect.verdict import Verdict

    # bytes: the helper's own pickle, through a file of this run's temporary folder (nobody else's data).
    fields: tuple[Any, ...] = pickle.loads(parts) if isinstance(parts, bytes) else parts  # noqa: S301
    call, category, severity, decision, reason, environment, rule_ids, is_agent, is_protected, notes = fields
    rules = tuple(default_catalogue().by_id(r) for r in rule_ids)
    return Verdict(
        call, category, severity, decision, reason, environment, rules, is_agent, is_protected, notes
    )


_WORKER: dict[str, Any] = {}


def _worker_settings(env: dict[str, str]) -> Settings:
    if "settings" not in _WORKER:
        _WORKER["settings"] = Settings.from_env(env)
    settings: Settings = _WORKER["settings"]
    return settings


def _worker_s3() -> Any:
    if "s3" not in _WORKER:
        import boto3

        _WORKER["s3"] = boto3.session.Session().client("s3")
    return _WORKER["s3"]


# --- the replay of the windows and incidents ------------------------------------------------------------


@dataclass
class Hold:
    incident: str
    status: str
    opened: datetime
    expires: datetime | None  # None: until the end (a containment holds until released)
    record: Incident  # what a joining event adds to


class Decided(msgspec.Struct, gc=False):
    """One event's outcome, as the live responder's Outcome.status names it. A msgspec struct: made in C
    (a third of a dataclass's __init__ for its eleven fields, once per replayed event, in the serial part
    of --workers N) and, holding only text, times and tuples of text, never tracked by the collector."""

    event_id: str
    time: datetime
    principal: str
    status: str  # ignored | counted | reported | contained | dry_run | not_containable | refused | joined | duplicate
    incident: str | None = None
    decision: str = "ignore"
    severity: str = "info"
    rules: tuple[str, ...] = ()
    thresholds: tuple[str, ...] = ()
    reason: str = ""
    event_name: str = ""


@dataclass
class Incident:
    id: str
    status: str
    principal: str
    time: datetime
    event_name: str
    event_id: str
    rules: tuple[str, ...]
    thresholds: tuple[str, ...]
    reason: str
    before: list[tuple[datetime, str, str]]  # (time, event name, status): shown as text only in to_dict
    joined: int = 0
    is_agent: bool = True

    def to_dict(self) -> dict[str, Any]:
        return {
            "incident": self.id,
            "status": self.status,
            "principal": self.principal,
            "time": _iso(self.time),
            "event_name": self.event_name,
            "event_id": self.event_id,
            "rules": list(self.rules),
            "thresholds": list(self.thresholds),
            "reason": self.reason,
            "before": [{"time": _iso(t), "event_name": n, "status": st} for t, n, st in self.before],
            "joined": self.joined,
        }


class Simulation:
    """The state table's decisions without the table: holds, report groups and window buckets per
    principal, fed in event-time order. Mirrors respond/act.py's act, contain and report."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.holds: dict[str, Hold] = {}
        self.buckets: dict[str, dict[int, dict[str, Any]]] = defaultdict(dict)
        self.seen: set[str] = set()
        self.incidents: list[Incident] = []
        self.recent: dict[str, deque[tuple[datetime, str, str]]] = defaultdict(lambda: deque(maxlen=BEFORE))
        self.thresholds_reached: Counter[str] = Counter()
        self._count = 0

    def decide(self, item: Acted) -> Decided:
        decided = self._decide(item)
        self.recent[item.who].append((item.time, item.event_name, decided.status))
        return decided

    def _decide(self, item: Acted) -> Decided:
        policy = self.settings.policies[item.environment]
        now = item.time
        if item.event_id in self.seen:
            return self._outcome(item, "duplicate")
        key = item.key
        counts = policy.counts(item.category, is_agent=item.is_agent)  # tally_of's own test, first
        if not counts and item.decision is Decision.IGNORE and not item.root:
            # Verdict.is_quiet, read from the row: scan hands the replay none of these; the live
            # responder logs such an event (and keeps an agent's change in its flight record), no more.
            return self._outcome(item, "ignored")
        self.seen.add(item.event_id)
        held = self.holds.get(key)  # _held, inline: most replayed events are a contained agent's next call
        if held is not None and (held.expires is None or held.expires > now):
            # held: the windows have nothing left to decide (act.py joins before counting)
            held.record.joined += 1
            return self._outcome(item, "joined", held.incident)
        if not counts and item.decision is Decision.NOTIFY and not item.root:
            # As classified (no window raises it): its report group, if open, is joined without the verdict.
            held = self._held(finding_report_key(key, item.rule_ids, item.category), now)
            if held is not None:
                self._joined(held)
                return self._outcome(item, "joined", held.incident)
        # Counted, flagged or root: the windows or the planner read all of it.
        verdict = item.verdict(self.settings)
        tally = tally_of(verdict, policy, key) if counts else None
        if tally is not None:
            hits = reached(policy, self._window(key), tally, include_tally=True)
            if hits:
                verdict = escalate(verdict, hits)
                for hit in hits:
                    self.thresholds_reached[hit.threshold.name] += 1
            self._add(key, tally)
        if verdict.decision is Decision.CONTAIN or item.root:
            return self._contain(item, verdict, key, now)
        if verdict.decision is Decision.NOTIFY:
            grouped = report_key(key, verdict)
            held = self._held(grouped, now)
            if held is not None:
                self._joined(held)
                return self._outcome(item, "joined", held.incident, verdict)
            incident = self._open(verdict, grouped, "reported", now, now + INCIDENT_WINDOW)
            return self._outcome(item, "reported", incident, verdict)
        return self._outcome(item, "counted", verdict=verdict)

    def _contain(self, item: Acted, verdict: Verdict, key: str, now: datetime) -> Decided:
        account = verdict.call.account
        identity = ResponderIdentity.from_caller_arn(
            account, f"arn:aws:sts::{account}:assumed-role/guardrail-backtest/x"
        )
        plan = plan_containment(verdict, self.settings, identity, reachable=lambda _account: True)
        if plan.blocked is Blocked.REFUSED:
            return self._outcome(item, "refused", verdict=verdict)
        held_key = plan.key or key
        if plan.blocked is Blocked.NOT_CONTAINABLE:
            incident = self._open(verdict, held_key, "not_containable", now, now + INCIDENT_WINDOW)
            return self._outcome(item, "not_containable", incident, verdict)
        # As if armed, whatever GUARDRAIL_DRY_RUN says: what containment would do is the question.
        incident = self._open(verdict, held_key, "contained", now, None)
        return self._outcome(item, "contained", incident, verdict)

    def _open(self, verdict: Verdict, key: str, status: str, now: datetime, expires: datetime | None) -> str:
        self._count += 1
        incident_id = f"BT-{self._count:05d}"
        call = verdict.call
        who = call.principal.issuer_arn or call.principal.arn or call.principal.display
        self.incidents.append(
            incident := Incident(
                incident_id,
                status,
                who,
                now,
                call.event_name,
                call.event_id,
                tuple(verdict.rule_ids),
                tuple(h.describe() for h in verdict.thresholds),
                verdict.reason,
                # As events, not text: most incidents of a long trail are never shown one by one, and
                # the replay is the serial part of --workers N.
                list(self.recent[who]),
                is_agent=verdict.is_agent,
            )
        )
        self.holds[key] = Hold(incident_id, status, now, expires, incident)
        return incident_id

    def _held(self, key: str, now: datetime) -> Hold | None:
        hold = self.holds.get(key)
        if hold is None or (hold.expires is not None and hold.expires <= now):
            return None
        return hold

    def _joined(self, hold: Hold) -> None:
        hold.record.joined += 1

    def _window(self, key: str) -> dict[int, Bucket]:
        return {
            minute: Bucket(
                b["access_denied"], b["destructive"], frozenset(b["resources"]), frozenset(b["services"])
            )
            for minute, b in self.buckets[key].items()
        }

    def _add(self, key: str, tally: Any) -> None:
        from guardrail.environments import MAX_DISTINCT

        bucket = self.buckets[key].setdefault(
            tally.minute, {"access_denied": 0, "destructive": 0, "resources": set(), "services": set()}
        )
        bucket["access_denied"] += tally.access_denied
        bucket["destructive"] += tally.destructive
        for name, values in (("resources", tally.resources), ("services", tally.services)):
            for value in values:
                if len(bucket[name]) < MAX_DISTINCT:  # the state table's bucket is bounded the same way
                    bucket[name].add(value)
        # Minutes no window reaches any more are dropped: memory stays bounded over months of history.
        oldest = tally.minute - tally.span
        for minute in [m for m in self.buckets[key] if m <= oldest]:
            del self.buckets[key][minute]

    def _outcome(
        self, item: Acted, status: str, incident: str | None = None, verdict: Verdict | None = None
    ) -> Decided:
        """The event's outcome; with the verdict the windows made of it (escalated), when they did."""
        if verdict is None:
            return Decided(item.event_id, item.time, item.who, status, incident, item.decision, item.severity,
                           item.rule_ids, (), item.reason, item.event_name)  # fmt: skip
        return Decided(
            item.event_id,
            item.time,
            item.who,
            status,
            incident,
            verdict.decision,  # a StrEnum: its own value, without the enum's property lookup per event
            verdict.severity,
            tuple(verdict.rule_ids),
            tuple(h.describe() for h in verdict.thresholds) if verdict.thresholds else (),
            verdict.reason,
            item.event_name,
        )


def _ranked(counts: Counter[str]) -> list[tuple[str, int]]:
    """Most first, ties by name: the same trail gives the same report, whatever order files were read in."""
    return sorted(counts.items(), key=lambda item: (-item[1], item[0]))


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


# --- the whole run -------------------------------------------------------------------------------------


class Progress(Protocol):
    def start(self, files: int) -> None: ...
    def step(self, files: int, events: int) -> None: ...


@dataclass
class Backtest:
    settings_used: dict[str, Any]
    files: int = 0
    events: int = 0
    outside: int = 0
    first: datetime | None = None
    last: datetime | None = None
    decisions: list[Decided] = field(default_factory=list)
    incidents: list[Incident] = field(default_factory=list)
    agents: Counter[str] = field(default_factory=Counter)
    rules: Counter[str] = field(default_factory=Counter)
    critical_humans: Counter[str] = field(default_factory=Counter)
    unreadable: Counter[str] = field(default_factory=Counter)
    thresholds: Counter[str] = field(default_factory=Counter)
    per_minute: Counter[tuple[str, int]] = field(default_factory=Counter)
    seconds: float = 0.0

    @property
    def contained(self) -> list[Incident]:
        return [i for i in self.incidents if i.status in ("contained", "dry_run")]

    def statuses(self) -> Counter[str]:
        return Counter(d.status for d in self.decisions)

    def to_dict(self) -> dict[str, Any]:
        humans: dict[str, dict[str, Any]] = {}
        for line, count in _ranked(self.critical_humans):
            who, name = line.split("\t", 1)
            entry = humans.setdefault(who, {"principal": who, "calls": 0, "by_event_name": {}})
            entry["calls"] += count
            entry["by_event_name"][name] = count
        return {
            "files": self.files,
            "events": self.events,
            "outside_selection": self.outside,
            "first_event": _iso(self.first) if self.first else None,
            "last_event": _iso(self.last) if self.last else None,
            "seconds": round(self.seconds, 3),
            "would_contain": [i.to_dict() for i in self.contained],
            "would_report": [i.to_dict() for i in self.incidents if i.status == "reported"],
            "not_containable": [i.to_dict() for i in self.incidents if i.status == "not_containable"],
            "outcomes": dict(_ranked(self.statuses())),
            "agents": [{"principal": p, "events": n} for p, n in _ranked(self.agents)],
            "busiest_rules": [{"rule": r, "events": n} for r, n in _ranked(self.rules)[:20]],
            "thresholds_reached": dict(_ranked(self.thresholds)),
            "critical_non_agents": sorted(humans.values(), key=lambda h: -h["calls"]),
            "unreadable": [{"reason": r, "records": n} for r, n in _ranked(self.unreadable)],
            "timelines": self.timelines(),
            "settings": self.settings_used,
        }

    def timelines(self) -> list[dict[str, Any]]:
        """Events per minute for the principals worth looking at (those with an incident first, then the
        busiest agents), with their containment and report markers."""
        chosen = list(dict.fromkeys(i.principal for i in self.incidents))
        chosen += [p for p, _n in _ranked(self.agents) if p not in chosen]
        chosen = chosen[:TIMELINE_PRINCIPALS]
        wanted = set(chosen)
        minutes: dict[str, list[list[int]]] = defaultdict(list)
        for (who, minute), count in sorted(self.per_minute.items(), key=lambda kv: kv[0][1]):
            if who in wanted:
                minutes[who].append([minute, count])
        return [
            {
                "principal": who,
                "per_minute": minutes.get(who, []),
                "markers": [
                    {
                        "time": _iso(i.time),
                        "minute": int(i.time.timestamp()) // 60,
                        "status": i.status,
                        "incident": i.id,
                    }
                    for i in self.incidents
                    if i.principal == who
                ],
            }
            for who in chosen
        ]


def run(
    sources: list[str],
    settings: Settings,
    env: dict[str, str],
    selection: Selection = Selection(),
    *,
    workers: int = 1,
    s3: Callable[[], Any] | None = None,
    progress: Progress | None = None,
) -> Backtest:
    """The backtest of `sources`: files scanned (in `workers` processes), then the windows replayed."""
    import tempfile
    import time

    started = time.perf_counter()
    client: dict[str, Any] = {}

    def s3_client() -> Any:
        if "s3" not in client:
            if s3 is not None:
                client["s3"] = s3()
            else:
                import boto3

                client["s3"] = boto3.session.Session().client("s3")
        return client["s3"]

    files = log_files(sources, selection, s3_client)
    if progress is not None:
        progress.start(len(files))
    result = Backtest(settings_used=_shown_settings(settings, env), files=len(files))
    # The helpers' spill files: read until the replay ends, removed after it.
    with tempfile.TemporaryDirectory(prefix="guardrail-backtest-") as spills:
        if workers <= 1 or len(files) <= 1:
            parts: Iterable[FileResult] = (
                _scanned_here(number, f, settings, selection, Path(spills), s3_client)
                for number, f in enumerate(files)
            )
            acted = _merged(result, parts, progress)
        else:
            together = Path(spills), workers, s3_client
            acted = _scanned_together(files, settings, env, selection, together, result, progress)
        # The replay is one process's: its order is the trail's, and one agent's events (most of what
        # reaches it) cannot be split (a replay by principal was measured: no faster when one principal
        # dominates).
        try:
            decisions, incidents, reached_counts = simulate(acted, settings)
        finally:
            _spill_file.cache_clear()
    result.decisions, result.incidents, result.thresholds = decisions, incidents, reached_counts
    result.seconds = time.perf_counter() - started
    return result


def _scanned_together(
    files: list[LogFile],
    settings: Settings,
    env: dict[str, str],
    selection: Selection,
    together: tuple[Path, int, Callable[[], Any]],
    result: Backtest,
    progress: Progress | None,
) -> list[Acted]:
    """The files scanned by this process and `workers - 1` spawned helpers, each taking the next file when
    it is free. This process scans too: a helper's results cost an encoding each way and this process's
    own cost nothing, and a machine with N cores runs N processes best, not N helpers and a waiting one."""
    import multiprocessing
    from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait

    spills, workers, s3_client = together
    queue = deque(enumerate(files))
    acted: list[Acted] = []
    # spawn, not fork: boto3 and threads (moto's server, tqdm) do not survive a fork safely.
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=workers - 1, mp_context=context) as pool:
        running: set[Any] = set()
        while queue or running:
            # Each helper a few files ahead, so that none waits while this process scans.
            while queue and len(running) < AHEAD * (workers - 1):
                number, file = queue.popleft()
                spill = str(spills / f"{number}.msgpack")
                running.add(pool.submit(_scan_in_worker, file, env, selection, spill))
            if queue:
                number, file = queue.popleft()
                mine = _scanned_here(number, file, settings, selection, spills, s3_client)
                acted += _merged(result, [mine], progress)
            else:
                wait(running, return_when=FIRST_COMPLETED)
            done = {future for future in running if future.done()}
            running -= done
            acted += _merged(result, (future.result() for future in done), progress)
    return acted


def _scanned_here(
    number: int, file: LogFile, settings: Settings, selection: Selection, spills: Path, s3: Callable[[], Any]
) -> FileResult:
    """A file scanned by this process, spilling what it keeps as a helper does (see Acted)."""
    return scan(
        file, settings, selection, s3() if file.bucket else None, Spill(str(spills / f"{number}.here"))
    )


def _merged(result: Backtest, parts: Iterable[FileResult], progress: Progress | None) -> list[Acted]:
    """The files' counts added to the result; what the windows need."""
    acted: list[Acted] = []
    with collector_paused():  # what a helper sent, made again and kept: no cycles
        for part in parts:
            _merge(result, part, acted, progress)
    return acted


def _merge(result: Backtest, part: FileResult, acted: list[Acted], progress: Progress | None) -> None:
    result.events += part.events
    result.outside += part.outside
    acted.extend(part.acted)
    if part.spilled is not None:
        acted.extend(_spilled(part.spilled))
    result.agents.update(part.agents)
    result.rules.update(part.rules)
    result.critical_humans.update(part.critical_humans)
    result.unreadable.update(part.unreadable)
    result.per_minute.update(part.per_minute)
    if part.first is not None:
        result.first = min(result.first or part.first, part.first)
    if part.last is not None:
        result.last = max(result.last or part.last, part.last)
    if progress is not None:
        progress.step(1, part.events)


Simulated = tuple[list["Decided"], list["Incident"], Counter[str]]


def simulate(acted: list[Acted], settings: Settings) -> Simulated:
    """The windows and incidents replayed in event-time order."""
    # By time, then id: two stable sorts on one key each cost a sixth of one sort on a pair (a tuple's
    # comparison is Python's slow path), and the replay is the serial part of --workers N.
    acted.sort(key=attrgetter("event_id"))
    acted.sort(key=attrgetter("time"))
    simulation = Simulation(settings)
    with collector_paused():  # a decision per event, kept, in no cycle: nothing for the collector
        decisions = [simulation.decide(a) for a in acted]
    return decisions, simulation.incidents, simulation.thresholds_reached


def _shown_settings(settings: Settings, env: dict[str, str]) -> dict[str, Any]:
    """The settings the run used, as the report shows them (no secret is among them)."""
    return {k: v for k, v in sorted(env.items()) if k.startswith("GUARDRAIL_")} | {
        "dry_run": settings.dry_run,
        "default_environment": str(settings.default_environment),
    }


def load_settings(path: Path | None, base: dict[str, str]) -> tuple[Settings, dict[str, str]]:
    """Settings from the environment, overlaid by a file of GUARDRAIL_* variables (JSON or YAML: a map,
    or what `aws lambda get-function-configuration` prints, whose Environment.Variables is the map)."""
    env = {k: v for k, v in base.items() if k.startswith("GUARDRAIL_")}
    if path is not None:
        import yaml

        try:
            loaded = yaml.safe_load(path.read_text())
        except (OSError, yaml.YAMLError) as exc:
            raise GuardrailError(f"{path}: cannot read the settings ({exc})") from None
        if isinstance(loaded, dict) and isinstance(loaded.get("Environment"), dict):
            loaded = loaded["Environment"].get("Variables")
        if not isinstance(loaded, dict):
            raise GuardrailError(f"{path}: expected a map of GUARDRAIL_* variables")
        env.update({str(k): str(v) for k, v in loaded.items() if str(k).startswith("GUARDRAIL_")})
    # A backtest never acts: what it would do is the question, dry run or not.
    return Settings.from_env(env), env
