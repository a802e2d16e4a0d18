"""Release a contained principal after investigation, and carry out what people ask for from Slack.

Two callers:
- an operator: `sam remote invoke ReleaseFunction --event '{"principal": "<role or user ARN>", "reason":
  "<why it is safe>", "released_by": "<who>"}'`. A missing reason, an unknown principal or a principal that
  is not contained fails the invocation with a clear message; nothing is changed then.
- the Slack actions queue (respond/interactions.py puts each verified, allowed click there): Acknowledge,
  Release (one person, or asked and approved by two), Contain now (invoked in the responder). A job that
  cannot be read is reported as a failed batch item: SQS retries it, then its dead-letter queue keeps it.
"""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING, Any

from aws_lambda_powertools.metrics import MetricUnit
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from guardrail.errors import ConfigurationError
from guardrail.respond.release import ReleaseError, release
from guardrail.respond.runtime import runtime
from guardrail.telemetry import logger, metrics

if TYPE_CHECKING:
    from aws_lambda_powertools.utilities.typing import LambdaContext

    from guardrail.respond.people import People


class ReleaseRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    principal: str = Field(min_length=1)
    reason: str = Field(min_length=1)
    released_by: str = Field(min_length=1)


@functools.cache
def people() -> People:
    from guardrail.report.slack_delivery import SlackSettings, SlackThreads, delivery, read_secret
    from guardrail.respond.interactions import Gate, InteractionSettings, WebSlack
    from guardrail.respond.people import People, PeopleSettings, invoke_responder

    rt = runtime()
    slack_settings = SlackSettings.from_env()
    settings = PeopleSettings.from_env()
    allowed = InteractionSettings.from_env(queue=False)
    if slack_settings.mode != "bot" or not slack_settings.state_table:
        raise ConfigurationError("Slack actions need GUARDRAIL_SLACK_MODE=bot and GUARDRAIL_STATE_TABLE")
    if settings.responder_function is None:
        raise ConfigurationError("GUARDRAIL_RESPONDER_FUNCTION: not set (Contain now runs in the responder)")
    table = slack_settings.state_table

    @functools.cache
    def slack() -> Any:
        return delivery(slack_settings, rt.aws.dynamodb)

    @functools.cache
    def web() -> WebSlack:
        return WebSlack(read_secret(allowed.secret_arn, "bot_token"), allowed.api_url)

    return People(
        rt,
        settings,
        lambda: read_secret(allowed.secret_arn, "signing_secret"),
        Gate(allowed, web, lambda: rt.clock().timestamp()),
        slack,
        lambda: SlackThreads(rt.aws.dynamodb, table),
        invoke_responder(settings.responder_function, rt.aws.lambda_),
    )


def slack_jobs(event: dict[str, Any], worker: People) -> dict[str, Any]:
    """One job per record (the queue's batch size is 1; more are handled the same way)."""
    from guardrail.respond.interactions import SlackJob

    failures = []
    for record in event.get("Records") or []:
        message_id = str(record.get("messageId") or "")
        try:
            job = SlackJob.model_validate_json(record.get("body") or "")
        except ValidationError as exc:
            metrics.add_metric(name="InvalidSlackJobs", unit=MetricUnit.Count, value=1)
            logger.error("unreadable Slack job: kept for the dead-letter queue", extra={"reason": str(exc)})
            failures.append({"itemIdentifier": message_id})
            continue
        try:
            result = worker.run(job)
        except Exception:
            logger.exception("Slack job failed: SQS retries it", extra={"job": job.request.job_id})
            failures.append({"itemIdentifier": message_id})
            continue
        logger.info("Slack job done", extra={"job": job.request.job_id, "result": result})
    return {"batchItemFailures": failures}


@logger.inject_lambda_context(clear_state=True)
@metrics.log_metrics
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    if isinstance(event, dict) and isinstance(event.get("Records"), list):
        return slack_jobs(event, people())
    try:
        request = ReleaseRequest.model_validate(event)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc'])) or 'event'}: {e['msg']}" for e in exc.errors())
        raise ReleaseError(f"invalid release request: {problems}") from None
    # released_by is asserted by the caller; the request id is what the platform vouches for: CloudTrail's
    # Lambda data events record which identity made this invocation.
    evidence = {"asserted_by": request.released_by, "lambda_request_id": context.aws_request_id}
    incident = release(request.principal, request.reason, request.released_by, runtime(), evidence=evidence)
    return incident.to_dict()
