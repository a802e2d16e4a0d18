"""Domain vocabulary: severities, categories, decisions, environments, principals and one API call.

Imports nothing from the package: every stage may use it, and it uses none of them.
"""

from __future__ import annotations

from dataclasses import dataclass

# At run time, not only for type checking: the backtest's helpers send ApiCalls as msgpack, decoded by these hints.
from datetime import datetime  # noqa: TC003
from enum import StrEnum


class Severity(StrEnum):
    INFO = "info"
    LOW = "low"
    MEDIUM = "medium"
    HIGH = "high"
    CRITICAL = "critical"

    @property
    def rank(self) -> int:
        return _SEVERITY_RANK[self]

    def lowered(self, steps: int = 1) -> Severity:
        """One step less severe (never below info): for failed calls and ephemeral resources."""
        return _SEVERITIES[max(0, self.rank - steps)]

    def at_least(self, other: Severity) -> bool:
        return self.rank >= other.rank


_SEVERITIES = tuple(Severity)
_SEVERITY_RANK = {s: i for i, s in enumerate(_SEVERITIES)}


class Category(StrEnum):
    DESTRUCTIVE = "destructive"
    GUARDRAIL_TAMPERING = "guardrail_tampering"
    PRIVILEGE_ESCALATION = "privilege_escalation"
    ACCESS_DENIED = "access_denied"
    ROOT_ACTIVITY = "root_activity"
    SIGN_IN = "sign_in"  # a console sign-in worth a look (no MFA): reported, never contained
    WRITE = "write"  # a successful write no rule flags, by an agent where its environment watches writes
    BENIGN = "benign"


class Decision(StrEnum):
    IGNORE = "ignore"
    NOTIFY = "notify"
    CONTAIN = "contain"

    @property
    def rank(self) -> int:
        """How much a decision does: a window may raise a decision, never lower it."""
        return _DECISION_RANK[self]


_DECISION_RANK = {Decision.IGNORE: 0, Decision.NOTIFY: 1, Decision.CONTAIN: 2}


class Environment(StrEnum):
    """The multi-account strategy: how much an agent may do depends on the account it works in."""

    SANDBOX = "sandbox"
    DEVELOPMENT = "development"
    STAGING = "staging"
    PRODUCTION = "production"


class RecordKind(StrEnum):
    """Which of CloudTrail's EventBridge detail-types a record came as."""

    API_CALL = "AWS API Call via CloudTrail"
    CONSOLE_ACTION = "AWS Console Action via CloudTrail"
    SIGN_IN = "AWS Console Sign In via CloudTrail"
    SERVICE_EVENT = "AWS Service Event via CloudTrail"  # AWS acting on its own: never an agent
    OTHER = "other CloudTrail record"  # Insights and any detail-type CloudTrail adds later: read, benign


class ContainmentScope(StrEnum):
    """How much a containment denies: the whole role (every session of it), or the offending session only
    (sessions of a shared role keep working; docs/containment-scope.md)."""

    ROLE = "role"
    SESSION = "session"


class AutoRestore(StrEnum):
    """What the responder may put back by itself right after containing an agent (GUARDRAIL_AUTO_RESTORE):
    only what turns logging, detection or protection off, never anything that deletes or creates."""

    TRAIL_LOGGING = "trail-logging"
    EVENT_SELECTORS = "event-selectors"
    GUARDDUTY = "guardduty"
    CONFIG_RECORDER = "config-recorder"
    RESPONDER_RULES = "responder-rules"
    BUCKET_VERSIONING = "bucket-versioning"


class PrincipalKind(StrEnum):
    ROLE = "role"  # an IAM role, or an assumed-role session of one
    USER = "user"  # an IAM user
    ROOT = "root"
    IDENTITY_CENTER = "identity_center"  # AWSReservedSSO_* roles, owned by IAM Identity Center
    SERVICE_LINKED = "service_linked"  # roles under /aws-service-role/, owned by an AWS service
    SERVICE = "service"  # an AWS service principal acting on its own
    FEDERATED = "federated"  # GetFederationToken sessions
    UNKNOWN = "unknown"


READ_PREFIXES = ("Get", "List", "Describe", "Head", "BatchGet", "Query", "Scan", "Lookup", "Search")


