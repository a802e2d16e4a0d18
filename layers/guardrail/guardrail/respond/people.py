"""What people do from Slack, carried out: Acknowledge, Release (alone, or asked and approved by two
people), Contain now. The worker of respond/interactions.py's queue (functions/release/app.py).

Each action is a conditional write on the incident's record with its audit record in the same
transaction, so a double click, a retried request or two people at once give one acknowledgement, one
release request and one release, and the others are told what happened instead. The IAM work is the CLI's
(`release`) and the responder's (Contain now, respond/manual.py); Slack is told afterwards, and a Slack
failure never undoes or blocks what was done.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from aws_lambda_powertools.metrics import MetricUnit

from guardrail.errors import ConfigurationError, GuardrailError
from guardrail.incident import RELEASABLE_STATUSES, Actor, Incident, IncidentStatus, iso_time
from guardrail.report.message import people_doc
from guardrail.report.slack import escape, mention
from guardrail.respond.release import release
from guardrail.telemetry import logger, metrics

if TYPE_CHECKING:
    from collections.abc import Callable

    from guardrail.report.slack_delivery import BotDelivery, SlackThreads
    from guardrail.respond.interactions import Gate, Intent, SlackJob
    from guardrail.respond.runtime import Runtime

_RELEASABLE = tuple(sorted(RELEASABLE_STATUSES))
_RELEASABLE_VALUES = {f":r{i}": s.value for i, s in enumerate(_RELEASABLE)}
_RELEASABLE_CONDITION = f"#s IN ({', '.join(_RELEASABLE_VALUES)})"
# What the worker needs beyond a release's: the signing secret and bot token, the queue, Contain now.
WORKER_PERMISSIONS = (
    "secretsmanager:GetSecretValue",
    "sqs:ReceiveMessage",
    "sqs:DeleteMessage",
    "sqs:GetQueueAttributes",
    "sqs:ChangeMessageVisibility",
    "lambda:InvokeFunction",
)
# Longer than the worker's timeout (60 s) and its retries: a release claim this old was abandoned.
RELEASE_CLAIM_TIMEOUT = timedelta(minutes=10)
# A click older than this (a stuck queue, a captured request) is not acted on: the incident moved on.
JOB_MAX_AGE = timedelta(hours=1)


@dataclass(frozen=True)
class PeopleSettings:
    approvals: int = 1  # 2: a release needs a second allowed person to approve it
    approval_window: timedelta = timedelta(minutes=60)
    responder_function: str | None = None  # Contain now runs there (respond/manual.py)

    @classmethod
    def from_env(cls, environ: dict[str, str] | None = None) -> PeopleSettings:
        env = os.environ if environ is None else environ
        problems = []
        approvals = env.get("GUARDRAIL_SLACK_RELEASE_APPROVALS", "1").strip()
        if approvals not in ("1", "2"):
            problems.append(f"GUARDRAIL_SLACK_RELEASE_APPROVALS: {approvals!r} is not 1 or 2")
        minutes = env.get("GUARDRAIL_SLACK_APPROVAL_MINUTES", "60").strip()
        if not minutes.isdigit() or not 1 <= int(minutes) <= 24 * 60:
            problems.append(f"GUARDRAIL_SLACK_APPROVAL_MINUTES: {minutes!r} is not 1 to 1440 minutes")
        if problems:
            raise ConfigurationError("invalid Slack actions configuration:\n  - " + "\n  - ".join(problems))
        return cls(
            int(approvals),
            timedelta(minutes=int(minutes)),
            env.get("GUARDRAIL_RESPONDER_FUNCTION", "").strip() or None,
        )


@dataclass
class People:
    """The worker's adapters, built once per container: the runtime (state, IAM, topic), the signing secret
    and the allow-list (checked again here), Slack (the bot's messages and threads), and the responder's
    Contain now."""

    rt: Runtime
    settings: PeopleSettings
    signing_secret: Callable[[], str]
    gate: Gate
    slack: Callable[[], BotDelivery]
    threads: Callable[[], SlackThreads]
    contain: Callable[[dict[str, Any]], dict[str, Any]]

    def run(self, queued: SlackJob) -> dict[str, Any]:
        """Carry out one queued click; returns what happened (logged, and the tests read it).

        The queue is not trusted: the request is verified again with the signing secret (a message anyone
        else put there releases nothing), read again, and its person checked against the allow-list again."""
        from guardrail.respond.interactions import intent_of, log_refusal

        request = queued.request
        now = self.rt.clock().timestamp()
        if not request.verified(self.signing_secret(), now, max_age=JOB_MAX_AGE.total_seconds()):
            metrics.add_metric(name="SlackJobsRefused", unit=MetricUnit.Count, value=1)
            logger.error("a queued Slack job is not signed by Slack, or too old: refused")
            return {"status": "refused", "why": "not signed by Slack, or older than an hour"}
        try:
            intent = intent_of(request)
        except ValueError as exc:
            return {"status": "refused", "why": f"malformed: {exc}"}
        if intent is None or intent.action == "open_release":
            return {"status": "ignored"}
        allowed, why = self.gate.allowed(intent.actor)
        if not allowed:
            log_refusal(intent, why)
            return {"status": "refused", "why": why}
        return self.act(intent)

    def act(self, job: Intent) -> dict[str, Any]:
        actor = job.actor
        incident = self.rt.store.records.get(job.incident_id)
        if incident is None:
            return self._told(job, "unknown", f"There is no incident `{escape(job.incident_id)}`.")
        logger.info(
            "Slack action", extra={"action": job.action, "incident_id": incident.id, "actor": actor.to_dict()}
        )
        if job.action == "acknowledge":
            return self.acknowledge(job, incident, actor)
        if job.action == "contain_now":
            return self.contain_now(job, incident, actor)
        if job.action == "approve_release":
            return self.approve(job, incident, actor)
        if self.settings.approvals == 2:
            return self.request_release(job, incident, actor)
        return self.release(job, incident, actor, job.reason or "", None)

    def acknowledge(self, job: Intent, incident: Incident, actor: Actor) -> dict[str, Any]:
        who = {**actor.to_dict(), "at": iso_time(self.rt.clock())}
        done = self.rt.store.acted(
            incident.id,
            "SET acknowledged = :who",
            "attribute_not_exists(acknowledged) AND #s <> :released",
            {":who": who, ":released": IncidentStatus.RELEASED.value},
            ("acknowledged", actor.display, {"actor": actor.to_dict(), "job": job.job_id}),
        )
        if not done:
            now = self.rt.store.records.get(incident.id) or incident
            if now.acknowledged and now.acknowledged.get("user_id") == actor.user_id:
                return {"status": "duplicate"}
            taken = f"by {mention(now.acknowledged)}" if now.acknowledged else f"({now.status.value})"
            return self._told(job, "duplicate", f"Incident `{incident.id}` is already taken {taken}.")
        metrics.add_metric(name="SlackAcknowledged", unit=MetricUnit.Count, value=1)
        self._show(incident.id, f":eyes: {mention(actor.to_dict())} acknowledged the incident and is on it.")
        return {"status": "acknowledged"}

    def request_release(self, job: Intent, incident: Incident, actor: Actor) -> dict[str, Any]:
        now = self.rt.clock()
        request = {**actor.to_dict(), "at": iso_time(now), "reason": job.reason or "", "job": job.job_id}
        done = self.rt.store.acted(
            incident.id,
            "SET release_request = :request",
            f"{_RELEASABLE_CONDITION} AND (attribute_not_exists(release_request) OR release_request.#at < :cutoff)",
            {
                ":request": request,
                ":cutoff": iso_time(now - self.settings.approval_window),
                **_RELEASABLE_VALUES,
            },
            (
                "release_requested",
                actor.display,
                {"actor": actor.to_dict(), "reason": job.reason, "job": job.job_id},
            ),
        )
        if not done:
            current = self.rt.store.records.get(incident.id) or incident
            pending = current.release_request
            if pending and pending.get("job") == job.job_id:
                return {"status": "duplicate"}
            if current.status not in _RELEASABLE:
                return self._told(
                    job, "refused", f"Incident `{incident.id}` is {current.status.value}: nothing to release."
                )
            assert pending is not None
            return self._told(
                job,
                "duplicate",
                f"{mention(pending)} already asked to release `{incident.id}`: a second person approves it "
                "with Approve release.",
            )
        metrics.add_metric(name="SlackReleaseRequested", unit=MetricUnit.Count, value=1)
        minutes = int(self.settings.approval_window.total_seconds() // 60)
        self._show(
            incident.id,
            f":hourglass: {mention(actor.to_dict())} asks to release the agent: {escape(job.reason or '')}\n"
            f"A second person on the on-call list approves with *Approve release* (within {minutes} minutes).",
        )
        return {"status": "release_requested"}

    def approve(self, job: Intent, incident: Incident, actor: Actor) -> dict[str, Any]:
        pending = incident.release_request
        if not pending:
            return self._told(job, "refused", f"No release of `{incident.id}` is waiting for approval.")
        if pending.get("user_id") == actor.user_id and pending.get("team_id") == actor.team_id:
            metrics.add_metric(name="SlackSelfApprovalsRefused", unit=MetricUnit.Count, value=1)
            logger.warning(
                "a release request approved by its requester: refused", extra={"actor": actor.to_dict()}
            )
            return self._told(
                job, "refused", "You asked for this release: a different person must approve it."
            )
        cutoff = iso_time(self.rt.clock() - self.settings.approval_window)
        if str(pending.get("at") or "") < cutoff:
            self.rt.store.acted(
                incident.id,
                "REMOVE release_request",
                "release_request.#at = :at",
                {":at": pending.get("at")},
                ("release_request_expired", actor.display, {"request": pending}),
            )
            self._show(
                incident.id, f":hourglass_flowing_sand: The release request by {mention(pending)} expired."
            )
            return self._told(job, "expired", "That release request expired: ask again with Release...")
        return self.release(job, incident, actor, str(pending.get("reason") or ""), pending)

    def release(
        self, job: Intent, incident: Incident, actor: Actor, reason: str, requested: dict[str, Any] | None
    ) -> dict[str, Any]:
        now = self.rt.clock()
        claimed = self.rt.store.acted(
            incident.id,
            "SET releasing = :job, releasing_at = :now",
            # The same job again (SQS redelivered it) goes on; another waits, unless the claim is older than
            # a worker can live (it died between the claim and the release, and its job was dropped).
            f"{_RELEASABLE_CONDITION} AND (attribute_not_exists(releasing) OR releasing = :job "
            "OR releasing_at < :stale)",
            {
                ":job": job.job_id,
                ":now": iso_time(now),
                ":stale": iso_time(now - RELEASE_CLAIM_TIMEOUT),
                **_RELEASABLE_VALUES,
            },
        )
        if not claimed:
            current = self.rt.store.records.get(incident.id) or incident
            if current.status is IncidentStatus.RELEASED:
                return self._told(
                    job, "duplicate", f"Already released by {escape(current.released_by or '?')}."
                )
            return self._told(job, "duplicate", f"A release of `{incident.id}` is already under way.")
        released_by = actor.display
        if requested is not None:
            released_by += f", approving slack:{requested.get('team_id')}/{requested.get('user_id')} (@{requested.get('name')})"
        evidence = {
            "via": "slack",
            "slack": actor.to_dict(),
            "job": job.job_id,
            "requested_by": requested,
        }
        try:
            released = release(
                incident.key, reason, released_by, self.rt, evidence=evidence, incident_id=incident.id
            )
        except GuardrailError as exc:  # ReleaseError, or a key no release can name
            self.rt.store.acted(incident.id, "REMOVE releasing", "releasing = :job", {":job": job.job_id})
            metrics.add_metric(name="SlackReleaseFailures", unit=MetricUnit.Count, value=1)
            logger.error("release from Slack failed", extra={"incident_id": incident.id, "error": str(exc)})
            self._reply(incident.id, f":x: Release by {mention(actor.to_dict())} failed: {escape(exc)}")
            return self._told(job, "failed", f"The release failed, nothing changed: {escape(exc)}")
        metrics.add_metric(name="SlackReleases", unit=MetricUnit.Count, value=1)
        # The release message (SNS, then the notifier) updates the post and its thread, as a CLI release does.
        return {"status": "released", "incident_id": released.id, "undone": len(released.release_actions)}

    def contain_now(self, job: Intent, incident: Incident, actor: Actor) -> dict[str, Any]:
        request = {"guardrail": "contain_now", "incident_id": incident.id, "actor": actor.to_dict()}
        try:
            result = self.contain(request)
        except Exception as exc:
            logger.exception("Contain now failed", extra={"incident_id": incident.id})
            metrics.add_metric(name="SlackContainFailures", unit=MetricUnit.Count, value=1)
            self._reply(incident.id, f":x: Contain now by {mention(actor.to_dict())} failed: {escape(exc)}")
            return {"status": "failed", "error": str(exc)}
        status, held = str(result.get("status")), result.get("incident_id")
        if status in ("contained", "dry_run", "not_containable"):
            metrics.add_metric(name="SlackContained", unit=MetricUnit.Count, value=1)
            self._show(
                incident.id,
                f":lock: {mention(actor.to_dict())} chose to contain the agent: {escape(status.replace('_', ' '))}, "
                f"incident `{escape(held or '?')}` (its own message follows).",
            )
            return result
        if status == "already":
            return {
                **result,
                **self._told(job, "already", f"Held already, by incident `{escape(held or '?')}`."),
            }
        self._reply(
            incident.id,
            f":no_entry: Contain now by {mention(actor.to_dict())}: {escape(result.get('reason') or status)}",
        )
        return {
            **result,
            **self._told(job, status, f"Not contained: {escape(result.get('reason') or status)}"),
        }

    # Slack: told after the fact; a failure here is logged and counted, never raised (the work is done).

    def _show(self, incident_id: str, note: str) -> None:
        try:
            thread = self.threads().get(incident_id)
            if thread is None or thread.message is None:
                logger.warning("no Slack post to update", extra={"incident_id": incident_id})
                return
            incident = self.rt.store.records.get(incident_id)
            message = dict(thread.message)
            if incident is not None:
                message["people"] = people_doc(incident)
            self.slack().show(incident_id, thread, message, note)
        except Exception:
            self._slack_failed(incident_id)

    def _reply(self, incident_id: str, text: str) -> None:
        try:
            thread = self.threads().get(incident_id)
            if thread is not None:
                self.slack().reply(thread, text)
        except Exception:
            self._slack_failed(incident_id)

    def _told(self, job: Intent, status: str, text: str) -> dict[str, Any]:
        try:
            channel = job.channel
            if channel is None:
                thread = self.threads().get(job.incident_id)
                channel = thread.channel if thread is not None else None
            if channel is not None:
                self.slack().tell(channel, job.actor.user_id, text)
        except Exception:
            self._slack_failed(job.incident_id)
        return {"status": status, "told": text}

    def _slack_failed(self, incident_id: str) -> None:
        metrics.add_metric(name="SlackFailures", unit=MetricUnit.Count, value=1)
        logger.exception("Slack could not be told", extra={"incident_id": incident_id})


def invoke_responder(function: str, lambda_client: Any) -> Callable[[dict[str, Any]], dict[str, Any]]:
    """Contain now, in the responder (its permissions, its path): invoked and waited for."""

    def contain(request: dict[str, Any]) -> dict[str, Any]:
        response = lambda_client.invoke(FunctionName=function, Payload=json.dumps(request).encode())
        body = json.loads(response["Payload"].read() or b"{}")
        if response.get("FunctionError"):
            raise RuntimeError(f"the responder failed: {body.get('errorType')}: {body.get('errorMessage')}")
        return dict(body)

    return contain
