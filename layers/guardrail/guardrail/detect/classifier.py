"""Classification: one API call in, a verdict out. Pure: no AWS, no clock, no I/O."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from typing import TYPE_CHECKING

from guardrail.detect.catalogue import Catalogue, Rule, default_catalogue
from guardrail.detect.verdict import Verdict
from guardrail.environments import CategoryDecision, Ephemeral, Policy, ThresholdHit
from guardrail.model import ApiCall, Category, Decision, Environment, PrincipalKind, RecordKind, Severity

if TYPE_CHECKING:
    from guardrail.settings import Settings

# Answers "is the resource this call acts on tagged Lifecycle=ephemeral?": True, False, or None when it
# cannot be known. A later stage may look it up; classification itself never calls AWS.
LifecycleLookup = Callable[[ApiCall], bool | None]

ROOT_NOTE = (
    "IAM cannot restrict the root user: no policy here can contain it. Sign in as root, rotate its "
    "credentials and MFA, delete any root access keys, and restrict the account with an SCP."
)


def classify(
    call: ApiCall,
    settings: Settings,
    catalogue: Catalogue | None = None,
    lifecycle: LifecycleLookup | None = None,
    environment_of: Callable[[str], Environment] | None = None,
) -> Verdict:
    """The catalogue says what the call is and how severe it is anywhere; the policy of the account's
    environment says what to do about it when an agent made it. `environment_of` may look the account up
    (its Organizations tag); it is asked only about an agent's calls."""
    catalogue = catalogue or default_catalogue()
    principal = call.principal
    if call.kind is RecordKind.OTHER:
        return _other_record(call, settings)
    # A service event is AWS acting on its own, whatever identity it names: never an agent.
    is_agent = call.kind is not RecordKind.SERVICE_EVENT and settings.is_agent(principal)
    lookup = environment_of if environment_of is not None and is_agent else settings.environment_of
    environment = lookup(call.account)
    policy = settings.policies[environment]
    is_protected = is_agent and settings.is_protected(principal)
    matched = catalogue.matching(call, settings.own_resources)
    notes: list[str] = [_GAP_NOTES[g] for g in call.gaps] if call.gaps else []
    ephemeral_allowed = False

    category: Category
    severity: Severity
    rules: tuple[Rule, ...]
    if catalogue.access_denied.refuses(call):
        policy_denied = catalogue.access_denied
        rules = (policy_denied.rule, *matched)
        category = Category.ACCESS_DENIED
        if matched:
            severity = policy_denied.attempted_severity
            notes.append(f"refused attempt at: {matched[0].title} ({matched[0].id})")
        else:
            severity = policy_denied.rule.severity
    elif matched:
        top = matched[0]
        rules, category, severity = matched, top.category, top.severity
        if call.error_code:
            severity = severity.lowered()
            notes.append(f"the call failed ({call.error_code}), so severity is lowered one step")
        if category is Category.DESTRUCTIVE and is_agent:
            ephemeral_allowed, severity = _lifecycle(call, policy, severity, lifecycle, notes)
    elif (
        is_agent
        and policy.writes is not None
        and call.kind in _WRITES
        and call.read_only is False
        and not call.error_code
        and principal.kind is not PrincipalKind.ROOT
    ):
        rules, category, severity = (), Category.WRITE, policy.writes
        notes.append(f"a successful write by an agent in {environment}, where agents are read-only")
    else:
        rules, category, severity = (), Category.BENIGN, Severity.INFO

    if principal.kind is PrincipalKind.ROOT:
        # Root is always worth a page, and nothing in IAM can stop it.
        if category is Category.BENIGN:
            category = Category.ROOT_ACTIVITY
        severity = Severity.CRITICAL
        notes.append(ROOT_NOTE)
        decision, reason = Decision.NOTIFY, "root user activity is always reported; IAM cannot contain root"
    elif category is Category.BENIGN:
        decision, reason = Decision.IGNORE, "no rule matches this call"
    elif category is Category.SIGN_IN:
        decision, reason = (
            Decision.NOTIFY,
            "a console sign-in worth a look is always reported, never contained",
        )
    elif "userIdentity" in call.gaps:
        decision, reason = Decision.NOTIFY, "the record names no caller: reported, never contained"
    elif not is_agent:
        decision, reason = _decide_other(severity, settings)
    else:
        decision, reason = _decide_agent(
            category,
            severity,
            is_protected,
            bool(call.error_code),
            ephemeral_allowed,
            rules,
            policy,
            settings,
        )
    if rules:
        reason = f"{rules[0].title}: {reason}"
    if notes:
        reason = f"{reason} ({'; '.join(notes)})"
    return Verdict(
        call=call,
        category=category,
        severity=severity,
        decision=decision,
        reason=reason,
        environment=environment,
        rules=rules,
        is_agent=is_agent,
        is_protected=is_protected,
        notes=tuple(notes),
    )


# Records that can be an agent's write; a console sign-in is not one, whatever its readOnly says.
_WRITES = frozenset({RecordKind.API_CALL, RecordKind.CONSOLE_ACTION})
_GAP_NOTES = {
    "eventID": "the record has no eventID; the envelope's id (or a hash of the record) stands in",
    "eventTime": "the record has no eventTime; the envelope's time (or the time it was read) stands in",
    "awsRegion": "the record has no awsRegion; the envelope's region stands in",
    "userIdentity": "the record has no userIdentity: who called is unknown",
    "userIdentity.type": "the record's userIdentity has no type, only the AWS service that invoked the call",
}


