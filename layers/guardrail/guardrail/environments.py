"""Environment policies: what an agent may do in sandbox, development, staging and production accounts.

The policies are data (``data/environments.yaml``), validated and compiled once. An operator overrides them
with GUARDRAIL_ENVIRONMENT_POLICIES (JSON or YAML of the same shape, merged per environment and key), and
every problem is reported at once, naming the environment and key, like the rest of the settings.
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from functools import cache
from importlib import resources
from typing import Any

from guardrail.errors import ConfigurationError
from guardrail.model import Category, ContainmentScope, Decision, Environment, Severity

_POLICY_KEYS = {
    "summary",
    "writes",
    "ephemeral",
    "decide",
    "contain_rules",
    "thresholds",
    "containment_scope",
}
_THRESHOLD_KEYS = {"counts", "at", "minutes", "severity", "decision"}
MAX_WINDOW_MINUTES = 60  # one BatchGetItem reads every bucket of the longest window (<= 100 keys)
# Distinct resources are kept per minute bucket up to this many, so no item grows without bound; a
# threshold above it could never fire.
MAX_DISTINCT = 200


class Ephemeral(StrEnum):
    ALLOW = "allow"
    LOWER = "lower"
    NONE = "none"


class CategoryDecision(StrEnum):
    IGNORE = "ignore"
    NOTIFY = "notify"
    CONTAIN = "contain"
    BY_SEVERITY = "by_severity"


class Counter(StrEnum):
    """What a window counts, per principal."""

    ACCESS_DENIED = "access_denied"
    DESTRUCTIVE = "destructive"
    RESOURCES = "resources"  # distinct resources touched
    SERVICES = "services"  # distinct services (event sources) touched


@dataclass(frozen=True, slots=True)
class Threshold:
    name: str
    counts: Counter
    at: int
    minutes: int
    severity: Severity
    decision: Decision  # notify or contain

    @property
    def what(self) -> str:
        return {
            Counter.ACCESS_DENIED: "refused calls",
            Counter.DESTRUCTIVE: "destructive calls",
            Counter.RESOURCES: "distinct resources touched",
            Counter.SERVICES: "distinct services touched",
        }[self.counts]


@dataclass(frozen=True, slots=True)
class ThresholdHit:
    """A window that reached its threshold, with the count that reached it."""

    threshold: Threshold
    count: int

    def describe(self) -> str:
        t = self.threshold
        return f"{t.name}: {self.count} {t.what} in {t.minutes} min (threshold {t.at})"

    def to_dict(self) -> dict[str, Any]:
        t = self.threshold
        return {
            "name": t.name,
            "counts": t.counts.value,
            "what": t.what,
            "count": self.count,
            "at": t.at,
            "minutes": t.minutes,
            "severity": t.severity.value,
            "decision": t.decision.value,
        }


@dataclass(frozen=True, slots=True)
class Rule:
    """How one category is decided: on success, and when the call returned an error."""

    decision: CategoryDecision
    failed: CategoryDecision


@dataclass(frozen=True)
class Policy:
    environment: Environment
    summary: str
    writes: Severity | None
    ephemeral: Ephemeral
    decide: Mapping[Category, Rule]
    contain_rules: tuple[str, ...]
    thresholds: tuple[Threshold, ...]
    # role or session; None: GUARDRAIL_CONTAINMENT_SCOPE decides.
    containment_scope: ContainmentScope | None = None
    _contain_rules: re.Pattern[str] | None = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        regex = "|".join(f"(?:{fnmatch.translate(g)})" for g in self.contain_rules)
        # Frozen: the compiled globs are set once, here.
        object.__setattr__(self, "_contain_rules", re.compile(regex) if regex else None)

    def rule_for(self, category: Category) -> Rule:
        return self.decide.get(category, _BY_SEVERITY)

    def contains_rule(self, rule_id: str) -> bool:
        return self._contain_rules is not None and self._contain_rules.match(rule_id) is not None

    def counts(self, category: Category, *, is_agent: bool) -> bool:
        """Whether this environment's windows count an event: an agent's flagged call (benign calls are
        noise, and root has a rule of its own), where thresholds exist."""
        return (
            bool(self.thresholds) and is_agent and category not in (Category.BENIGN, Category.ROOT_ACTIVITY)
        )

    @property
    def window_minutes(self) -> int:
        """The longest window: how many minute buckets an event's read covers."""
        return max((t.minutes for t in self.thresholds), default=0)

    @property
    def counters(self) -> frozenset[Counter]:
        return frozenset(t.counts for t in self.thresholds)

    def describe(self) -> dict[str, Any]:
        return {
            "environment": self.environment.value,
            "summary": self.summary,
            "writes": self.writes.value if self.writes else None,
            "ephemeral": self.ephemeral.value,
            "decide": {
                c.value: {"decision": r.decision.value, "failed": r.failed.value}
                for c, r in self.decide.items()
            },
            "contain_rules": list(self.contain_rules),
            "containment_scope": self.containment_scope.value if self.containment_scope else None,
            "thresholds": {
                t.name: {
                    "counts": t.counts.value,
                    "what": t.what,
                    "at": t.at,
                    "minutes": t.minutes,
                    "severity": t.severity.value,
                    "decision": t.decision.value,
                }
                for t in self.thresholds
            },
        }


