"""Slack notifier: subscribed to the incident topic, posts each incident message to Slack.

A Slack outage, a 429 that outlasts the retries, or a bad token fails the invocation (Lambda retries it,
then the failure destination keeps it); it is logged without the secret and counted as SlackFailures.
The email subscribers of the same topic are unaffected.
"""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING, Any

from aws_lambda_powertools.metrics import MetricUnit

from guardrail.aws import AwsClients
from guardrail.errors import InvalidEventError
from guardrail.report.slack_delivery import SlackDeliveryError, SlackSettings, delivery, message_from_sns
from guardrail.telemetry import logger, metrics

if TYPE_CHECKING:
    from aws_lambda_powertools.utilities.typing import LambdaContext


@functools.cache
def clients() -> AwsClients:
    return AwsClients()


@logger.inject_lambda_context(clear_state=True)
@metrics.log_metrics
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    settings = SlackSettings.from_env()
    try:
        messages = [message_from_sns(record) for record in event.get("Records") or []]
    except InvalidEventError as exc:
        # Fails the invocation: Lambda retries, then the failure destination keeps the message as it came.
        metrics.add_metric(name="InvalidMessages", unit=MetricUnit.Count, value=1)
        logger.error("unreadable incident message", extra={"reason": str(exc)})
        raise
    sender = delivery(settings, clients().dynamodb if settings.mode == "bot" else None)
    results = []
    for message in messages:
        try:
            results.append(sender.deliver(message))
        except SlackDeliveryError as exc:
            metrics.add_metric(name="SlackFailures", unit=MetricUnit.Count, value=1)
            logger.error(
                "Slack delivery failed", extra={"incident_id": message.get("incident_id"), "error": str(exc)}
            )
            raise
        metrics.add_metric(name="SlackMessages", unit=MetricUnit.Count, value=1)
    return {"delivered": results}