# Principal, ApiCall (and detect's Verdict) are values: nothing mutates them, and a changed one is a copy
# (dataclasses.replace). They are not frozen because a frozen dataclass's __init__ sets every field through
# object.__setattr__: ~3 µs for ApiCall's sixteen, 12% of classifying an event (benchmarks/).
@dataclass(slots=True)
class Principal:
    """Who made the call, as far as CloudTrail tells it."""

    kind: PrincipalKind
    arn: str  # the caller as CloudTrail names it (an assumed-role ARN for sessions); "" when absent
    account: str
    name: str  # role or user name: what IAM calls take; "" when unknown
    issuer_arn: str | None = None  # the IAM role or user behind a session (with its path)
    session_name: str | None = None
    access_key_id: str | None = None
    # Why the record's identity fields do not describe one principal (names or accounts that disagree, a
    # name IAM would refuse); such an event is refused, never acted on.
    conflict: str | None = None
    # aws:SourceIdentity of a session: set at AssumeRole, unchangeable in the session, kept through role chaining.
    source_identity: str | None = None
    identity_type: str = ""
    # A session's <role id>:<session name> (aws:userid) and when it was issued (sessionContext.attributes.
    # creationDate, as CloudTrail wrote it): what a containment of that session alone keys on.
    principal_id: str | None = None
    session_issued: str | None = (
        None  # userIdentity.type as CloudTrail wrote it (AssumedRole, IAMUser, Root...)
    )

    @property
    def display(self) -> str:
        if self.session_name:
            return f"{self.name}/{self.session_name}"
        return self.name or self.arn or self.kind.value

    def to_dict(self) -> dict[str, str | None]:
        """What an incident keeps of its caller (clipped by the caller: ARNs are short, session names bounded)."""
        return {
            "kind": self.kind.value,
            "arn": self.arn,
            "account": self.account,
            "name": self.name,
            "issuer_arn": self.issuer_arn,
            "session_name": self.session_name,
            "source_identity": self.source_identity,
            "identity_type": self.identity_type,
            "principal_id": self.principal_id,
            "session_issued": self.session_issued,
        }

    @classmethod
    def from_dict(cls, data: dict[str, object]) -> Principal:
        def text(name: str) -> str | None:
            value = data.get(name)
            return value if isinstance(value, str) and value else None

        return cls(
            kind=PrincipalKind(str(data.get("kind"))),
            arn=text("arn") or "",
            account=text("account") or "",
            name=text("name") or "",
            issuer_arn=text("issuer_arn"),
            session_name=text("session_name"),
            source_identity=text("source_identity"),
            identity_type=text("identity_type") or "",
            principal_id=text("principal_id"),
            session_issued=text("session_issued"),
        )

    @property
    def arns(self) -> tuple[str, ...]:
        """Every ARN a principal pattern may be written against: the caller and the role or user behind it."""
        if self.issuer_arn:
            return (self.arn, self.issuer_arn) if self.arn else (self.issuer_arn,)
        return (self.arn,) if self.arn else ()


@dataclass(slots=True)
class ApiCall:
    """One CloudTrail record, reduced to what classification and response need."""

    event_id: str
    event_time: datetime
    event_source: str
    event_name: str
    region: str
    account: str
    principal: Principal
    request: dict[str, object]
    error_code: str | None = None
    error_message: str | None = None
    source_ip: str | None = None
    user_agent: str | None = None
    read_only: bool | None = None
    request_id: str | None = None
    delivered_by: str | None = None  # the EventBridge envelope's account: who put the event on the bus
    delivered_from: str | None = None  # the envelope's source (aws.<service> when AWS delivered it)
    response: dict[str, object] | None = None  # responseElements read: a sign-in's outcome, a deletion date
    additional: dict[str, object] | None = None  # additionalEventData (MFAUsed on a sign-in)
    kind: RecordKind = RecordKind.API_CALL
    # What CloudTrail left out and was filled in (eventID from the envelope, no userIdentity...): reported.
    gaps: tuple[str, ...] = ()
    resources: tuple[str, ...] = ()  # the ARNs CloudTrail's `resources` names (KMS keys, S3 objects...)

    @property
    def is_read(self) -> bool:
        """A call that only reads: as CloudTrail says (readOnly), else as its name says."""
        if self.read_only is not None:
            return self.read_only
        return self.event_name.startswith(READ_PREFIXES)
