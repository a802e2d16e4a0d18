"""The rule catalogue: declarative rules, validated and compiled once into a lookup index.

A rule names an event source and the event names it covers, optionally narrowed by conditions on the
request parameters. Classification is one dictionary lookup on (eventSource, eventName) plus the few
conditions of the rules found there. The data lives in ``data/rules.yaml``; adding a rule means adding an
entry there and a sample event under ``events/rules/<rule id>.json``.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from functools import cache, cached_property
from importlib import resources
from typing import Any

from guardrail.detect.generic import Generic, Meaning, compile_words
from guardrail.errors import CatalogueError
from guardrail.model import ApiCall, Category, Severity

_RULE_ID = re.compile(r"^[a-z0-9]+(?:[.-][a-z0-9]+)+$")
_ATTACK_ID = re.compile(r"^T\d{4}(?:\.\d{3})?$")
_RULE_KEYS = {"id", "source", "names", "when", "category", "severity", "title", "why", "attack", "fix"}
# Where a condition's path looks: the request unless it names another part of the record.
_ROOTS = ("responseElements", "additionalEventData", "userIdentity")
_OPERATORS = {"one_of", "prefix", "suffix", "glob", "exists", "self", "own"}


def wildcard_pattern(globs: Iterable[str]) -> re.Pattern[str]:
    """EventBridge's wildcard matching as one regular expression: case-sensitive, `*` any text (none
    included), every glob matching the whole value. What the catalogue's `glob` conditions, the error code
    globs and the generic route's name matchers share, so classification and routing agree."""
    alternatives = "|".join(".*".join(map(re.escape, g.split("*"))) for g in globs)
    return re.compile(f"(?:{alternatives})\\Z")


