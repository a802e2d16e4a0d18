"""The state table itself: one DynamoDB table (keys pk/sk, TTL attribute expires_at) shared by the
incident records, the event ledger, the windows and the audit trail (see store.py for its items).

Here: reading every key asked for, and the conversions between Python values and DynamoDB attributes.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from guardrail.errors import GuardrailError

if TYPE_CHECKING:
    from collections.abc import Callable
    from datetime import datetime

    from mypy_boto3_dynamodb import DynamoDBClient

UNPROCESSED_RETRIES = 3

# What each side needs of the table (transactions need the per-item permissions of what they contain).
RESPONDER_TABLE_PERMISSIONS = (
    "dynamodb:BatchGetItem",
    "dynamodb:GetItem",
    "dynamodb:PutItem",
    "dynamodb:UpdateItem",
    "dynamodb:ConditionCheckItem",
    "dynamodb:Query",  # the agent's flight record, for the damage report after a containment
)
RELEASE_TABLE_PERMISSIONS = (
    "dynamodb:GetItem",
    "dynamodb:PutItem",
    "dynamodb:UpdateItem",
    "dynamodb:DeleteItem",
    "dynamodb:ConditionCheckItem",
    "dynamodb:Query",  # the released principal's window buckets, to forget them
)


class IncompleteReadError(GuardrailError):
    """The state table would not return every key asked for (throttling): the event is retried."""


# DynamoDB refuses a partition key over 2,048 bytes and a sort key over 1,024: an event's value in a key is
# cut to this many characters, with a digest of the whole so distinct values stay distinct.
KEY_TEXT_LIMIT = 400


def bounded(text: str) -> str:
    """`text` as a key part that no event can make too long for DynamoDB: itself when short, else its
    readable beginning and a SHA-256 of the whole (the same text always gives the same key)."""
    if len(text) <= KEY_TEXT_LIMIT and len(text.encode()) <= KEY_TEXT_LIMIT * 2:
        return text
    import hashlib

    digest = hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()
    return f"{text[:200]}#sha256:{digest}"


def to_attr(value: Any) -> Any:
    from boto3.dynamodb.types import TypeSerializer

    # DynamoDB wants Decimal, never float; a JSON round trip converts every number at once.
    return TypeSerializer().serialize(json.loads(json.dumps(value), parse_float=Decimal))


def item(values: dict[str, Any]) -> dict[str, Any]:
    return {k: to_attr(v) for k, v in values.items() if v is not None}


def from_item(raw: dict[str, Any]) -> dict[str, Any]:
    from boto3.dynamodb.types import TypeDeserializer

    deserializer = TypeDeserializer()

    def plain(value: Any) -> Any:
        if isinstance(value, Decimal):
            return int(value) if value == value.to_integral_value() else float(value)
        if isinstance(value, dict):
            return {k: plain(v) for k, v in value.items()}
        if isinstance(value, list | set):
            return [plain(v) for v in value]
        return value

    return {k: plain(deserializer.deserialize(v)) for k, v in raw.items()}


def cancellation_codes(exc: Exception) -> list[dict[str, Any]]:
    return list(getattr(exc, "response", {}).get("CancellationReasons") or [])


@dataclass
class StateTable:
    """The client, the table's name and the clock every part of the state shares."""

    db: DynamoDBClient
    name: str
    clock: Callable[[], datetime]

    def now(self) -> int:
        return int(self.clock().timestamp())

    def read_all(self, keys: list[Any]) -> list[dict[str, Any]]:
        """BatchGetItem until every key is read. Under throttling DynamoDB returns some keys unprocessed;
        taking an unread lock or event marker for absent would count or announce wrongly, so after a few
        tries the read fails and Lambda retries the event."""
        request: Any = {self.name: {"Keys": keys, "ConsistentRead": True}}
        items: list[dict[str, Any]] = []
        for attempt in range(UNPROCESSED_RETRIES + 1):
            response = self.db.batch_get_item(RequestItems=request)
            items.extend(response.get("Responses", {}).get(self.name, []))
            request = response.get("UnprocessedKeys") or {}
            if not request:
                return items
            time.sleep(0.05 * 2**attempt)
        raise IncompleteReadError(
            f"the state table left {len(request[self.name]['Keys'])} key(s) unread after {UNPROCESSED_RETRIES} retries"
        )
