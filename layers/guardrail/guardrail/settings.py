"""One typed settings object, read from the environment and validated once, at start-up.

Every problem is reported together, naming the variable, so a bad deploy fails on its first invocation
with a message an operator can act on rather than on the first incident.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass, field
from enum import StrEnum
from functools import cached_property
from typing import TYPE_CHECKING

from guardrail.environments import Policies, default_policies, load_policies
from guardrail.errors import ConfigurationError
from guardrail.model import AutoRestore, ContainmentScope, Environment, Severity

if TYPE_CHECKING:
    from collections.abc import Mapping

    from guardrail.model import Principal

DEFAULT_AGENT_PRINCIPALS = (
    "arn:aws:iam::*:role/AIAgent*",
    "arn:aws:sts::*:assumed-role/AIAgent*/*",
    "arn:aws:iam::*:user/ai-agent*",
)
_ACCOUNT_ID = re.compile(r"^\d{12}$")
_ORGANIZATION_ID = re.compile(r"^o-[a-z0-9]{10,32}$")
_ROLE_NAME = re.compile(r"^[\w+=,.@-]{1,64}$")
# CloudFormation stack names: a letter, then letters, digits and hyphens.
_STACK_PREFIX = re.compile(r"^[A-Za-z][A-Za-z0-9-]{0,127}-$")
DEFAULT_OWN_NAME_PREFIX = "guardrail-responder-"  # samconfig.toml's stack name, and a hyphen


class ContainmentMode(StrEnum):
    DENY_ALL = "deny_all"
    REVOKE_SESSIONS = "revoke_sessions"
    BOTH = "both"


def arn_glob(pattern: str) -> str:
    """A principal ARN glob as a regular expression. `*` matches within one path segment and never crosses
    a "/": `role/AIAgent*` is a role named AIAgent... at the root path, not every role under a path
    /AIAgentTools/ whatever its name. A path is written out (`role/agents/AIAgent*`), or crossed on purpose
    with `**` (`role/**/AIAgent*`: that name under any path, the root included)."""
    parts = []
    for piece in re.split(r"(\*\*/|\*\*|\*)", pattern):
        if piece == "**/":
            parts.append("(?:.*/)?")
        elif piece == "**":
            parts.append(".*")
        elif piece == "*":
            parts.append("[^/]*")
        else:
            parts.append(re.escape(piece))
    return "".join(parts) + r"\Z"


class PrincipalPatterns:
    """ARN glob patterns (see arn_glob) compiled into one regular expression: one match call per ARN."""

    def __init__(self, patterns: tuple[str, ...]) -> None:
        self.patterns = patterns
        self._regex = re.compile("|".join(f"(?:{arn_glob(p)})" for p in patterns)) if patterns else None

    def matches(self, *arns: str) -> bool:
        regex = self._regex
        if regex is None:
            return False
        for arn in arns:  # noqa: SIM110  (a plain loop: this runs for every event, any() adds a generator)
            if arn and regex.match(arn):
                return True
        return False

    def __repr__(self) -> str:
        return f"PrincipalPatterns({self.patterns!r})"


@dataclass(frozen=True)
class Settings:
    agent_principals: PrincipalPatterns = field(
        default_factory=lambda: PrincipalPatterns(DEFAULT_AGENT_PRINCIPALS)
    )
    protected_principals: PrincipalPatterns = field(default_factory=lambda: PrincipalPatterns(()))
    # Sessions whose aws:SourceIdentity matches one of these globs are agents, whatever role they hold: the
    # identity an agent's runtime sets when it assumes a role, and cannot change afterwards.
    agent_source_identities: tuple[str, ...] = ()
    contain_at: Severity = Severity.HIGH
    notify_at: Severity = Severity.MEDIUM
    notify_others_at: Severity = Severity.CRITICAL
    containment_mode: ContainmentMode = ContainmentMode.DENY_ALL
    # role: every session of the agent's role; session: the offending session only (an environment policy's
    # containment_scope overrides it).
    containment_scope: ContainmentScope = ContainmentScope.ROLE
    dry_run: bool = False
    account_environments: Mapping[str, Environment] = field(default_factory=dict)
    default_environment: Environment = Environment.PRODUCTION
    topic_arn: str | None = None
    state_table: str | None = None
    quarantine_queue_url: str | None = None
    runbook_url: str | None = None
    policies: Policies = field(default_factory=default_policies)
    # A central responder for an organization (docs/organizations.md); all unset: this account only.
    member_role_name: str | None = None
    member_external_id: str | None = None
    member_accounts: frozenset[str] = frozenset()
    organization_id: str | None = None
    environment_tag: str | None = None
    # What every physical name of the responder's own resources starts with (CloudFormation names them
    # "<stack name>-<logical id>-<suffix>"): its rules, functions, roles, topic, queues, table, alarms.
    own_name_prefix: str = DEFAULT_OWN_NAME_PREFIX
    # After a stop (docs/investigate.md): how long each agent's flight record is kept; how far back the damage
    # report on a containment looks, and whether it also asks CloudTrail's event history; what the
    # responder puts back by itself.
    # Identity Center's administration account (management or delegated administrator): a role there lets
    # the responder fall back to the permission set's inline policy (docs/identity-center.md).
    identity_center_admin_role_arn: str | None = None
    identity_center_instance_arn: str | None = None
    identity_center_region: str | None = None  # where the instance is; default: the responder's region
    flight_days: int = 30
    lookup_cloudtrail: bool = False
    damage_hours: int = 3
    auto_restore: frozenset[AutoRestore] = frozenset()

    @cached_property
    def _source_identities(self) -> re.Pattern[str] | None:
        if not self.agent_source_identities:
            return None
        return re.compile("|".join(f"(?:{arn_glob(p)})" for p in self.agent_source_identities))

    def is_agent(self, principal: Principal) -> bool:
        """A watched agent: its ARN, or the role or user behind its session, matches GUARDRAIL_AGENT_PRINCIPALS,
        or its session's source identity matches GUARDRAIL_AGENT_SOURCE_IDENTITIES."""
        if self.agent_principals.matches(*principal.arns):
            return True
        found = self._source_identities
        return (
            found is not None
            and bool(principal.source_identity)
            and found.match(principal.source_identity or "") is not None
        )

    def is_protected(self, principal: Principal) -> bool:
        return self.protected_principals.matches(*principal.arns)

    @cached_property
    def own_resources(self) -> re.Pattern[str] | None:
        """Recognises a name or ARN of the responder's own resources: the prefix at the start of the value,
        or of an ARN's or URL's last segments (function:<name>, rule/<name>, .../<queue name>)."""
        if not self.own_name_prefix:
            return None
        return re.compile(r"(?:^|[:/])" + re.escape(self.own_name_prefix))

    @property
    def is_central(self) -> bool:
        return self.member_role_name is not None

    def scope_in(self, environment: Environment) -> ContainmentScope:
        """How much a containment denies in an environment: its policy's containment_scope, else the default."""
        return self.policies[environment].containment_scope or self.containment_scope

    def environment_of(self, account: str) -> Environment:
        # Unknown accounts are production: never guess in the agent's favour.
        return self.account_environments.get(account, self.default_environment)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if environ is None else environ
        problems: list[str] = []

        def text(name: str) -> str | None:
            value = env.get(name, "").strip()
            return value or None

        def patterns(name: str, default: tuple[str, ...]) -> PrincipalPatterns:
            raw = env.get(name)
            if raw is None:
                return PrincipalPatterns(default)
            items = tuple(p.strip() for p in raw.split(",") if p.strip())
            for item in items:
                if not item.startswith("arn:"):
                    problems.append(f"{name}: {item!r} is not an ARN pattern (expected arn:aws:...)")
            return PrincipalPatterns(items)

        def severity(name: str, default: Severity) -> Severity:
            raw = text(name)
            if raw is None:
                return default
            try:
                return Severity(raw.lower())
            except ValueError:
                problems.append(f"{name}: {raw!r} is not one of {', '.join(Severity)}")
                return default

        def boolean(name: str, default: bool) -> bool:
            raw = text(name)
            if raw is None:
                return default
            if raw.lower() in {"true", "1", "yes", "on"}:
                return True
            if raw.lower() in {"false", "0", "no", "off"}:
                return False
            problems.append(f"{name}: {raw!r} is not a boolean (true or false)")
            return default

        def choice[E: StrEnum](name: str, default: E) -> E:
            raw = text(name)
            if raw is None:
                return default
            kind = type(default)
            try:
                return kind(raw.lower())
            except ValueError:
                problems.append(f"{name}: {raw!r} is not one of {', '.join(kind)}")
                return default

        def environments() -> dict[str, Environment]:
            raw = text("GUARDRAIL_ACCOUNT_ENVIRONMENTS")
            if raw is None:
                return {}
            try:
                decoded = json.loads(raw)
            except json.JSONDecodeError as exc:
                problems.append(f"GUARDRAIL_ACCOUNT_ENVIRONMENTS: not JSON ({exc.msg} at {exc.pos})")
                return {}
            if not isinstance(decoded, dict):
                problems.append(
                    "GUARDRAIL_ACCOUNT_ENVIRONMENTS: expected a JSON object of account id to environment"
                )
                return {}
            result: dict[str, Environment] = {}
            for account, value in decoded.items():
                if not _ACCOUNT_ID.match(str(account)):
                    problems.append(
                        f"GUARDRAIL_ACCOUNT_ENVIRONMENTS: {account!r} is not a 12-digit account id"
                    )
                    continue
                try:
                    result[str(account)] = Environment(str(value).lower())
                except ValueError:
                    problems.append(
                        f"GUARDRAIL_ACCOUNT_ENVIRONMENTS: {account}: {value!r} is not one of "
                        f"{', '.join(Environment)}"
                    )
            return result

        def policies() -> Policies:
            raw = text("GUARDRAIL_ENVIRONMENT_POLICIES")
            if raw is None:
                return default_policies()
            try:
                return load_policies(raw)
            except ConfigurationError as exc:
                problems.append(f"GUARDRAIL_ENVIRONMENT_POLICIES: {exc}")
                return default_policies()

        def accounts(name: str) -> frozenset[str]:
            raw = text(name)
            items = frozenset(a.strip() for a in (raw or "").split(",") if a.strip())
            for item in sorted(items):
                if not _ACCOUNT_ID.match(item):
                    problems.append(f"{name}: {item!r} is not a 12-digit account id")
            return items

        def number(name: str, default: int, low: int, high: int) -> int:
            raw = text(name)
            if raw is None:
                return default
            if not raw.isdigit() or not low <= int(raw) <= high:
                problems.append(f"{name}: {raw!r} is not a whole number from {low} to {high}")
                return default
            return int(raw)

        def restores() -> frozenset[AutoRestore]:
            raw = (text("GUARDRAIL_AUTO_RESTORE") or "").lower()
            if raw in ("", "none", "off", "false"):
                return frozenset()
            if raw == "all":
                return frozenset(AutoRestore)
            kinds = set()
            for item in (p.strip() for p in raw.split(",") if p.strip()):
                try:
                    kinds.add(AutoRestore(item))
                except ValueError:
                    problems.append(
                        f"GUARDRAIL_AUTO_RESTORE: {item!r} is not one of {', '.join(AutoRestore)} (or all, none)"
                    )
            return frozenset(kinds)

        agents = patterns("GUARDRAIL_AGENT_PRINCIPALS", DEFAULT_AGENT_PRINCIPALS)
        if not agents.patterns:
            problems.append("GUARDRAIL_AGENT_PRINCIPALS: empty, so no principal would ever be contained")
        topic = text("GUARDRAIL_TOPIC_ARN")
        if topic is not None and not topic.startswith("arn:"):
            problems.append(f"GUARDRAIL_TOPIC_ARN: {topic!r} is not an SNS topic ARN")
        settings = cls(
            agent_principals=agents,
            protected_principals=patterns("GUARDRAIL_PROTECTED_PRINCIPALS", ()),
            agent_source_identities=tuple(
                s.strip() for s in env.get("GUARDRAIL_AGENT_SOURCE_IDENTITIES", "").split(",") if s.strip()
            ),
            contain_at=severity("GUARDRAIL_CONTAIN_AT", Severity.HIGH),
            notify_at=severity("GUARDRAIL_NOTIFY_AT", Severity.MEDIUM),
            notify_others_at=severity("GUARDRAIL_NOTIFY_OTHERS_AT", Severity.CRITICAL),
            containment_mode=choice("GUARDRAIL_CONTAINMENT_ACTION", ContainmentMode.DENY_ALL),
            containment_scope=choice("GUARDRAIL_CONTAINMENT_SCOPE", ContainmentScope.ROLE),
            dry_run=boolean("GUARDRAIL_DRY_RUN", False),
            account_environments=environments(),
            topic_arn=topic,
            state_table=text("GUARDRAIL_STATE_TABLE"),
            quarantine_queue_url=text("GUARDRAIL_QUARANTINE_QUEUE_URL"),
            runbook_url=text("GUARDRAIL_RUNBOOK_URL"),
            policies=policies(),
            member_role_name=text("GUARDRAIL_MEMBER_ROLE_NAME"),
            member_external_id=text("GUARDRAIL_MEMBER_EXTERNAL_ID"),
            member_accounts=accounts("GUARDRAIL_MEMBER_ACCOUNTS"),
            organization_id=text("GUARDRAIL_ORGANIZATION_ID"),
            environment_tag=text("GUARDRAIL_ENVIRONMENT_TAG"),
            own_name_prefix=env.get("GUARDRAIL_OWN_NAME_PREFIX", DEFAULT_OWN_NAME_PREFIX).strip(),
            identity_center_admin_role_arn=text("GUARDRAIL_IDENTITY_CENTER_ADMIN_ROLE_ARN"),
            identity_center_instance_arn=text("GUARDRAIL_IDENTITY_CENTER_INSTANCE_ARN"),
            identity_center_region=text("GUARDRAIL_IDENTITY_CENTER_REGION"),
            flight_days=number("GUARDRAIL_FLIGHT_DAYS", 30, 1, 365),
            lookup_cloudtrail=boolean("GUARDRAIL_LOOKUP_CLOUDTRAIL", False),
            damage_hours=number("GUARDRAIL_DAMAGE_HOURS", 3, 1, 24 * 90),
            auto_restore=restores(),
        )
        if settings.organization_id and not _ORGANIZATION_ID.match(settings.organization_id):
            problems.append(
                f"GUARDRAIL_ORGANIZATION_ID: {settings.organization_id!r} is not an organization id (o-...)"
            )
        if settings.member_role_name:
            if not _ROLE_NAME.match(settings.member_role_name):
                problems.append(
                    f"GUARDRAIL_MEMBER_ROLE_NAME: {settings.member_role_name!r} is not a role name"
                )
            if not settings.member_external_id or len(settings.member_external_id) < 16:
                problems.append(
                    "GUARDRAIL_MEMBER_EXTERNAL_ID: required with GUARDRAIL_MEMBER_ROLE_NAME, at least 16 "
                    "characters (the member roles' trust policies require it)"
                )
            if not settings.member_accounts and not settings.organization_id:
                problems.append(
                    "GUARDRAIL_MEMBER_ROLE_NAME is set but no member is named: set GUARDRAIL_MEMBER_ACCOUNTS "
                    "or GUARDRAIL_ORGANIZATION_ID, or an event naming any account could be acted on"
                )
        if settings.own_name_prefix and not _STACK_PREFIX.match(settings.own_name_prefix):
            problems.append(
                f"GUARDRAIL_OWN_NAME_PREFIX: {settings.own_name_prefix!r} is not a stack name and a hyphen "
                "(guardrail-responder-)"
            )
        admin = settings.identity_center_admin_role_arn
        if admin and not re.match(r"^arn:aws[\w-]*:iam::\d{12}:role/[\w+=,.@/-]+$", admin):
            problems.append(f"GUARDRAIL_IDENTITY_CENTER_ADMIN_ROLE_ARN: {admin!r} is not an IAM role ARN")
        instance = settings.identity_center_instance_arn
        if instance and not re.match(r"^arn:aws[\w-]*:sso:::instance/(sso)?ins-[a-zA-Z0-9-.]{16}$", instance):
            problems.append(
                f"GUARDRAIL_IDENTITY_CENTER_INSTANCE_ARN: {instance!r} is not an Identity Center instance ARN"
            )
        if settings.runbook_url and not settings.runbook_url.startswith("https://"):
            problems.append(f"GUARDRAIL_RUNBOOK_URL: {settings.runbook_url!r} is not an https:// URL")
        if settings.contain_at.rank < Severity.MEDIUM.rank:
            problems.append(
                f"GUARDRAIL_CONTAIN_AT: {settings.contain_at} would contain agents for routine calls; "
                "use medium, high or critical"
            )
        if problems:
            raise ConfigurationError("invalid configuration:\n  - " + "\n  - ".join(problems))
        return settings
