"""Posting incident messages to Slack: an incoming webhook, or a bot token with one thread per incident.

The webhook URL or bot token is read from Secrets Manager through powertools Parameters (cached for five
minutes), never from an environment variable, and never logged: errors name the mode and the HTTP status
or Slack error code, not the secret. A failure raises SlackDeliveryError so the notifier's invocation
fails, Lambda retries it, and the failure destination keeps it; the SNS email path never depends on Slack.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from guardrail.errors import ConfigurationError, GuardrailError
from guardrail.report.message import outcome_label
from guardrail.report.slack import escape, render

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient

SECRET_MAX_AGE_SECONDS = 300
# What the notifier needs: its secret, and in bot mode each incident's thread in the state table.
NOTIFIER_PERMISSIONS = ("secretsmanager:GetSecretValue", "dynamodb:GetItem", "dynamodb:PutItem")
TIMEOUT_SECONDS = 5


class SlackDeliveryError(GuardrailError):
    """Slack did not take the message (after slack_sdk's retries). The text never contains the secret."""


@dataclass(frozen=True)
class SlackSettings:
    mode: str  # webhook | bot
    secret_arn: str
    channel: str | None = None  # bot mode: where incidents are posted
    state_table: str | None = None  # bot mode: where each incident's thread is remembered
    api_url: str | None = None  # Slack's API base URL; only ever changed for tests or GovSlack
    actions: bool = False  # bot mode with the interactivity endpoint: messages carry the people's buttons

    @classmethod
    def from_env(cls, environ: dict[str, str] | None = None) -> SlackSettings:
        env = os.environ if environ is None else environ
        problems = []
        mode = env.get("GUARDRAIL_SLACK_MODE", "webhook").strip().lower()
        if mode not in {"webhook", "bot"}:
            problems.append(f"GUARDRAIL_SLACK_MODE: {mode!r} is not webhook or bot")
        secret = env.get("GUARDRAIL_SLACK_SECRET_ARN", "").strip()
        if not secret:
            problems.append(
                "GUARDRAIL_SLACK_SECRET_ARN: not set (the secret holding the webhook URL or bot token)"
            )
        channel = env.get("GUARDRAIL_SLACK_CHANNEL", "").strip() or None
        table = env.get("GUARDRAIL_STATE_TABLE", "").strip() or None
        if mode == "bot" and not channel:
            problems.append("GUARDRAIL_SLACK_CHANNEL: bot mode needs the channel id to post in")
        if mode == "bot" and not table:
            problems.append("GUARDRAIL_STATE_TABLE: bot mode keeps each incident's thread there")
        actions = env.get("GUARDRAIL_SLACK_ACTIONS", "false").strip().lower()
        if actions not in {"true", "false"}:
            problems.append(f"GUARDRAIL_SLACK_ACTIONS: {actions!r} is not true or false")
        if actions == "true" and mode != "bot":
            problems.append(
                "GUARDRAIL_SLACK_ACTIONS: buttons need bot mode (an incoming webhook cannot carry them)"
            )
        if problems:
            raise ConfigurationError("invalid Slack configuration:\n  - " + "\n  - ".join(problems))
        api_url = env.get("GUARDRAIL_SLACK_API_URL", "").strip() or None
        return cls(mode, secret, channel, table, api_url, actions == "true")


def read_secret(arn: str, key: str) -> str:
    """The webhook URL or bot token: the secret's whole string, or one key of a JSON secret."""
    from aws_lambda_powertools.utilities import parameters

    value = str(parameters.get_secret(arn, max_age=SECRET_MAX_AGE_SECONDS))
    if value.lstrip().startswith("{"):
        try:
            decoded = json.loads(value)
        except json.JSONDecodeError:
            raise ConfigurationError(f"the Slack secret is not valid JSON (expected a {key!r} key)") from None
        if not isinstance(decoded, dict) or not decoded.get(key):
            raise ConfigurationError(f"the Slack secret has no {key!r} key")
        value = str(decoded[key])
    return value.strip()


class _Redact(logging.Filter):
    """Removes secrets from every record slack_sdk logs (it logs request URLs, and a webhook's URL is the
    secret), whatever the level, before any handler formats it."""

    def __init__(self) -> None:
        super().__init__()
        self.secrets: set[str] = set()

    def filter(self, record: logging.LogRecord) -> bool:
        text = record.getMessage()
        hits = [s for s in self.secrets if s in text]
        if hits:
            for secret in hits:
                text = text.replace(secret, "[redacted]")
            record.msg, record.args = text, ()
        return True


_REDACT = _Redact()
_SDK_LOGGER = logging.getLogger("guardrail.slack_sdk")
_SDK_LOGGER.addFilter(_REDACT)


def _redacting_logger(secret: str) -> logging.Logger:
    """The logger slack_sdk clients get: ours, never printing `secret`."""
    if secret:
        _REDACT.secrets.add(secret)
    return _SDK_LOGGER


def redact(text: str, secret: str) -> str:
    return text.replace(secret, "[redacted]") if secret else text


def _retry_handlers() -> list[Any]:
    from slack_sdk.http_retry.builtin_handlers import (
        ConnectionErrorRetryHandler,
        RateLimitErrorRetryHandler,
        ServerErrorRetryHandler,
    )

    # 429 waits for Retry-After; 5xx and dropped connections get a couple of backed-off retries.
    return [
        RateLimitErrorRetryHandler(max_retry_count=2),
        ServerErrorRetryHandler(max_retry_count=2),
        ConnectionErrorRetryHandler(max_retry_count=2),
    ]


class WebhookDelivery:
    """Every message a new post: webhooks cannot thread or edit."""

    def __init__(self, url: str, timeout: int = TIMEOUT_SECONDS) -> None:
        from slack_sdk.webhook import WebhookClient

        self._url = url
        self._client = WebhookClient(
            url, timeout=timeout, retry_handlers=_retry_handlers(), logger=_redacting_logger(url)
        )

    def deliver(self, message: dict[str, Any]) -> dict[str, Any]:
        payload = render(message)
        try:
            response = self._client.send(text=payload["text"], blocks=payload["blocks"])
        except OSError as exc:  # timeouts and refused connections, after the retries
            problem = redact(f"{type(exc).__name__}: {exc}", self._url)
            raise SlackDeliveryError(f"Slack webhook unreachable: {problem}") from None
        if response.status_code != 200:
            body = redact(str(response.body)[:200], self._url)
            raise SlackDeliveryError(f"Slack webhook answered {response.status_code}: {body}")
        return {"mode": "webhook", "posted": True}


@dataclass(frozen=True)
class Thread:
    """Where an incident lives in Slack, and the message its first post shows now (re-rendered when people
    act on it: Acknowledge, a release request)."""

    channel: str
    ts: str
    message: dict[str, Any] | None = None


class SlackThreads:
    """Each incident's Slack thread (channel and message ts) and the message it shows, in the state table."""

    def __init__(self, client: DynamoDBClient, table: str) -> None:
        self._db, self._table = client, table

    def _key(self, incident_id: str) -> Any:
        return {"pk": {"S": f"INCIDENT#{incident_id}"}, "sk": {"S": "SLACK"}}

    def get(self, incident_id: str) -> Thread | None:
        item = self._db.get_item(TableName=self._table, Key=self._key(incident_id), ConsistentRead=True).get(
            "Item"
        )
        if not item:
            return None
        shown = item.get("message", {}).get("S")
        return Thread(item["channel"]["S"], item["ts"]["S"], json.loads(shown) if shown else None)

    def put(self, incident_id: str, channel: str, ts: str, message: dict[str, Any] | None = None) -> None:
        item = {**self._key(incident_id), "channel": {"S": channel}, "ts": {"S": ts}}
        if message is not None:
            # Bounded: SNS carried it (256 KB at most), an item holds 400 KB.
            item["message"] = {"S": json.dumps(message, separators=(",", ":"))}
        self._db.put_item(TableName=self._table, Item=item)


class BotDelivery:
    """The first message of an incident is a post; later updates are replies in its thread, and a change
    of status (contained after a failure, released) also updates the first message in place."""

    def __init__(
        self,
        token: str,
        channel: str,
        threads: SlackThreads,
        api_url: str | None = None,
        *,
        actions: bool = False,
    ) -> None:
        self._client = web_client(token, api_url)
        self._token, self._channel, self._threads, self._actions = token, channel, threads, actions

    def _call(self, method: str, **kwargs: Any) -> Any:
        from slack_sdk.errors import SlackApiError

        try:
            return getattr(self._client, method)(**kwargs)
        except SlackApiError as exc:
            error = exc.response.get("error") if exc.response is not None else None
            status = exc.response.status_code if exc.response is not None else "?"
            raise SlackDeliveryError(f"Slack {method} failed: HTTP {status}, error {error}") from None
        except OSError as exc:
            problem = redact(f"{type(exc).__name__}: {exc}", self._token)
            raise SlackDeliveryError(f"Slack {method} unreachable: {problem}") from None

    def deliver(self, message: dict[str, Any]) -> dict[str, Any]:
        payload = render(message, actions=self._actions)
        incident_id = message.get("incident_id")
        thread = self._threads.get(incident_id) if incident_id else None
        if thread is None:
            response = self._call("chat_postMessage", channel=self._channel, **payload)
            if incident_id:
                self._threads.put(incident_id, str(response["channel"]), str(response["ts"]), message)
            return {"mode": "bot", "posted": str(response["ts"])}
        channel, ts = thread.channel, thread.ts
        if message["kind"] in ("update", "damage"):
            self._call("chat_postMessage", channel=channel, thread_ts=ts, **payload)
            return {"mode": "bot", "replied": ts}
        assert incident_id is not None  # a thread is found only by its incident
        note = f"Status: *{escape(outcome_label(message))}*. {escape(message.get('reason') or '')}"
        self._updated(incident_id, thread, message, payload, note)
        return {"mode": "bot", "updated": ts}

    def show(self, incident_id: str, thread: Thread, message: dict[str, Any], note: str | None) -> None:
        """The first post re-rendered (people acted on it), and what they did as a reply in its thread."""
        self._updated(incident_id, thread, message, render(message, actions=self._actions), note)

    def _updated(
        self,
        incident_id: str,
        thread: Thread,
        message: dict[str, Any],
        payload: dict[str, Any],
        note: str | None,
    ) -> None:
        """The first post edited in place, the message it now shows kept, and a note in its thread."""
        self._call("chat_update", channel=thread.channel, ts=thread.ts, **payload)
        self._threads.put(incident_id, thread.channel, thread.ts, message)
        if note:
            self._call("chat_postMessage", channel=thread.channel, thread_ts=thread.ts, text=note)

    def reply(self, thread: Thread, text: str) -> None:
        self._call("chat_postMessage", channel=thread.channel, thread_ts=thread.ts, text=text)

    def tell(self, channel: str, user: str, text: str) -> None:
        """A message only `user` sees (a refusal, or why nothing happened)."""
        self._call("chat_postEphemeral", channel=channel, user=user, text=text)


def web_client(token: str, api_url: str | None = None) -> Any:
    """slack_sdk's Web API client, with our timeout and retries (and a test or GovSlack base URL)."""
    from slack_sdk import WebClient

    kwargs: dict[str, Any] = {"token": token, "timeout": TIMEOUT_SECONDS, "retry_handlers": _retry_handlers()}
    if api_url:
        kwargs["base_url"] = api_url
    return WebClient(**kwargs)


def delivery(
    settings: SlackSettings, dynamodb: DynamoDBClient | None = None
) -> WebhookDelivery | BotDelivery:
    if settings.mode == "webhook":
        return WebhookDelivery(read_secret(settings.secret_arn, "webhook_url"))
    assert settings.channel is not None
    assert settings.state_table is not None
    assert dynamodb is not None
    token = read_secret(settings.secret_arn, "bot_token")
    return BotDelivery(
        token,
        settings.channel,
        SlackThreads(dynamodb, settings.state_table),
        settings.api_url,
        actions=settings.actions,
    )


def message_from_sns(record: Any) -> dict[str, Any]:
    """The incident message inside one SNS record, checked enough to render safely."""
    from guardrail.errors import InvalidEventError
    from guardrail.report.message import SCHEMA

    try:
        body = record["Sns"]["Message"]
        message = json.loads(body)
    except (KeyError, TypeError, json.JSONDecodeError) as exc:
        raise InvalidEventError(
            f"not an SNS record with a JSON message ({type(exc).__name__}: {exc})"
        ) from None
    if not isinstance(message, dict) or message.get("schema") != SCHEMA:
        raise InvalidEventError(f"SNS message is not a {SCHEMA} document")
    if message.get("version") != 1:
        raise InvalidEventError(
            f"unsupported {SCHEMA} version {message.get('version')!r}; this notifier reads 1"
        )
    return message
