"""How much of AWS the classifier knows, and how well it does on real CloudTrail records written by others.

Coverage counts the action table: every action IAM knows, by access level, how many the generic layer
flags and how many a curated rule names. Recall classifies a labelled set of records (`tests/data/
cloudtrail/`: each record's expected class in `expected.tsv`, set by a person reading the record, not by
this code) and reports, per class, how many came out as they should. Both are printed by `guardrail rules`
into docs/rules.md, so the page shows what the shipped code does.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from functools import partial
from typing import TYPE_CHECKING

from guardrail.detect.actions import ActionTable, default_table, iam_action
from guardrail.detect.classifier import classify
from guardrail.detect.cloudtrail import call_of, read_documents
from guardrail.errors import InvalidEventError
from guardrail.model import Category, Severity

if TYPE_CHECKING:
    from pathlib import Path

    from guardrail.detect.catalogue import Catalogue
    from guardrail.settings import Settings

# An expected class, and the outcomes that meet it.
EXPECTED: dict[str, tuple[str, frozenset[Category] | None]] = {
    "destructive": (
        "deletes, terminates, disables or weakens protection: at least destructive or guardrail_tampering",
        frozenset({Category.DESTRUCTIVE, Category.GUARDRAIL_TAMPERING}),
    ),
    "refused": (
        "refused for lack of permission (or a failed sign-in): access_denied",
        frozenset({Category.ACCESS_DENIED}),
    ),
    "ordinary": ("an ordinary read or write: benign", frozenset({Category.BENIGN})),
    "escalation": (
        "a permissions write aimed at another principal: privilege_escalation or guardrail_tampering",
        frozenset({Category.PRIVILEGE_ESCALATION, Category.GUARDRAIL_TAMPERING}),
    ),
    "sign-in": ("an IAM user's console sign-in without MFA: sign_in", frozenset({Category.SIGN_IN})),
    "root": ("anything the root user does: critical", None),
    "other": ("judged either way (exposure, policy writes, empty requests): not scored", None),
}


@dataclass
class Recall:
    """Per expected class: how many records, how many met it; and what missed."""

    total: Counter[str] = field(default_factory=Counter)
    met: Counter[str] = field(default_factory=Counter)
    misses: list[tuple[str, str, str, str]] = field(default_factory=list)  # where, expected, got, call
    invalid: list[tuple[str, str]] = field(default_factory=list)
    sources: Counter[str] = field(default_factory=Counter)

    def rate(self, expected: str) -> float:
        return self.met[expected] / self.total[expected] if self.total[expected] else 1.0


def _met(expected: str, category: Category, severity: Severity) -> bool:
    if expected == "root":
        return severity is Severity.CRITICAL
    if expected == "other":
        return True
    wanted = EXPECTED[expected][1]
    return wanted is not None and category in wanted


def read_expected(path: Path) -> dict[str, str]:
    """expected.tsv: `file:line`, the expected class, then notes for people."""
    expected: dict[str, str] = {}
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        if not line.strip() or line.startswith("#"):
            continue
        where, label, *_ = line.split("\t")
        if label not in EXPECTED:
            raise ValueError(f"{path}:{number}: unknown class {label!r}; use one of {sorted(EXPECTED)}")
        expected[where] = label
    return expected


def recall(expected_file: Path, settings: Settings, catalogue: Catalogue) -> Recall:
    """Classify every record named in `expected_file` (files beside it) and score each expected class."""
    expected = read_expected(expected_file)
    result = Recall()
    files = sorted({where.rpartition(":")[0] for where in expected})
    for name in files:
        for where, document in read_documents(expected_file.parent / name):
            key = f"{name}:{where.rpartition(':')[2]}"
            label = expected.get(key)
            if label is None:
                raise ValueError(f"{key}: a record with no expected class in {expected_file.name}")
            result.total[label] += 1
            result.sources[name] += 1
            try:
                call = call_of(document)
                verdict = classify(call, settings, catalogue)
            except InvalidEventError as exc:
                result.invalid.append((key, str(exc)))
                continue
            if _met(label, verdict.category, verdict.severity):
                result.met[label] += 1
            else:
                what = f"{call.event_source.removesuffix('.amazonaws.com')}:{call.event_name}"
                result.misses.append((key, label, verdict.category.value, what))
    return result


@dataclass
class Coverage:
    dataset: str
    services: int
    by_access: Counter[str]
    generic: Counter[str]  # meaning -> actions the generic layer flags by name and access level
    curated_rules: int
    curated_calls: int  # distinct (source, name) the curated rules name
    curated_known: int  # of those, the ones the table knows as actions


def coverage(catalogue: Catalogue, table: ActionTable | None = None) -> Coverage:
    table = table or default_table()
    by_access: Counter[str] = Counter()
    generic: Counter[str] = Counter()
    words = catalogue.generic.words if catalogue.generic is not None else None
    for prefix in table.prefixes():
        service = partial(str, prefix)  # the prefix, as the callable meaning_of asks for
        for name, info in table.actions(prefix).items():
            by_access[info.access.value] += 1
            meaning = words.meaning_of(name, info, service) if words is not None else None
            if meaning is not None:
                generic[meaning.value] += 1
    calls = {(r.source, n) for r in catalogue.rules for n in r.names}
    known = sum(1 for source, name in calls if table.lookup(*iam_action(source, name)) is not None)
    return Coverage(
        dataset=table.dataset,
        services=len(table.prefixes()),
        by_access=by_access,
        generic=generic,
        curated_rules=len(catalogue.rules),
        curated_calls=len(calls),
        curated_known=known,
    )


def unknown_actions(paths: list[Path], table: ActionTable | None = None) -> tuple[int, Counter[str]]:
    """(records read, calls the table does not know by name): what `guardrail rules --coverage PATH...`
    counts. Such calls are still classified, by their name alone."""
    from guardrail.detect.cloudtrail import event_files

    table = table or default_table()
    unknown: Counter[str] = Counter()
    read = 0
    for path in event_files(paths):
        for _, document in read_documents(path, parse=True):
            try:
                call = call_of(document)
            except InvalidEventError:
                continue
            read += 1
            if table.lookup(*iam_action(call.event_source, call.event_name)) is None:
                unknown[f"{call.event_source}:{call.event_name}"] += 1
    return read, unknown
