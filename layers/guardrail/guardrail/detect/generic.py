"""What a call means when no curated rule names it: from the words of its name and its IAM access level.

The curated rules (data/rules.yaml) carry the detail: titles, why, fixes, parameter conditions and
severities. AWS has some 22,000 actions and adds more every week; no catalogue names them all. This layer
makes sure that a call that destroys, disables or weakens something is never `benign` because nobody wrote
a rule for it. It reads a name as words (``DeleteDBClusterAutomatedBackup``: Delete DB Cluster Automated
Backup) and asks the action table (actions.py) for the access level, so a read that happens to start with
a destroying verb (``logs:StopQuery`` is Read) stays benign. The word lists are data, in rules.yaml's
``generic`` section, and docs/rules.md defends each.

The meaning of a (source, name) is computed once and remembered: an event costs one dictionary access,
plus, for a permissions write only, a look at whom it is aimed at.
"""

from __future__ import annotations

import re
from enum import StrEnum
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping

    from guardrail.detect.actions import ActionInfo, ActionTable
    from guardrail.model import ApiCall

# CamelCase words: "DeleteDBClusterSnapshot" -> Delete, DB, Cluster, Snapshot; "DisassociateWebACL" ->
# Disassociate, Web, ACL; digits stay with their word (Ec2, S3).
_WORD = re.compile(r"[A-Z]+(?=[A-Z][a-z])|[A-Z]?[a-z0-9]+|[A-Z]+[0-9]*")


_API_VERSION = re.compile(r"\d{8}(?:v\d+)?$")  # as actions.API_VERSION: that module loads only when needed


def words(name: str) -> tuple[str, ...]:
    return tuple(_WORD.findall(_API_VERSION.sub("", name)))


class Meaning(StrEnum):
    """What the generic layer concluded a call does."""

    DESTROYS = "destroys"
    DESTROYS_DATA = "destroys-data"
    WEAKENS = "weakens-protection"
    GRANTS = "grants-to-another"


# IAM access levels (actions.Access, compared as the strings they are: the action table and its module
# load only when a call needs them, never for a read). Read and List change nothing: a destroying verb
# on such an action is not destruction.
_CHANGES_NOTHING = frozenset({"Read", "List"})
_TAGGING = "Tagging"
_PERMISSIONS = "Permissions management"


def _phrase(entry: str) -> str:
    return " " + " ".join(words(entry)) + " "


class GenericWords:
    """The word lists of rules.yaml's `generic` section, compiled. Plain classes here and below: a
    dataclass costs a millisecond of cold start to define."""

    __slots__ = (
        "_anywhere",
        "_data",
        "_protection",
        "data",
        "destroys",
        "destroys_anywhere",
        "destroys_protection",
        "principal_parameters",
        "protection",
        "protective_services",
        "routine",
        "undoes",
    )

    def __init__(
        self,
        *,
        destroys: frozenset[str],
        destroys_protection: frozenset[str],
        destroys_anywhere: tuple[str, ...],
        undoes: frozenset[str],
        routine: frozenset[str],
        protection: tuple[str, ...],
        data: tuple[str, ...],
        principal_parameters: tuple[str, ...],
        protective_services: frozenset[str] = frozenset(),
    ) -> None:
        self.destroys = destroys  # a name's first word (after Batch) that destroys or disables
        self.destroys_protection = destroys_protection  # first words that count only before a protection word
        self.destroys_anywhere = (
            destroys_anywhere  # words that destroy wherever they are (ScheduleKeyDeletion)
        )
        self.undoes = undoes  # first words that undo a destroying word after them (CancelKeyDeletion)
        self.routine = routine  # whole names whose destroying verb is routine work (DeleteMessage)
        self.protection = protection  # phrases naming logging, detection, encryption or protection
        self.data = data  # phrases naming data or recovery points, for actions the table does not know
        self.principal_parameters = principal_parameters  # request parameters naming whom a call is aimed at
        self.protective_services = protective_services  # IAM prefixes whose every destroying call weakens
        self._protection = tuple(_phrase(p) for p in protection)
        self._data = tuple(_phrase(p) for p in data)
        self._anywhere = tuple(_phrase(p) for p in destroys_anywhere)

    def meaning_of_name(self, name: str, info: ActionInfo | None) -> Meaning | None:
        """What a name destroys or weakens, given what IAM says of the action (None when unknown), or None
        when it destroys nothing. Permissions writes are decided per call (grants), not here."""
        found = words(name)
        if not found or name in self.routine:
            return None
        if found[0] == "Batch" and len(found) > 1:
            found = found[1:]
        text = " " + " ".join(found) + " "
        verb = found[0]
        anywhere = any(w in text for w in self._anywhere)
        if verb in self.undoes and anywhere:
            return None  # CancelKeyDeletion saves the key
        protective = any(p in text for p in self._protection)
        destroys = verb in self.destroys or (verb in self.destroys_protection and protective) or anywhere
        if not destroys or (info is not None and info.access in _CHANGES_NOTHING):
            return None
        if info is not None and info.access == _TAGGING:
            return None  # removing a tag loses no data; the Lifecycle tag has rules of its own
        if protective:
            return Meaning.WEAKENS
        holds = info.holds_data if info is not None else any(d in text for d in self._data)
        return Meaning.DESTROYS_DATA if holds else Meaning.DESTROYS

    def meaning_of(self, name: str, info: ActionInfo | None, service: Callable[[], str]) -> Meaning | None:
        """meaning_of_name, in its service: a destroying call in a service that exists to record, detect or
        protect weakens it, whatever its words. `service` gives the IAM prefix, asked only then."""
        meaning = self.meaning_of_name(name, info)
        if meaning in _DESTROYING and service() in self.protective_services:
            return Meaning.WEAKENS
        return meaning


