"""What the handler does with an event: classify it, act on the verdict, and keep what it cannot read.

Order matters during an incident: containment (when decided) is the first AWS write for an event;
recording and notifying come after, and never undo or delay it.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from typing import Any

from aws_lambda_powertools.metrics import MetricUnit

from guardrail.aws import AwsClients
from guardrail.classifier import classify
from guardrail.cloudtrail import parse_event
from guardrail.errors import InvalidEventError
from guardrail.model import Decision, Verdict
from guardrail.settings import Settings
from guardrail.telemetry import logger, metrics

# SQS takes 256 KiB a message; keep room for the envelope around the rejected event.
_QUARANTINE_EVENT_LIMIT = 200_000


@dataclass
class Runtime:
    """Everything an invocation needs from its container: settings and clients, built once."""

    settings: Settings
    aws: AwsClients


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

    status: str  # classified | quarantined
    verdict: Verdict | None = None
    error: str | None = None
    actions: list[dict[str, Any]] = field(default_factory=list)

    def summary(self) -> dict[str, Any]:
        result: dict[str, Any] = {"status": self.status}
        if self.verdict is not None:
            result.update(self.verdict.summary())
        if self.actions:
            result["actions"] = self.actions
        if self.error:
            result["error"] = self.error
        return result


def handle_event(event: object, rt: Runtime) -> Outcome:
    """Parse, classify, respond. Invalid input is quarantined, never acted on."""
    try:
        call = parse_event(event)
    except InvalidEventError as exc:
        return quarantine(event, exc, rt)
    return respond(classify(call, rt.settings), rt)


def respond(verdict: Verdict, rt: Runtime) -> Outcome:
    started = time.perf_counter()
    call = verdict.call
    metrics.add_dimension("decision", verdict.decision.value)
    metrics.add_dimension("category", verdict.category.value)
    metrics.add_metric(name="Events", unit=MetricUnit.Count, value=1)
    log = logger.info if verdict.decision is Decision.IGNORE else logger.warning
    log(
        "event classified",
        extra={
            "classification": verdict.summary(),
            "principal_kind": call.principal.kind.value,
            "is_agent": verdict.is_agent,
            "is_protected": verdict.is_protected,
            "elapsed_ms": round((time.perf_counter() - started) * 1000, 3),
        },
    )
    return Outcome(status="classified", verdict=verdict)


def quarantine(event: object, error: InvalidEventError, rt: Runtime) -> Outcome:
    """Log, count and keep an event we cannot read. Without a quarantine queue, fail the invocation
    so Lambda's on-failure destination keeps it instead: never drop it."""
    reason = str(error)
    metrics.add_metric(name="InvalidEvents", unit=MetricUnit.Count, value=1)
    logger.error("invalid event quarantined", extra={"reason": reason, "event_preview": _preview(event)})
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
    return Outcome(status="quarantined", error=reason)


def _preview(event: object, limit: int = 2000) -> str:
    try:
        text = json.dumps(event, default=repr)
    except (TypeError, ValueError, RecursionError):
        text = repr(event)
    return text if len(text) <= limit else text[:limit] + "…"
