"""Is the resource a call deletes tagged Lifecycle=ephemeral? From the request, or a cheap lookup.

Only environments whose policy considers the tag ask (development: agents may delete ephemeral resources);
production never does. The answer is True, False, or None when it cannot be known, and None is never read
in the agent's favour. A lookup is possible only while the resource can still be described after the call:
EC2 keeps terminated instances, tags included, visible for about an hour. A deleted bucket, table or
snapshot is gone, so its tag cannot be known.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from guardrail.detect.catalogue import walk

if TYPE_CHECKING:
    from collections.abc import Callable

    from guardrail.model import ApiCall

LIFECYCLE_KEY = "lifecycle"
EPHEMERAL = "ephemeral"
# Tags a request may carry, as CloudTrail logs them.
_TAG_LISTS = (
    ("tagSpecificationSet", "items[]", "tags[]"),
    ("tagSet", "items[]"),
    ("tags[]",),
    ("Tags[]",),
)
# What each lookup needs of IAM; the template grants exactly these (held by a test).
LIFECYCLE_PERMISSIONS = ("ec2:DescribeInstances",)

# Calls whose resources outlive them long enough to be described: (event source, name) -> ids path.
LOOKUPS: dict[tuple[str, str], tuple[str, ...]] = {
    ("ec2.amazonaws.com", "TerminateInstances"): ("instancesSet", "items[]", "instanceId"),
}


def from_request(call: ApiCall) -> bool | None:
    """The Lifecycle tag as the request states it, if it does."""
    for path in _TAG_LISTS:
        for tag in walk(call.request, path):
            if not isinstance(tag, dict):
                continue
            key = tag.get("key", tag.get("Key"))
            if isinstance(key, str) and key.lower() == LIFECYCLE_KEY:
                value = tag.get("value", tag.get("Value"))
                return isinstance(value, str) and value.lower() == EPHEMERAL
    return None


def instance_ids(call: ApiCall) -> list[str]:
    path = LOOKUPS.get((call.event_source, call.event_name))
    if path is None:
        return []
    return [v for v in walk(call.request, path) if isinstance(v, str) and v]


def ephemeral_instances(ec2: Any, ids: list[str]) -> bool | None:
    """True only when every instance is still described and tagged Lifecycle=ephemeral."""
    try:
        response = ec2.describe_instances(InstanceIds=ids)
    except Exception:
        # Any failure means "cannot be known", which is never read in the agent's favour.
        return None
    tags: dict[str, bool] = {}
    for reservation in response.get("Reservations", []):
        for instance in reservation.get("Instances", []):
            values = {t.get("Key", "").lower(): t.get("Value", "") for t in instance.get("Tags") or []}
            tags[instance["InstanceId"]] = str(values.get(LIFECYCLE_KEY, "")).lower() == EPHEMERAL
    if any(i not in tags for i in ids):
        return None  # gone from the API: unknown, not "untagged"
    return all(tags[i] for i in ids)


def resolver(ec2_for: Callable[[str, str], Any | None]) -> Callable[[ApiCall], bool | None]:
    """A LifecycleLookup over the request, then EC2 in the call's account and region when reachable."""

    def lookup(call: ApiCall) -> bool | None:
        stated = from_request(call)
        if stated is not None:
            return stated
        ids = instance_ids(call)
        if not ids:
            return None
        ec2 = ec2_for(call.account, call.region)
        return ephemeral_instances(ec2, ids) if ec2 is not None else None

    return lookup
