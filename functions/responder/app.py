"""The EventBridge target: one CloudTrail event in, classified and acted on.

Also the one place a person's containment runs ("Contain now" from Slack, respond/manual.py): the release
function invokes it with {"guardrail": "contain_now", ...}, a key no EventBridge envelope has, so the
containment takes the responder's own path and permissions.
"""

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
    if isinstance(event, dict) and event.get("guardrail") == "contain_now":
        from guardrail.respond.manual import contain_now_event

        return contain_now_event(event, runtime())
    return handle_event(event, runtime()).summary()
