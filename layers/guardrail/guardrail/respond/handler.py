"""The handler's entry: parse, classify, and either stop there (ignored: no AWS call) or act.

Acting (windows, containment, reports, release) lives in guardrail.respond.act and is imported only when an
event calls for it: an ignored event loads none of it, which keeps the cold start small. What cannot be
read, or must not be acted on, is kept (quarantine), never dropped.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from aws_lambda_powertools.metrics import MetricUnit

from guardrail.aws import AwsClients, IamProvider, SameAccountIam
from guardrail.detect.classifier import classify
from guardrail.detect.cloudtrail import forgery, parse_event
from guardrail.errors import ConfigurationError, InvalidEventError, RefusedEventError
from guardrail.model import ApiCall, Decision, Environment, PrincipalKind, Verdict
from guardrail.settings import Settings
from guardrail.telemetry import logger, metrics

if TYPE_CHECKING:
    from collections.abc import Callable

    from mypy_boto3_ec2 import EC2Client
    from mypy_boto3_iam import IAMClient

    from guardrail.respond.containment import ResponderIdentity
    from guardrail.respond.incidents import Incident, IncidentStore
    from guardrail.respond.organizations import Directory, MemberSessions

# SQS takes 256 KiB a message; keep room for the envelope around the rejected event.
_QUARANTINE_EVENT_LIMIT = 200_000


def _utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass
class Runtime:
    """Everything an invocation needs from its container: settings, clients, state, built once."""

    settings: Settings
    aws: AwsClients
    clock: Callable[[], datetime] = _utc_now
    iam_provider: IamProvider | None = None
    _identity: ResponderIdentity | None = None
    _store: IncidentStore | None = None

    _directory: Directory | None = None
    _members: MemberSessions | None = None

    def iam_for(self, account: str) -> IAMClient | None:
        """IAM in `account`, if this responder can reach it: its own account, and members' through their
        containment role when it is a central responder."""
        if self.iam_provider is None:
            self.iam_provider = SameAccountIam(self.aws, self.identity().account)
        own = self.iam_provider.iam_for(account)
        if own is not None or (members := self.members()) is None:
            return own
        return members.iam_for(account)

    def can_reach(self, account: str) -> bool:
        """Whether IAM in `account` is within reach, without reaching for it (no role is assumed here)."""
        if self.iam_provider is None:
            self.iam_provider = SameAccountIam(self.aws, self.identity().account)
        if self.iam_provider.iam_for(account) is not None:
            return True
        return self.members() is not None and self.is_member(account)

    def members(self) -> MemberSessions | None:
        settings = self.settings
        if settings.member_role_name is None or settings.member_external_id is None:
            return None
        if self._members is None:
            from guardrail.respond.organizations import MemberSessions

            self._members = MemberSessions(
                sts=lambda: self.aws.sts,
                role_name=settings.member_role_name,
                external_id=settings.member_external_id,
                is_member=self.is_member,
            )
        return self._members

    def directory(self) -> Directory:
        if self._directory is None:
            from guardrail.respond.organizations import Directory

            self._directory = Directory(
                client=lambda: self.aws.organizations,
                organization_id=self.settings.organization_id,
                environment_tag=self.settings.environment_tag,
            )
        return self._directory

    def is_member(self, account: str) -> bool:
        """Whether a central responder serves this account (its own always)."""
        if account == self.identity().account:
            return True
        if self.settings.member_accounts:
            return account in self.settings.member_accounts
        if self.settings.organization_id:
            return self.directory().is_member(account)
        return False

    def environment_of(self, account: str) -> Environment:
        """GUARDRAIL_ACCOUNT_ENVIRONMENTS first, then the account's Organizations tag (cached), then the
        default: production."""
        named = self.settings.account_environments.get(account)
        if named is not None:
            return named
        if self.settings.environment_tag:
            tagged = self.directory().environment(account)
            if tagged is not None:
                return tagged
        return self.settings.default_environment

    @property
    def store(self) -> IncidentStore:
        if self._store is None:
            if not self.settings.state_table:
                raise ConfigurationError("GUARDRAIL_STATE_TABLE is not set: incidents need the state table")
            from guardrail.respond.incidents import IncidentStore

            self._store = IncidentStore(self.aws.dynamodb, self.settings.state_table, self.clock)
        return self._store

    def lifecycle(self, call: ApiCall) -> bool | None:
        """Whether the resource a destructive call acts on is tagged Lifecycle=ephemeral (None: unknown).
        Asked only where the call's environment considers the tag."""
        from guardrail.detect.lifecycle import resolver

        return resolver(self._ec2_for)(call)

    def _ec2_for(self, account: str, region: str) -> EC2Client | None:
        if account == self.identity().account:
            return self.aws.ec2_in(region)
        members = self.members()
        return members.ec2_for(account, region) if members is not None else None

    def identity(self) -> ResponderIdentity:
        """Who the responder runs as; asked of STS once, and only when a containment needs it."""
        if self._identity is None:
            from guardrail.respond.containment import ResponderIdentity

            caller = self.aws.sts.get_caller_identity()
            self._identity = ResponderIdentity.from_caller_arn(caller["Account"], caller["Arn"])
        return self._identity


