"""Requests exactly as Slack sends them to an interactivity URL, delivered as a Lambda function URL event.

Slack posts `application/x-www-form-urlencoded` with one field, `payload`, holding the interaction's JSON,
and signs `v0:{X-Slack-Request-Timestamp}:{raw body}` with HMAC-SHA256 under the app's signing secret
(https://docs.slack.dev/authentication/verifying-requests-from-slack/). The signature here is computed by
hand with hmac, not with slack_sdk, so the test does not check slack_sdk against itself.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from typing import Any
from urllib.parse import quote_plus

SIGNING_SECRET = "8f742231b10e8888abcd99yez67291bc"  # noqa: S105  (a test value, Slack's documented format)
TEAM = "T0GUARD01"
ALICE, BOB, MALLORY = "U0ALICE01", "U0BOB0002", "U0MALLORY"


def form_body(payload: dict[str, Any]) -> str:
    """The body Slack sends: payload=<url-encoded JSON>."""
    return "payload=" + quote_plus(json.dumps(payload, separators=(",", ":")))


def signature(body: str, timestamp: str, secret: str = SIGNING_SECRET) -> str:
    digest = hmac.new(secret.encode(), f"v0:{timestamp}:{body}".encode(), hashlib.sha256).hexdigest()
    return f"v0={digest}"


def function_url_event(
    body: str,
    *,
    timestamp: str | None = None,
    secret: str = SIGNING_SECRET,
    sign: str | None = None,
    base64_body: bool = False,
    method: str = "POST",
    content_type: str = "application/x-www-form-urlencoded",
) -> dict[str, Any]:
    """A Lambda function URL event (payload format 2.0) carrying `body` as Slack signed it."""
    timestamp = timestamp or str(int(time.time()))
    headers = {
        "content-type": content_type,
        "x-slack-request-timestamp": timestamp,
        "x-slack-signature": sign if sign is not None else signature(body, timestamp, secret),
        "user-agent": "Slackbot 1.0 (+https://api.slack.com/robots)",
        "host": "abc123.lambda-url.us-east-1.on.aws",
    }
    return {
        "version": "2.0",
        "routeKey": "$default",
        "rawPath": "/",
        "rawQueryString": "",
        "headers": headers,
        "requestContext": {
            "accountId": "anonymous",
            "apiId": "abc123",
            "domainName": "abc123.lambda-url.us-east-1.on.aws",
            "http": {"method": method, "path": "/", "protocol": "HTTP/1.1", "sourceIp": "3.90.1.1"},
            "requestId": "c2a9f6a0-0000-4000-8000-000000000001",
            "stage": "$default",
        },
        "body": base64.b64encode(body.encode()).decode() if base64_body else body,
        "isBase64Encoded": base64_body,
    }


def _user(user: str) -> dict[str, str]:
    names = {ALICE: "alice", BOB: "bob", MALLORY: "mallory"}
    return {
        "id": user,
        "username": names.get(user, user.lower()),
        "name": names.get(user, "x"),
        "team_id": TEAM,
    }


def block_action(
    action_id: str, incident_id: str, user: str = ALICE, channel: str = "C0123"
) -> dict[str, Any]:
    """A click on one of the incident message's buttons (shortened from Slack's block_actions payload)."""
    return {
        "type": "block_actions",
        "user": _user(user),
        "api_app_id": "A0GUARD01",
        "token": "verification-token-unused",
        "container": {"type": "message", "message_ts": "1700000001.000100", "channel_id": channel},
        "trigger_id": f"1234567890.{abs(hash((action_id, user, time.time()))) % 10**12}.abcdef",
        "team": {"id": TEAM, "domain": "example"},
        "channel": {"id": channel, "name": "incidents"},
        "message": {"type": "message", "ts": "1700000001.000100", "text": "incident", "blocks": []},
        "response_url": "https://hooks.slack.com/actions/T0GUARD01/1/abc",
        "actions": [
            {
                "action_id": action_id,
                "block_id": "b1",
                "text": {"type": "plain_text", "text": "button"},
                "value": incident_id,
                "type": "button",
                "action_ts": f"{time.time():.6f}",
            }
        ],
    }


def view_submission(incident_id: str, reason: str | None, user: str = ALICE) -> dict[str, Any]:
    """The release modal submitted (shortened from Slack's view_submission payload)."""
    values: dict[str, Any] = {"reason": {"reason_input": {"type": "plain_text_input", "value": reason}}}
    return {
        "type": "view_submission",
        "team": {"id": TEAM, "domain": "example"},
        "user": _user(user),
        "api_app_id": "A0GUARD01",
        "trigger_id": "1234567890.1.abcdef",
        "view": {
            "id": "V0RELEASE",
            "type": "modal",
            "callback_id": "guardrail_release_reason",
            "private_metadata": incident_id,
            "state": {"values": values},
            "hash": "1700000002.abcdef",
        },
    }