def _normalise(value: object) -> str | None:
    """Compare parameters as CloudTrail's services write them: true, "true" and "TRUE" alike."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return value.lower()
    if isinstance(value, int | float):
        return str(value)
    return None


def walk(node: object, segments: tuple[str, ...]) -> Iterator[object]:
    """Values at a dotted path; a segment ending in [] fans out over a list."""
    if not segments:
        yield node
        return
    head, rest = segments[0], segments[1:]
    fan_out = head.endswith("[]")
    key = head[:-2] if fan_out else head
    if not isinstance(node, Mapping):
        return
    child = node.get(key)
    if child is None:
        return
    if fan_out:
        # S3 and other XML APIs log a one-element list as the element itself.
        for item in child if isinstance(child, list) else (child,):
            yield from walk(item, rest)
        return
    yield from walk(child, rest)


@dataclass(frozen=True, slots=True)
class Condition:
    """One test on the request parameters at ``path``; true when any value found there passes."""

    path: str
    operator: str
    operand: object
    _test: Callable[[object, str], bool]
    _segments: tuple[str, ...]
    _root: str = "requestParameters"

    def _values(self, call: ApiCall) -> list[object]:
        if self._root == "requestParameters":
            return list(walk(call.request, self._segments))
        if self._root == "userIdentity":
            return [call.principal.identity_type] if self._segments == ("type",) else []
        part = call.response if self._root == "responseElements" else call.additional
        return list(walk(part, self._segments)) if part else []

    def holds(self, call: ApiCall, own: re.Pattern[str] | None = None) -> bool:
        values = self._values(call)
        if self.operator == "exists":
            return bool(values) == bool(self.operand)
        if self.operator == "own":
            return own is not None and any(isinstance(v, str) and own.search(v) is not None for v in values)
        actor = call.principal.name.lower()
        return any(self._test(v, actor) for v in values)

    def describe(self) -> str:
        return f"{self.path} {self.operator} {self.operand!r}"


def _condition(rule_id: str, path: str, spec: object) -> Condition:
    if isinstance(spec, list):
        spec = {"one_of": spec}
    if not isinstance(spec, Mapping) or len(spec) != 1:
        raise CatalogueError(
            f"{rule_id}: condition on {path!r} must be a list or one of {sorted(_OPERATORS)}"
        )
    ((operator, operand),) = spec.items()
    test: Callable[[object, str], bool]
    if operator == "one_of":
        if not isinstance(operand, list) or not operand:
            raise CatalogueError(f"{rule_id}: {path}: one_of needs a non-empty list")
        wanted = frozenset(_normalise(v) for v in operand)
        if None in wanted:
            raise CatalogueError(f"{rule_id}: {path}: one_of takes strings, numbers or booleans")
        test = lambda v, _a: _normalise(v) in wanted  # noqa: E731
    elif operator in {"prefix", "suffix", "glob"}:
        options = operand if isinstance(operand, list) else [operand]
        if not options or not all(isinstance(o, str) and o for o in options):
            raise CatalogueError(f"{rule_id}: {path}: {operator} needs a string or a list of strings")
        lowered = tuple(o.lower() for o in options)
        if operator == "prefix":
            test = lambda v, _a: isinstance(v, str) and v.lower().startswith(lowered)  # noqa: E731
        elif operator == "suffix":
            test = lambda v, _a: isinstance(v, str) and v.lower().endswith(lowered)  # noqa: E731
        else:
            # Case-sensitive, '*' the only wildcard: exactly EventBridge's wildcard matching, so routing can
            # express it. AWS identifiers (ARNs, rule and function names) are case-sensitive anyway.
            pattern = wildcard_pattern(options)
            test = lambda v, _a: isinstance(v, str) and pattern.match(v) is not None  # noqa: E731
    elif operator == "exists":
        if not isinstance(operand, bool):
            raise CatalogueError(f"{rule_id}: {path}: exists takes true or false")
        test = lambda _v, _a: True  # noqa: E731  (decided in Condition.holds)
    elif operator == "own":
        if operand is not True:
            raise CatalogueError(f"{rule_id}: {path}: own takes true")
        test = lambda _v, _a: False  # noqa: E731  (decided in Condition.holds, with the deployed names)
    elif operator == "self":
        if not isinstance(operand, bool):
            raise CatalogueError(f"{rule_id}: {path}: self takes true or false")
        # true: the call targets the caller's own role or user; false: someone else's.
        if operand:
            test = lambda v, a: isinstance(v, str) and bool(a) and v.lower() == a  # noqa: E731
        else:
            test = lambda v, a: isinstance(v, str) and v.lower() != a  # noqa: E731
    else:
        raise CatalogueError(
            f"{rule_id}: {path}: unknown operator {operator!r}; use one of {sorted(_OPERATORS)}"
        )
    head, _, rest = path.partition(".")
    if head in _ROOTS and rest:
        if head == "userIdentity" and rest != "type":
            raise CatalogueError(f"{rule_id}: {path}: of userIdentity, only userIdentity.type can be tested")
        return Condition(path, operator, operand, test, tuple(rest.split(".")), head)
    return Condition(path, operator, operand, test, tuple(path.split(".")))


@dataclass(frozen=True, slots=True)
class Rule:
    id: str
    source: str
    names: tuple[str, ...]
    category: Category
    severity: Severity
    title: str
    why: str
    attack: str
    fix: str
    when: tuple[Condition, ...] = ()

    def applies_to(self, call: ApiCall, own: re.Pattern[str] | None = None) -> bool:
        return all(c.holds(call, own) for c in self.when)


@dataclass(frozen=True, slots=True)
class AccessDeniedPolicy:
    """How authorization failures are classified, whatever call they refused."""

    error_codes: frozenset[str]
    rule: Rule
    attempted_severity: Severity  # when the refused call is one a rule would have flagged
    error_code_globs: tuple[str, ...] = ()
    failed_sign_in: FailedSignIn | None = None
    _globs: re.Pattern[str] | None = field(default=None, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.error_code_globs:
            object.__setattr__(self, "_globs", wildcard_pattern(self.error_code_globs))

    def refuses(self, call: ApiCall) -> bool:
        """Whether IAM (or an SCP, a boundary, a resource policy, a sign-in check) refused the call."""
        code = call.error_code
        if code is not None:
            return code in self.error_codes or (
                self._globs is not None and self._globs.match(code) is not None
            )
        failed = self.failed_sign_in
        return failed is not None and call.response is not None and failed.matches(call)


class FailedSignIn:
    """A console sign-in that failed: CloudTrail writes no errorCode, only the response's outcome. (A
    plain class: a dataclass costs a millisecond of cold start to define.)"""

    __slots__ = ("names", "response", "source")

    def __init__(self, source: str, names: frozenset[str], response: Mapping[str, str]) -> None:
        self.source = source
        self.names = names
        self.response = response

    def matches(self, call: ApiCall) -> bool:
        response = call.response or {}
        return (
            call.event_source == self.source
            and call.event_name in self.names
            and all(response.get(k) == v for k, v in self.response.items())
        )


@dataclass(frozen=True)
class Catalogue:
    rules: tuple[Rule, ...]
    access_denied: AccessDeniedPolicy
    index: Mapping[tuple[str, str], tuple[Rule, ...]]
    generic: Generic | None = None
    generic_rules: Mapping[Meaning, Rule] = field(default_factory=dict)
    generic_defence: Mapping[str, str] = field(default_factory=dict)  # why each word list: docs/rules.md

    def matching(self, call: ApiCall, own: re.Pattern[str] | None = None) -> tuple[Rule, ...]:
        """Rules that match, most severe first: the curated rules, or else the generic rule for what the
        call's name and access level mean (generic.py). `own` recognises the responder's own resources by
        their deployed names (Settings.own_resources); without it, no `own` condition holds."""
        candidates = self.index.get((call.event_source, call.event_name))
        if candidates:
            matched = tuple(r for r in candidates if r.applies_to(call, own))
            if matched:
                return matched
        if self.generic is None:
            return ()
        meaning = self.generic.meaning(call)
        return (self.generic_rules[meaning],) if meaning is not None else ()

    def by_id(self, rule_id: str) -> Rule:
        return self._ids[rule_id]

    @cached_property
    def _ids(self) -> dict[str, Rule]:
        # A dictionary, built once: the backtest makes every verdict a helper sent back again by its rule ids.
        ids: dict[str, Rule] = {}
        for rule in (*self.rules, *self.generic_rules.values(), self.access_denied.rule):
            ids.setdefault(rule.id, rule)
        return ids


def _text(rule_id: str, entry: Mapping[str, Any], key: str) -> str:
    value = entry.get(key)
    if not isinstance(value, str) or not value.strip():
        raise CatalogueError(f"{rule_id}: {key!r} must be a non-empty string")
    return value.strip()


_CLASSIFIER_CATEGORIES = frozenset(
    {Category.BENIGN, Category.ACCESS_DENIED, Category.ROOT_ACTIVITY, Category.WRITE}
)
_GENERIC_KEYS = {
    "destroys", "destroys_protection", "destroys_anywhere", "undoes", "routine", "protection", "data",
    "principal_parameters", "protective_services", "rules", "defence",
}  # fmt: skip


def _rule(entry: object, category_must_be: Category | None = None) -> Rule:
    if not isinstance(entry, Mapping):
        raise CatalogueError(f"every rule must be a mapping, got {entry!r}")
    rule_id = entry.get("id")
    if not isinstance(rule_id, str) or not _RULE_ID.match(rule_id):
        raise CatalogueError(f"rule id {rule_id!r} must look like service.what-it-catches")
    unknown = set(entry) - _RULE_KEYS
    if unknown:
        raise CatalogueError(f"{rule_id}: unknown keys {sorted(unknown)}")
    names = entry.get("names")
    if not isinstance(names, list) or not names or not all(isinstance(n, str) and n for n in names):
        raise CatalogueError(f"{rule_id}: names must be a non-empty list of event names")
    try:
        category = Category(_text(rule_id, entry, "category"))
        severity = Severity(_text(rule_id, entry, "severity"))
    except ValueError as exc:
        raise CatalogueError(f"{rule_id}: {exc}") from None
    if category_must_be is not None and category is not category_must_be:
        raise CatalogueError(f"{rule_id}: category must be {category_must_be}")
    if category_must_be is None and category in _CLASSIFIER_CATEGORIES:
        raise CatalogueError(f"{rule_id}: category {category} is assigned by the classifier, not by rules")
    attack = _text(rule_id, entry, "attack")
    if not _ATTACK_ID.match(attack):
        raise CatalogueError(f"{rule_id}: attack {attack!r} is not a MITRE ATT&CK technique id (T1234[.001])")
    when = entry.get("when") or {}
    if not isinstance(when, Mapping):
        raise CatalogueError(f"{rule_id}: when must map parameter paths to conditions")
    return Rule(
        id=rule_id,
        source=_text(rule_id, entry, "source"),
        names=tuple(names),
        category=category,
        severity=severity,
        title=_text(rule_id, entry, "title"),
        why=_text(rule_id, entry, "why"),
        attack=attack,
        fix=_text(rule_id, entry, "fix"),
        when=tuple(_condition(rule_id, str(path), spec) for path, spec in when.items()),
    )


def compile_catalogue(document: object) -> Catalogue:
    if not isinstance(document, Mapping):
        raise CatalogueError("the catalogue must be a mapping with 'access_denied' and 'rules'")
    rules = tuple(_rule(e) for e in document.get("rules") or [])
    if not rules:
        raise CatalogueError("the catalogue has no rules")
    denied = document.get("access_denied")
    if not isinstance(denied, Mapping):
        raise CatalogueError("access_denied must be a mapping with error_codes, attempted_severity and rule")
    codes = denied.get("error_codes")
    if not isinstance(codes, list) or not codes or not all(isinstance(c, str) for c in codes):
        raise CatalogueError("access_denied.error_codes must be a non-empty list of error codes")
    # It applies to any call: its source and names are wildcards, never indexed.
    denied_rule = _rule({"source": "*", "names": ["*"], **(denied.get("rule") or {})}, Category.ACCESS_DENIED)
    try:
        attempted = Severity(str(denied.get("attempted_severity", "medium")))
    except ValueError as exc:
        raise CatalogueError(f"access_denied.attempted_severity: {exc}") from None
    globs = denied.get("error_code_globs") or []
    if not isinstance(globs, list) or not all(isinstance(g, str) and g for g in globs):
        raise CatalogueError("access_denied.error_code_globs must be a list of error code globs")
    policy = AccessDeniedPolicy(
        frozenset(codes), denied_rule, attempted, tuple(globs), _failed_sign_in(denied.get("failed_sign_in"))
    )

    seen: set[str] = {denied_rule.id}
    index: dict[tuple[str, str], list[Rule]] = {}
    for rule in rules:
        if rule.id in seen:
            raise CatalogueError(f"duplicate rule id {rule.id}")
        seen.add(rule.id)
        for name in rule.names:
            index.setdefault((rule.source, name), []).append(rule)
    compiled = {key: tuple(sorted(found, key=lambda r: -r.severity.rank)) for key, found in index.items()}
    section = document.get("generic")
    generic, generic_rules = _generic(section, seen)
    defence = section.get("defence") if isinstance(section, Mapping) else None
    return Catalogue(
        rules,
        policy,
        compiled,
        generic,
        generic_rules,
        {str(k): str(v) for k, v in defence.items()} if isinstance(defence, Mapping) else {},
    )


def _failed_sign_in(spec: object) -> FailedSignIn | None:
    if spec is None:
        return None
    where = "access_denied.failed_sign_in"
    if not isinstance(spec, Mapping) or set(spec) != {"source", "names", "response"}:
        raise CatalogueError(f"{where} must be a mapping of source, names and response")
    names, response = spec["names"], spec["response"]
    if not isinstance(names, list) or not names or not all(isinstance(n, str) for n in names):
        raise CatalogueError(f"{where}.names must be a non-empty list of event names")
    if not isinstance(response, Mapping) or not response:
        raise CatalogueError(f"{where}.response must map response elements to the values of a failure")
    return FailedSignIn(str(spec["source"]), frozenset(names), {str(k): str(v) for k, v in response.items()})


def _generic(section: object, seen: set[str]) -> tuple[Generic | None, dict[Meaning, Rule]]:
    """rules.yaml's `generic` section: the word lists and one rule per meaning."""
    if section is None:
        return None, {}
    if not isinstance(section, Mapping):
        raise CatalogueError("generic must be a mapping of word lists and rules")
    unknown = set(section) - _GENERIC_KEYS
    if unknown:
        raise CatalogueError(f"generic: unknown keys {sorted(unknown)}")
    try:
        words = compile_words(section)
    except ValueError as exc:
        raise CatalogueError(str(exc)) from None
    rules: dict[Meaning, Rule] = {}
    for entry in section.get("rules") or []:
        if not isinstance(entry, Mapping):
            raise CatalogueError(f"every generic rule must be a mapping, got {entry!r}")
        try:
            meaning = Meaning(str(entry.get("meaning")))
        except ValueError:
            raise CatalogueError(
                f"generic rule {entry.get('id')!r}: meaning must be one of {[m.value for m in Meaning]}"
            ) from None
        fields = {k: v for k, v in entry.items() if k != "meaning"}
        rule = _rule({"source": "*", "names": ["*"], **fields})
        if rule.id in seen or meaning in rules:
            raise CatalogueError(f"generic: duplicate rule {rule.id} or meaning {meaning}")
        seen.add(rule.id)
        rules[meaning] = rule
    missing = set(Meaning) - set(rules)
    if missing:
        raise CatalogueError(f"generic: no rule for {sorted(m.value for m in missing)}")
    return Generic(words), rules


def load_yaml(text: str, name: str = "rules.yaml") -> object:
    import yaml

    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    try:
        return yaml.load(text, Loader=loader)  # noqa: S506  (a safe loader)
    except yaml.YAMLError as exc:
        raise CatalogueError(f"{name} is not valid YAML: {exc}") from None


@cache
def default_catalogue() -> Catalogue:
    """The shipped catalogue, compiled once per process."""
    text = resources.files("guardrail").joinpath("data/rules.yaml").read_text(encoding="utf-8")
    return compile_catalogue(load_yaml(text))