_runtime: Runtime | None = None


def runtime() -> Runtime:
    """The container's runtime; settings are validated here, on first use, with a clear error."""
    global _runtime
    if _runtime is None:
        _runtime = Runtime(settings=Settings.from_env(), aws=AwsClients())
    return _runtime


def use_runtime(value: Runtime | None) -> None:
    """Replace the container's runtime (tests, replay); None makes the next call rebuild it."""
    global _runtime
    _runtime = value


@dataclass
class Outcome:
    """What the responder did with one event: the handler's return value, and replay's report."""

    # ignored | counted | reported | contained | dry_run | not_containable | joined | duplicate
    # | notified_on_retry | refused | quarantined
    status: str
    verdict: Verdict | None = None
    error: str | None = None
    incident_id: str | None = None
    actions: list[dict[str, Any]] = field(default_factory=list)
    containment_ms: float | None = None
    notes: list[str] = field(default_factory=list)

    def summary(self) -> dict[str, Any]:
        result: dict[str, Any] = {"status": self.status}
        if self.verdict is not None:
            result.update(self.verdict.summary())
        for key in ("incident_id", "containment_ms", "error"):
            if getattr(self, key) is not None:
                result[key] = getattr(self, key)
        if self.actions:
            result["actions"] = self.actions
        if self.notes:
            result["notes"] = self.notes
        return result


def handle_event(event: object, rt: Runtime) -> Outcome:
    """Parse, classify, respond. Invalid input is quarantined, never acted on."""
    started = time.perf_counter()
    try:
        call = parse_event(event)
    except InvalidEventError as exc:
        return quarantine(event, exc, rt)
    forged = forgery(call)  # before any lookup, in every mode
    if forged is not None:
        return quarantine(event, RefusedEventError(forged), rt)
    verdict = classify(call, rt.settings, lifecycle=rt.lifecycle, environment_of=rt.environment_of)
    return respond(verdict, rt, started, event)


def respond(verdict: Verdict, rt: Runtime, started: float, event: object = None) -> Outcome:
    """Log and count the verdict; act on it when it calls for it. An event no rule flags, that no window
    counts, makes no AWS call at all and never loads the code that acts."""
    _observe(verdict)
    call = verdict.call
    if (
        verdict.decision is Decision.IGNORE
        and call.principal.kind is not PrincipalKind.ROOT
        and not rt.settings.policies[verdict.environment].counts(verdict)
    ):
        return Outcome(status="ignored", verdict=verdict)
    from guardrail.respond.act import act

    return act(verdict, rt, started, event)


def release(principal: str, reason: str, released_by: str, rt: Runtime) -> Incident:
    """Undo exactly what the containment added, after investigation, and audit who and why."""
    from guardrail.respond import act

    return act.release(principal, reason, released_by, rt)


def _observe(verdict: Verdict) -> None:
    # The breakdown is in the names, not in dimensions: every metric of a flush shares its dimensions,
    # and alarms (ContainmentFailures, InvalidEvents) must name exactly one metric.
    for name in (
        "Events",
        f"Events_{verdict.decision}",
        f"Events_{verdict.category}",
        f"Events_{verdict.severity}",
    ):
        metrics.add_metric(name=name, unit=MetricUnit.Count, value=1)
    log = logger.info if verdict.decision is Decision.IGNORE else logger.warning
    call = verdict.call
    log(
        "event classified",
        extra={
            "classification": verdict.summary(),
            "principal_kind": call.principal.kind.value,
            "is_agent": verdict.is_agent,
            "is_protected": verdict.is_protected,
        },
    )


def quarantine(event: object, error: InvalidEventError | RefusedEventError, rt: Runtime) -> Outcome:
    """Log, count and keep an event we cannot read or must not act on. Without a quarantine queue, fail
    the invocation so Lambda's on-failure destination keeps it instead: never drop it."""
    reason = str(error)
    refused = isinstance(error, RefusedEventError)
    if refused:
        metrics.add_metric(name="RefusedEvents", unit=MetricUnit.Count, value=1)
    else:
        metrics.add_metric(name="InvalidEvents", unit=MetricUnit.Count, value=1)
    logger.error(
        "refused event quarantined" if refused else "invalid event quarantined",
        extra={"reason": reason, "event_preview": _preview(event)},
    )
    queue = rt.settings.quarantine_queue_url
    if queue is None:
        raise error
    body = json.dumps(
        {"reason": reason, "received_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "event": event},
        default=repr,
    )
    if len(body) > _QUARANTINE_EVENT_LIMIT:
        body = json.dumps({"reason": reason, "truncated": True, "event_preview": _preview(event, 100_000)})
    rt.aws.sqs.send_message(QueueUrl=queue, MessageBody=body)
    return Outcome(status="refused" if refused else "quarantined", error=reason)


def _preview(event: object, limit: int = 2000) -> str:
    try:
        text = json.dumps(event, default=repr)
    except (TypeError, ValueError, RecursionError):
        text = repr(event)
    return text if len(text) <= limit else text[:limit] + "…"
