"""The scheduled check (EventBridge Scheduler, every five minutes): every open containment still in place,
and the responder itself as deployed (its routing rules, a trail logging management events, its alarms).

A containment found changed is put back and announced; drift is announced as critical. Whatever could not
be checked fails the invocation (after announcing what was found), so the function's Errors alarm fires.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from guardrail.errors import GuardrailError
from guardrail.respond.check import Deployment, check_all
from guardrail.respond.runtime import runtime
from guardrail.telemetry import logger, metrics

if TYPE_CHECKING:
    from aws_lambda_powertools.utilities.typing import LambdaContext


class CheckIncomplete(GuardrailError):
    """Some of what the scheduled check covers could not be checked."""


@logger.inject_lambda_context(clear_state=True)
@metrics.log_metrics
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    report = check_all(runtime(), Deployment.from_env())
    if report.errors:
        raise CheckIncomplete("; ".join(report.errors))
    return report.summary()
