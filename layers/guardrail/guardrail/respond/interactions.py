"""Slack's interactivity requests (the people's buttons): verified, parsed, allowed or refused, answered
within Slack's three seconds, and the work queued for respond/people.py.

The endpoint is public by nature (a Lambda function URL Slack posts to), so the order is the defence:
1. size, method and headers, with no AWS call at all (400, or 401 for a missing signature);
2. the signature, with slack_sdk's own verifier over the raw body exactly as received (v0 HMAC-SHA256 of
   `v0:{timestamp}:{body}`, constant-time comparison, timestamps more than five minutes off refused): the
   signing secret is the only AWS read an unsigned or replayed request can cause (401);
3. the form body and its `payload` JSON, typed (400);
4. who: an allow-list of Slack user ids or a user group. Anyone else is told so, only they see it; logged
   and counted (SlackActionsRefused);
5. the work itself is not done here: Acknowledge, a release and Contain now go on a queue for the worker,
   which holds the IAM and table permissions this function never gets. Release... opens the reason modal
   here (Slack's trigger_id expires in three seconds).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import os
import re
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal, Protocol
from urllib.parse import parse_qs

from aws_lambda_powertools.metrics import MetricUnit
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from guardrail.errors import ConfigurationError
from guardrail.incident import INCIDENT_ID_PATTERN, Actor
from guardrail.report.slack import (
    ACKNOWLEDGE,
    APPROVE_RELEASE,
    CONTAIN_NOW,
    REASON_BLOCK,
    REASON_INPUT,
    REASON_LIMIT,
    RELEASE,
    RELEASE_VIEW,
    SLACK_ID,
    release_modal,
)
from guardrail.telemetry import logger, metrics

if TYPE_CHECKING:
    from collections.abc import Callable

# Slack's interaction payloads carry the message they came from (ours are bounded far below this);
# anything larger is not Slack's, and is refused before its signature is computed. The queue carries the
# request whole (SQS takes 256 KiB), so the worker can verify it again.
MAX_BODY_BYTES = 128 * 1024
STALE_SECONDS = 5 * 60  # slack_sdk's verifier: a timestamp further than this from now is refused
GROUP_CACHE_SECONDS = 300
INCIDENT_ID = re.compile(INCIDENT_ID_PATTERN)
TEAM_ID = re.compile(r"^[TE][A-Z0-9]{2,30}$")
QUEUED_ACTIONS = {ACKNOWLEDGE: "acknowledge", APPROVE_RELEASE: "approve_release", CONTAIN_NOW: "contain_now"}
# What the endpoint needs: its secret (signing secret, and the bot token for modals and refusals), the queue.
ENDPOINT_PERMISSIONS = ("secretsmanager:GetSecretValue", "sqs:SendMessage")


@dataclass(frozen=True)
class InteractionSettings:
    secret_arn: str
    queue_url: str
    allowed_users: frozenset[str]
    allowed_group: str | None
    api_url: str | None = None

    @classmethod
    def from_env(cls, environ: dict[str, str] | None = None, *, queue: bool = True) -> InteractionSettings:
        """`queue`: the endpoint's (it queues the work); the worker reads the same settings without it."""
        env = os.environ if environ is None else environ
        problems = []
        secret = env.get("GUARDRAIL_SLACK_SECRET_ARN", "").strip()
        if not secret:
            problems.append(
                "GUARDRAIL_SLACK_SECRET_ARN: not set (the secret with signing_secret and bot_token)"
            )
        queue_url = env.get("GUARDRAIL_SLACK_ACTIONS_QUEUE_URL", "").strip()
        if not queue_url and queue:
            problems.append("GUARDRAIL_SLACK_ACTIONS_QUEUE_URL: not set (where the work goes)")
        users = frozenset(
            u.strip() for u in env.get("GUARDRAIL_SLACK_ALLOWED_USERS", "").split(",") if u.strip()
        )
        bad = sorted(u for u in users if not SLACK_ID.match(u))
        if bad:
            problems.append(
                f"GUARDRAIL_SLACK_ALLOWED_USERS: {', '.join(bad)} are not Slack user ids (U... or W...)"
            )
        group = env.get("GUARDRAIL_SLACK_ALLOWED_GROUP", "").strip() or None
        if group is not None and not re.match(r"^S[A-Z0-9]{2,30}$", group):
            problems.append(f"GUARDRAIL_SLACK_ALLOWED_GROUP: {group!r} is not a user group id (S...)")
        if not users and group is None:
            problems.append(
                "GUARDRAIL_SLACK_ALLOWED_USERS / GUARDRAIL_SLACK_ALLOWED_GROUP: nobody would be allowed to act"
            )
        if problems:
            raise ConfigurationError("invalid Slack actions configuration:\n  - " + "\n  - ".join(problems))
        return cls(secret, queue_url, users, group, env.get("GUARDRAIL_SLACK_API_URL", "").strip() or None)