def _other_record(call: ApiCall, settings: Settings) -> Verdict:
    """A CloudTrail record that describes no call (an Insight, a detail-type CloudTrail added later): read,
    kept in the log, nothing to decide."""
    return Verdict(
        call=call,
        category=Category.BENIGN,
        severity=Severity.INFO,
        decision=Decision.IGNORE,
        reason="a CloudTrail record that is not an API call, sign-in or service event: read, nothing to decide",
        environment=settings.environment_of(call.account),
    )


def _lifecycle(
    call: ApiCall, policy: Policy, severity: Severity, lifecycle: LifecycleLookup | None, notes: list[str]
) -> tuple[bool, Severity]:
    """Whether deleting this resource is allowed as ephemeral, and the severity after the Lifecycle tag."""
    if policy.ephemeral is Ephemeral.NONE:
        notes.append(f"a Lifecycle tag is not considered in {policy.environment}")
        return False, severity
    ephemeral = lifecycle(call) if lifecycle is not None else None
    if ephemeral is None:
        notes.append("the resource's Lifecycle tag could not be known; treated as not ephemeral")
        return False, severity
    if not ephemeral:
        return False, severity
    if policy.ephemeral is Ephemeral.ALLOW:
        notes.append(
            f"the resource is tagged Lifecycle=ephemeral, which agents may delete in {policy.environment}"
        )
        return True, severity
    notes.append("the resource is tagged Lifecycle=ephemeral, so severity is lowered one step")
    return False, severity.lowered()


def _decide_other(severity: Severity, settings: Settings) -> tuple[Decision, str]:
    if severity.at_least(settings.notify_others_at):
        return Decision.NOTIFY, (
            f"{severity} call by a principal that is not a watched agent: reported, never contained"
        )
    return Decision.IGNORE, (
        f"not a watched agent, and {severity} is below GUARDRAIL_NOTIFY_OTHERS_AT={settings.notify_others_at}"
    )


def _decide_agent(
    category: Category,
    severity: Severity,
    is_protected: bool,
    failed: bool,
    ephemeral_allowed: bool,
    rules: tuple[Rule, ...],
    policy: Policy,
    settings: Settings,
) -> tuple[Decision, str]:
    env = policy.environment
    if policy.contain_rules and category is not Category.ACCESS_DENIED:
        by_rule = next((r.id for r in rules if policy.contains_rule(r.id)), None)
        if by_rule is not None:
            return _contain(is_protected, f"{by_rule} always contains an agent in {env}")
    if ephemeral_allowed:
        return Decision.IGNORE, f"agents may delete ephemeral resources in {env}"
    rule = policy.rule_for(category)
    choice = rule.failed if failed else rule.decision
    if choice is CategoryDecision.CONTAIN:
        what = category.value.replace("_", " ")
        return _contain(
            is_protected, f"{'a failed ' if failed else ''}{what} call by an agent contains in {env}"
        )
    if choice is CategoryDecision.NOTIFY:
        what = category.value.replace("_", " ")
        return Decision.NOTIFY, f"{what} by an agent is reported, never contained, in {env}"
    if choice is CategoryDecision.IGNORE:
        return Decision.IGNORE, f"agents may do this in {env}"
    if severity.at_least(settings.contain_at):
        return _contain(
            is_protected, f"agent call at {severity}, at or above GUARDRAIL_CONTAIN_AT={settings.contain_at}"
        )
    if severity.at_least(settings.notify_at):
        return Decision.NOTIFY, f"agent call at {severity}, below GUARDRAIL_CONTAIN_AT={settings.contain_at}"
    return Decision.IGNORE, f"agent call at {severity}, below GUARDRAIL_NOTIFY_AT={settings.notify_at}"


def _contain(is_protected: bool, why: str) -> tuple[Decision, str]:
    if is_protected:
        return (
            Decision.NOTIFY,
            f"{why}, but it matches GUARDRAIL_PROTECTED_PRINCIPALS: reported, never contained",
        )
    return Decision.CONTAIN, why


def escalate(verdict: Verdict, hits: tuple[ThresholdHit, ...]) -> Verdict:
    """Raise a verdict for the windows it reached: the severity and decision of the strongest threshold,
    the thresholds and counts in the reason. Pure; the counts come from the state table."""
    if not hits or not verdict.is_agent:
        return verdict
    severity = max((h.threshold.severity for h in hits), key=lambda s: s.rank)
    severity = severity if severity.rank > verdict.severity.rank else verdict.severity
    wanted = (
        Decision.CONTAIN if any(h.threshold.decision is Decision.CONTAIN for h in hits) else Decision.NOTIFY
    )
    fired = "; ".join(h.describe() for h in hits)
    if wanted is Decision.CONTAIN and verdict.is_protected:
        wanted, why = (
            Decision.NOTIFY,
            f"{fired}: matches GUARDRAIL_PROTECTED_PRINCIPALS, reported, never contained",
        )
    else:
        why = f"{fired}: {wanted} in {verdict.environment}"
    decision = wanted if wanted.rank > verdict.decision.rank else verdict.decision
    return replace(
        verdict,
        severity=severity,
        decision=decision,
        reason=f"{why}. This event: {verdict.reason}",
        thresholds=hits,
    )
