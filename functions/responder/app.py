"""The EventBridge target: one CloudTrail event in, classified and acted on."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from guardrail.respond.handler import handle_event
from guardrail.respond.runtime import runtime
from guardrail.telemetry import logger, metrics

if TYPE_CHECKING:
    from aws_lambda_powertools.utilities.typing import LambdaContext


@logger.inject_lambda_context(clear_state=True)
@metrics.log_metrics
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return handle_event(event, runtime()).summary()