_BY_SEVERITY = Rule(CategoryDecision.BY_SEVERITY, CategoryDecision.BY_SEVERITY)


@dataclass(frozen=True)
class Policies:
    by_environment: Mapping[Environment, Policy]

    def __getitem__(self, environment: Environment) -> Policy:
        return self.by_environment[environment]


def _enum[E: StrEnum](kind: type[E], value: object, where: str, problems: list[str]) -> E | None:
    try:
        return kind(str(value).lower())
    except ValueError:
        problems.append(f"{where}: {value!r} is not one of {', '.join(kind)}")
        return None


def _compile(environment: Environment, raw: Mapping[str, Any], problems: list[str]) -> Policy | None:
    where = f"environments.{environment.value}"
    unknown = set(raw) - _POLICY_KEYS
    if unknown:
        problems.append(f"{where}: unknown key(s) {sorted(unknown)}; expected {sorted(_POLICY_KEYS)}")
    before = len(problems)

    writes = None
    if raw.get("writes") is not None:
        writes = _enum(Severity, raw["writes"], f"{where}.writes", problems)
    ephemeral = _enum(Ephemeral, raw.get("ephemeral", "none"), f"{where}.ephemeral", problems)
    scope = None
    if raw.get("containment_scope") is not None:
        scope = _enum(ContainmentScope, raw["containment_scope"], f"{where}.containment_scope", problems)

    decide: dict[Category, Rule] = {}
    spec = raw.get("decide") or {}
    if not isinstance(spec, Mapping):
        problems.append(f"{where}.decide: expected a mapping of category to decision")
        spec = {}
    for name, value in spec.items():
        category = _enum(Category, name, f"{where}.decide", problems)
        if category in (Category.BENIGN, Category.ROOT_ACTIVITY):
            problems.append(f"{where}.decide: {name} is decided the same everywhere and cannot be set")
            continue
        if isinstance(value, Mapping):
            extra = set(value) - {"decision", "failed"}
            if extra:
                problems.append(f"{where}.decide.{name}: unknown key(s) {sorted(extra)}")
            decision = _enum(
                CategoryDecision, value.get("decision"), f"{where}.decide.{name}.decision", problems
            )
            failed = _enum(
                CategoryDecision,
                value.get("failed", value.get("decision")),
                f"{where}.decide.{name}.failed",
                problems,
            )
        else:
            decision = failed = _enum(CategoryDecision, value, f"{where}.decide.{name}", problems)
        if category is not None and decision is not None and failed is not None:
            decide[category] = Rule(decision, failed)

    contain_rules = raw.get("contain_rules") or []
    if not isinstance(contain_rules, list) or not all(isinstance(g, str) and g for g in contain_rules):
        problems.append(f"{where}.contain_rules: expected a list of rule id globs")
        contain_rules = []

    thresholds: list[Threshold] = []
    spec = raw.get("thresholds") or {}
    if not isinstance(spec, Mapping):
        problems.append(f"{where}.thresholds: expected a mapping of name to threshold")
        spec = {}
    for name, value in spec.items():
        tw = f"{where}.thresholds.{name}"
        if not isinstance(value, Mapping):
            problems.append(f"{tw}: expected {{counts, at, minutes, severity, decision}}")
            continue
        missing, extra = _THRESHOLD_KEYS - set(value), set(value) - _THRESHOLD_KEYS
        if missing:
            problems.append(f"{tw}: missing {sorted(missing)}")
        if extra:
            problems.append(f"{tw}: unknown key(s) {sorted(extra)}")
        if missing or extra:
            continue
        counts = _enum(Counter, value["counts"], f"{tw}.counts", problems)
        severity = _enum(Severity, value["severity"], f"{tw}.severity", problems)
        wanted = _enum(Decision, value["decision"], f"{tw}.decision", problems)
        if wanted is Decision.IGNORE:
            problems.append(f"{tw}.decision: a threshold notifies or contains; ignore would hide the spike")
            wanted = None
        at, minutes = value["at"], value["minutes"]
        if not isinstance(at, int) or isinstance(at, bool) or at < 1:
            problems.append(f"{tw}.at: {at!r} is not a positive whole number")
            at = None
        elif counts in (Counter.RESOURCES, Counter.SERVICES) and at > MAX_DISTINCT:
            problems.append(f"{tw}.at: distinct counts are kept up to {MAX_DISTINCT}; {at} could never fire")
            at = None
        if (
            not isinstance(minutes, int)
            or isinstance(minutes, bool)
            or not 1 <= minutes <= MAX_WINDOW_MINUTES
        ):
            problems.append(
                f"{tw}.minutes: {minutes!r} is not a whole number of minutes from 1 to {MAX_WINDOW_MINUTES}"
            )
            minutes = None
        if None not in (counts, severity, wanted, at, minutes):
            thresholds.append(Threshold(str(name), counts, at, minutes, severity, wanted))  # type: ignore[arg-type]

    if len(problems) > before or ephemeral is None:
        return None
    return Policy(
        environment=environment,
        summary=" ".join(str(raw.get("summary") or "").split()),
        writes=writes,
        ephemeral=ephemeral,
        decide=decide,
        contain_rules=tuple(contain_rules),
        thresholds=tuple(thresholds),
        containment_scope=scope,
    )