class SignedRequest(BaseModel):
    """A request exactly as Slack signed it: what the queue carries, so the worker verifies it again and
    trusts nothing the endpoint (or anyone able to write to the queue) says about it."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    body: str = Field(max_length=MAX_BODY_BYTES)
    timestamp: str = Field(pattern=r"^\d{1,12}$")
    signature: str = Field(pattern=r"^v0=[0-9a-f]{64}$")
    content_type: str = Field(max_length=200)

    @property
    def job_id(self) -> str:
        """One per signed request: Slack's retry of a request is the same job, a second click is not."""
        return hashlib.sha256(f"{self.timestamp}:{self.body}".encode()).hexdigest()[:32]

    def verified(self, secret: str, now: float, max_age: float = STALE_SECONDS) -> bool:
        """slack_sdk's verifier (v0 HMAC-SHA256, constant-time comparison), with the request no older than
        `max_age` (the endpoint: Slack's five minutes; the worker: JOB_MAX_AGE, the queue's delay)."""
        from slack_sdk.signature import SignatureVerifier

        if abs(now - int(self.timestamp)) > max_age:
            return False
        # The age is checked above; the verifier's own five-minute check is given the request's time.
        verifier = SignatureVerifier(secret, clock=_clock(lambda: float(self.timestamp)))
        return verifier.is_valid(self.body, self.timestamp, self.signature)


class SlackJob(BaseModel):
    """One person's click or submission, queued for the worker (respond/people.py)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    request: SignedRequest
    received_at: float


@dataclass(frozen=True)
class Intent:
    """What a verified interaction asks for."""

    action: Literal["acknowledge", "release", "approve_release", "contain_now", "open_release"]
    incident_id: str
    actor: Actor
    job_id: str
    reason: str | None = None
    channel: str | None = None
    trigger_id: str | None = None


# The parts of Slack's payloads the endpoint reads; everything else is ignored, not trusted.
class _User(BaseModel):
    id: str = Field(pattern=SLACK_ID.pattern)
    team_id: str | None = None
    username: str | None = Field(default=None, max_length=200)
    name: str | None = Field(default=None, max_length=200)


class _Team(BaseModel):
    id: str = Field(pattern=TEAM_ID.pattern)


class _Channel(BaseModel):
    id: str = Field(pattern=r"^[CDG][A-Z0-9]{2,30}$")


class _Action(BaseModel):
    action_id: str = Field(max_length=255)
    value: str | None = Field(default=None, max_length=2000)


class _View(BaseModel):
    callback_id: str = Field(default="", max_length=255)
    private_metadata: str = Field(default="", max_length=3000)
    state: dict[str, Any] = Field(default_factory=dict)


class Interaction(BaseModel):
    type: str = Field(max_length=64)
    user: _User
    team: _Team
    channel: _Channel | None = None
    trigger_id: str | None = Field(default=None, max_length=255)
    actions: list[_Action] = Field(default_factory=list, max_length=25)
    view: _View | None = None

    @property
    def actor(self) -> Actor:
        name = self.user.username or self.user.name or self.user.id
        return Actor(self.team.id, self.user.id, name)


@dataclass(frozen=True)
class Answer:
    """The HTTP answer a function URL returns."""

    status: int
    body: dict[str, Any] | None = None
    why: str = ""

    def to_response(self) -> dict[str, Any]:
        body = json.dumps(self.body) if self.body is not None else ""
        if self.status >= 400:
            body = json.dumps({"error": self.why})
        return {"statusCode": self.status, "headers": {"Content-Type": "application/json"}, "body": body}


class Slack(Protocol):
    def open_modal(self, trigger_id: str, view: dict[str, Any]) -> None: ...
    def tell(self, channel: str, user: str, text: str) -> None: ...
    def group_members(self, group: str) -> frozenset[str]: ...


@dataclass
class Gate:
    """Who may act: the allow-list of user ids, or the members of one user group (read from Slack, cached
    five minutes per container; when it cannot be read, nobody from the group may act). The endpoint asks
    before queueing, the worker again before acting."""

    settings: InteractionSettings
    slack: Callable[[], Slack]
    clock: Callable[[], float] = time.time
    _groups: dict[str, tuple[float, frozenset[str]]] = field(default_factory=dict)

    def allowed(self, actor: Actor) -> tuple[bool, str]:
        if actor.user_id in self.settings.allowed_users:
            return True, "allow-list"
        group = self.settings.allowed_group
        if group is None:
            return False, "not in GUARDRAIL_SLACK_ALLOWED_USERS"
        cached = self._groups.get(group)
        if cached is None or self.clock() - cached[0] > GROUP_CACHE_SECONDS:
            try:
                cached = (self.clock(), self.slack().group_members(group))
            except Exception as exc:  # fail closed: nobody acts on an unknown membership
                logger.error("could not read the allowed user group", extra={"error": str(exc)})
                return False, "the allowed user group could not be read"
            self._groups[group] = cached
        if actor.user_id in cached[1]:
            return True, f"user group {group}"
        return False, f"not in GUARDRAIL_SLACK_ALLOWED_USERS nor user group {group}"


@dataclass
class Endpoint:
    """The endpoint's adapters, built once per container (functions/slack_actions/app.py): the signing
    secret (read through powertools Parameters, cached), Slack's Web API, the queue."""

    settings: InteractionSettings
    signing_secret: Callable[[], str]
    slack: Callable[[], Slack]
    enqueue: Callable[[SlackJob], None]
    clock: Callable[[], float] = time.time
    gate: Gate | None = None

    def __post_init__(self) -> None:
        if self.gate is None:
            self.gate = Gate(self.settings, self.slack, self.clock)

    def allowed(self, actor: Actor) -> tuple[bool, str]:
        assert self.gate is not None
        return self.gate.allowed(actor)


