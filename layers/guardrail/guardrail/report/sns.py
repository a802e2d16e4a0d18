"""Publishing an incident message to the topic: email, Slack and any other subscriber read it from there."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from aws_lambda_powertools.metrics import MetricUnit

from guardrail.report.message import attributes, sns_payload
from guardrail.telemetry import logger, metrics

if TYPE_CHECKING:
    from collections.abc import Callable

    from mypy_boto3_sns import SNSClient


def publish(message: dict[str, Any], topic_arn: str | None, sns: Callable[[], SNSClient]) -> str | None:
    """One message to the incident topic. A failure raises: the caller fails the invocation, so Lambda
    retries the event and the retry announces what was recorded (never before the IAM write, never instead
    of it). `sns` is asked for the client only when there is a topic to publish to."""
    if not topic_arn:
        logger.warning("GUARDRAIL_TOPIC_ARN is not set: incident not published", extra={"message": message})
        return None
    arguments: dict[str, Any] = {
        "TopicArn": topic_arn,
        "MessageAttributes": attributes(message),
        **sns_payload(message),
    }
    response = sns().publish(**arguments)
    metrics.add_metric(name="Notifications", unit=MetricUnit.Count, value=1)
    return str(response["MessageId"])