def _merge(base: Mapping[str, Any], override: object, problems: list[str]) -> dict[str, dict[str, Any]]:
    merged = {name: dict(policy) for name, policy in base.items()}
    if override is None:
        return merged
    if not isinstance(override, Mapping):
        problems.append("expected a mapping with an 'environments' key")
        return merged
    environments = override.get("environments", override)
    if not isinstance(environments, Mapping):
        problems.append("environments: expected a mapping of environment to policy")
        return merged
    for name, policy in environments.items():
        if name not in merged:
            problems.append(f"environments: {name!r} is not one of {', '.join(Environment)}")
            continue
        if not isinstance(policy, Mapping):
            problems.append(f"environments.{name}: expected a mapping of policy keys")
            continue
        merged[name].update(policy)
    return merged


def load_policies(override: str | None = None) -> Policies:
    """The shipped policies, with an operator's override merged in; ConfigurationError lists every problem."""
    import yaml

    problems: list[str] = []
    base = _shipped()
    decoded: object = None
    if override is not None and override.strip():
        try:
            decoded = yaml.safe_load(override)  # JSON is YAML
        except yaml.YAMLError as exc:
            problems.append(f"not JSON or YAML ({str(exc).splitlines()[0]})")
    merged = _merge(base, decoded, problems)
    compiled = {}
    for environment in Environment:
        policy = _compile(environment, merged.get(environment.value, {}), problems)
        if policy is not None:
            compiled[environment] = policy
    if problems:
        raise ConfigurationError(
            "invalid environment policies (GUARDRAIL_ENVIRONMENT_POLICIES over data/environments.yaml):\n  - "
            + "\n  - ".join(problems)
        )
    return Policies(compiled)


@cache
def _shipped() -> dict[str, Any]:
    import yaml

    text = resources.files("guardrail").joinpath("data/environments.yaml").read_text(encoding="utf-8")
    data = yaml.safe_load(text)
    return dict(data["environments"])


@cache
def default_policies() -> Policies:
    return load_policies()