class Generic:
    """The generic layer: the words, the action table (read when first needed) and what each (source,
    name) was found to mean."""

    __slots__ = ("_known", "table", "words")

    def __init__(self, words: GenericWords, table: Callable[[], ActionTable] | None = None) -> None:
        self.words = words
        self.table = table or _default_table
        self._known: dict[tuple[str, str], tuple[Meaning | None, bool]] = {}

    def _static(self, source: str, name: str) -> tuple[Meaning | None, bool]:
        """(what the name means, whether the action manages permissions), remembered per (source, name)."""
        key = (source, name)
        found = self._known.get(key)
        if found is not None:
            return found
        info = self.info(source, name) if self._needs_table(name) else None
        meaning = self.words.meaning_of(name, info, lambda: _prefix(source))
        manages = meaning is None and info is not None and info.access == _PERMISSIONS
        if len(self._known) >= _KNOWN_KEPT:
            self._known.clear()  # bounded: a flood of made-up names starts over
        found = self._known[key] = (meaning, manages)
        return found

    def _needs_table(self, name: str) -> bool:
        """Whether the access level could change the answer: a name that might destroy, or a write that
        might manage permissions. A read such as ListBuckets never loads the table."""
        first = words(name)[:2]
        verb = first[1] if first[:1] == ("Batch",) and len(first) > 1 else (first[0] if first else "")
        return not verb.startswith(_READ_VERBS)

    def info(self, source: str, name: str) -> ActionInfo | None:
        from guardrail.detect.actions import iam_action

        prefix, action = iam_action(source, name)
        return self.table().lookup(prefix, action)

    def meaning(self, call: ApiCall) -> Meaning | None:
        meaning, manages = self._static(call.event_source, call.event_name)
        if meaning is not None or not manages:
            return meaning
        return Meaning.GRANTS if self._aimed_at_another(call) else None

    def _aimed_at_another(self, call: ApiCall) -> bool:
        """Whether a permissions write names a principal that is not the caller (a role, user or group
        name, or a principal ARN such as a KMS grantee)."""
        principal = call.principal
        own = {principal.name.lower()} if principal.name else set()
        own.update(a.lower() for a in principal.arns)
        request = call.request
        for parameter in self.words.principal_parameters:
            value = request.get(parameter)
            if isinstance(value, str) and value and value.lower() not in own:
                return True
        return False


def _default_table() -> ActionTable:
    from guardrail.detect.actions import default_table

    return default_table()


def _prefix(source: str) -> str:
    from guardrail.detect.actions import iam_prefix

    return iam_prefix(source)


_KNOWN_KEPT = 8192
_DESTROYING = frozenset({Meaning.DESTROYS, Meaning.DESTROYS_DATA})
# Verbs that only read. Checked as a prefix of the name's first word: no destroying verb starts with these.
_READ_VERBS = (
    "Get",
    "List",
    "Describe",
    "Head",
    "Lookup",
    "Search",
    "Query",
    "Scan",
    "Select",
    "View",
    "Check",
)


def compile_words(section: Mapping[str, object]) -> GenericWords:
    """rules.yaml's `generic` section (validated by the catalogue) to GenericWords."""

    def strings(key: str) -> tuple[str, ...]:
        value = section.get(key)
        if not isinstance(value, list) or not value or not all(isinstance(v, str) and v for v in value):
            raise ValueError(f"generic.{key} must be a non-empty list of words")
        return tuple(value)

    return GenericWords(
        destroys=frozenset(strings("destroys")),
        destroys_protection=frozenset(strings("destroys_protection")),
        destroys_anywhere=strings("destroys_anywhere"),
        undoes=frozenset(strings("undoes")),
        routine=frozenset(strings("routine")),
        protection=strings("protection"),
        data=strings("data"),
        principal_parameters=strings("principal_parameters"),
        protective_services=frozenset(strings("protective_services")),
    )
