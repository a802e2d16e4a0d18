"""Release: after investigation, undo exactly what the containment added, and audit who and why."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from aws_lambda_powertools.metrics import MetricUnit

from guardrail.errors import GuardrailError
from guardrail.report.message import release_message
from guardrail.respond.containment import ActionRecord, Target, undo_records
from guardrail.telemetry import logger, metrics

if TYPE_CHECKING:
    from guardrail.incident import Incident
    from guardrail.respond.runtime import Runtime


class ReleaseError(GuardrailError):
    """A release that cannot be done: no reason, nothing contained, or an undo that failed."""


def release(
    principal: str,
    reason: str,
    released_by: str,
    rt: Runtime,
    *,
    evidence: dict[str, Any] | None = None,
    incident_id: str | None = None,
) -> Incident:
    """Undo exactly what the containment added, after investigation, and audit who and why.

    `released_by` is who the caller says released; `evidence` is what the platform can vouch for next to it
    (the caller's identity from STS for the CLI; for the release function, the Lambda request id, which
    CloudTrail's Lambda data events tie to the identity that invoked it; from Slack, the signed request's
    team and user ids). Both go into the audit record. `incident_id`: release only if this incident is the
    one holding the principal (a button on an old incident's message must not release a newer one)."""
    if not reason or not reason.strip():
        raise ReleaseError("a reason is required: say why it is safe for this principal to act again")
    if not released_by or not released_by.strip():
        raise ReleaseError("released_by is required: who is releasing")
    target = Target.from_arn(principal)
    store = rt.store
    held = store.records.open_for(target.key)
    if held is None:
        raise ReleaseError(f"{target.key} is not contained: there is no open incident for it")
    if incident_id is not None and held.incident_id != incident_id:
        raise ReleaseError(f"{target.key} is held by incident {held.incident_id} now, not by {incident_id}")
    incident = store.records.get(held.incident_id)
    if incident is None:
        raise ReleaseError(f"incident {held.incident_id} holds {target.key} but its record is missing")
    records = [ActionRecord.from_item(a) for a in incident.actions if not a.get("details", {}).get("dry_run")]
    iam = rt.iam_for(target.account)
    if records and iam is None:
        raise ReleaseError(f"{target.key} is in account {target.account}, which this responder cannot reach")
    try:
        undone = undo_records(records, iam, rt.identity_center_admin) if records and iam is not None else []
    except Exception as exc:
        store.audit.record(incident.id, "release_failed", released_by, {"reason": reason, "error": str(exc)})
        raise ReleaseError(f"release of {target.key} failed, it stays contained: {exc}") from exc
    store.close(incident, released_by.strip(), reason.strip(), [u.to_item() for u in undone], evidence)
    # Counts from before the release would re-contain on the agent's next refused call.
    store.windows.forget(target.key)
    metrics.add_metric(name="Released", unit=MetricUnit.Count, value=1)
    released = store.records.get(incident.id)
    assert released is not None
    try:
        rt.publish(release_message(released, rt.settings.runbook_url))
    except (
        Exception
    ):  # the release is done and audited: a failed announcement must not read as a failed release
        logger.exception("released, but the release notification failed")
    logger.warning(
        "principal released", extra={"incident_id": incident.id, "released_by": released_by, "reason": reason}
    )
    return released