def _refused(status: int, why: str, **extra: Any) -> Answer:
    metrics.add_metric(name="SlackRequestsRefused", unit=MetricUnit.Count, value=1)
    logger.warning("Slack request refused", extra={"status": status, "why": why, **extra})
    return Answer(status, why=why)


def raw_body(event: dict[str, Any]) -> bytes | None:
    """The body exactly as Slack sent it: function URLs may hand it over base64-encoded."""
    body = event.get("body")
    if body is None:
        return b""
    if not isinstance(body, str):
        return None
    if event.get("isBase64Encoded"):
        try:
            return base64.b64decode(body, validate=True)
        except (binascii.Error, ValueError):
            return None
    return body.encode("utf-8")


def handle_request(event: object, endpoint: Endpoint) -> Answer:
    """One request from Slack (a function URL event, payload format 2.0) to its answer."""
    if not isinstance(event, dict):
        return _refused(400, "not a function URL request")
    method = ((event.get("requestContext") or {}).get("http") or {}).get("method")
    if method != "POST":
        return _refused(400, f"method {str(method)[:10]!r}: Slack posts")
    body = event.get("body")
    if isinstance(body, str) and len(body) > MAX_BODY_BYTES * 4 // 3 + 4:
        return _refused(400, "request too large")
    raw = raw_body(event)
    if raw is None:
        return _refused(400, "body is not text or valid base64")
    if len(raw) > MAX_BODY_BYTES:
        return _refused(400, "request too large")
    headers = {str(k).lower(): str(v) for k, v in (event.get("headers") or {}).items()}
    timestamp, signature = headers.get("x-slack-request-timestamp", ""), headers.get("x-slack-signature", "")
    if not re.fullmatch(r"\d{1,12}", timestamp) or not re.fullmatch(r"v0=[0-9a-f]{64}", signature):
        return _refused(401, "no Slack signature")
    if abs(endpoint.clock() - int(timestamp)) > STALE_SECONDS:
        # slack_sdk's verifier refuses it too; said first, so the log tells replays from forgeries, and
        # before the secret is read: a replayed request costs no AWS call.
        return _refused(401, "stale timestamp (a replay, or a clock more than five minutes off)")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        return _refused(400, "body is not UTF-8")
    request = SignedRequest(
        body=text,
        timestamp=timestamp,
        signature=signature,
        content_type=headers.get("content-type", "")[:200],
    )
    if not request.verified(endpoint.signing_secret(), endpoint.clock()):
        return _refused(401, "bad signature")
    try:
        intent = intent_of(request)
    except ValueError as exc:
        return _refused(400, f"malformed: {exc}")
    if intent is None:
        return Answer(200)  # a link button, a closed modal, a shortcut: acknowledged, nothing to do
    return _answer(intent, request, endpoint)


def _clock(now: Callable[[], float]) -> Any:
    """slack_sdk's verifier asks its clock for now()."""
    from slack_sdk.signature import Clock

    class _Now(Clock):
        def now(self) -> float:
            return now()

    return _Now()


def _interaction(text: str, content_type: str) -> Interaction:
    if not content_type.lower().startswith("application/x-www-form-urlencoded"):
        raise ValueError(f"content type {content_type[:80]!r}, not a form")
    try:
        form = parse_qs(text, strict_parsing=True, max_num_fields=10)
    except ValueError:
        raise ValueError("not a form body") from None
    payloads = form.get("payload") or []
    if len(payloads) != 1:
        raise ValueError("expected exactly one payload field")
    try:
        return Interaction.model_validate_json(payloads[0])
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(map(str, first["loc"])) or "payload"
        raise ValueError(f"payload {where}: {first['msg']}") from None


