"""Slack's interactivity endpoint (a Lambda function URL): verifies each request with the app's signing
secret, refuses whoever is not on the on-call list, opens the release modal, and queues the work for the
release function. It holds no IAM or state-table permission: a request that got past the signature can
only put a job on the queue. See respond/interactions.py.
"""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING, Any

from guardrail.aws import AwsClients
from guardrail.report.slack_delivery import read_secret
from guardrail.respond.interactions import Endpoint, InteractionSettings, SlackJob, WebSlack, handle_request
from guardrail.telemetry import logger, metrics

if TYPE_CHECKING:
    from aws_lambda_powertools.utilities.typing import LambdaContext


@functools.cache
def endpoint() -> Endpoint:
    settings = InteractionSettings.from_env()
    clients = AwsClients()

    def enqueue(job: SlackJob) -> None:
        clients.sqs.send_message(QueueUrl=settings.queue_url, MessageBody=job.model_dump_json())

    @functools.cache
    def slack() -> WebSlack:
        return WebSlack(read_secret(settings.secret_arn, "bot_token"), settings.api_url)

    # Read through powertools Parameters (cached five minutes), as the notifier reads its token.
    return Endpoint(settings, lambda: read_secret(settings.secret_arn, "signing_secret"), slack, enqueue)


@logger.inject_lambda_context(clear_state=True)
@metrics.log_metrics
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    answer = handle_request(event, endpoint())
    if answer.status >= 400:
        logger.info("answered", extra={"status": answer.status, "why": answer.why})
    return answer.to_response()
