"""Release a contained principal after investigation: `sam remote invoke ReleaseFunction --event '{...}'`.

The event: {"principal": "<role or user ARN>", "reason": "<why it is safe>", "released_by": "<who>"}.
A missing reason, an unknown principal or a principal that is not contained fails the invocation with
a clear message; nothing is changed then.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from guardrail.respond.release import ReleaseError, release
from guardrail.respond.runtime import runtime
from guardrail.telemetry import logger, metrics

if TYPE_CHECKING:
    from aws_lambda_powertools.utilities.typing import LambdaContext


class ReleaseRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    principal: str = Field(min_length=1)
    reason: str = Field(min_length=1)
    released_by: str = Field(min_length=1)


@logger.inject_lambda_context(clear_state=True)
@metrics.log_metrics
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
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