def intent_of(request: SignedRequest) -> Intent | None:
    """What a verified request asks for; None for an interaction that asks nothing of us. Raises
    ValueError for a malformed one. Pure: the endpoint and the worker read a request the same way."""
    interaction = _interaction(request.body, request.content_type)
    actor, job_id = interaction.actor, request.job_id
    if interaction.type == "block_actions" and interaction.actions:
        action = interaction.actions[0]
        if action.action_id not in (*QUEUED_ACTIONS, RELEASE):
            return None  # a link button: Slack tells the app of every click
        incident_id = action.value or ""
        if not INCIDENT_ID.match(incident_id):
            raise ValueError("the button names no incident")
        channel = interaction.channel.id if interaction.channel else None
        if action.action_id == RELEASE:
            if not interaction.trigger_id:
                raise ValueError("no trigger_id to open the reason modal")
            return Intent(
                "open_release", incident_id, actor, job_id, channel=channel, trigger_id=interaction.trigger_id
            )
        kind = QUEUED_ACTIONS[action.action_id]
        return Intent(kind, incident_id, actor, job_id, channel=channel)  # type: ignore[arg-type]
    if interaction.type == "view_submission" and interaction.view is not None:
        view = interaction.view
        if view.callback_id != RELEASE_VIEW:
            return None
        if not INCIDENT_ID.match(view.private_metadata):
            raise ValueError("the modal names no incident")
        return Intent("release", view.private_metadata, actor, job_id, reason=_reason(view.state))
    return None


def _answer(intent: Intent, request: SignedRequest, endpoint: Endpoint) -> Answer:
    allowed, why = endpoint.allowed(intent.actor)
    if not allowed:
        log_refusal(intent, why)
        if intent.action == "release":
            return Answer(200, _errors("You are not allowed to release agents from Slack. This was logged."))
        if intent.channel is not None:
            try:
                endpoint.slack().tell(intent.channel, intent.actor.user_id, NOT_ALLOWED)
            except Exception:
                logger.exception("could not tell a refused user")
        return Answer(200)
    if intent.action == "open_release":
        assert intent.trigger_id is not None
        endpoint.slack().open_modal(intent.trigger_id, release_modal(intent.incident_id))
        return Answer(200)
    if intent.action == "release" and not intent.reason:
        return Answer(200, _errors("A reason is required: what you found, and why it is safe."))
    endpoint.enqueue(SlackJob(request=request, received_at=endpoint.clock()))
    metrics.add_metric(name="SlackActionsQueued", unit=MetricUnit.Count, value=1)
    logger.info(
        "Slack action queued",
        extra={"action": intent.action, "incident_id": intent.incident_id, "actor": intent.actor.to_dict()},
    )
    return Answer(200)


NOT_ALLOWED = (
    "You are not allowed to act on Guardrail incidents from Slack; the on-call list is "
    "(GUARDRAIL_SLACK_ALLOWED_USERS or the allowed user group). This attempt was logged."
)


def log_refusal(intent: Intent, why: str) -> None:
    metrics.add_metric(name="SlackActionsRefused", unit=MetricUnit.Count, value=1)
    logger.warning(
        "Slack action refused: user not allowed",
        extra={
            "actor": intent.actor.to_dict(),
            "action": intent.action,
            "incident_id": intent.incident_id,
            "why": why,
        },
    )


def _errors(text: str) -> dict[str, Any]:
    return {"response_action": "errors", "errors": {REASON_BLOCK: text}}


def _reason(state: dict[str, Any]) -> str:
    value = ((state.get("values") or {}).get(REASON_BLOCK) or {}).get(REASON_INPUT) or {}
    text = value.get("value") if isinstance(value, dict) else None
    return text.strip()[:REASON_LIMIT] if isinstance(text, str) else ""


class WebSlack:
    """The Slack calls the endpoint makes, with the bot token: open the reason modal, tell one person,
    read the allowed user group."""

    def __init__(self, token: str, api_url: str | None = None) -> None:
        from guardrail.report.slack_delivery import web_client

        self._client = web_client(token, api_url)

    def open_modal(self, trigger_id: str, view: dict[str, Any]) -> None:
        self._client.views_open(trigger_id=trigger_id, view=view)

    def tell(self, channel: str, user: str, text: str) -> None:
        self._client.chat_postEphemeral(channel=channel, user=user, text=text)

    def group_members(self, group: str) -> frozenset[str]:
        response = self._client.usergroups_users_list(usergroup=group)
        return frozenset(str(u) for u in response.get("users") or [])
