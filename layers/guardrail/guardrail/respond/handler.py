"""The handler's entry: parse, classify, and either stop there (ignored: no AWS call) or act.

Acting (windows, containment, reports, release) lives in guardrail.respond.act and is imported only when an
event calls for it: an ignored event loads none of it, which keeps the cold start small. What cannot be
read, or must not be acted on, is kept (quarantine), never dropped.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from aws_lambda_powertools.metrics import MetricUnit

from guardrail.detect.classifier import classify
from guardrail.detect.cloudtrail import forgery, parse_event
from guardrail.errors import InvalidEventError, RefusedEventError
from guardrail.model import Decision
from guardrail.respond.outcome import Outcome, quarantine
from guardrail.telemetry import logger, metrics

if TYPE_CHECKING:
    from guardrail.detect.verdict import Verdict
    from guardrail.respond.runtime import Runtime


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
    """Log and count the verdict; act on it when it calls for it. An event that no rule flags and no window
    counts, and that is not a watched agent's change (its flight record), makes no AWS call at all and
    never loads the code that acts."""
    _observe(verdict)
    call = verdict.call
    if verdict.is_quiet(rt.settings) and not (
        verdict.is_agent and not call.is_read  # an agent's change goes into its flight record
    ):
        return Outcome(status="ignored", verdict=verdict)
    from guardrail.respond.act import act

    return act(verdict, rt, started, event)


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
