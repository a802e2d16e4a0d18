"""What the responder did with one event, and keeping what it must not act on (quarantine)."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from aws_lambda_powertools.metrics import MetricUnit

from guardrail.errors import InvalidEventError, RefusedEventError
from guardrail.telemetry import logger, metrics

if TYPE_CHECKING:
    from guardrail.detect.verdict import Verdict
    from guardrail.respond.runtime import Runtime

# SQS takes 256 KiB a message; keep room for the envelope around the rejected event.
_QUARANTINE_EVENT_LIMIT = 200_000


@dataclass
class Outcome:
    """What the responder did with one event: the handler's return value, and replay's report."""

    # ignored | counted | reported | contained | dry_run | not_containable | joined | duplicate
    # | notified_on_retry | refused | quarantined | own_action (CloudTrail's record of the responder's own write)
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
