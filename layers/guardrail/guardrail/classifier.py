"""Classification: one API call in, a verdict out. Pure: no AWS, no clock, no I/O."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from guardrail.model import ApiCall, Category, Decision, PrincipalKind, Severity, Verdict
from guardrail.rules import Catalogue, Rule, default_catalogue

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
) -> Verdict:
    catalogue = catalogue or default_catalogue()
    principal = call.principal
    environment = settings.environment_of(call.account)
    arns = principal.arns
    is_agent = settings.agent_principals.matches(*arns)
    is_protected = is_agent and settings.protected_principals.matches(*arns)
    matched = catalogue.matching(call)
    notes: list[str] = []

    category: Category
    severity: Severity
    rules: tuple[Rule, ...]
    if catalogue.is_access_denied(call.error_code):
        policy = catalogue.access_denied
        rules = (policy.rule, *matched)
        category = Category.ACCESS_DENIED
        if matched:
            severity = policy.attempted_severity
            notes.append(f"refused attempt at: {matched[0].title} ({matched[0].id})")
        else:
            severity = policy.rule.severity
    elif matched:
        top = matched[0]
        rules, category, severity = matched, top.category, top.severity
        if call.error_code:
            severity = severity.lowered()
            notes.append(f"the call failed ({call.error_code}), so severity is lowered one step")
        if category is Category.DESTRUCTIVE and lifecycle is not None:
            ephemeral = lifecycle(call)
            if ephemeral:
                severity = severity.lowered()
                notes.append("the resource is tagged Lifecycle=ephemeral, so severity is lowered one step")
            elif ephemeral is None:
                notes.append("the resource's Lifecycle tag could not be known; treated as not ephemeral")
    else:
        rules, category, severity = (), Category.BENIGN, Severity.INFO

    if principal.kind is PrincipalKind.ROOT:
        # Root is always worth a page, and nothing in IAM can stop it.
        if category is Category.BENIGN:
            category = Category.ROOT_ACTIVITY
        severity = Severity.CRITICAL
        notes.append(ROOT_NOTE)

    decision, reason = _decide(category, severity, is_agent, is_protected, principal.kind, settings)
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


def _decide(
    category: Category,
    severity: Severity,
    is_agent: bool,
    is_protected: bool,
    kind: PrincipalKind,
    settings: Settings,
) -> tuple[Decision, str]:
    if kind is PrincipalKind.ROOT:
        return Decision.NOTIFY, "root user activity is always reported; IAM cannot contain root"
    if category is Category.BENIGN:
        return Decision.IGNORE, "no rule matches this call"
    if not is_agent:
        if severity.at_least(settings.notify_others_at):
            return Decision.NOTIFY, (
                f"{severity} call by a principal that is not a watched agent: reported, never contained"
            )
        return Decision.IGNORE, (
            f"not a watched agent, and {severity} is below GUARDRAIL_NOTIFY_OTHERS_AT={settings.notify_others_at}"
        )
    if severity.at_least(settings.contain_at):
        if is_protected:
            return (
                Decision.NOTIFY,
                "matches GUARDRAIL_PROTECTED_PRINCIPALS, so it is reported, never contained",
            )
        return (
            Decision.CONTAIN,
            f"agent call at {severity}, at or above GUARDRAIL_CONTAIN_AT={settings.contain_at}",
        )
    if severity.at_least(settings.notify_at):
        return Decision.NOTIFY, f"agent call at {severity}, below GUARDRAIL_CONTAIN_AT={settings.contain_at}"
    return Decision.IGNORE, f"agent call at {severity}, below GUARDRAIL_NOTIFY_AT={settings.notify_at}"
