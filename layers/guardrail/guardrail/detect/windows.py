"""Sliding windows per principal: what one event adds, and which thresholds the counts reach. Pure.

The counts live in the state table as one small item per principal and minute (see incidents.py), so a
window of N minutes is the event's minute and the N-1 before it, read with one BatchGetItem. Counting by
the event's own time (CloudTrail's eventTime) keeps a redelivered or late event in the minute it happened.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from guardrail.detect.catalogue import walk
from guardrail.environments import MAX_DISTINCT, Counter, Policy, ThresholdHit
from guardrail.model import Category

if TYPE_CHECKING:
    from guardrail.detect.verdict import Verdict

# Request parameters that name the resource a call acts on, across the services the catalogue covers.
# A call's resources are "<event source>:<value>" for every value found (a list fans out).
RESOURCE_PARAMETERS = (
    "bucketName",
    "key",
    "instancesSet.items[].instanceId",
    "instanceId",
    "volumeId",
    "snapshotId",
    "imageId",
    "vpcId",
    "subnetId",
    "groupId",
    "functionName",
    "tableName",
    "backupArn",
    "dBInstanceIdentifier",
    "dBClusterIdentifier",
    "dBSnapshotIdentifier",
    "clusterIdentifier",
    "roleName",
    "userName",
    "groupName",
    "policyArn",
    "keyId",
    "name",
    "trailName",
    "stackName",
    "fileSystemId",
    "repositoryName",
    "logGroupName",
    "secretId",
    "topicArn",
    "queueUrl",
    "hostedZoneId",
    "detectorId",
    "backupVaultName",
    "backupPlanId",
    "ruleName",
    "configRuleName",
    "configurationRecorderName",
    "resourceARNList[]",
    "resourceArn",
)
_RESOURCE_PATHS = tuple(tuple(p.split(".")) for p in RESOURCE_PARAMETERS)
# Each path by the request key it starts at: a request names a handful of keys, and only their paths are
# walked (the walk of all forty cost more than the classification of a call).
_PATHS_BY_KEY: dict[str, tuple[tuple[str, ...], ...]] = {}
for _path in _RESOURCE_PATHS:
    _first = _path[0].removesuffix("[]")
    _PATHS_BY_KEY[_first] = (*_PATHS_BY_KEY.get(_first, ()), _path)
MAX_RESOURCES_PER_EVENT = 20  # a batch delete names many; a handful shows the spread
MAX_RESOURCE_LENGTH = 160  # item size stays bounded whatever the request holds


def resources_of(verdict: Verdict) -> tuple[str, ...]:
    call = verdict.call
    found: list[str] = []
    request = call.request
    # In RESOURCE_PARAMETERS' order, as before: the first twenty found are the ones kept.
    paths = [p for key in request if (ps := _PATHS_BY_KEY.get(key)) for p in ps] if request else []
    if len(paths) > 1:
        paths.sort(key=_RESOURCE_PATHS.index)
    for path in paths:
        for value in walk(request, path):
            if isinstance(value, str) and value:
                found.append(f"{call.event_source}:{value}"[:MAX_RESOURCE_LENGTH])
                if len(found) >= MAX_RESOURCES_PER_EVENT:
                    return tuple(dict.fromkeys(found))
    return tuple(dict.fromkeys(found))


@dataclass(frozen=True, slots=True)
class Tally:
    """What one event adds to its principal's windows."""

    key: str  # the principal's key in the state table
    minute: int  # epoch minute of the event
    span: int  # minutes the longest window reaches back
    access_denied: int = 0
    destructive: int = 0
    resources: tuple[str, ...] = ()
    services: tuple[str, ...] = ()

    @property
    def minutes(self) -> list[int]:
        return list(range(self.minute - self.span + 1, self.minute + 1))


@dataclass(frozen=True, slots=True)
class Bucket:
    """One principal's counts for one minute, as read from the table."""

    access_denied: int = 0
    destructive: int = 0
    resources: frozenset[str] = field(default_factory=frozenset)
    services: frozenset[str] = field(default_factory=frozenset)

    @property
    def resources_full(self) -> bool:
        return len(self.resources) >= MAX_DISTINCT


def tally_of(verdict: Verdict, policy: Policy, key: str) -> Tally | None:
    """What this event counts for, or None when its environment keeps no windows or it is not an agent's
    flagged call (benign calls and root are never counted: root has its own rule, benign ones are noise)."""
    if not policy.counts(verdict.category, is_agent=verdict.is_agent):
        return None
    wanted = policy.counters
    call = verdict.call
    return Tally(
        key=key,
        minute=int(call.event_time.timestamp()) // 60,
        span=policy.window_minutes,
        access_denied=int(Counter.ACCESS_DENIED in wanted and verdict.category is Category.ACCESS_DENIED),
        destructive=int(Counter.DESTRUCTIVE in wanted and verdict.category is Category.DESTRUCTIVE),
        resources=resources_of(verdict) if Counter.RESOURCES in wanted else (),
        services=(call.event_source,) if Counter.SERVICES in wanted else (),
    )


def reached(
    policy: Policy, buckets: dict[int, Bucket], tally: Tally, *, include_tally: bool
) -> tuple[ThresholdHit, ...]:
    """The thresholds the window ending at the tally's minute reaches. `include_tally` adds this event to
    counts read before it was written; counts read after it was written already hold it."""
    hits: list[ThresholdHit] = []
    for threshold in policy.thresholds:
        if not _adds_to(threshold.counts, tally):
            continue  # the event that reaches a threshold is raised, not every event after it
        window = [buckets.get(m) for m in range(tally.minute - threshold.minutes + 1, tally.minute + 1)]
        present = [b for b in window if b is not None]
        count: int
        if threshold.counts is Counter.ACCESS_DENIED:
            count = sum(b.access_denied for b in present) + (tally.access_denied if include_tally else 0)
        elif threshold.counts is Counter.DESTRUCTIVE:
            count = sum(b.destructive for b in present) + (tally.destructive if include_tally else 0)
        elif threshold.counts is Counter.RESOURCES:
            seen = set().union(*(b.resources for b in present))
            count = len(seen | set(tally.resources)) if include_tally else len(seen)
        else:
            seen = set().union(*(b.services for b in present))
            count = len(seen | set(tally.services)) if include_tally else len(seen)
        if count >= threshold.at:
            hits.append(ThresholdHit(threshold, count))
    return tuple(hits)


def _adds_to(threshold_counts: Counter, tally: Tally) -> bool:
    """Whether this event can move a window of this kind (a refused call cannot raise destructive volume)."""
    return bool(
        {
            Counter.ACCESS_DENIED: tally.access_denied,
            Counter.DESTRUCTIVE: tally.destructive,
            Counter.RESOURCES: tally.resources,
            Counter.SERVICES: tally.services,
        }[threshold_counts]
    )
